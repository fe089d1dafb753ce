"""Train a deterministic technique stack on one process or on two (CPU, gloo); write rank 0's results.

Run as a script::

    python tests/parity_script.py STRATEGY OUTPUT_DIR STACK[,STACK...]

``STRATEGY`` is ``single`` (one process, batch ``2 * BATCH``), ``ddp`` or ``ddp_spawn`` (two
processes, batch ``BATCH`` each). Lightning's ``ddp`` strategy starts the second process by
running this same command again; ``ddp_spawn`` re-imports this file in fresh interpreters. Each
stack in the comma-separated list is trained, then tested, with its own ``Trainer``.

Same samples, same order. Under DDP, Lightning 2.6 replaces the training sampler with
``DistributedSampler(shuffle=True, seed=PL_GLOBAL_SEED)`` whatever the loader asked for (it
shuffles training data even when the loader does not): for epoch ``e`` it draws
``perm = randperm(n)`` from a generator seeded with ``seed + e`` and gives rank ``r`` the
indices ``perm[r::2]``. Rank 0's batch ``j`` and rank 1's batch ``j`` are therefore together
``perm[2jB:2(j+1)B]``, which is batch ``j`` of one process that draws from
``DistributedSampler(num_replicas=1, rank=0, shuffle=True, seed=seed)`` with batch ``2B``: that
is the single process's training loader. The training set is a multiple of ``2B`` and the test
set a multiple of 2, so no sample is dropped or repeated.

Written under ``OUTPUT_DIR/<strategy>/<stack>/`` by every rank (``<rank>`` is 0 or 1):

* ``weights_rank<rank>.pt``: the trained ``state_dict``;
* ``fit_rank<rank>.json``: the world size, the optimizer steps, every value the logger received
  per step (``logged``), the total gradient norm after clipping on every step (``post_clip``),
  and the clipper's step counts;
* ``test_rank<rank>.json``: ``model.test_results`` (not for ``ddp_spawn``).

Every run also validates on the test split after its last epoch, so ``logged`` holds
``val/accuracy``, ``val/recall``, ``val/f1`` and ``val/loss`` reduced across processes.

Dropout-like techniques are left out: their masks follow each process's own random stream, so
they cannot match one process drawing masks for the whole batch.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger
from torch.utils.data import DataLoader, DistributedSampler

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import SequenceDataModule, collate_sequence_batch
from lstm_plugins.plugins import AdaptiveGradientClipping, AutoClipping, GradientClipping
from stacks import full_stack

BATCH = 8  # per process; the single process uses 2 * BATCH
TRAIN_SIZE = 64  # a multiple of 2 * BATCH: 4 optimizer steps per epoch
TEST_SIZE = 48  # a multiple of 2
MAX_EPOCHS = 3
NUM_FEATURES = 3
NUM_CLASSES = 3
SEED = 0  # seed_everything's, which Lightning's distributed sampler reads from PL_GLOBAL_SEED
CLIP_THRESHOLD = 0.2  # below the typical gradient norm here, so most steps are clipped

CLIPPERS = {
    "norm": lambda: GradientClipping(threshold=CLIP_THRESHOLD, log_every_n_steps=1),
    "auto": lambda: AutoClipping(percentile=50, history_size=8, log_every_n_steps=1),
    "agc": lambda: AdaptiveGradientClipping(clipping=0.05, log_every_n_steps=1),
}


def stack(name: str) -> list[Any]:
    """Every deterministic built-in technique, with the clipper ``name`` (``norm``, ``auto``, ``agc``)."""
    return full_stack(CLIPPERS[name](), dropout=False, log_every_n_steps=1)


def make_model(stack_name: str) -> LSTMClassifier:
    torch.manual_seed(0)
    return LSTMClassifier(
        NUM_FEATURES,
        NUM_CLASSES,
        hidden_size=8,
        num_layers=2,
        bidirectional=True,
        optimizer="adamw",
        learning_rate=0.02,
        techniques=stack(stack_name),
    )


def _sequences(count: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Learnable synthetic data: the class is the feature with the largest mean; lengths 2-12
    (at least 2, so every sequence has a TAR pair and per-process TAR means stay equal-weight)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size=count)
    sequences = []
    for label, length in zip(labels, rng.integers(2, 13, size=count)):
        values = rng.normal(size=(int(length), NUM_FEATURES)).astype(np.float32)
        values[:, label] += 1.0
        sequences.append(values)
    return sequences, labels


class ParityData(SequenceDataModule):
    """The library's data module; on one process (``merged_order=True``) the training loader
    draws the order that Lightning's distributed sampler gives two processes, merged."""

    def __init__(self, batch_size: int, merged_order: bool) -> None:
        super().__init__(
            *_sequences(TRAIN_SIZE, seed=1), *_sequences(TEST_SIZE, seed=2),
            num_classes=NUM_CLASSES, val_fraction=0.0, batch_size=batch_size, seed=SEED,
        )
        self.merged_order = merged_order

    def val_dataloader(self) -> DataLoader:
        return self.test_dataloader()  # the end-of-fit validation pass runs over the test split

    def train_dataloader(self) -> DataLoader:
        if not self.merged_order:
            return super().train_dataloader()  # Lightning swaps in its DistributedSampler
        sampler = DistributedSampler(self.train_dataset, num_replicas=1, rank=0, shuffle=True, seed=SEED)
        return DataLoader(self.train_dataset, self.batch_size, sampler=sampler, collate_fn=collate_sequence_batch)


