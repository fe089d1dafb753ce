"""Activation regularisation (AR) and temporal activation regularisation (TAR)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lstm_plugins import Technique, hookimpl, valid_step_mask
from lstm_plugins import validation as check


def activation_regularization(outputs: Tensor, lengths: Tensor, alpha: float) -> Tensor:
    """``alpha * mean(h ** 2)`` over the valid steps of ``(batch, time, hidden)`` outputs.

    Padded steps do not count, so the value equals AR on the unpadded sequences concatenated.

    Example:
        >>> h = torch.tensor([[[1.0], [3.0], [99.0]]])  # third step is padding
        >>> activation_regularization(h, torch.tensor([2]), alpha=2.0)
        tensor(10.)
    """
    mask = valid_step_mask(lengths, outputs.size(1), outputs.device).unsqueeze(-1)
    total = (outputs.square() * mask).sum()
    return alpha * total / (mask.sum() * outputs.size(-1))


def temporal_activation_regularization(outputs: Tensor, lengths: Tensor, beta: float) -> Tensor:
    """``beta * mean((h_t - h_{t-1}) ** 2)`` over pairs of consecutive valid steps.

    Example:
        >>> h = torch.tensor([[[1.0], [3.0], [99.0]]])
        >>> temporal_activation_regularization(h, torch.tensor([2]), beta=1.0)
        tensor(4.)
    """
    lengths = lengths.to(outputs.device)
    differences = outputs[:, 1:] - outputs[:, :-1]
    mask = valid_step_mask(lengths - 1, differences.size(1), outputs.device).unsqueeze(-1)
    pairs = mask.sum() * outputs.size(-1)
    total = (differences.square() * mask).sum()
    # Sequences of length 1 have no pair; a batch of only those contributes 0.
    return beta * total / torch.clamp(pairs, min=1)


class ActivationRegularization(Technique):
    """Activation (AR) and temporal activation (TAR) regularisation as loss terms (Merity et al. 2017).

    AR, ``alpha * mean(h ** 2)``, is computed on the *dropped* LSTM outputs (after
    ``sequence_layers``, e.g. locked dropout) and keeps activations small; TAR,
    ``beta * mean((h_t - h_{t-1}) ** 2)``, on the *raw* outputs, penalises fast changes between
    steps. Padded steps never count. Both are logged as ``train/ar`` and ``train/tar``.

    Suggested values: AWD-LSTM uses ``alpha=2``, ``beta=1`` for language modelling; for
    classification start lower (``alpha=0.1``-``1``).

    Example:
        >>> ActivationRegularization(alpha=1.0, beta=0.5)
        ActivationRegularization(alpha=1.0, beta=0.5)
    """

    name = "activation_regularization"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0) -> None:
        self.alpha = check.non_negative_float("alpha", alpha)
        self.beta = check.non_negative_float("beta", beta)
        if self.alpha == 0 and self.beta == 0:
            raise ValueError("Expected `alpha` or `beta` to be positive, but got 0 for both.")

    @hookimpl
    def loss_terms(self, output: Any) -> dict[str, Tensor]:
        terms = {}
        if self.alpha:
            terms["ar"] = activation_regularization(output.sequence_output, output.lengths, self.alpha)
        if self.beta:
            terms["tar"] = temporal_activation_regularization(output.raw_sequence_output, output.lengths, self.beta)
        return terms
