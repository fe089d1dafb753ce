"""A non-finite training loss stops training with a clear error, without a per-step host sync."""

from __future__ import annotations

import math
from typing import Any

import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

__all__ = ["NonFiniteLossError", "NonFiniteLossStop", "skips_nonfinite_steps"]


class NonFiniteLossError(ValueError):
    """Training stopped: the training loss was NaN or infinite (see :class:`NonFiniteLossStop`).

    Example:
        >>> import pytorch_lightning as pl
        >>> import torch
        >>> from lstm_plugins import LSTMClassifier, NonFiniteLossError
        >>> from lstm_plugins.data import JapaneseVowelsDataModule
        >>> model = LSTMClassifier(12, 9, learning_rate=1e38, optimizer="sgd")
        >>> trainer = pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, log_every_n_steps=1, limit_val_batches=0)
        >>> try:
        ...     trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
        ... except NonFiniteLossError as error:
        ...     print(str(error).split(",")[0])
        The training loss was NaN or infinite at step 1 (epoch 0)
    """


def skips_nonfinite_steps(techniques: Any) -> bool:
    """Whether a technique of the stack handles non-finite steps itself (it declares
    ``skips_nonfinite_steps = True``; the built-in ``nonfinite_guard`` does), so the core's stop
    stays out of its way.

    Example:
        >>> class Guard:
        ...     skips_nonfinite_steps = True
        >>> skips_nonfinite_steps([object()]), skips_nonfinite_steps([object(), Guard()])
        (False, True)
    """
    # A declared marker, not a name: the core never knows a specific technique.
    return any(getattr(technique, "skips_nonfinite_steps", False) for technique in techniques)


class NonFiniteLossStop(Callback):
    """A Lightning callback (the model runs it in :class:`~lstm_plugins.training.Safeguards` with
    ``stop_on_nonfinite_loss=True``, the default): training stops with
    :class:`NonFiniteLossError` when the training loss is NaN or infinite.

    Each training batch adds its loss to one sum on the device (no host synchronisation; NaN
    and infinity survive a sum); the sum is read where the host synchronises anyway: on the
    logging steps (``log_every_n_steps``, after the step's values went to the host), before a
    checkpoint is written (so a NaN step is never saved as the last good state) and at the end
    of the epoch. The error names the range of steps since the last read. Not installed when a
    technique of the stack skips non-finite steps itself (:func:`skips_nonfinite_steps`).

    With a loss scaler (``precision="16-mixed"``), which skips steps that overflow and lowers
    its scale, an occasional overflow is expected: training then stops only when *every* loss
    between two reads was non-finite (each batch counts its finite losses instead, three small
    kernels).

    Example:
        >>> stop = NonFiniteLossStop()
        >>> stop.observe(torch.tensor(1.0)); stop.check(step=0, epoch=0)
        >>> stop.observe(torch.tensor(float("nan")))
        >>> stop.check(step=3, epoch=0)
        Traceback (most recent call last):
        ...
        lstm_plugins.training._nonfinite.NonFiniteLossError: The training loss was NaN or infinite at a step between 1 and 3 (epoch 0), so training stopped. ...
    """

    def __init__(self) -> None:
        self._sum: Tensor | None = None  # the sum of the losses since the last read
        self.tolerate_overflows = False
        """Whether a loss scaler skips overflowing steps: stop only when every loss was non-finite."""
        self._finite_losses: Tensor | None = None  # with tolerate_overflows: finite losses counted
        self._observed = 0  # with tolerate_overflows: losses observed since the last read
        self._first_unchecked = 0
        self._checked_at = -1  # the global_step of the last logging-step read

    def observe(self, loss: Tensor) -> None:
        """Add ``loss`` to a float64 sum on the device (one small kernel, no sync): the sum is
        finite exactly when every loss added is (a float32 loss cannot overflow it)."""
        if loss.requires_grad:  # Lightning hands over a detached copy; manual optimization may not
            loss = loss.detach()
        if self.tolerate_overflows:
            finite = ((loss - loss) == 0).all()  # x - x is 0 exactly when x is finite
            self._observed += 1
            if self._finite_losses is None:
                self._finite_losses = finite.to(torch.int64)
            else:
                self._finite_losses.add_(finite)
            return
        total = self._sum
        if total is not None and loss.dim() == 0:
            total.add_(loss)  # the usual case, every step: one in-place kernel
            return
        loss = loss.sum()
        if total is None or total.device != loss.device:
            wide = torch.float32 if loss.device.type == "mps" else torch.float64  # MPS has no float64
            self._sum = loss.to(wide, copy=True)  # a copy: add_ must not touch the loss
        else:
            total.add_(loss)

    def check(self, step: int, epoch: int) -> None:
        """Read the sum (a host sync: call it where the host syncs anyway); raise
        :class:`NonFiniteLossError` naming steps ``first_unchecked..step`` when it is not finite."""
        total, self._sum = self._sum, None
        first, self._first_unchecked = self._first_unchecked, step + 1
        if self.tolerate_overflows:
            finite, observed = self._finite_losses, self._observed
            self._finite_losses, self._observed = None, 0
            if finite is None or int(finite) > 0:
                return
            # A loss scaler skips single overflows; a run of them all is not an overflow.
            where = f"for every one of its {observed} batches from step {first} to step {step}"
        elif total is None or math.isfinite(float(total)):
            return
        else:
            where = f"at step {step}" if first == step else f"at a step between {first} and {step}"
        raise NonFiniteLossError(
            f"The training loss was NaN or infinite {where} (epoch {epoch}), so training stopped. "
            "Common causes: a learning rate too high, exploding gradients (stack `gradient_clipping`), "
            "NaN or huge values in the data. Stack the `nonfinite_guard` technique to "
            "skip such steps instead, or build the model with `stop_on_nonfinite_loss=False` to train on."
        )

    def _check_now(self, trainer: Any) -> None:
        self.check(max(trainer.global_step - 1, self._first_unchecked), trainer.current_epoch)

    # --- Lightning hooks ---------------------------------------------------------------------------

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._sum = self._finite_losses = None
        self._observed = 0
        self.tolerate_overflows = getattr(getattr(trainer, "precision_plugin", None), "scaler", None) is not None
        self._first_unchecked = trainer.global_step
        self._checked_at = -1

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, Tensor):
            self.observe(loss)
        # The logging steps (toolkit.log_due's rows N-1, 2N-1, ...): global_step has already counted
        # the step here; once per optimizer step, not per accumulated micro-batch.
        step, interval = trainer.global_step, trainer.log_every_n_steps
        if interval and step and step % interval == 0 and step != self._checked_at:
            self._checked_at = step
            self._check_now(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._check_now(trainer)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == "fit" and (self._sum is not None or self._observed):
            self._check_now(trainer)

