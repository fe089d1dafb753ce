"""AutoClip: clip to a percentile of the history of total gradient norms.

Seetharaman, Wichern, Pardo and Le Roux, "AutoClip: Adaptive Gradient Clipping for Source
Separation Networks", IEEE MLSP 2020.

:func:`auto_clipping` is the function face of :class:`AutoClipping`: both run the same
implementation on the same gradients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from lstm_plugins import hookimpl, toolkit
from lstm_plugins import validation as check
from lstm_plugins.plugins._clipping import ClippingTechnique
from lstm_plugins.techniques import FloatRange, SearchValue


def norm_percentile(values: Tensor, percentile: float) -> Tensor:
    """The ``percentile``-th percentile of a 1-D tensor, with linear interpolation.

    The same value as ``numpy.percentile(values, percentile)`` and
    ``torch.quantile(values, percentile / 100)`` (numpy's default ``"linear"`` method), found
    with one or two ``kthvalue`` selections, linear in the length, instead of a full sort. The
    result is a 0-dimensional tensor on the values' device; nothing is synchronised to the host.
    Infinite values sort last; an interpolation that reaches one gives ``inf``.

    Example:
        >>> norm_percentile(torch.tensor([4.0, 1.0, 3.0, 2.0]), 50.0)
        tensor(2.5000)
        >>> norm_percentile(torch.tensor([4.0, 1.0, 3.0, 2.0]), 100.0)
        tensor(4.)
    """
    count = values.numel()
    if values.ndim != 1 or count == 0:
        raise ValueError(f"Expected `values` to be a non-empty 1-D tensor, but got shape {tuple(values.shape)}.")
    position = percentile / 100.0 * (count - 1)
    below = min(int(math.floor(position)), count - 1)
    fraction = position - below
    lower = torch.kthvalue(values, below + 1).values
    if fraction == 0.0 or below + 1 >= count:
        return lower
    upper = torch.kthvalue(values, below + 2).values
    # lerp(x, inf, w >= 0.5) would be nan (inf - inf); the interpolation reaches inf.
    return torch.where(torch.isinf(upper), upper, torch.lerp(lower, upper, fraction))


class GradientNormHistory:
    """A bounded history of total gradient norms: a ring buffer kept as a tensor on the device.

    The buffer is allocated on the device of the first norm appended. Appending writes one element
    (no host synchronisation, no growing Python list); once ``size`` norms are held, each new one
    replaces the oldest. A non-finite norm (an overflowing mixed-precision step, which the loss
    scaler skips) is recorded as ``inf``.

    Args:
        size: how many norms to keep.

    Example:
        >>> history = GradientNormHistory(3)
        >>> for norm in (1.0, 2.0, 3.0, 4.0):
        ...     history.append(torch.tensor(norm))
        >>> history.values(), len(history)
        (tensor([2., 3., 4.]), 3)
        >>> history.percentile(50.0)
        tensor(3.)
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = check.positive_int("size", size)
        self.buffer: Tensor | None = None
        """The raw ring buffer (``size`` elements once allocated; only ``filled`` are valid)."""
        self.filled = 0
        """How many valid norms the buffer holds, at most ``size``."""
        self.position = 0
        """Where the next norm is written."""

    def __len__(self) -> int:
        return self.filled

    def append(self, norm: Tensor) -> None:
        """Record one total norm (a 0-dimensional tensor), replacing the oldest when full."""
        value = norm.detach().to(torch.float32)
        if self.buffer is None:
            self.buffer = torch.zeros(self.size, dtype=torch.float32, device=value.device)
        elif self.buffer.device != value.device:
            self.buffer = self.buffer.to(value.device)
        value = torch.where(torch.isfinite(value), value, math.inf)
        self.buffer[self.position].copy_(value)
        self.position = (self.position + 1) % self.size
        self.filled = min(self.filled + 1, self.size)

    def values(self) -> Tensor:
        """The recorded norms, oldest first (a new tensor, on the buffer's device)."""
        if self.buffer is None or self.filled == 0:
            return torch.zeros(0)
        if self.filled < self.size:
            return self.buffer[: self.filled].clone()
        return torch.cat([self.buffer[self.position :], self.buffer[: self.position]])

    def percentile(self, percentile: float) -> Tensor:
        """The ``percentile``-th percentile of the recorded norms (see :func:`norm_percentile`)."""
        if self.buffer is None or self.filled == 0:
            raise ValueError("The gradient-norm history is empty: append a norm first.")
        return norm_percentile(self.buffer[: self.filled], percentile)

    def state_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint: the valid buffer (a float32 CPU tensor, empty before the
        first norm), ``filled``, ``position`` and ``size``; the same keys and kinds either way.

        Example:
            >>> GradientNormHistory(4).state_dict()
            {'values': tensor([]), 'filled': 0, 'position': 0, 'size': 4}
        """
        if self.buffer is None:
            values = torch.zeros(0, dtype=torch.float32)
        else:
            values = self.buffer[: self.filled].detach().cpu().clone()
        return {"values": values, "filled": self.filled, "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. A history saved with another ``size`` keeps its newest norms."""
        values = torch.as_tensor(state["values"], dtype=torch.float32).flatten()
        filled, position, size = int(state["filled"]), int(state["position"]), int(state["size"])
        if size < 1 or values.numel() != filled or not (0 <= position < size) or filled > size:
            raise ValueError(
                f"Inconsistent gradient-norm history in checkpoint: {values.numel()} values, "
                f"filled={filled}, position={position}, size={size}."
            )
        device = self.buffer.device if self.buffer is not None else values.device
        buffer = torch.zeros(self.size, dtype=torch.float32)
        if size == self.size:  # exact: the same ring, the same write position
            buffer[:filled] = values
            self.filled, self.position = filled, position
        else:
            chronological = values if filled < size else torch.cat([values[position:], values[:position]])
            kept = chronological[-self.size :]
            buffer[: kept.numel()] = kept
            self.filled = kept.numel()
            self.position = self.filled % self.size
        self.buffer = buffer.to(device)


def scale_gradients_to_norm(parameters: Iterable[Tensor], max_norm: Tensor | float, total_norm: Tensor) -> Tensor:
    """Scale gradients whose total norm exceeds a (tensor) bound down to it; no host sync.

    The math of ``torch.nn.utils.clip_grad_norm_`` (multiply every gradient by
    ``max_norm / (total_norm + 1e-6)``), with ``max_norm`` allowed to be a device tensor, and
    applied only when ``total_norm > max_norm``: gradients at or below the bound are untouched
    (``clip_grad_norm_`` would scale them by ``max_norm / (max_norm + 1e-6)``). Returns whether
    the gradients were scaled, as a boolean tensor.

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([3.0, 4.0])
        >>> scale_gradients_to_norm([w], torch.tensor(1.0), torch.tensor(5.0)), w.grad
        (tensor(True), tensor([0.6000, 0.8000]))
    """
    gradients = [p.grad for p in parameters if p.grad is not None]
    clipped = total_norm > max_norm
    if not gradients:
        return clipped
    coefficient = torch.where(clipped, max_norm / (total_norm + 1e-6), 1.0)
    by_device: dict[torch.device, list[Tensor]] = {}
    for gradient in gradients:
        by_device.setdefault(gradient.device, []).append(gradient)
    for device, device_gradients in by_device.items():
        torch._foreach_mul_(device_gradients, coefficient.to(device))
    return clipped


def _auto_clip(
    parameters: list[Tensor], history: GradientNormHistory, percentile: float, norm_type: float
) -> tuple[Tensor, Tensor, Tensor]:
    total = toolkit.total_gradient_norm(parameters, norm_type)
    history.append(total)
    threshold = history.percentile(percentile)
    clipped = scale_gradients_to_norm(parameters, threshold, total)
    return total, threshold, clipped


def auto_clipping(
    parameters: Any, history: GradientNormHistory, percentile: float = 10.0, norm_type: float = 2.0
) -> Tensor:
    """AutoClip one step: record the total norm, clip to the percentile of the history.

    Appends the total ``norm_type``-norm of the gradients to ``history``, then scales the
    gradients down to ``history.percentile(percentile)`` when they exceed it (the current norm is
    part of the history, as in the paper). Returns the pre-clip total norm, on the device.

    Args:
        parameters: an iterable of parameters (or ``(name, parameter)`` pairs), a module or an
            optimizer; parameters without a gradient are skipped (none: nothing is recorded).
        history: the norms of the previous steps; this step's norm is appended to it.
        percentile: p in (0, 100] of the threshold.
        norm_type: p of the total p-norm; ``inf`` (or ``"inf"``) for the largest absolute value.

    Example:
        >>> history = GradientNormHistory(100)
        >>> w = torch.zeros(2, requires_grad=True)
        >>> for gradient in ([0.3, 0.4], [3.0, 4.0]):
        ...     w.grad = torch.tensor(gradient)
        ...     pre_clip = auto_clipping([w], history, percentile=50.0)
        >>> pre_clip, history.values(), w.grad  # clipped to the median of [0.5, 5.0]
        (tensor(5.), tensor([0.5000, 5.0000]), tensor([1.6500, 2.2000]))
    """
    percentile = check.percentile("percentile", percentile)
    norm_type = check.norm_type("norm_type", norm_type)
    with_gradients = toolkit.parameters_with_gradients(parameters)
    if not with_gradients:
        return torch.zeros(())
    return _auto_clip(with_gradients, history, percentile, norm_type)[0]


class AutoClipping(ClippingTechnique):
    """AutoClip (Seetharaman et al. 2020): clips to the p-th percentile of past gradient norms.

    Every optimizer step the total gradient norm is appended to a bounded history (a ring buffer
    of ``history_size`` norms on the device) and the gradients are rescaled, as by
    ``clip_grad_norm_``, to the ``percentile``-th percentile of that history (current norm
    included; linear interpolation, as ``numpy.percentile``). The threshold thus adapts to the
    run's own gradient scale: with ``percentile=10`` about nine steps in ten are clipped.

    Acts in the gradients-transform phase, after every gradient observer, on gradients that AMP has
    unscaled and DDP has averaged. It takes the ``gradient_clipping`` slot: a second clipper, or
    ``Trainer(gradient_clip_val=...)``, is refused, naming both. Every ``log_every_n_steps``
    optimizer steps (default: the Trainer's ``log_every_n_steps``; on Lightning's rows, steps
    ``N - 1, 2N - 1, ...``) it logs ``auto_clipping/pre_clip_norm``, ``auto_clipping/threshold``
    and ``auto_clipping/clipped_fraction`` (the fraction of optimizer steps so far that were
    scaled). The history and the counts are kept in checkpoints through :meth:`state_dict`, so a
    resumed run clips exactly as an uninterrupted one would. It clips as :func:`auto_clipping`
    does (one implementation).

    Args:
        percentile: p in (0, 100]; the paper reports p = 10 works across tasks.
        history_size: how many recent norms the percentile is taken over; the oldest are dropped.
        norm_type: p of the total p-norm; ``inf`` for the largest absolute value.
        log_every_n_steps: how often to log; ``None`` uses the Trainer's ``log_every_n_steps``.

    Example:
        >>> clipper = AutoClipping(percentile=5)
        >>> clipper
        AutoClipping(percentile=5, history_size=10000, norm_type=2.0, log_every_n_steps=None)
        >>> sorted(clipper.state_dict()), sorted(clipper.state_dict()["history"])
        (['clipped_steps', 'history', 'steps'], ['filled', 'position', 'size', 'values'])
    """

    name = "auto_clipping"
    exclusive = "gradient_clipping"

    # Seetharaman et al. (2020) use the 10th percentile; 5-50 spans mild to strong clipping.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"percentile": FloatRange(5.0, 50.0)}

    def __init__(
        self,
        percentile: float = 10.0,
        history_size: int = 10_000,
        norm_type: float = 2.0,
        log_every_n_steps: int | None = None,
    ) -> None:
        self.percentile = check.percentile("percentile", percentile)
        self.history_size = check.positive_int("history_size", history_size)
        self.norm_type = check.norm_type("norm_type", norm_type)
        self._init_clipping(log_every_n_steps)
        self.history = GradientNormHistory(self.history_size)

    @hookimpl
    def transform_gradients(self, model: Any, optimizer: torch.optim.Optimizer) -> None:
        parameters = toolkit.parameters_with_gradients(optimizer)
        if not parameters:
            return
        pre_clip_norm, threshold, clipped = _auto_clip(parameters, self.history, self.percentile, self.norm_type)
        self._record(model, pre_clip_norm, clipped, threshold=threshold)

    def state_dict(self) -> dict[str, Any]:
        """The counts of :class:`ClippingTechnique` and the norm ``history``
        (:meth:`GradientNormHistory.state_dict`), the same keys before and after training."""
        return {**super().state_dict(), "history": self.history.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        history = GradientNormHistory(self.history_size)
        history.load_state_dict(state["history"])  # checked before anything is replaced
        super().load_state_dict(state)
        self.history = history
