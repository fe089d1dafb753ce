"""Checkpoints written beside their target and atomically replacing it, and loaded safely.

Lightning's default ``TorchCheckpointIO`` writes through fsspec's transaction: a temporary file in
``$TMPDIR``, moved into place when done. When the checkpoint folder is on another filesystem the
move is "truncate the target, then copy", so a kill in that window leaves a 0-byte ``last.ckpt``,
a full disk destroys the previous good checkpoint, and a kill leaves the temporary file behind.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning import plugins as lightning_plugins

from lstm_plugins._files import write_atomically

__all__ = ["AtomicCheckpointIO", "install_atomic_checkpoint_io"]

# Lightning's plugins (not this project's): tests/test_architecture.py flags ".plugins" imports.
TorchCheckpointIO = lightning_plugins.TorchCheckpointIO


def _is_local(path: Any) -> bool:
    protocol = getattr(get_filesystem(path), "protocol", "file")
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, writing each checkpoint atomically in its own folder and
    loading with ``weights_only=True`` unless told otherwise.

    The checkpoint is serialised in memory first (an error there touches no file), written to a
    file in the target's folder (unnamed on Linux, ``O_TMPFILE``; a hidden temporary file
    elsewhere), synced to disk, and moved over the target with ``os.replace`` (one rename on one
    filesystem); the folder is synced after it (:func:`lstm_plugins._files.write_atomically`). A
    failed write (an exception, ``ENOSPC``, a signal) leaves the previous checkpoint as it was
    and no temporary file; after a ``SIGKILL`` nothing is left on Linux, and a named temporary
    file elsewhere is removed by the next write of the same checkpoint. Remote paths (``s3://``
    and other fsspec protocols) keep Lightning's way.

    The model installs it on ``trainer.strategy.checkpoint_io`` when a Trainer sets it up
    (:class:`~lstm_plugins.training.Safeguards`) if the Trainer still has Lightning's default
    (:func:`install_atomic_checkpoint_io`); a ``CheckpointIO`` the user passed in
    ``Trainer(plugins=[...])`` is left alone.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "last.ckpt"
        >>> checkpoint = {"state_dict": {}, "pytorch-lightning_version": "2.6.0", "step": torch.tensor(3)}
        >>> AtomicCheckpointIO().save_checkpoint(checkpoint, path)
        >>> AtomicCheckpointIO().load_checkpoint(path)["step"], [p.name for p in path.parent.iterdir()]
        (tensor(3), ['last.ckpt'])
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomically(path, buffer.getbuffer())

    def load_checkpoint(self, path: Any, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        # Explicit rather than torch's default (True only from torch 2.6): a crafted checkpoint
        # given to Trainer.fit(ckpt_path=...) cannot run code while it is read.
        weights_only = True if weights_only is None else weights_only
        if _is_local(path):
            # A local file: read through the checks that name the file (empty, truncated, not a
            # Lightning checkpoint, holding code) instead of torch's bare errors.
            from lstm_plugins.training._checkpoint_check import read_checkpoint

            return read_checkpoint(path, map_location=map_location, weights_only=weights_only)
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)


def install_atomic_checkpoint_io(trainer: Any) -> bool:
    """Put an :class:`AtomicCheckpointIO` on ``trainer.strategy`` if it has Lightning's default
    ``TorchCheckpointIO`` (exactly that class); return whether it did. Any other ``CheckpointIO``
    (the user's, an async wrapper, a strategy's own) is kept.

    Example:
        >>> import pytorch_lightning as pl
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        >>> install_atomic_checkpoint_io(trainer), type(trainer.strategy.checkpoint_io).__name__
        (True, 'AtomicCheckpointIO')
    """
    strategy = getattr(trainer, "strategy", None)
    if strategy is None or not hasattr(type(strategy), "checkpoint_io"):
        return False
    if type(strategy.checkpoint_io) is not TorchCheckpointIO:
        return False
    strategy.checkpoint_io = AtomicCheckpointIO()
    return True
