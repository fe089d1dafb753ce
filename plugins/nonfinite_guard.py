"""Skip optimizer steps whose loss or gradients are not finite; stop after K in a row."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check


def gradients_are_finite(parameters: list[Tensor]) -> Tensor:
    """A 0-d bool tensor on the device: whether every gradient element is finite (no sync).

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([1.0, float("nan")])
        >>> gradients_are_finite([w])
        tensor(False)
    """
    gradients = [p.grad for p in parameters if p.grad is not None]
    if not gradients:
        return torch.ones((), dtype=torch.bool)
    return torch.isfinite(torch.stack(torch._foreach_norm(gradients, 2.0))).all()


def zero_nonfinite_step(parameters: list[Tensor], finite: Tensor) -> None:
    """Zero every gradient when ``finite`` is false, on the device (no sync)."""
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.copy_(torch.where(finite, parameter.grad, torch.zeros_like(parameter.grad)))


class NonFiniteStepError(RuntimeError):
    """Training stopped: too many consecutive optimizer steps had NaN or infinite values."""


class NonFiniteGuard(Technique):
    """Skips optimizer steps whose loss or gradients are NaN/inf; stops after K in a row.

    Acts first in the gradient-transform phase, after the observers and before any clipper:
    a step with a non-finite task loss or gradient has its gradients zeroed and the optimizer
    step skipped (weights and optimizer state untouched), is counted and logged as
    ``nonfinite_guard/skipped_steps``. After ``max_consecutive_skips`` skipped steps in a row
    training stops with :class:`NonFiniteStepError`.

    How the step is skipped, without a host synchronisation where possible:

    * with a loss scaler (AMP ``16-mixed``), the scaler already skips non-finite steps and lowers
      its scale; the guard only counts them and stops the run after K in a row;
    * with a fused optimizer (the default, where the device has one), the skip happens on the
      device through the optimizer's ``found_inf`` input, as AMP does it: no synchronisation;
      the run of skips is checked every ``max_consecutive_skips`` steps, so training stops at
      most that many steps late;
    * otherwise the guard reads one boolean per step (one host synchronisation) and removes
      the gradients so the optimizer skips the step.

    Args:
        max_consecutive_skips: how many skipped steps in a row stop training.
        log_every_n_steps: how often to log the skip count (default: the Trainer's).

    Example:
        >>> NonFiniteGuard(max_consecutive_skips=5)
        NonFiniteGuard(max_consecutive_skips=5, log_every_n_steps=None)
    """

    name = "nonfinite_guard"

    def __init__(self, max_consecutive_skips: int = 10, log_every_n_steps: int | None = None) -> None:
        self.max_consecutive_skips = check.positive_int("max_consecutive_skips", max_consecutive_skips)
        self.log_every_n_steps = (
            None if log_every_n_steps is None else check.positive_int("log_every_n_steps", log_every_n_steps)
        )
        self._interval = self.log_every_n_steps or 50
        self._loss_finite: Tensor | None = None
        self._counters: Tensor | None = None  # [skipped total, current run, longest run]

    def _counter_tensor(self, device: torch.device) -> Tensor:
        if self._counters is None:
            self._counters = torch.zeros(3, dtype=torch.int64, device=device)
        elif self._counters.device != device:
            self._counters = self._counters.to(device)
        return self._counters

    @property
    def skipped_steps(self) -> int:
        """Optimizer steps skipped so far (reads the device counter)."""
        return 0 if self._counters is None else int(self._counters[0])

    @hookimpl
    def on_fit_setup(self, trainer: Any) -> None:
        self._interval = self.log_every_n_steps or max(trainer.log_every_n_steps, 1)

    @hookimpl
    def loss_terms(self, task_loss: Tensor) -> None:
        self._loss_finite = torch.isfinite(task_loss.detach())

    @hookimpl(tryfirst=True)
    def transform_gradients(self, model: Any, optimizer: torch.optim.Optimizer) -> None:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        finite = gradients_are_finite(parameters)
        if self._loss_finite is not None:
            finite = finite & self._loss_finite.to(finite.device)
        self._loss_finite = None
        skipped = (~finite).long()
        counters = self._counter_tensor(finite.device)
        counters[0] += skipped
        counters[1] = (counters[1] + 1) * skipped
        counters[2] = torch.maximum(counters[2], counters[1])
        step = model.trainer.global_step

        if getattr(model.trainer.precision_plugin, "scaler", None) is not None:
            # The loss scaler skips the step itself (and lowers its scale); only count here.
            check_run = (step + 1) % self.max_consecutive_skips == 0
        elif getattr(optimizer, "_step_supports_amp_scaling", False):
            zero_nonfinite_step(parameters, finite)
            optimizer.found_inf = skipped.to(torch.float32)  # read by the fused step kernels
            check_run = (step + 1) % self.max_consecutive_skips == 0
        else:
            check_run = not bool(finite)  # non-fused optimizer: one host read per step
            if check_run:
                for parameter in parameters:
                    parameter.grad = None  # the optimizer skips parameters without gradients

        if step % self._interval == 0:
            model.log_step_values({"nonfinite_guard/skipped_steps": counters[0]})
        if not check_run:
            return
        run = int(counters[2])
        if run >= self.max_consecutive_skips:
            raise NonFiniteStepError(
                f"Technique `{self.name}` stopped training at step {step}: {run} consecutive "
                f"optimizer steps had NaN or infinite loss or gradients ({int(counters[0])} skipped "
                "in all). Lower the learning rate, add gradient clipping, or check the data."
            )

    @hookimpl
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        counters = [0, 0, 0] if self._counters is None else self._counters.tolist()
        checkpoint["lstm_plugins"]["state"][self.name] = {"counters": counters}

    @hookimpl
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["lstm_plugins"]["state"].get(self.name)
        if state is not None:
            self._counters = torch.tensor(state["counters"], dtype=torch.int64)
