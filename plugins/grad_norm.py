"""Gradient-norm monitoring: total and per-layer norms, every N steps, before clipping."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check

_LSTM_PARAMETER = re.compile(r"^(?P<module>.*?)(?:weight|bias)_(?:ih|hh)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


def layer_of(parameter_name: str) -> str:
    """The layer a parameter belongs to, for per-layer norms.

    LSTM parameters are grouped by layer and direction; others by their owning module.

    Example:
        >>> layer_of("lstm.weight_hh_l1_reverse"), layer_of("head.bias")
        ('lstm.layer1_reverse', 'head')
    """
    match = _LSTM_PARAMETER.match(parameter_name)
    if match:
        return f"{match['module']}layer{match['layer']}{match['reverse'] or ''}"
    return parameter_name.rpartition(".")[0] or parameter_name


def normalize_norm_type(name: str, value: Any) -> float:
    """A p-norm order: a positive float, ``inf``, or the string ``"inf"``."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    return check.positive_float(name, value, allow_inf=True)


def total_gradient_norm(parameters: Iterable[Tensor], norm_type: float = 2.0) -> Tensor:
    """The p-norm of all gradients taken together, as a tensor on their device (no sync).

    Example:
        >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([3.0, 4.0])
        >>> total_gradient_norm([w]).item()
        5.0
    """
    gradients = [p.grad for p in parameters if p.grad is not None]
    if not gradients:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gradients, norm_type)), norm_type)


def gradient_norms(
    named_parameters: Iterable[tuple[str, nn.Parameter]], norm_type: float = 2.0, per_layer: bool = True
) -> dict[str, Tensor]:
    """The total gradient norm (``"total"``) and, optionally, one norm per layer.

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


class GradientNormMonitor(Technique):
    """Logs the total and per-layer gradient norms every N steps, before clipping.

    The norms are observed in the gradients-ready phase: after backward, after DDP's reduction
    and AMP's unscaling, and before any gradient transform such as clipping. They are computed
    only on logging steps and handed to Lightning's logger as device tensors, so the steps in
    between cost one integer comparison and no host synchronisation.

    Logged as ``grad_norm/total`` and ``grad_norm/<layer>`` (for example ``grad_norm/lstm.layer0``).

    Args:
        every_n_steps: log on optimizer steps ``0, N, 2N, ...``.
        norm_type: p of the p-norm; ``inf`` for the largest absolute value.
        per_layer: also log one norm per LSTM layer and direction, and per other module.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(12, 9, plugins=[GradientNormMonitor(every_n_steps=10)])
    """

    name = "grad_norm"

    def __init__(self, every_n_steps: int = 50, norm_type: float = 2.0, per_layer: bool = True) -> None:
        self.every_n_steps = check.positive_int("every_n_steps", every_n_steps)
        self.norm_type = normalize_norm_type("norm_type", norm_type)
        self.per_layer = check.boolean("per_layer", per_layer)

    @hookimpl
    def on_gradients_ready(self, model: Any) -> None:
        if model.trainer.global_step % self.every_n_steps:
            return
        norms = gradient_norms(model.cached_named_parameters(), self.norm_type, self.per_layer)
        if norms:
            model.log_step_values({f"grad_norm/{key}": value for key, value in norms.items()})
