"""A training run to be killed: checkpoints every few steps, then stops at a given step and waits.

Run as a script::

    python tests/sigkill_script.py OUTPUT_DIR STOP_AT_STEP

It trains the full built-in stack (dropout-like techniques included) for ``MAX_EPOCHS`` epochs
with ``ModelCheckpoint(every_n_train_steps=CHECKPOINT_EVERY, save_last=True, save_top_k=-1)``
writing to ``OUTPUT_DIR/checkpoints``. When ``STOP_AT_STEP`` optimizer steps are done it writes
``OUTPUT_DIR/stopped`` and sleeps, so the test can kill it with ``SIGKILL`` at a known point in
the middle of an epoch, after the last checkpoint and before the next one.

The test imports :func:`build` to train the uninterrupted reference and to resume in-process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import SequenceDataModule
from stacks import full_stack

BATCH = 8
TRAIN_SIZE = 64  # 8 optimizer steps per epoch
TEST_SIZE = 96
MAX_EPOCHS = 3
CHECKPOINT_EVERY = 4  # steps 4 (mid-epoch 0), 8 (end of epoch 0), 12 (mid-epoch 1), ...
SEED = 0




def build(checkpoint_dir: Path | None, callbacks: list[Callback] = ()) -> tuple[Any, Any, pl.Trainer]:
    """The model, the data module and the Trainer of the run, seeded the same way every time."""
    from parity_script import _sequences  # learnable synthetic data, 3 features, 3 classes

    torch.set_num_threads(1)
    pl.seed_everything(SEED, verbose=False)
    datamodule = SequenceDataModule(
        *_sequences(TRAIN_SIZE, seed=11), *_sequences(TEST_SIZE, seed=12),
        num_classes=3, val_fraction=0.0, batch_size=BATCH, seed=SEED,
    )
    model = LSTMClassifier(3, 3, hidden_size=8, num_layers=2, bidirectional=True, optimizer="adamw",
                           learning_rate=0.02, techniques=full_stack())
    all_callbacks = list(callbacks)
    if checkpoint_dir is not None:
        all_callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, every_n_train_steps=CHECKPOINT_EVERY,
                                             save_last=True, save_top_k=-1))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=MAX_EPOCHS,
        logger=False,
        callbacks=all_callbacks,
        enable_checkpointing=checkpoint_dir is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    return model, datamodule, trainer


class StopAt(Callback):
    """After ``step`` optimizer steps, announce it with a file and wait to be killed."""

    def __init__(self, step: int, marker: Path) -> None:
        self.step = step
        self.marker = marker

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            self.marker.write_text(f"{trainer.current_epoch} {batch_idx}")
            time.sleep(600)
            raise SystemExit("sigkill_script: not killed within 600 s")


def main(output: Path, stop_at: int) -> None:
    model, datamodule, trainer = build(output / "checkpoints", [StopAt(stop_at, output / "stopped")])
    trainer.fit(model, datamodule=datamodule)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(Path(sys.argv[1]), int(sys.argv[2]))
