"""Long run: 20 000 training steps of a tiny model with the full stack keep memory flat.

Usage::

    python benchmarks/long_run.py [--steps N] [--every N] [--max-growth PERCENT]

Trains a one-layer bidirectional LSTM (hidden 8, batch 8) on synthetic in-memory sequences with
every built-in technique for feature inputs (zoneout aside: it leaves the fused kernel) through
``Trainer.fit`` with a CSV logger, and samples the resident set size (``VmRSS`` from
``/proc/self/status``) every ``--every`` optimizer steps. A technique that kept a growing
history (of norms, profiles, logged values) would show here as RSS rising with the step count.

Prints one row per sample (step, RSS, peak RSS, CPU and wall seconds so far, the size of what
the stateful techniques hold), then
the growth of RSS from step ``--every * 2`` (after allocators and caches have warmed up) to the
last step, and exits with status 1 when it exceeds ``--max-growth`` percent (default 5).
Not part of the test suite: it takes minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from pytorch_lightning.callbacks import Callback  # noqa: E402
from pytorch_lightning.loggers import CSVLogger  # noqa: E402

from lstm_plugins import LSTMClassifier  # noqa: E402
from lstm_plugins.data import SequenceDataModule  # noqa: E402
from lstm_plugins.plugins import (  # noqa: E402
    ActivationRegularization,
    AutoClipping,
    DecoupledWeightDecay,
    Dropout,
    ExplodingGradients,
    GateSaturation,
    GradientNorms,
    GradientReach,
    Initialization,
    L2Penalty,
    LockedDropout,
    NonFiniteGuard,
    WeightDrop,
)


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_mib() -> float:
    """Current resident set size of this process, in MiB."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """Peak resident set size so far (``VmHWM``), in MiB."""
    return _status_mib("VmHWM")


def full_stack() -> list[Any]:
    return [
        Initialization(),
        Dropout(input=0.1, output=0.2),
        LockedDropout(input=0.1, output=0.2),
        WeightDrop(0.2),
        L2Penalty(1e-4, parameters=["head.*"]),
        DecoupledWeightDecay(0.01, exclude=["head.*"]),
        ActivationRegularization(alpha=0.5, beta=0.5),
        GradientNorms(log_every_n_steps=10),
        ExplodingGradients(),
        GradientReach(log_every_n_steps=10),
        GateSaturation(log_every_n_steps=10),
        NonFiniteGuard(),
        AutoClipping(),  # a 10 000-norm ring buffer: the longest history of the stack
    ]


def history_sizes(model: LSTMClassifier) -> str:
    """What the stateful techniques hold, to show it stops growing."""
    parts = []
    for technique in model.techniques:
        if technique.name == "auto_clipping":
            parts.append(f"autoclip={len(technique.history)}")
        elif technique.name == "exploding_gradients":
            parts.append(f"spike_stats={sum(t.numel() for t in technique.statistics._tensors.values())}")
        elif technique.name == "gradient_reach" and technique.last_profile is not None:
            parts.append(f"reach_profile={technique.last_profile.numel()}")
    return " ".join(parts)


class SampleMemory(Callback):
    def __init__(self, every: int) -> None:
        self.every = every
        self.samples: list[tuple[int, float, float, float]] = []
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every == 0:
            sample = (step, rss_mib(), peak_rss_mib(), time.process_time() - self.cpu_started)
            self.samples.append(sample)
            wall = time.perf_counter() - self.started
            print(f"{step:>7} {sample[1]:>9.1f} {sample[2]:>9.1f} {sample[3]:>8.1f} {wall:>8.1f}  "
                  f"{history_sizes(pl_module)}", flush=True)


def data(seed: int = 0) -> SequenceDataModule:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=512)
    sequences = []
    for label, length in zip(labels, rng.integers(4, 30, size=512)):
        values = rng.normal(size=(int(length), 3)).astype(np.float32)
        values[:, label] += 0.5
        sequences.append(values)
    return SequenceDataModule(sequences, labels, num_classes=3, val_fraction=0.0, batch_size=8, seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/long_run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--max-growth", type=float, default=5.0, help="percent, from step 2 * every to the end")
    options = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    pl.seed_everything(0, verbose=False)
    model = LSTMClassifier(3, 3, hidden_size=8, bidirectional=True, optimizer="adamw", learning_rate=3e-3,
                           techniques=full_stack())
    sampler = SampleMemory(options.every)
    print(f"{options.steps} steps, hidden 8, batch 8, {len(model.techniques)} techniques, torch {torch.__version__}, "
          f"pytorch-lightning {pl.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"{'step':>7} {'RSS MiB':>9} {'peak MiB':>9} {'CPU s':>8} {'wall s':>8}  technique state")
    with tempfile.TemporaryDirectory() as logs:
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=options.steps,
            max_epochs=-1,
            logger=CSVLogger(logs),
            log_every_n_steps=50,
            callbacks=[sampler],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, datamodule=data())
    baseline_step = 2 * options.every
    baseline = next((rss for step, rss, _, _ in sampler.samples if step == baseline_step), None)
    if baseline is None:
        print(f"no sample at step {baseline_step}: run more steps", file=sys.stderr)
        return 2
    final_step, final, _, cpu_seconds = sampler.samples[-1]
    growth = 100.0 * (final - baseline) / baseline
    print(f"RSS growth from step {baseline_step} to {final_step}: {final - baseline:+.1f} MiB ({growth:+.2f} %); "
          f"{cpu_seconds / max(final_step, 1) * 1e3:.2f} ms of CPU per step")
    if growth > options.max_growth:
        print(f"FAIL: memory grew by more than {options.max_growth} %", file=sys.stderr)
        return 1
    print(f"OK: within {options.max_growth} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
