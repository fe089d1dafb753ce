"""The model's safeguards as one Lightning callback: atomic checkpoint writes, SIGTERM, and the
non-finite loss stop."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import Callback

from lstm_plugins.training._checkpoint_io import install_atomic_checkpoint_io
from lstm_plugins.training._nonfinite import NonFiniteLossStop
from lstm_plugins.training._preemption import Preemption

__all__ = ["Safeguards"]


class Safeguards(Callback):
    """A core callback of every model: puts :class:`~lstm_plugins.training.AtomicCheckpointIO` on
    the Trainer at setup (unless the user gave a ``CheckpointIO``), saves a resumable checkpoint
    on SIGTERM (:class:`~lstm_plugins.training.Preemption`) and, with ``stop_on_nonfinite_loss``,
    stops training on a NaN or infinite loss (:class:`~lstm_plugins.training.NonFiniteLossStop`).

    One callback rather than three: Lightning dispatches every hook to every callback (a few
    microseconds per callback and hook, several hooks per step), and the fixed cost per step is
    budgeted; the model's ``EvaluationGuard`` is this callback too, so the model adds none.

    Example:
        >>> guards = Safeguards(stop_on_nonfinite_loss=True)
        >>> type(guards.preemption).__name__, type(guards.nonfinite).__name__
        ('Preemption', 'NonFiniteLossStop')
        >>> Safeguards(stop_on_nonfinite_loss=False).nonfinite is None
        True
    """

    def __init__(self, stop_on_nonfinite_loss: bool = True) -> None:
        self.preemption = Preemption()
        self.nonfinite = NonFiniteLossStop() if stop_on_nonfinite_loss else None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        install_atomic_checkpoint_io(trainer)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.preemption.on_fit_start(trainer, pl_module)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.nonfinite is not None:
            self.nonfinite.on_train_start(trainer, pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        # The loss check first: a SIGTERM checkpoint of a step with a NaN loss is refused.
        if self.nonfinite is not None:
            self.nonfinite.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.preemption.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.nonfinite is not None:
            self.nonfinite.on_train_epoch_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self.nonfinite is not None:
            self.nonfinite.on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.preemption.on_exception(trainer, pl_module, exception)
