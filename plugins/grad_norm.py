"""Gradient-norm monitoring: total and per-layer norms, on the logging steps, before clipping.

The norms themselves are the core toolkit's :func:`~lstm_plugins.toolkit.gradient_norms`
(re-exported here as the function face of :class:`GradientNorms`), so every technique computes
and groups them the same way.

Example:
    >>> import torch
    >>> lstm = torch.nn.LSTM(2, 3, num_layers=2)
    >>> lstm(torch.randn(4, 1, 2))[0].sum().backward()
    >>> sorted(gradient_norms(lstm.named_parameters()))
    ['layer0', 'layer1', 'total']
"""

from __future__ import annotations

from typing import Any

from lstm_plugins import Technique, hookimpl, toolkit
from lstm_plugins import validation as check
from lstm_plugins.toolkit import gradient_norms

__all__ = ["GradientNorms", "gradient_norms"]


class GradientNorms(Technique):
    """Logs the total and per-layer gradient norms on the logging steps, before clipping.

    The norms are observed in the gradients-ready phase: after backward, after DDP's reduction
    and AMP's unscaling, and before any gradient transform such as clipping. They are computed
    only on the steps :func:`lstm_plugins.toolkit.log_due` names (the rows of Lightning's own
    ``self.log``) and handed to the logger as device tensors, so the steps in between cost one
    integer comparison and no host synchronisation.

    Logged as ``grad_norm/total`` and ``grad_norm/<layer>`` (for example ``grad_norm/lstm.layer0``).

    Args:
        log_every_n_steps: log on optimizer steps ``N - 1, 2N - 1, ...``; ``None`` uses the
            Trainer's ``log_every_n_steps``.
        norm_type: p of the p-norm; ``inf`` (or ``"inf"``) for the largest absolute value.
        per_layer: also log one norm per LSTM layer and direction, and per other module.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(12, 9, techniques=[GradientNorms(log_every_n_steps=10)])
        >>> GradientNorms(norm_type="inf")
        GradientNorms(log_every_n_steps=None, norm_type='inf', per_layer=True)
    """

    name = "grad_norm"

    def __init__(self, log_every_n_steps: int | None = None, norm_type: float = 2.0, per_layer: bool = True) -> None:
        self.log_every_n_steps = check.optional_positive_int("log_every_n_steps", log_every_n_steps)
        self.norm_type = check.norm_type("norm_type", norm_type)
        self.per_layer = check.boolean("per_layer", per_layer)

    @hookimpl
    def on_gradients_ready(self, model: Any) -> None:
        if not toolkit.log_due(model.trainer, self.log_every_n_steps):
            return
        norms = gradient_norms(model.cached_named_parameters(), self.norm_type, self.per_layer)
        if norms:
            model.log_step_values({f"grad_norm/{key}": value for key, value in norms.items()})
