"""Adaptive gradient clipping (AGC): unit-wise ratio of gradient norm to weight norm.

Brock, De, Smith and Simonyan, "High-Performance Large-Scale Image Recognition Without
Normalization", ICML 2021.

:func:`adaptive_gradient_clipping` is the function face of :class:`AdaptiveGradientClipping`:
both run the same implementation on the same gradients.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from lstm_plugins import hookimpl, toolkit
from lstm_plugins import validation as check
from lstm_plugins.plugins._clipping import ClippingTechnique
from lstm_plugins.techniques import FloatRange, SearchValue

_NAME = "adaptive_clipping"
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


def _excluded_names(names: Sequence[str], exclude: Sequence[str]) -> frozenset[str]:
    """The names ``exclude`` matches; a pattern that matches none is refused (a typo)."""
    if not exclude:
        return frozenset()
    return frozenset(toolkit.match_names(names, exclude, technique=_NAME, argument="exclude"))


def adaptive_gradient_clipping(
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
            parameters); the paper does not clip the final classifier layer (``["head.*"]``). A
            pattern that matches no name is refused, as a typo.

    Returns:
        The total 2-norm of the clipped parameters' gradients *before* clipping, as a tensor on
        their device.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [0.3, 0.4]]))
        >>> w.grad = torch.tensor([[0.3, 0.4], [0.003, 0.0]])
        >>> adaptive_gradient_clipping([w], clipping=0.01)  # bounds: 0.05 and 0.005
        tensor(0.5000)
        >>> w.grad  # row 0 (norm 0.5) scaled to 0.05; row 1 (norm 0.003) untouched
        tensor([[0.0300, 0.0400],
                [0.0030, 0.0000]])
        >>> adaptive_gradient_clipping([("weight", w)], exclude=["wieght"])
        Traceback (most recent call last):
        ...
        ValueError: Technique `adaptive_clipping`: `exclude` pattern(s) 'wieght' match no parameter; parameter names are: weight.
    """
    clipping = check.positive_float("clipping", clipping)
    eps = check.positive_float("eps", eps)
    exclude = check.name_patterns("exclude", exclude)
    items = list(named_or_plain_parameters)
    if exclude:
        plain = [item for item in items if not isinstance(item, tuple)]
        if plain:
            raise TypeError(
                "Expected `named_or_plain_parameters` to be (name, parameter) pairs when `exclude` "
                f"is given, but got a {type(plain[0]).__name__}."
            )
        excluded = _excluded_names([name for name, _ in items], exclude)
        items = [(name, parameter) for name, parameter in items if name not in excluded]
    return _adaptive_clip(toolkit.parameters_with_gradients(items), clipping, eps)[0]


class AdaptiveGradientClipping(ClippingTechnique):
    """Adaptive gradient clipping (Brock et al. 2021): bounds each unit's gradient-to-weight ratio.

    Each output row of a weight matrix (and each whole bias vector) is a unit; where a unit's
    gradient norm exceeds ``clipping * max(||W_unit||, eps)`` its gradient is scaled down to that
    bound (the implementation of :func:`adaptive_gradient_clipping`). Unlike a global threshold,
    the bound follows the scale of the weights, so one value works across layers and through
    training.

    Acts in the gradients-transform phase, after every gradient observer, on gradients that AMP has
    unscaled and DDP has averaged. It takes the ``gradient_clipping`` slot: a second clipper, or
    ``Trainer(gradient_clip_val=...)``, is refused, naming both. Every ``log_every_n_steps``
    optimizer steps (default: the Trainer's ``log_every_n_steps``; on Lightning's rows, steps
    ``N - 1, 2N - 1, ...``) it logs the pre-clip total norm of all gradients as
    ``adaptive_clipping/pre_clip_norm`` and the fraction of optimizer steps so far in which at
    least one unit was clipped as ``adaptive_clipping/clipped_fraction``. The counts are kept in
    checkpoints through :meth:`state_dict`.

    Args:
        clipping: the largest allowed ratio ``||G_unit|| / max(||W_unit||, eps)``; the paper
            uses 0.01 to 0.16, smaller for larger batches.
        eps: the smallest weight norm in the bound (the paper's 1e-3).
        exclude: a list of shell-style patterns on parameter names that are not clipped; ``None``
            clips every parameter. By default the classifier head, as in the paper. A pattern
            that matches no parameter (a typo) is refused when training starts.
        log_every_n_steps: how often to log the pre-clip norm and the clipped fraction; ``None``
            uses the Trainer's ``log_every_n_steps``.

    Example:
        >>> AdaptiveGradientClipping(clipping=0.02)
        AdaptiveGradientClipping(clipping=0.02, eps=0.001, exclude=('head.*',), log_every_n_steps=None)
    """

    name = _NAME
    exclusive = "gradient_clipping"

    # Brock et al. (2021) found 0.01-0.16 best, depending on the batch size.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"clipping": FloatRange(0.001, 0.16, log=True)}

    def __init__(
        self,
        clipping: float = 0.01,
        eps: float = 1e-3,
        exclude: Sequence[str] | None = ("head.*",),
        log_every_n_steps: int | None = None,
    ) -> None:
        self.clipping = check.positive_float("clipping", clipping)
        self.eps = check.positive_float("eps", eps)
        self.exclude: tuple[str, ...] = () if exclude is None else tuple(check.name_patterns("exclude", exclude))
        self._init_clipping(log_every_n_steps)
        self._excluded: frozenset[str] | None = None

    def _resolve(self, model: Any) -> frozenset[str]:
        names = [name for name, _ in model.cached_named_parameters()]
        excluded = _excluded_names(names, self.exclude)
        if excluded and len(excluded) == len(names):
            raise ValueError(f"Technique `{self.name}`: `exclude` {list(self.exclude)!r} excludes every parameter.")
        return excluded

    @hookimpl
    def on_fit_setup(self, model: Any, trainer: Any) -> None:
        super().on_fit_setup(model, trainer)
        # Resolved when training starts, so parameters other techniques added are covered.
        self._excluded = self._resolve(model)

    @hookimpl
    def transform_gradients(self, model: Any) -> None:
        if self._excluded is None:
            self._excluded = self._resolve(model)
        clipped, excluded = [], []
        for name, parameter in model.cached_named_parameters():
            if parameter.grad is not None:
                (excluded if name in self._excluded else clipped).append(parameter)
        if not clipped:
            return
        pre_clip_norm, triggered = _adaptive_clip(clipped, self.clipping, self.eps)
        if excluded and self._log_due(model):  # log the norm of all gradients, like the other clippers
            rest = toolkit.total_gradient_norm(excluded).to(pre_clip_norm.dtype)
            pre_clip_norm = torch.sqrt(pre_clip_norm.square() + rest.square())
        self._record(model, pre_clip_norm, triggered)
