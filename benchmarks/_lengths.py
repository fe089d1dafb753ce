"""Section ``lengths``: length-aware batching against random batching on a real dataset with
spread lengths (PLAID: 11 classes, 482 training sequences of 100-1344 steps).

The default ``lstm-plugins fit`` run (``build_run`` on the CLI's default config, on the CPU:
bidirectional LSTM 1→128, batch 16, the default technique stack, progress bar, CSV logger,
checkpoints) with ``data.dataset: plaid``, once with ``length_batching`` on and once off (random
batches). Each round fits both (alternating which goes first) for two epochs; an epoch is timed
from one ``on_train_epoch_start`` to the next (training, validation, checkpoint), the first is
warm-up. The figure is the median over rounds of random / length-aware epoch time. Test accuracy
over seeds is ``benchmarks/length_batching.py --dataset plaid`` (minutes): see the note.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

from _harness import Row, Table, median, note_row, ratio_row, run_rounds
from _stack import EpochClock, default_config, epoch_intervals, silenced_output

DATASET = "plaid"


def _config(options: Any, workdir: str, length_batching: bool) -> dict[str, Any]:
    trainer: dict[str, Any] = dict(max_epochs=2, default_root_dir=workdir)
    if getattr(options, "smoke", False):
        trainer.update(max_epochs=3)
    config = default_config(**trainer)
    config["data"].update(dataset=DATASET, length_batching=length_batching)
    if getattr(options, "smoke", False):
        config["model"]["hidden_size"] = 8
    return config


def padding(datamodule: Any) -> float:
    from lstm_plugins.data import padding_fraction

    fractions = []
    sampler = datamodule.train_dataloader().batch_sampler
    for epoch in range(3):
        set_epoch = getattr(sampler, "set_epoch", None) or getattr(sampler.sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        fractions.append(padding_fraction(datamodule.train_dataset.lengths, list(sampler)))
    return float(np.mean(fractions))


def run(options: Any) -> list[Table]:
    from lstm_plugins.cli import build_run
    from lstm_plugins.data import length_batching_pays

    rounds = 1 if options.quick or getattr(options, "smoke", False) else 3
    pads: dict[bool, float] = {}
    with tempfile.TemporaryDirectory(prefix="lstm-plugins-bench-") as workdir:

        def variant(on: bool) -> Any:
            def fit() -> float:
                datamodule, model, trainer = build_run(_config(options, workdir, on))
                if getattr(options, "smoke", False):  # set here: the CLI reads `2` as 2.0 and refuses it
                    trainer.limit_train_batches, trainer.limit_val_batches = 2, 1
                clock = EpochClock()
                trainer.callbacks.append(clock)
                with silenced_output():
                    trainer.fit(model, datamodule=datamodule)
                pads[on] = padding(datamodule)
                fit.auto = length_batching_pays(datamodule.train_dataset.lengths, datamodule.batch_size)
                fit.sizes = (len(datamodule.train_dataset), int(datamodule.train_dataset.lengths.min()),
                             int(datamodule.train_dataset.lengths.max()))
                return median(epoch_intervals(clock.stamps))

            return fit

        on, off = variant(True), variant(False)
        series = run_rounds({"length-aware": on, "random": off}, rounds)
    rows: list[Row] = [
        ratio_row(f"{DATASET}: default `fit` epoch, random / length-aware batches", series["random"],
                  series["length-aware"], unit="/epoch", budget=1.30, higher_is_better=True),
        note_row(f"{DATASET}: padding in training batches", f"random {pads[False]:.1%}, length-aware {pads[True]:.1%}"),
        note_row(f"{DATASET}: `length_batching=None` (auto) turns it", "on" if on.auto else "off"),
    ]
    count, shortest, longest = on.sizes
    notes = [
        f"{DATASET}: {count} training sequences of {shortest}-{longest} steps; `lstm-plugins fit` defaults "
        "(bidirectional LSTM, hidden 128, batch 16, default stack, progress bar, CSV logger, checkpoints) on the CPU",
        f"{rounds} round(s) × 2 epochs per variant (the first is warm-up); an epoch = training + validation + checkpoint",
        "test accuracy over seeds, paired: `python benchmarks/length_batching.py --dataset plaid --rounds 0 "
        "--seed-list 0 1 2` (default fits of 100 epochs, about 16 minutes per seed on one core; "
        "`--hidden-size 64 --fit-epochs 20` about 1.5 minutes per seed)",
    ]
    return [Table("7. Length-aware batching on spread lengths (PLAID)", rows, notes)]
