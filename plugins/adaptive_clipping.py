"""Adaptive gradient clipping (AGC): unit-wise ratio of gradient norm to weight norm.

Brock, De, Smith and Simonyan, "High-Performance Large-Scale Image Recognition Without
Normalization", ICML 2021.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lstm_plugins import hookimpl
from lstm_plugins import validation as check
from lstm_plugins.plugins._clipping_stats import ClippingTechnique
from lstm_plugins.plugins.grad_norm import total_gradient_norm

_GRADIENT_NORM_FLOOR = 1e-6  # as in the reference code: avoids dividing by a zero gradient norm


def unitwise_norm(tensor: Tensor) -> Tensor:
    """The 2-norm of each unit of a parameter (or of its gradient), shaped to broadcast against it.

    For ``ndim > 1`` a unit is one output row: the norm runs over every dimension but the first
    and keeps them as size-1 dimensions (``(out, 1, ...)``). A vector or scalar (a bias) is one
    unit: a 0-dimensional norm.

    Example:
        >>> unitwise_norm(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
        tensor([[5.],
                [1.]])
        >>> unitwise_norm(torch.tensor([3.0, 4.0]))
        tensor(5.)
    """
    if tensor.ndim > 1:
        return torch.linalg.vector_norm(tensor, dim=tuple(range(1, tensor.ndim)), keepdim=True)
    return torch.linalg.vector_norm(tensor)


def _as_parameters(
    named_or_plain_parameters: Iterable[Tensor] | Iterable[tuple[str, Tensor]], exclude: Sequence[str]
) -> list[Tensor]:
    parameters = []
    for item in named_or_plain_parameters:
        if isinstance(item, tuple):
            name, parameter = item
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
                continue
        elif exclude:
            raise TypeError(
                "Expected `named_or_plain_parameters` to be (name, parameter) pairs when `exclude` "
                f"is given, but got a {type(item).__name__}."
            )
        else:
            parameter = item
        if parameter.grad is not None:
            parameters.append(parameter)
    return parameters


@torch.no_grad()
def _adaptive_clip(parameters: Sequence[Tensor], clipping: float, eps: float) -> tuple[Tensor, Tensor]:
    """AGC in place; returns (pre-clip total 2-norm, whether any unit was clipped), on the device."""
    squares, triggered = [], []
    for parameter in parameters:
        gradient = parameter.grad
        gradient_norm = unitwise_norm(gradient)
        max_norm = unitwise_norm(parameter.detach()).clamp(min=eps) * clipping
        trigger = gradient_norm > max_norm
        # Vectorised over the units of the parameter: 1 where below the bound.
        scale = torch.where(trigger, max_norm / gradient_norm.clamp(min=_GRADIENT_NORM_FLOOR), 1.0)
        gradient.mul_(scale.to(gradient.dtype))
        squares.append(gradient_norm.square().sum())
        triggered.append(trigger.any())
    if not squares:
        return torch.zeros(()), torch.zeros((), dtype=torch.bool)
    dtype = functools.reduce(torch.promote_types, (s.dtype for s in squares))
    total = torch.stack([s.to(dtype) for s in squares]).sum().sqrt()
    return total, torch.stack(triggered).any()


def adaptive_clip_gradients(
    named_or_plain_parameters: Iterable[Tensor] | Iterable[tuple[str, Tensor]],
    clipping: float = 0.01,
    eps: float = 1e-3,
    *,
    exclude: Sequence[str] = (),
) -> Tensor:
    """Adaptive gradient clipping, in place, unit by unit; returns the pre-clip total 2-norm.

    For each unit (an output row of a matrix; a whole bias vector) with weights ``W`` and
    gradient ``G``, let ``bound = clipping * max(||W||, eps)``. Where ``||G|| > bound`` the
    unit's gradient is scaled by ``bound / max(||G||, 1e-6)``; other units are left as they are.
    This is the NFNets reference rule, computed per parameter with tensor operations (no loop over
    units) and with no host synchronisation.

    Args:
        named_or_plain_parameters: ``model.parameters()`` or ``model.named_parameters()``;
            parameters without a gradient are skipped.
        clipping: the largest allowed ratio of a unit's gradient norm to its weight norm.
        eps: the smallest weight norm used in the bound, so zero-initialised units can move.
        exclude: shell-style patterns on parameter names left unclipped (needs named
            parameters); the paper does not clip the final classifier layer (``["head.*"]``).

    Returns:
        The total 2-norm of the clipped parameters' gradients *before* clipping, as a tensor on
        their device.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [0.3, 0.4]]))
        >>> w.grad = torch.tensor([[0.3, 0.4], [0.003, 0.0]])
        >>> adaptive_clip_gradients([w], clipping=0.01)  # bounds: 0.05 and 0.005
        tensor(0.5000)
        >>> w.grad  # row 0 (norm 0.5) scaled to 0.05; row 1 (norm 0.003) untouched
        tensor([[0.0300, 0.0400],
                [0.0030, 0.0000]])
    """
    clipping = check.positive_float("clipping", clipping)
    eps = check.positive_float("eps", eps)
    parameters = _as_parameters(named_or_plain_parameters, tuple(exclude))
    return _adaptive_clip(parameters, clipping, eps)[0]


def _check_patterns(name: str, patterns: Any) -> tuple[str, ...]:
    if isinstance(patterns, str) or not isinstance(patterns, Iterable):
        raise TypeError(f"Expected `{name}` to be a list of name patterns, but got {patterns!r}.")
    patterns = tuple(patterns)
    if not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"Expected `{name}` to be a list of name patterns, but got {list(patterns)!r}.")
    return patterns


class AdaptiveGradientClipping(ClippingTechnique):
    """Adaptive gradient clipping (Brock et al. 2021): bounds each unit's gradient-to-weight ratio.

    Each output row of a weight matrix (and each whole bias vector) is a unit; where a unit's
    gradient norm exceeds ``clipping * max(||W_unit||, eps)`` its gradient is scaled down to that
    bound (see :func:`adaptive_clip_gradients`). Unlike a global threshold, the bound follows the
    scale of the weights, so one value works across layers and through training.

    Acts in the gradients-transform phase, after every gradient observer, on gradients that AMP has
    unscaled and DDP has averaged. It takes the ``gradient_clipping`` slot: a second clipper, or
    ``Trainer(gradient_clip_val=...)``, is refused, naming both. Every ``log_every_n_steps``
    optimizer steps (default: the Trainer's ``log_every_n_steps``) it logs the pre-clip total
    norm of all gradients as ``adaptive_clipping/pre_clip_norm`` and the fraction of optimizer
    steps so far in which at least one unit was clipped as ``adaptive_clipping/clipped_fraction``.

    Args:
        clipping: the largest allowed ratio ``||G_unit|| / max(||W_unit||, eps)``; the paper
            uses 0.01 to 0.16, smaller for larger batches.
        eps: the smallest weight norm in the bound (the paper's 1e-3).
        exclude: shell-style patterns on parameter names that are not clipped; ``None`` clips
            every parameter. By default the classifier head, as in the paper. A pattern that
            matches no parameter is an error when training starts.
        log_every_n_steps: how often to log the pre-clip norm and the clipped fraction.

    Example:
        >>> AdaptiveGradientClipping(clipping=0.02)
        AdaptiveGradientClipping(clipping=0.02, eps=0.001, exclude=('head.*',), log_every_n_steps=None)
    """

    name = "adaptive_clipping"
    exclusive = "gradient_clipping"

    def __init__(
        self,
        clipping: float = 0.01,
        eps: float = 1e-3,
        exclude: Sequence[str] | None = ("head.*",),
        log_every_n_steps: int | None = None,
    ) -> None:
        self.clipping = check.positive_float("clipping", clipping)
        self.eps = check.positive_float("eps", eps)
        self.exclude = () if exclude is None else _check_patterns("exclude", exclude)
        self._init_clipping(log_every_n_steps)
        self._excluded_names: frozenset[str] | None = None

    def _resolve(self, model: nn.Module) -> frozenset[str]:
        names = [name for name, _ in model.named_parameters()]
        unmatched = [p for p in self.exclude if not any(fnmatch.fnmatchcase(n, p) for n in names)]
        if unmatched:
            raise ValueError(
                f"Technique `{self.name}`: `exclude` pattern(s) {', '.join(map(repr, unmatched))} "
                f"match no parameter; parameter names are: {', '.join(names)}."
            )
        excluded = frozenset(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in self.exclude))
        if excluded and len(excluded) == len(names):
            raise ValueError(f"Technique `{self.name}`: `exclude` {list(self.exclude)!r} excludes every parameter.")
        return excluded

    def _setup(self, model: Any, trainer: Any) -> None:
        # Resolved when training starts, so parameters other techniques added are covered.
        self._excluded_names = self._resolve(model)

    @hookimpl
    def transform_gradients(self, model: Any) -> None:
        if self._excluded_names is None:
            self._excluded_names = self._resolve(model)
        clipped, excluded = [], []
        for name, parameter in model.cached_named_parameters():
            if parameter.grad is not None:
                (excluded if name in self._excluded_names else clipped).append(parameter)
        if not clipped:
            return
        pre_clip_norm, triggered = _adaptive_clip(clipped, self.clipping, self.eps)
        self._count_step(triggered)
        if self._log_due(model):
            if excluded:  # log the norm of all gradients, like the other clippers
                rest = total_gradient_norm(excluded).to(pre_clip_norm.dtype)
                pre_clip_norm = torch.sqrt(pre_clip_norm.square() + rest.square())
            self._log_clipping(model, pre_clip_norm)
