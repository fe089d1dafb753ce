"""Skip optimizer steps whose loss or gradients are not finite; stop after K in a row."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lstm_plugins import Technique, hookimpl, toolkit
from lstm_plugins import validation as check

__all__ = ["NonFiniteGuard", "NonFiniteStepError", "non_finite_guard"]


def non_finite_guard(parameters: Any, loss: Tensor | None = None) -> Tensor:
    """Whether a step is finite; when it is not, zero every gradient, on the device (no sync).

    Args:
        parameters: an optimizer, a module, or an iterable of parameters (as
            :func:`lstm_plugins.toolkit.parameters_with_gradients` takes them).
        loss: the step's loss, when it is to count too.

    Returns:
        A 0-d bool tensor on the gradients' device: every gradient element (and the loss) is
        finite. Gradients are zeroed in place when it is false, so a step taken anyway does not
        write NaN into the weights (the optimizer's moment estimates and weight decay still act).

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([1.0, float("nan")])
        >>> non_finite_guard([w]), w.grad
        (tensor(False), tensor([0., 0.]))
        >>> w.grad = torch.tensor([1.0, 2.0])
        >>> non_finite_guard([w], loss=torch.tensor(float("inf"))), w.grad
        (tensor(False), tensor([0., 0.]))
    """
    parameters = toolkit.parameters_with_gradients(parameters)
    finite = torch.isfinite(toolkit.total_gradient_norm(parameters))  # NaN and inf propagate
    if loss is not None:
        finite = finite & torch.isfinite(loss.detach()).all().to(finite.device)
    for parameter in parameters:
        parameter.grad.masked_fill_(~finite, 0.0)
    return finite


class NonFiniteStepError(RuntimeError):
    """Training stopped: too many consecutive optimizer steps had NaN or infinite values."""


class NonFiniteGuard(Technique):
    """Skips optimizer steps whose loss or gradients are NaN/inf; stops after K in a row.

    Acts first in the gradient-transform phase, after the observers and before any clipper:
    a step with a non-finite loss (seen in the loss-computed phase, every micro-batch) or
    gradient has its gradients zeroed (:func:`non_finite_guard`) and the optimizer step skipped
    (weights and optimizer state untouched), is counted and logged as
    ``nonfinite_guard/skipped_steps`` on the logging steps. After ``max_consecutive_skips``
    skipped steps in a row training stops with :class:`NonFiniteStepError`. The counters are
    kept in checkpoints (:meth:`state_dict`).

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
        log_every_n_steps: log the skip count on optimizer steps ``N - 1, 2N - 1, ...``;
            ``None`` uses the Trainer's ``log_every_n_steps``.

    Example:
        >>> guard = NonFiniteGuard(max_consecutive_skips=5)
        >>> guard, guard.state_dict()
        (NonFiniteGuard(max_consecutive_skips=5, log_every_n_steps=None), {'counters': [0, 0, 0]})
    """

    name = "nonfinite_guard"
    # Tells the core this technique skips non-finite steps itself, so its default stop steps aside.
    skips_nonfinite_steps = True

    def __init__(self, max_consecutive_skips: int = 10, log_every_n_steps: int | None = None) -> None:
        self.max_consecutive_skips = check.positive_int("max_consecutive_skips", max_consecutive_skips)
        self.log_every_n_steps = check.optional_positive_int("log_every_n_steps", log_every_n_steps)
        self._loss: Tensor | None = None  # the sum of this step's micro-batch losses
        self._counters: Tensor | None = None  # [skipped total, current run, longest run]

    @property
    def skipped_steps(self) -> int:
        """Optimizer steps skipped so far (reads the device counter)."""
        return 0 if self._counters is None else int(self._counters[0])

    @hookimpl
    def on_fit_setup(self) -> None:
        self._loss = None

    @hookimpl
    def on_loss_computed(self, loss: Tensor) -> None:
        # Summed on the device: NaN and inf survive the sum, so one check covers every micro-batch.
        loss = loss.detach()
        self._loss = loss if self._loss is None else self._loss + loss

    @hookimpl(tryfirst=True)
    def transform_gradients(self, model: Any, optimizer: torch.optim.Optimizer) -> None:
        parameters = toolkit.parameters_with_gradients(optimizer)
        finite = non_finite_guard(parameters, self._loss)
        self._loss = None
        skipped = (~finite).long()
        counters = torch.zeros(3, dtype=torch.int64) if self._counters is None else self._counters
        counters = self._counters = counters.to(finite.device)  # no copy when already there
        counters[0] += skipped
        counters[1] = (counters[1] + 1) * skipped
        counters[2] = torch.maximum(counters[2], counters[1])
        step = model.trainer.global_step

        if getattr(model.trainer.precision_plugin, "scaler", None) is not None:
            # The loss scaler skips the step itself (and lowers its scale); only count here.
            check_run = (step + 1) % self.max_consecutive_skips == 0
        elif getattr(optimizer, "_step_supports_amp_scaling", False):
            optimizer.found_inf = skipped.to(torch.float32)  # read by the fused step kernels
            check_run = (step + 1) % self.max_consecutive_skips == 0
        else:
            check_run = not bool(finite)  # non-fused optimizer: one host read per step
            if check_run:
                for parameter in parameters:
                    parameter.grad = None  # the optimizer skips parameters without gradients

        if toolkit.log_due(model.trainer, self.log_every_n_steps):
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

    def state_dict(self) -> dict[str, Any]:
        return {"counters": [0, 0, 0] if self._counters is None else self._counters.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        counters = state["counters"]
        if not (
            isinstance(counters, (list, tuple)) and len(counters) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counters)
            and counters[1] <= counters[2] <= counters[0]
        ):
            raise ValueError(
                "Expected `counters` to be [skipped steps, current run, longest run] of non-negative "
                f"ints with current run <= longest run <= skipped steps, but got {counters!r}."
            )
        self._counters = torch.tensor(counters, dtype=torch.int64)
