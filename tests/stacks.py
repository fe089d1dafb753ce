"""The full built-in stack the stack, parity and resume tests share."""

from __future__ import annotations

from typing import Any

from lstm_plugins.plugins import ActivationRegularization, AutoClipping, DecoupledWeightDecay, Dropout, ExplodingGradients, GateSaturation, GradientNorms, GradientReach, Initialization, L2Penalty, LockedDropout, NonFiniteGuard, WeightDrop


def full_stack(clipper: Any = None, *, dropout: bool = True, log_every_n_steps: int = 2) -> list[Any]:
    """Every built-in technique for feature inputs (zoneout and embedding dropout aside).

    ``dropout=False`` leaves out the techniques that draw random masks (for parity across
    processes, whose random streams differ); ``clipper`` defaults to a small AutoClipping.
    """
    random_masks = [
        Dropout(input=0.1, between_layers=0.1, output=0.2),
        LockedDropout(input=0.1, output=0.2),
        WeightDrop(0.2),
    ] if dropout else []
    return [
        Initialization(),
        *random_masks,
        L2Penalty(1e-4, parameters=["head.*"]),
        DecoupledWeightDecay(0.01, exclude=["head.*"]),
        ActivationRegularization(alpha=0.5, beta=0.5),
        GradientNorms(log_every_n_steps=log_every_n_steps),
        ExplodingGradients(warmup_steps=3, log_every_n_steps=2),
        GradientReach(log_every_n_steps=2),
        GateSaturation(log_every_n_steps=2),
        NonFiniteGuard(),
        clipper if clipper is not None else AutoClipping(percentile=50, history_size=16),
    ]