class RecordingLogger(Logger):
    """Keeps every value the Trainer logs, per step, in memory (on every rank)."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[int, dict[str, float]] = {}

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.history.setdefault(int(step or 0), {}).update({k: float(v) for k, v in metrics.items()})


class WriteResults(Callback):
    """Writes each rank's weights, per-step records and test metrics (works under spawn too)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.post_clip: list[float] = []

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        # ddp_spawn's processes run no code of this script after the fit: they end the process
        # group at exit, or gloo's threads could abort the interpreter's shutdown.
        if torch.distributed.is_initialized() and not getattr(WriteResults, "ends_at_exit", False):
            from lstm_plugins.training import end_process_group

            atexit.register(end_process_group)
            WriteResults.ends_at_exit = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # After the optimizer step: the gradients it used, i.e. reduced and then clipped.
        gradients = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.post_clip.append(float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gradients)))))

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        rank = trainer.global_rank
        self.directory.mkdir(parents=True, exist_ok=True)
        torch.save(pl_module.state_dict(), self.directory / f"weights_rank{rank}.pt")
        logger = next(lg for lg in trainer.loggers if isinstance(lg, RecordingLogger))
        clipper = pl_module.techniques[-1]
        record = {
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "clipper": clipper.name,
            "clipper_steps": clipper.steps,
            "clipper_clipped_steps": int(clipper.clipped_steps),
            "logged": {str(step): values for step, values in sorted(logger.history.items())},
            "post_clip": self.post_clip,
        }
        (self.directory / f"fit_rank{rank}.json").write_text(json.dumps(record))

    def on_test_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        results = {name: value.tolist() for name, value in pl_module.test_results.items()}
        (self.directory / f"test_rank{trainer.global_rank}.json").write_text(json.dumps(results))


def train(strategy: str, output: Path, stack_name: str) -> None:
    """Fit and test ``stack_name`` with ``strategy`` (``single``, ``ddp``, ``ddp_spawn``)."""
    torch.set_num_threads(1)
    pl.seed_everything(SEED, verbose=False)
    distributed = strategy != "single"
    model = make_model(stack_name)
    datamodule = ParityData(BATCH if distributed else 2 * BATCH, merged_order=not distributed)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2 if distributed else 1,
        strategy=strategy if distributed else "auto",
        max_epochs=MAX_EPOCHS,
        logger=RecordingLogger(),
        log_every_n_steps=1,
        callbacks=[WriteResults(output / strategy / stack_name)],
        check_val_every_n_epoch=MAX_EPOCHS,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model, datamodule=datamodule)
    if strategy != "ddp_spawn":
        # Each ddp_spawn call starts two fresh interpreters; its end-of-fit validation pass over
        # the test split already reduces the metrics across the spawned processes.
        trainer.test(model, datamodule=datamodule, verbose=False)


def main(argv: list[str]) -> None:
    strategy, output, stacks = argv[0], Path(argv[1]), argv[2].split(",")
    if strategy not in ("single", "ddp", "ddp_spawn"):
        raise SystemExit(f"unknown strategy {strategy!r}")
    for stack_name in stacks:
        train(strategy, output, stack_name)


if __name__ == "__main__":
    from lstm_plugins.training import end_process_group

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1:])
    end_process_group()  # a no-op without a process group (single, and ddp_spawn's parent)
