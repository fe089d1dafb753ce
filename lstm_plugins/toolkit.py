"""Services techniques share: the logging interval, gradients, parameter names, dropout masks.

Every built-in technique uses these, and third-party techniques should too, so that values land
on the same logger rows, norms are computed one way, and name patterns fail alike.

Example:
    >>> import torch
    >>> from lstm_plugins import toolkit
    >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([3.0, 4.0])
    >>> toolkit.total_gradient_norm([w])
    tensor(5.)
    >>> toolkit.layer_of("lstm.weight_hh_l1_reverse")
    'lstm.layer1_reverse'
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FastDropout",
    "dropout_keep_mask",
    "fast_dropout",
    "gradient_norms",
    "is_bias",
    "layer_of",
    "log_due",
    "log_step",
    "match_names",
    "parameters_with_gradients",
    "total_gradient_norm",
]


# --- the logging interval ---------------------------------------------------------------------


def log_step(trainer: Any) -> int:
    """The step Lightning gives the loggers for training values logged now: the count of
    batches that stepped the optimizer before this one (``global_step`` without accumulation)."""
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    return int(getattr(epoch_loop, "_batches_that_stepped", trainer.global_step))


def log_due(trainer: Any, every_n_steps: int | None = None) -> bool:
    """Whether the current training step logs, on Lightning's own schedule.

    Lightning's ``self.log`` writes a training row when ``(step + 1) % log_every_n_steps == 0``
    (steps ``N - 1, 2N - 1, ...``), so this predicate puts a technique's values on the same rows.
    It holds for a whole batch: from :func:`~lstm_plugins.techniques.hookspecs.transform_batch`
    to :func:`~lstm_plugins.techniques.hookspecs.on_train_step_end`.

    Args:
        trainer: the Trainer (``model.trainer``); without one nothing is due.
        every_n_steps: the technique's own interval; ``None`` uses the Trainer's
            ``log_every_n_steps``. ``0`` (or a Trainer with ``log_every_n_steps=0``) never logs.

    Example:
        >>> from types import SimpleNamespace
        >>> trainer = SimpleNamespace(global_step=9, log_every_n_steps=10)
        >>> log_due(trainer), log_due(trainer, every_n_steps=4)
        (True, False)
    """
    if trainer is None:
        return False
    interval = trainer.log_every_n_steps if every_n_steps is None else every_n_steps
    return bool(interval) and (log_step(trainer) + 1) % interval == 0


# --- gradients ----------------------------------------------------------------------------------


def parameters_with_gradients(source: Any) -> list[Tensor]:
    """The parameters that have a gradient, from an optimizer (its ``param_groups``), a module,
    or an iterable of parameters or ``(name, parameter)`` pairs.

    Example:
        >>> layer = torch.nn.Linear(2, 1); layer(torch.ones(1, 2)).sum().backward()
        >>> len(parameters_with_gradients(layer)), len(parameters_with_gradients(torch.optim.SGD(layer.parameters(), 0.1)))
        (2, 2)
    """
    if isinstance(source, torch.optim.Optimizer):
        items: Iterable[Any] = (p for group in source.param_groups for p in group["params"])
    elif isinstance(source, nn.Module):
        items = source.parameters()
    else:
        items = source
    parameters = []
    for item in items:
        parameter = item[1] if isinstance(item, tuple) else item
        if parameter.grad is not None:
            parameters.append(parameter)
    return parameters


def total_gradient_norm(parameters: Iterable[Tensor], norm_type: float = 2.0) -> Tensor:
    """The p-norm of all gradients taken together, as a tensor on their device (no sync);
    parameters without a gradient are skipped, and none gives ``0``.

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([3.0, 4.0])
        >>> total_gradient_norm([w], float("inf"))
        tensor(4.)
    """
    gradients = [p.grad for p in parameters if p.grad is not None]
    if not gradients:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gradients, norm_type)), norm_type)


_LSTM_PARAMETER = re.compile(r"^(?P<module>.*?)(?:weight|bias)_(?:ih|hh)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


def layer_of(parameter_name: str) -> str:
    """The layer a parameter belongs to: LSTM parameters by layer and direction, others by their
    owning module.

    Example:
        >>> layer_of("lstm.weight_hh_l1_reverse"), layer_of("head.bias")
        ('lstm.layer1_reverse', 'head')
    """
    match = _LSTM_PARAMETER.match(parameter_name)
    if match:
        return f"{match['module']}layer{match['layer']}{match['reverse'] or ''}"
    return parameter_name.rpartition(".")[0] or parameter_name


def gradient_norms(
    named_parameters: Iterable[tuple[str, nn.Parameter]], norm_type: float = 2.0, per_layer: bool = True
) -> dict[str, Tensor]:
    """The total gradient norm (``"total"``) and, optionally, one norm per :func:`layer_of` layer.

    All norms come from one fused ``_foreach_norm`` call and stay on the device.

    Example:
        >>> lstm = torch.nn.LSTM(2, 3)
        >>> lstm(torch.randn(4, 1, 2))[0].sum().backward()
        >>> sorted(gradient_norms(lstm.named_parameters()))
        ['layer0', 'total']
    """
    names, gradients = [], []
    for name, parameter in named_parameters:
        if parameter.grad is not None:
            names.append(name)
            gradients.append(parameter.grad)
    if not gradients:
        return {}
    norms = torch._foreach_norm(gradients, norm_type)
    result = {"total": torch.linalg.vector_norm(torch.stack(norms), norm_type)}
    if per_layer:
        layers: dict[str, list[Tensor]] = {}
        for name, norm in zip(names, norms):
            layers.setdefault(layer_of(name), []).append(norm)
        for layer, layer_norms in layers.items():
            result[layer] = torch.linalg.vector_norm(torch.stack(layer_norms), norm_type)
    return result


# --- parameter names ----------------------------------------------------------------------------


def is_bias(parameter_name: str) -> bool:
    """Whether a parameter is a bias (``head.bias``, ``lstm.bias_hh_l0``, ...)."""
    return parameter_name.rpartition(".")[2].startswith("bias")


def match_names(names: Sequence[str], patterns: Sequence[str], *, technique: str, argument: str) -> list[str]:
    """The ``names`` matching any shell-style pattern (``"lstm.weight_*"``), in order.

    A pattern that matches no name is a typo until proven otherwise: ``ValueError`` naming the
    technique, the argument and the names that exist.

    Example:
        >>> match_names(["lstm.weight_ih_l0", "head.weight"], ["head.*"], technique="l2", argument="parameters")
        ['head.weight']
        >>> match_names(["head.weight"], ["haed.*"], technique="l2", argument="parameters")
        Traceback (most recent call last):
        ...
        ValueError: Technique `l2`: `parameters` pattern(s) 'haed.*' match no parameter; parameter names are: head.weight.
    """
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        raise ValueError(
            f"Technique `{technique}`: `{argument}` pattern(s) {', '.join(map(repr, unmatched))} "
            f"match no parameter; parameter names are: {', '.join(names)}."
        )
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


# --- dropout masks ------------------------------------------------------------------------------
# torch's CPU dropout draws its mask with ``bernoulli_``, one call of the random generator per
# element (about 5 ns each): at a medium training shape (2 layers of 128 units, batch 64 × 50
# steps, dropout on the input and between the layers) drawing masks took 7.4 % of a training
# step. Here each 64-bit draw of the same generator gives four 16-bit lanes, and an element is
# kept when its lane falls below a threshold: about 5x faster at ``(64, 50, 128)``.
#
# What changes against ``torch.nn.functional.dropout``:
#
# * the keep probability is rounded to a multiple of 1/65536; where that moves it by more than
#   1e-4 of itself (p above about 0.95, or close to 1), torch's own draw is used instead, so the
#   expectation of every element stays within 1e-4 (relative) of its input; kept values are
#   scaled by ``1 / (1 - p)`` exactly as torch scales them;
# * the random stream: the same seed gives other masks than torch's dropout would.
#
# Off the CPU (CUDA's fused dropout kernel is already fast), and for tensors of fewer than 2048
# elements (where one call of torch's beats the lanes' few), torch's dropout runs unchanged.

_LANES = 1 << 16  # values of one 16-bit lane
_EXACT_MASK_DTYPES = (torch.float32, torch.float64)  # represent every lane value exactly


_MAX_RELATIVE_ROUNDING = 1e-4  # of the keep probability, where lanes may stand in for torch's draw
# Below this many elements torch's one-call dropout is faster than the lanes' few calls (one
# thread: 5 against 14 us at 16 elements, 26 against 18 us at 4096, 1.58 against 0.34 ms at 2**18).
_FEWEST_LANE_ELEMENTS = 2048


def _kept_lanes(probability: float) -> int:
    """How many of the 65536 lane values keep an element: ``(1 - p)`` rounded to 1/65536."""
    return round((1.0 - probability) * _LANES)


def _lanes_are_exact_enough(probability: float) -> bool:
    keep = 1.0 - probability
    return keep > 0.0 and abs(_kept_lanes(probability) / _LANES - keep) <= _MAX_RELATIVE_ROUNDING * keep


def _check_probability(probability: float) -> None:
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"Expected `probability` to be in [0, 1], but got {probability}.")


def dropout_keep_mask(shape: torch.Size | tuple[int, ...], probability: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """A scaled CPU keep mask: each element is ``1 / (1 - probability)`` with probability ``1 -
    probability`` and 0 otherwise.

    Drawn from torch's default CPU generator (so ``torch.manual_seed`` and Lightning's
    ``seed_everything`` make it reproducible), four elements per 64-bit draw; where rounding
    the keep probability to 1/65536 would move it by more than 1e-4 of itself (``probability``
    above about 0.95, except round values), one element per draw with torch's ``bernoulli_``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> mask = dropout_keep_mask((1000, 100), 0.2)
        >>> sorted(mask.unique().tolist())
        [0.0, 1.25]
        >>> round((mask > 0).float().mean().item(), 2)
        0.8
    """
    _check_probability(probability)
    if probability == 1.0:
        return torch.zeros(shape, dtype=dtype)
    mask_dtype = dtype if dtype in _EXACT_MASK_DTYPES else torch.float32
    if not _lanes_are_exact_enough(probability):
        mask = torch.empty(shape, dtype=mask_dtype).bernoulli_(1.0 - probability)
    else:
        count = 1
        for size in shape:
            count *= int(size)
        # random_ over the full int64 range fills all 64 bits; every 16-bit lane is uniform on
        # [-32768, 32767]. The comparison runs in float32, where lanes and threshold are exact.
        words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)
        lanes = words.view(torch.int16)[:count].view(shape)
        mask = lanes.to(mask_dtype).lt_(_kept_lanes(probability) - _LANES // 2)
    # div_ by the scalar, as torch's dropout scales its mask: the same kept values, bit for bit.
    mask.div_(1.0 - probability)
    return mask if mask_dtype is dtype else mask.to(dtype)


def fast_dropout(values: Tensor, probability: float, training: bool = True, inplace: bool = False) -> Tensor:
    """Dropout: zero each element with ``probability``, scale the rest to keep the expectation.

    A drop-in for ``torch.nn.functional.dropout`` (identity when not training or ``p == 0``,
    zeros at ``p == 1``) whose CPU masks come from :func:`dropout_keep_mask`; on other devices,
    and for tensors of fewer than 2048 elements, it is ``torch.nn.functional.dropout``.

    Example:
        >>> x = torch.ones(2, 3)
        >>> torch.equal(fast_dropout(x, 0.5, training=False), x)
        True
        >>> sorted(fast_dropout(torch.ones(10_000), 0.5).unique().tolist())
        [0.0, 2.0]
    """
    _check_probability(probability)
    if not training or probability == 0.0:
        return values
    if not values.is_floating_point():
        raise TypeError(f"Expected `values` to be a floating-point tensor, but got {values.dtype}.")
    if values.device.type != "cpu" or values.numel() < _FEWEST_LANE_ELEMENTS:
        return F.dropout(values, probability, True, inplace)
    mask = dropout_keep_mask(values.shape, probability, values.dtype)
    return values.mul_(mask) if inplace else values * mask


class FastDropout(nn.Dropout):
    """``torch.nn.Dropout`` drawing its CPU masks with :func:`fast_dropout`.

    A subclass, so code that looks for ``nn.Dropout`` modules (to switch them off, to count
    them) still finds it; ``eval()`` makes it the identity, as usual.

    Example:
        >>> layer = FastDropout(0.25)
        >>> layer
        FastDropout(p=0.25, inplace=False)
        >>> x = torch.ones(4, 8)
        >>> torch.equal(layer.eval()(x), x)
        True
    """

    def forward(self, input: Tensor) -> Tensor:
        return fast_dropout(input, self.p, self.training, self.inplace)
