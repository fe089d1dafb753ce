"""Length-aware batching against random batching: epoch time and test accuracy.

The default ``lstm-plugins fit`` run (``build_run`` with the CLI's default config and Trainer, on
the CPU) on data with spread lengths: JapaneseVowels (7-29 frames) and, with
``--task sequence_labelling``, the constructed speaker-turn recordings (21-81 frames). The same
run with ``length_batching`` on and off (random batches, evaluation in dataset order), whatever
the automatic default would choose for the data (off for JapaneseVowels, on for the others).

* speed: paired rounds; each round fits both settings (alternating which goes first) for
  ``--epochs`` epochs and times an epoch from one ``on_train_epoch_start`` to the next (training,
  validation, checkpoint); the first epoch is skipped. The figure is the median over rounds of
  random / bucketed epoch time.
* accuracy: ``--seeds`` full fits per setting (``--fit-epochs``, the CLI's 100 by default),
  ``seed_everything`` and the data seed both the seed; test accuracy of the last epoch.

    python benchmarks/length_batching.py                  # JapaneseVowels
    python benchmarks/length_batching.py --task sequence_labelling --fit-epochs 30
    python benchmarks/length_batching.py --dataset plaid --hidden-size 64 --fit-epochs 20
    python benchmarks/length_batching.py --dataset plaid --rounds 0 --seed-list 3 4   # accuracy only

``--seed-list`` splits the accuracy fits over processes (one per core); ``--bucket-size`` sets the
sampler's batches per length-sorted window (8 by default). The accuracy fits end with the paired
differences (same seed, same initial weights), the comparison that matters.

``--dataset`` picks an embedded classification problem (``plaid``: 100-1344 steps);
``--hidden-size`` and ``--unidirectional`` make the model smaller (the accuracy fits on PLAID
with the default model would take hours on two cores), for both settings alike.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

import pytorch_lightning as pl


# Student's t, 97.5th percentile, by degrees of freedom (for the paired differences' interval).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 19: 2.093, 24: 2.064, 29: 2.045}


class EpochClock(pl.Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stamps.append(time.perf_counter())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stamps.append(time.perf_counter())


MODEL: dict[str, Any] = {}
DATA: dict[str, Any] = {}


def config(task: str, seed: int, workdir: str, **trainer: Any) -> dict[str, Any]:
    from lstm_plugins.cli import DEFAULT_CONFIG

    if task == "classification":
        result = copy.deepcopy(DEFAULT_CONFIG)
    else:
        result = {"task": task, "trainer": copy.deepcopy(DEFAULT_CONFIG["trainer"]), "data": {}}
    result["seed_everything"] = seed
    result["data"]["seed"] = seed
    result["data"].update(DATA)
    result.setdefault("model", {}).update(MODEL)
    result["trainer"].update(accelerator="cpu", default_root_dir=workdir, **trainer)
    return result


def fit(task: str, length_batching: bool, seed: int, workdir: str, epochs: int, test: bool = False) -> dict[str, Any]:
    from lstm_plugins.cli import build_run
    from lstm_plugins.data import padding_fraction

    datamodule, model, trainer = build_run(config(task, seed, workdir, max_epochs=epochs))
    datamodule.length_batching = length_batching
    clock = EpochClock()
    trainer.callbacks.append(clock)
    sink = open(os.devnull, "w")
    with warnings.catch_warnings(), sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=datamodule)
        metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0] if test else {}
    loader = datamodule.train_dataloader()
    lengths = datamodule.train_dataset.lengths
    epoch_times = [b - a for a, b in zip(clock.stamps[1:], clock.stamps[2:])]
    return {
        "epoch": statistics.median(epoch_times) if epoch_times else float("nan"),
        "padding": padding_fraction(lengths, list(loader.batch_sampler)),
        "accuracy": metrics.get("test/accuracy"),
    }


def report_speed(task: str, padding: dict[bool, float], times: dict[bool, list[float]], ratios: list[float]) -> None:
    print(f"\n{task}: training padding random {padding[False]:.1%}, bucketed {padding[True]:.1%}")
    print(f"epoch time: random {statistics.median(times[False]):.3f}s, bucketed "
          f"{statistics.median(times[True]):.3f}s; speed-up (median of paired ratios) "
          f"{statistics.median(ratios):.2f}x over {len(ratios)} rounds "
          f"(range {min(ratios):.2f}-{max(ratios):.2f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="classification", choices=["classification", "sequence_labelling"])
    parser.add_argument("--rounds", type=int, default=5, help="paired speed rounds (0: accuracy only)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per timed fit (the first is skipped)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed-list", type=int, nargs="+", default=None,
                        help="these seeds instead of 0 .. seeds-1 (to split the accuracy fits over processes)")
    parser.add_argument("--bucket-size", type=int, default=None,
                        help="batches per length-sorted window (the sampler's default otherwise)")
    parser.add_argument("--fit-epochs", type=int, default=100, help="epochs per accuracy fit")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--dataset", default=None, help="an embedded classification problem (e.g. plaid)")
    parser.add_argument("--hidden-size", type=int, default=None)
    parser.add_argument("--unidirectional", action="store_true")
    options = parser.parse_args(argv)
    if options.dataset:
        DATA["dataset"] = options.dataset
    if options.hidden_size:
        MODEL["hidden_size"] = options.hidden_size
    if options.unidirectional:
        MODEL["bidirectional"] = False
    if options.bucket_size is not None:
        from lstm_plugins.data import LengthBucketBatchSampler

        LengthBucketBatchSampler.__init__.__kwdefaults__["bucket_size"] = options.bucket_size
    print(f"{options.task} {options.dataset or ''} model {MODEL or 'default'}, 1 thread", flush=True)
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as workdir:
        ratios, times = [], {True: [], False: []}
        padding = {}
        for round_ in range(options.rounds):  # --rounds 0: accuracy only
            order = (False, True) if round_ % 2 == 0 else (True, False)
            result = {on: fit(options.task, on, 0, workdir, options.epochs) for on in order}
            for on in (True, False):
                times[on].append(result[on]["epoch"])
                padding[on] = result[on]["padding"]
            ratios.append(result[False]["epoch"] / result[True]["epoch"])
            print(f"round {round_}: random {result[False]['epoch']:.3f}s bucketed {result[True]['epoch']:.3f}s "
                  f"ratio {ratios[-1]:.2f}", flush=True)
        if ratios:
            report_speed(options.task, padding, times, ratios)
        if options.skip_accuracy:
            return
        accuracy: dict[bool, list[float]] = {True: [], False: []}
        for seed in options.seed_list or range(options.seeds):
            for on in (False, True):
                accuracy[on].append(float(fit(options.task, on, seed, workdir, options.fit_epochs, test=True)["accuracy"]))
            print(f"seed {seed}: test accuracy random {accuracy[False][-1]:.4f} bucketed {accuracy[True][-1]:.4f}",
                  flush=True)
        for on, name in ((False, "random"), (True, "bucketed")):
            values = accuracy[on]
            spread = f"sample sd {statistics.stdev(values):.4f}" if len(values) > 1 else "one seed"
            print(f"{name}: test accuracy mean {statistics.mean(values):.4f} ({spread}) over {len(values)} seeds: "
                  f"{[round(v, 4) for v in values]}")
        # Same seed, same initial weights: the paired differences are the comparison.
        differences = [b - a for a, b in zip(accuracy[False], accuracy[True])]
        print(f"bucketed - random, paired by seed: mean {statistics.mean(differences):+.4f}; lower in "
              f"{sum(d < 0 for d in differences)} of {len(differences)}")
        if len(differences) > 1:
            error = statistics.stdev(differences) / len(differences) ** 0.5
            half = T_975.get(len(differences) - 1, 1.96) * error
            print(f"  sample sd {statistics.stdev(differences):.4f}, standard error {error:.4f}, 95 % confidence "
                  f"interval {statistics.mean(differences) - half:+.4f} to {statistics.mean(differences) + half:+.4f}")


if __name__ == "__main__":
    sys.exit(main())
