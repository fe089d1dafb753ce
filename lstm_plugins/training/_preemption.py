"""SIGTERM (what schedulers send before they kill a job): save a resumable checkpoint, say how to
resume, and end with a non-zero status instead of looking like a finished run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.exceptions import SIGTERMException

__all__ = ["PREEMPTED_EXIT_STATUS", "PREEMPTED_FILENAME", "Preemption"]

PREEMPTED_EXIT_STATUS = 143
"""The exit status of a run stopped by SIGTERM (128 + 15, what shells report for it)."""

PREEMPTED_FILENAME = "preempted.ckpt"
"""The checkpoint a SIGTERM leaves, in the checkpoint folder (or the Trainer's root folder)."""


def preemption_path(trainer: Any) -> Path:
    """Where the SIGTERM checkpoint goes: beside the run's checkpoints (the first
    ``ModelCheckpoint``'s folder), else in the log folder or ``default_root_dir``.

    Example:
        >>> from types import SimpleNamespace
        >>> trainer = SimpleNamespace(checkpoint_callback=SimpleNamespace(dirpath="runs/ckpts"))
        >>> preemption_path(trainer).as_posix()
        'runs/ckpts/preempted.ckpt'
    """
    folder = getattr(getattr(trainer, "checkpoint_callback", None), "dirpath", None)
    if folder is None:
        folder = getattr(trainer, "log_dir", None) or getattr(trainer, "default_root_dir", ".")
    return Path(folder) / PREEMPTED_FILENAME


class Preemption(Callback):
    """A Lightning callback (the model runs it in :class:`~lstm_plugins.training.Safeguards`):
    when the process receives SIGTERM during ``fit``, save a checkpoint that resumes exactly,
    print how to resume, and let Lightning stop the run.

    Lightning's signal handler only notes the SIGTERM; the training loop then raises
    ``SIGTERMException`` (a ``SystemExit``) at the end of the batch. This callback saves at that
    batch's end, in ``on_train_batch_end`` (where ``ModelCheckpoint(every_n_train_steps=...)``
    saves too: the resumable loaders continue with the next batch, so the resumed run matches an
    uninterrupted one exactly), or, when the signal came after the callbacks saw the batch's end,
    when the exception arrives (Lightning resumes that state after the batch as well; tested
    exact too). Under gradient accumulation the stop waits for the batch whose optimizer step
    completes the accumulation (an earlier checkpoint would drop the accumulated gradients). The
    ``lstm-plugins`` command then exits with status
    :data:`PREEMPTED_EXIT_STATUS` (143).

    Single process only: under multi-process strategies Lightning's own handling applies (ranks
    stop together; nothing is saved here, since a save needs every rank at the same batch).

    Example:
        >>> callback = Preemption()
        >>> callback.saved is None
        True
    """

    def __init__(self) -> None:
        self.saved: Path | None = None
        """The checkpoint written for the last SIGTERM, if any."""
        self._deferred = False

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.saved, self._deferred = None, False

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.saved is not None or trainer.world_size != 1 or not (trainer.received_sigterm or self._deferred):
            return
        connector = trainer._signal_connector
        if trainer.fit_loop.epoch_loop._should_accumulate():
            # Between two optimizer steps of gradient accumulation: a checkpoint here would lose the
            # gradients accumulated so far, so Lightning is let on (the SIGTERM is held back) to
            # the batch that steps, and stops there.
            connector.received_sigterm, self._deferred = False, True
            return
        connector.received_sigterm, self._deferred = True, False
        self._save(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        if self.saved is None and trainer.world_size == 1 and trainer.state.fn == "fit":
            try:
                self._save(trainer)
            except Exception as error:  # the message below says what happened instead
                print(f"lstm-plugins: SIGTERM: the checkpoint could not be saved: {error}", file=sys.stderr)
        if trainer.is_global_zero:
            print(self.message(trainer), file=sys.stderr, flush=True)

    def _save(self, trainer: Any) -> None:
        path = preemption_path(trainer)
        trainer.save_checkpoint(path, weights_only=False)  # a full, resumable checkpoint
        self.saved = path

    def message(self, trainer: Any) -> str:
        """What the user reads after a SIGTERM: where the run stopped and how to resume it."""
        where = f"at step {trainer.global_step} (epoch {trainer.current_epoch})"
        if self.saved is None:
            return f"lstm-plugins: stopped by SIGTERM {where}; no checkpoint was saved for it."
        path = self.saved.resolve()
        return (
            f"lstm-plugins: stopped by SIGTERM {where}; a resumable checkpoint is saved at {path}.\n"
            f"  Resume with the same command plus `--ckpt_path {path}` "
            f"(in Python: `trainer.fit(model, datamodule, ckpt_path=\"{path}\")`)."
        )
