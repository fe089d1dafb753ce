"""Per-step values: queued on the device, handed to the loggers in one host copy per step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lstm_plugins.toolkit import log_step

PROGRESS_BAR_VALUES = ("train/loss", "val/loss")
"""Values also shown on Lightning's progress bar when they are published."""


def as_scalar(name: str, value: Any) -> Any:
    """``value`` if it is one number (a one-element tensor becomes 0-d); ``ValueError`` for a
    tensor of several elements, ``TypeError`` for anything else."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"Expected `{name}` to be a single value, but got a tensor of shape {tuple(value.shape)}."
            )
        return value.reshape(())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Expected `{name}` to be a number or a one-element tensor, but got {value!r}.")
    return value


def to_host(values: Mapping[str, Tensor]) -> dict[str, float]:
    """Scalar tensors as Python floats: one stack and one host copy per device."""
    by_device: dict[torch.device, list[str]] = {}
    for name, value in values.items():
        by_device.setdefault(value.device, []).append(name)
    host: dict[str, float] = {}
    for device, names in by_device.items():
        tensors = [values[name] for name in names]  # 0-d (as_scalar made them so)
        if any(tensor.dtype != tensors[0].dtype for tensor in tensors):
            # Mixed dtypes (a counter among float values): float64 keeps both exact; MPS has none.
            wide = torch.float32 if device.type == "mps" else torch.float64
            tensors = [tensor.to(wide) for tensor in tensors]
        host.update(zip(names, torch.stack(tensors).cpu().tolist()))
    return host


def publish(trainer: Any, values: Mapping[str, float], step: int) -> None:
    """Host values to ``trainer.callback_metrics``, ``trainer.logged_metrics``, the progress bar
    (:data:`PROGRESS_BAR_VALUES`) and every logger (which log on rank 0 only), as Lightning's own
    logging would hand them over."""
    if trainer is None or not values:
        return
    # Lightning keeps callback and logged metrics as tensors: one tensor, unbound into views.
    as_tensors = dict(zip(values, torch.tensor(list(values.values()), dtype=torch.float64).unbind()))
    trainer.callback_metrics.update(as_tensors)
    trainer.logged_metrics.update(as_tensors)
    bar = getattr(getattr(trainer, "_logger_connector", None), "_progress_bar_metrics", None)
    if isinstance(bar, dict):
        bar.update({name: values[name] for name in PROGRESS_BAR_VALUES if name in values})
    if trainer.loggers:
        # What Lightning adds too: the epoch, and the step the values belong to.
        scalars: dict[str, float] = {**values, "epoch": trainer.current_epoch}
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
            logger.save()


class StepLogger:
    """The queue behind ``model.log_step_values``: values of one training step, on the device,
    until :meth:`flush` copies them to the host once and publishes them at Lightning's step.

    The model flushes after the optimizer step (before the Trainer's callbacks see the batch's
    end), again after ``on_train_batch_end`` when something was queued there, and at the end of
    the epoch. A plain object: ``nn.Module.__setattr__`` would cost microseconds every step.
    """

    __slots__ = ("tensors", "numbers", "step", "in_epoch_end")

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.numbers: dict[str, float] = {}
        self.step = 0
        """The logger step the queued values belong to."""
        self.in_epoch_end = False
        """Whether values are being queued by ``on_train_epoch_end`` hooks."""

    def queue(self, trainer: Any, values: Mapping[str, Any]) -> None:
        """Queue checked scalar values of the current training step (no host synchronisation)."""
        if not trainer.log_every_n_steps:
            return  # log_every_n_steps=0: no step logging, as in Lightning
        if not self.tensors and not self.numbers:
            # Lightning's step for these values; at epoch end it has already counted the batch.
            self.step = log_step(trainer) - (1 if self.in_epoch_end else 0)
        for name, value in values.items():
            if isinstance(value, Tensor):
                self.numbers.pop(name, None)
                # A copy (one device kernel, no synchronisation), as self.log makes: a value
                # changed in place later in the step is logged as it was when queued.
                self.tensors[name] = value.detach().clone()
            else:
                self.tensors.pop(name, None)
                self.numbers[name] = float(value)

    def flush(self, trainer: Any) -> None:
        """Hand the queued values to the loggers: one stack and one host copy per device."""
        if not self.tensors and not self.numbers:
            return
        tensors, numbers = self.tensors, self.numbers
        self.tensors, self.numbers = {}, {}
        host = to_host(tensors)
        host.update(numbers)
        publish(trainer, host, self.step)
