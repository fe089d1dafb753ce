"""Compose a technique stack in Python, train it on JapaneseVowels, test it and plot the run.

This is the stack of ``examples/japanese_vowels.yaml`` (the default of ``lstm-plugins fit``)
written as technique objects, so it trains to the same numbers as::

    lstm-plugins fit --config examples/japanese_vowels.yaml

Usage::

    python examples/compose_in_python.py                      # 100 epochs
    python examples/compose_in_python.py --plot run.png       # and a PNG of the curves (needs matplotlib)
    python examples/compose_in_python.py --smoke              # one epoch, to check that it runs
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import pytorch_lightning as pl

from lstm_plugins import LSTMClassifier
from lstm_plugins.cli._plotting import MetricHistory, plot_run, require_matplotlib
from lstm_plugins.cli._tasks import classification_table
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.plugins import Dropout, GradientClipping, GradientNorms, L2Penalty


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a stack composed in Python on JapaneseVowels.")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="FILE.png", help="write a PNG of the run (needs matplotlib)")
    parser.add_argument("--smoke", action="store_true", help="one epoch, to check that it runs")
    arguments = parser.parse_args(argv)
    if arguments.plot:
        require_matplotlib()  # fail now rather than after training
    max_epochs = 1 if arguments.smoke else arguments.max_epochs

    started = time.perf_counter()
    pl.seed_everything(arguments.seed, workers=True, verbose=False)
    datamodule = JapaneseVowelsDataModule(batch_size=16, val_fraction=0.1, seed=arguments.seed)
    model = LSTMClassifier(
        input_size=datamodule.num_features,
        num_classes=datamodule.num_classes,
        hidden_size=128,
        bidirectional=True,
        optimizer="adam",
        learning_rate=3e-3,
        techniques=[                                   # within each hook, in this order
            GradientClipping(threshold=1.0),        # global L2 norm of all gradients <= 1
            Dropout(input=0.1, output=0.3),         # on the input sequence and before the head
            L2Penalty(weight=1e-5),                 # a named loss term, biases excluded
            GradientNorms(log_every_n_steps=10),    # total and per-layer norms, before clipping
        ],
    )
    history = MetricHistory()                       # what --plot draws
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator="auto",
        devices=1,
        log_every_n_steps=10,
        deterministic=True,
        callbacks=[history],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    print(classification_table(model.test_results, datamodule))
    print(f"  ({len(datamodule.test_dataset)} test sequences, {time.perf_counter() - started:.1f} s in all)")
    if arguments.plot:
        print(f"  plot written to {plot_run(history, arguments.plot, title='compose_in_python.py')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
