"""The CLI's checkpoint policy: every N epochs, and the final weights when training ends."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import ModelCheckpoint


class PeriodicCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint(every_n_epochs=N, save_last=True)`` that also writes ``last.ckpt`` when
    training ends between two periodic saves, so the final weights are always on disk.

    Lightning's own ``save_last`` only refreshes ``last.ckpt`` when a periodic save happens.
    """

    def __init__(self, every_n_epochs: int, **options: Any) -> None:
        # Nothing is monitored, so save on the training epoch's end, also in epochs that skip
        # validation (check_val_every_n_epoch > 1 would otherwise move saving to validation).
        super().__init__(every_n_epochs=every_n_epochs, save_last=True, save_on_train_epoch_end=True, **options)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        # Skipped when the last step is saved already.
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)
