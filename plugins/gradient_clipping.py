"""Gradient clipping by global norm or by value, with the pre-clip norm and clipped fraction logged."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor

from lstm_plugins import hookimpl
from lstm_plugins import validation as check
from lstm_plugins.plugins._clipping_stats import ClippingTechnique
from lstm_plugins.plugins.grad_norm import normalize_norm_type, total_gradient_norm

ClippingMode = Literal["norm", "value"]


def clip_gradients_by_norm(
    parameters: Iterable[Tensor], max_norm: float, norm_type: float = 2.0
) -> Tensor:
    """Scale all gradients together so their global p-norm is at most ``max_norm``.

    Returns the global norm *before* clipping, as a tensor on the device (no synchronisation).
    Gradients below the bound are left as they are. This is ``torch.nn.utils.clip_grad_norm_``
    (fused ``foreach`` kernels), so the clipped norm equals ``max_norm * n / (n + 1e-6)``.

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([3.0, 4.0])
        >>> clip_gradients_by_norm([w], max_norm=1.0).item(), w.grad.norm().item() < 1.0 + 1e-6
        (5.0, True)
    """
    return torch.nn.utils.clip_grad_norm_(list(parameters), max_norm, norm_type=norm_type)


def clip_gradients_by_value(parameters: Iterable[Tensor], max_value: float) -> None:
    """Clamp every gradient element to ``[-max_value, max_value]``, in place.

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([3.0, -0.1])
        >>> clip_gradients_by_value([w], 0.5); w.grad
        tensor([ 0.5000, -0.1000])
    """
    torch.nn.utils.clip_grad_value_(list(parameters), max_value)


class GradientClipping(ClippingTechnique):
    """Clips gradients by global norm (any p, inf included) or by value; logs the pre-clip norm.

    Acts in the gradients-transform phase (Lightning's ``configure_gradient_clipping`` slot), on
    gradients that AMP has unscaled and DDP has averaged, after every gradient observer. It takes
    the ``gradient_clipping`` slot: a second clipper, or ``Trainer(gradient_clip_val=...)``, is
    refused before training starts.

    Every ``log_every_n_steps`` optimizer steps (default: the Trainer's ``log_every_n_steps``) it
    logs the pre-clip global norm as ``gradient_clipping/pre_clip_norm`` and, as
    ``gradient_clipping/clipped_fraction``, the fraction of optimizer steps so far in which
    clipping changed the gradients (counted on the device every step, kept in checkpoints).

    Args:
        threshold: the largest global norm (``mode="norm"``) or absolute value (``mode="value"``).
        mode: ``"norm"`` rescales all gradients together (keeps the direction); ``"value"``
            clamps each element.
        norm_type: p of the global p-norm (``mode="norm"``), ``inf`` for the largest element.
        log_every_n_steps: how often to log the pre-clip norm and the clipped fraction.

    Example:
        >>> GradientClipping(0.5)
        GradientClipping(threshold=0.5, mode='norm', norm_type=2.0, log_every_n_steps=None)
    """

    name = "gradient_clipping"
    exclusive = "gradient_clipping"

    def __init__(
        self,
        threshold: float = 1.0,
        mode: ClippingMode = "norm",
        norm_type: float = 2.0,
        log_every_n_steps: int | None = None,
    ) -> None:
        self.threshold = check.positive_float("threshold", threshold)
        self.mode: ClippingMode = check.choice("mode", mode, ("norm", "value"))
        self.norm_type = normalize_norm_type("norm_type", norm_type)
        self._init_clipping(log_every_n_steps)

    @hookimpl
    def transform_gradients(self, model: Any, optimizer: torch.optim.Optimizer) -> None:
        parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not parameters:
            return
        log_now = self._log_due(model)
        if self.mode == "norm":
            pre_clip_norm = clip_gradients_by_norm(parameters, self.threshold, self.norm_type)
            # clip_grad_norm_ multiplies by min(threshold / (norm + 1e-6), 1): changed iff that is
            # < 1, i.e. norm > threshold - 1e-6 (one comparison kernel instead of three).
            clipped = pre_clip_norm > self.threshold - 1e-6
        else:
            largest = total_gradient_norm(parameters, math.inf)
            pre_clip_norm = largest
            if log_now and not math.isinf(self.norm_type):
                pre_clip_norm = total_gradient_norm(parameters, self.norm_type)
            clipped = largest > self.threshold
            clip_gradients_by_value(parameters, self.threshold)
        self._count_step(clipped)
        if log_now:
            self._log_clipping(model, pre_clip_norm)
