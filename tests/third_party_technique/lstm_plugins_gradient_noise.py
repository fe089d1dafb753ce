"""Annealed Gaussian gradient noise, as a third-party lstm-plugins technique.

Neelakantan et al. 2015, "Adding Gradient Noise Improves Learning for Very Deep Networks":
at step t every gradient gets noise from N(0, eta / (1 + t) ** gamma).
"""

from __future__ import annotations

import torch

from lstm_plugins import Technique, hookimpl


def add_gradient_noise(parameters, step: int, eta: float = 0.01, gamma: float = 0.55) -> None:
    """Add N(0, eta / (1 + step) ** gamma) noise to every gradient, in place."""
    std = (eta / (1 + step) ** gamma) ** 0.5
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.add_(torch.randn_like(parameter.grad), alpha=std)


class GradientNoise(Technique):
    """Adds annealed Gaussian noise to gradients (Neelakantan et al. 2015)."""

    name = "gradient_noise"

    def __init__(self, eta: float = 0.01, gamma: float = 0.55) -> None:
        if not eta > 0:
            raise ValueError(f"Expected `eta` to be a positive float, but got {eta!r}.")
        self.eta = float(eta)
        self.gamma = float(gamma)

    @hookimpl(tryfirst=True)  # noise first, so a clipper downstream bounds the noisy gradient
    def transform_gradients(self, model, optimizer) -> None:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        add_gradient_noise(parameters, model.trainer.global_step, self.eta, self.gamma)
