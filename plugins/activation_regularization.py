"""Activation regularisation (AR) and temporal activation regularisation (TAR)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check
from lstm_plugins.model import lengths_on, valid_step_mask
from lstm_plugins.techniques import FloatRange, SearchValue


def _mean_over_valid_steps(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over features and valid steps of each sequence, then over sequences.

    Averaging per sequence first makes the value independent of padding, and the mean of
    per-process values under DDP (equal batch sizes) equal to the single-process value.
    """
    per_sequence = (values * mask.unsqueeze(-1)).sum(dim=(1, 2)) / (mask.sum(dim=1) * values.size(-1))
    return per_sequence.mean()


def activation_regularization(outputs: Tensor, lengths: Tensor, alpha: float) -> Tensor:
    """``alpha * mean(h ** 2)``: each sequence's mean over its valid steps, averaged over the batch.

    Example:
        >>> h = torch.tensor([[[1.0], [3.0], [99.0]], [[2.0], [0.0], [0.0]]])  # padded
        >>> activation_regularization(h, torch.tensor([2, 1]), alpha=2.0)  # 2 * (5 + 4) / 2
        tensor(9.)
    """
    mask = valid_step_mask(lengths, outputs.size(1), outputs.device)
    return alpha * _mean_over_valid_steps(outputs.square(), mask)


def temporal_activation_regularization(outputs: Tensor, lengths: Tensor, beta: float) -> Tensor:
    """``beta * mean((h_t - h_{t-1}) ** 2)`` over consecutive valid steps of each sequence,
    averaged over the sequences that have at least two steps.

    Example:
        >>> h = torch.tensor([[[1.0], [3.0], [99.0]]])
        >>> temporal_activation_regularization(h, torch.tensor([2]), beta=1.0)
        tensor(4.)
    """
    lengths = lengths_on(lengths, outputs.device)
    differences = (outputs[:, 1:] - outputs[:, :-1]).square()
    mask = valid_step_mask(lengths - 1, differences.size(1), outputs.device)
    pairs = mask.sum(dim=1)
    per_sequence = (differences * mask.unsqueeze(-1)).sum(dim=(1, 2)) / (pairs.clamp(min=1) * outputs.size(-1))
    has_pairs = (pairs > 0).to(outputs.dtype)
    # Sequences of length 1 have no pair and do not count; a batch of only those gives 0.
    return beta * (per_sequence * has_pairs).sum() / has_pairs.sum().clamp(min=1)


class ActivationRegularization(Technique):
    """Activation (AR) and temporal activation (TAR) regularisation as loss terms (Merity et al. 2017).

    AR, ``alpha * mean(h ** 2)``, is computed on the *dropped* LSTM outputs (after
    ``sequence_layers``, e.g. locked dropout) and keeps activations small; TAR,
    ``beta * mean((h_t - h_{t-1}) ** 2)``, on the *raw* outputs, penalises fast changes between
    steps. Padded steps never count: each sequence is averaged over its own valid steps, then
    sequences are averaged, so the terms do not depend on padding and DDP processes with equal
    batch sizes average to the single-process value. Logged as ``train/ar`` and ``train/tar``.

    Suggested values: AWD-LSTM uses ``alpha=2``, ``beta=1`` for language modelling; for
    classification start lower (``alpha=0.1``-``1``).

    Example:
        >>> ActivationRegularization(alpha=1.0, beta=0.5)
        ActivationRegularization(alpha=1.0, beta=0.5)
    """

    name = "activation_regularization"

    # Merity et al. (2018) use alpha=2, beta=1.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"alpha": FloatRange(0.1, 4.0, log=True),
                                                         "beta": FloatRange(0.1, 2.0, log=True)}

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
