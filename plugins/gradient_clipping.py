"""Gradient clipping by global norm or by value, with the pre-clip norm and clipped fraction logged.

:func:`gradient_clipping` is the function face of :class:`GradientClipping`: both run the same
implementation on the same gradients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from lstm_plugins import hookimpl, toolkit
from lstm_plugins import validation as check
from lstm_plugins.plugins._clipping import ClippingTechnique
from lstm_plugins.techniques import FloatRange, SearchValue

ClippingMode = Literal["norm", "value"]

_MODES = ("norm", "value")


def clip_gradients_by_norm(parameters: Iterable[Tensor], max_norm: float, norm_type: float = 2.0) -> Tensor:
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


def _clip(
    parameters: list[Tensor], threshold: float, mode: str, norm_type: float, norm_wanted: bool = True
) -> tuple[Tensor, Tensor]:
    """Clip in place; returns (pre-clip ``norm_type``-norm, whether the gradients changed), on the
    device. With ``norm_wanted=False`` in ``"value"`` mode the first element may be the largest
    absolute value instead (the class skips the extra norm on steps that do not log)."""
    if mode == "norm":
        pre_clip_norm = clip_gradients_by_norm(parameters, threshold, norm_type)
        # clip_grad_norm_ multiplies by min(threshold / (norm + 1e-6), 1): changed iff that is
        # < 1, i.e. norm > threshold - 1e-6 (one comparison kernel instead of three).
        return pre_clip_norm, pre_clip_norm > threshold - 1e-6
    largest = toolkit.total_gradient_norm(parameters, math.inf)
    pre_clip_norm = largest
    if norm_wanted and not math.isinf(norm_type):
        pre_clip_norm = toolkit.total_gradient_norm(parameters, norm_type)
    clip_gradients_by_value(parameters, threshold)
    return pre_clip_norm, largest > threshold


def gradient_clipping(
    parameters: Any, threshold: float, mode: ClippingMode = "norm", norm_type: float = 2.0
) -> Tensor:
    """Clip gradients by global norm or by value, in place; returns the pre-clip global norm.

    Args:
        parameters: an iterable of parameters (or ``(name, parameter)`` pairs), a module or an
            optimizer; parameters without a gradient are skipped.
        threshold: the largest global norm (``mode="norm"``) or absolute value (``mode="value"``).
        mode: ``"norm"`` rescales all gradients together (keeps the direction, as
            ``clip_grad_norm_``); ``"value"`` clamps each element (as ``clip_grad_value_``).
        norm_type: p of the global p-norm: the bound in ``"norm"`` mode, and the norm returned in
            both modes; ``inf`` (or ``"inf"``) for the largest absolute value.

    Returns:
        The global ``norm_type``-norm of the gradients *before* clipping, as a tensor on their
        device (no host synchronisation); ``0`` when no parameter has a gradient.

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([3.0, -0.1])
        >>> gradient_clipping([w], 0.5, mode="value"), w.grad
        (tensor(3.0017), tensor([ 0.5000, -0.1000]))
        >>> w.grad = torch.tensor([3.0, 4.0])
        >>> gradient_clipping([w], 1.0), w.grad
        (tensor(5.), tensor([0.6000, 0.8000]))
    """
    threshold = check.positive_float("threshold", threshold)
    mode = check.choice("mode", mode, _MODES)
    norm_type = check.norm_type("norm_type", norm_type)
    with_gradients = toolkit.parameters_with_gradients(parameters)
    if not with_gradients:
        return torch.zeros(())
    return _clip(with_gradients, threshold, mode, norm_type)[0]


class GradientClipping(ClippingTechnique):
    """Clips gradients by global norm (any p, inf included) or by value; logs the pre-clip norm.

    Acts in the gradients-transform phase (Lightning's ``configure_gradient_clipping`` slot), on
    gradients that AMP has unscaled and DDP has averaged, after every gradient observer. It takes
    the ``gradient_clipping`` slot: a second clipper, or ``Trainer(gradient_clip_val=...)``, is
    refused before training starts, naming both. It clips as :func:`gradient_clipping` does (one
    implementation).

    Every ``log_every_n_steps`` optimizer steps (default: the Trainer's ``log_every_n_steps``; on
    Lightning's rows, steps ``N - 1, 2N - 1, ...``) it logs the pre-clip global norm as
    ``gradient_clipping/pre_clip_norm`` and, as ``gradient_clipping/clipped_fraction``, the
    fraction of optimizer steps so far in which clipping changed the gradients (counted on the
    device every step, kept in checkpoints through :meth:`state_dict`).

    Args:
        threshold: the largest global norm (``mode="norm"``) or absolute value (``mode="value"``).
        mode: ``"norm"`` rescales all gradients together (keeps the direction); ``"value"``
            clamps each element.
        norm_type: p of the global p-norm (``mode="norm"``; the logged norm in both modes),
            ``inf`` for the largest element.
        log_every_n_steps: how often to log the pre-clip norm and the clipped fraction; ``None``
            uses the Trainer's ``log_every_n_steps``.

    Example:
        >>> clipper = GradientClipping(0.5)
        >>> clipper
        GradientClipping(threshold=0.5, mode='norm', norm_type=2.0, log_every_n_steps=None)
        >>> clipper.state_dict()
        {'steps': 0, 'clipped_steps': 0}
    """

    name = "gradient_clipping"
    exclusive = "gradient_clipping"

    # Pascanu et al. (2013) clip at a few times the average norm: 1-10 is the usual span.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"threshold": FloatRange(0.1, 10.0, log=True)}

    def __init__(
        self,
        threshold: float = 1.0,
        mode: ClippingMode = "norm",
        norm_type: float = 2.0,
        log_every_n_steps: int | None = None,
    ) -> None:
        self.threshold = check.positive_float("threshold", threshold)
        self.mode: ClippingMode = check.choice("mode", mode, _MODES)
        self.norm_type = check.norm_type("norm_type", norm_type)
        self._init_clipping(log_every_n_steps)

    @hookimpl
    def transform_gradients(self, model: Any, optimizer: torch.optim.Optimizer) -> None:
        parameters = toolkit.parameters_with_gradients(optimizer)
        if not parameters:
            return
        log_now = self._log_due(model)
        pre_clip_norm, clipped = _clip(parameters, self.threshold, self.mode, self.norm_type, norm_wanted=log_now)
        self._record(model, pre_clip_norm, clipped)
