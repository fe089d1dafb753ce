"""Multi-process training with Lightning's DDP strategy: 2 processes on CPU (gloo), no GPU needed.

Distribution is Lightning's: the same script runs on GPUs with ``--accelerator gpu --devices 4``.
The techniques act on gradients DDP has already averaged, and the test metrics are reduced
across processes by torchmetrics, so every process prints the same global accuracy; rank 0
prints the table.

Usage::

    python examples/ddp_on_cpu.py                 # 2 CPU processes, 30 epochs
    python examples/ddp_on_cpu.py --smoke         # 1 epoch, to check that it runs

Lightning's ``ddp`` strategy starts the other processes by running this same command again, so
everything runs under ``if __name__ == "__main__"``.

Note: the distributed sampler pads an evaluation set whose size is not a multiple of the process
count by repeating samples (370 test sequences split over 2 processes need no padding).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

import pytorch_lightning as pl
import torch

from lstm_plugins import LSTMClassifier
from lstm_plugins.cli._tasks import classification_table
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.training import end_process_group

STACK = [
    {"gradient_clipping": {"threshold": 1.0}},
    {"dropout": {"input": 0.1, "output": 0.3}},
    {"l2": {"weight": 1e-5}},
    {"grad_norm": {"log_every_n_steps": 10}},
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train with 2-process DDP on CPU.")
    parser.add_argument("--devices", type=int, default=2, help="processes")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="one epoch, small model")
    arguments = parser.parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    if arguments.accelerator == "cpu":
        torch.set_num_threads(1)  # one intra-op thread per process, so processes don't oversubscribe

    started = time.perf_counter()
    pl.seed_everything(0, workers=True, verbose=False)
    datamodule = JapaneseVowelsDataModule(batch_size=16, seed=0)
    model = LSTMClassifier(
        datamodule.num_features, datamodule.num_classes, hidden_size=16 if arguments.smoke else 128,
        bidirectional=True, learning_rate=3e-3, techniques=STACK,
    )
    trainer = pl.Trainer(
        accelerator=arguments.accelerator,
        devices=arguments.devices,
        strategy="ddp",
        max_epochs=1 if arguments.smoke else arguments.max_epochs,
        log_every_n_steps=10,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    # Every process holds the same global metrics; rank 0 prints them.
    if trainer.is_global_zero:
        print(f"DDP on {trainer.world_size} processes ({arguments.accelerator}), "
              f"{trainer.current_epoch} epochs")
        print(classification_table(model.test_results, datamodule))
        print(f"  ({len(datamodule.test_dataset)} test sequences, {time.perf_counter() - started:.1f} s in all)")
    # Lightning leaves the process group to the script: end it here, or gloo's threads can meet
    # the interpreter's exit and abort a run that succeeded.
    end_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
