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
        super().__init__(every_n_epochs=every_n_epochs, save_last=True, **options)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        # Skipped when the last step is saved already, and in sanity checks and fast_dev_run.
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)
