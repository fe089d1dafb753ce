"""Annealed Gaussian gradient noise, as a third-party lstm-plugins technique.

Neelakantan et al. 2015, "Adding Gradient Noise Improves Learning for Very Deep Networks":
at optimizer step t every gradient gets noise drawn from N(0, eta / (1 + t) ** gamma); the paper
uses eta in {0.01, 0.3, 1.0} and gamma = 0.55.

The package registers the class under the entry-point group ``lstm_plugins`` (see its
``pyproject.toml``), so installing it makes the name ``gradient_noise`` *available*; it is active
only in a model or config that names it.
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
        if not gamma >= 0:
            raise ValueError(f"Expected `gamma` to be a non-negative float, but got {gamma!r}.")
        self.eta = float(eta)
        self.gamma = float(gamma)

    @hookimpl(tryfirst=True)  # noise first, so a clipper downstream bounds the noisy gradient
    def transform_gradients(self, model, optimizer) -> None:
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        add_gradient_noise(parameters, model.trainer.global_step, self.eta, self.gamma)
