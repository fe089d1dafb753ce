"""A fit whose checkpoint write is held open, to be killed with SIGKILL in the middle of it.

Run as a script::

    python tests/checkpoint_kill_script.py CHECKPOINT_DIR MARKER

It trains a small model with ``ModelCheckpoint(every_n_train_steps=2, save_last=True)`` writing to
``CHECKPOINT_DIR`` (through the library's default checkpoint IO). The write of ``last.ckpt`` at
step 4 stops once the new checkpoint is written and synced, before it replaces the old one: the
script writes ``MARKER`` (``unnamed FD`` on Linux, ``named PATH`` elsewhere) and sleeps there, so
the test can kill it at that point.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lstm_plugins import LSTMClassifier, _files
from lstm_plugins.data import SequenceDataModule

STEPS = 4


def build(checkpoint_dir: Path | None) -> tuple[LSTMClassifier, SequenceDataModule, pl.Trainer]:
    from parity_script import _sequences

    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    datamodule = SequenceDataModule(*_sequences(32, seed=1), *_sequences(8, seed=2), num_classes=3,
                                    val_fraction=0.0, batch_size=8, seed=0)
    model = LSTMClassifier(3, 3, hidden_size=16)
    callbacks = [] if checkpoint_dir is None else [
        ModelCheckpoint(dirpath=checkpoint_dir, every_n_train_steps=2, save_last=True, save_top_k=-1)]
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=STEPS, logger=False, callbacks=callbacks,
                         enable_checkpointing=bool(callbacks), enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    return model, datamodule, trainer


def hold_the_last_write(marker: Path) -> None:
    """Hold the write of ``last.ckpt`` at step ``STEPS`` once its data is written and synced
    (to the unnamed file of Linux's ``O_TMPFILE``, or to the named temporary file elsewhere)."""
    from lstm_plugins.training import _checkpoint_io

    holding = []
    write = _checkpoint_io.write_atomically

    def spy(path, data):
        if Path(path).name == "last.ckpt" and torch.load(io.BytesIO(bytes(data)), weights_only=True)["global_step"] == STEPS:
            holding.append(path)
        write(path, data)

    def hold(original):
        def sync(target):
            original(target)
            if holding:
                kind = "unnamed" if isinstance(target, int) else "named"
                marker.write_text(f"{kind} {target}")
                time.sleep(600)
                raise SystemExit("checkpoint_kill_script: not killed within 600 s")

        return sync

    _checkpoint_io.write_atomically = spy
    _files._sync_descriptor = hold(_files._sync_descriptor)
    _files._sync_file = hold(_files._sync_file)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    hold_the_last_write(Path(sys.argv[2]))
    model, datamodule, trainer = build(Path(sys.argv[1]))
    trainer.fit(model, datamodule=datamodule)
