"""Sequence summaries: how the network turns the LSTM's ``(batch, time, features)`` outputs into
one ``(batch, features)`` vector per sequence, over valid steps only.

The network calls ``model.summary(sequence_output, lengths, bidirectional)``; the default is
:class:`LastStepSummary` (the LSTM's final hidden state). Padded steps never count: they are
masked before every reduction, so a sequence's summary does not depend on its batch-mates.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from lstm_plugins import validation as check
from lstm_plugins.model._forward import last_step_summary, lengths_on, valid_step_mask

__all__ = [
    "SUMMARY_MODES",
    "AttentionSummary",
    "LastStepSummary",
    "MaxSummary",
    "MeanSummary",
    "SummaryMode",
    "build_summary",
    "masked_max",
    "masked_mean",
]

SummaryMode = Literal["last", "mean", "max", "attention"]
SUMMARY_MODES: tuple[str, ...] = get_args(SummaryMode)


def _mask(values: Tensor, lengths: Tensor) -> Tensor:
    """``(batch, time, 1)`` bool mask of the valid steps, on ``values``' device."""
    return valid_step_mask(lengths_on(lengths, values.device), values.size(1)).unsqueeze(-1)


def masked_mean(values: Tensor, lengths: Tensor) -> Tensor:
    """Mean of ``(batch, time, features)`` values over each sequence's valid steps.

    Example:
        >>> values = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
        >>> masked_mean(values, torch.tensor([2, 3]))
        tensor([[2.],
                [4.]])
    """
    mask = _mask(values, lengths)
    # where, not multiply: a padded step holding inf or NaN must not reach the sum.
    total = torch.where(mask, values, torch.zeros_like(values)).sum(1)
    return (total.float() / mask.sum(1)).to(values.dtype)  # counts above 256 are inexact in bfloat16


def masked_max(values: Tensor, lengths: Tensor) -> Tensor:
    """Maximum of ``(batch, time, features)`` values over each sequence's valid steps.

    Example:
        >>> values = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [-6.0]]])
        >>> masked_max(values, torch.tensor([2, 3]))
        tensor([[3.],
                [4.]])
    """
    mask = _mask(values, lengths)
    return torch.where(mask, values, torch.full_like(values, float("-inf"))).amax(1)


class LastStepSummary(nn.Module):
    """The default summary: the forward direction's output at the last valid step and, when
    bidirectional, the backward direction's at step 0 (the LSTM's final hidden state ``h_n``).

    Example:
        >>> summary = LastStepSummary()
        >>> values = torch.arange(6.0).reshape(1, 3, 2)
        >>> summary(values, torch.tensor([2]), False), summary(values, torch.tensor([2]), True)
        (tensor([[2., 3.]]), tensor([[2., 1.]]))
    """

    def forward(self, sequence_output: Tensor, lengths: Tensor, bidirectional: bool) -> Tensor:
        return last_step_summary(sequence_output, lengths, bidirectional)


class MeanSummary(nn.Module):
    """Mean of the outputs (both directions) over each sequence's valid steps.

    Example:
        >>> MeanSummary()(torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([2]), False)
        tensor([[2.]])
    """

    def forward(self, sequence_output: Tensor, lengths: Tensor, bidirectional: bool) -> Tensor:
        return masked_mean(sequence_output, lengths)


class MaxSummary(nn.Module):
    """Maximum of each output unit (both directions) over each sequence's valid steps.

    Example:
        >>> MaxSummary()(torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([2]), False)
        tensor([[3.]])
    """

    def forward(self, sequence_output: Tensor, lengths: Tensor, bidirectional: bool) -> Tensor:
        return masked_max(sequence_output, lengths)


class AttentionSummary(nn.Module):
    """Attention pooling: a learned score per step, softmax over the valid steps only, and the
    weighted sum of the outputs (Yang et al. 2016's word attention, one context vector).

    ``score_t = context · tanh(W h_t + b)``; ``weights = softmax(score)`` over valid steps (padded
    steps get weight exactly 0); the summary is ``sum_t weights_t h_t``. Both directions of a
    bidirectional LSTM are read at every valid step. :meth:`weights` returns the ``(batch, time)``
    weights, for inspection.

    Args:
        features: units of the outputs it reads (``hidden_size * directions``).
        attention_size: units of the scoring layer; ``None`` for ``features``.

    Example:
        >>> summary = AttentionSummary(4)
        >>> values = torch.randn(2, 5, 4)
        >>> weights = summary.weights(values, torch.tensor([5, 2]))
        >>> weights[1, 2:].tolist(), torch.allclose(weights.sum(1), torch.ones(2))
        ([0.0, 0.0, 0.0], True)
        >>> tuple(summary(values, torch.tensor([5, 2]), False).shape)
        (2, 4)
    """

    def __init__(self, features: int, attention_size: int | None = None) -> None:
        super().__init__()
        check.positive_int("features", features)
        attention_size = features if attention_size is None else check.positive_int("attention_size", attention_size)
        self.projection = nn.Linear(features, attention_size)
        self.context = nn.Linear(attention_size, 1, bias=False)

    def weights(self, sequence_output: Tensor, lengths: Tensor) -> Tensor:
        """The ``(batch, time)`` attention weights; 0 at padded steps, summing to 1 per sequence."""
        scores = self.context(torch.tanh(self.projection(sequence_output))).squeeze(-1)
        mask = _mask(sequence_output, lengths).squeeze(-1)
        return torch.where(mask, scores, torch.full_like(scores, float("-inf"))).softmax(-1)

    def forward(self, sequence_output: Tensor, lengths: Tensor, bidirectional: bool) -> Tensor:
        weights = self.weights(sequence_output, lengths)
        # where: a padded step's output (unspecified, possibly non-finite) times 0 must stay 0.
        mask = _mask(sequence_output, lengths)
        values = torch.where(mask, sequence_output, torch.zeros_like(sequence_output))
        return torch.einsum("bt,btf->bf", weights, values)


def build_summary(mode: SummaryMode, features: int, attention_size: int | None = None) -> nn.Module:
    """The summary module for ``mode`` (``"last"``, ``"mean"``, ``"max"`` or ``"attention"``),
    reading ``features`` units per step.

    Example:
        >>> build_summary("attention", 8)
        AttentionSummary(
          (projection): Linear(in_features=8, out_features=8, bias=True)
          (context): Linear(in_features=8, out_features=1, bias=False)
        )
    """
    mode = check.choice("mode", mode, SUMMARY_MODES)
    if mode == "attention":
        return AttentionSummary(features, attention_size)
    if attention_size is not None:
        raise ValueError(f"Expected `attention_size` to be None for the `{mode}` summary, but got {attention_size}.")
    return {"last": LastStepSummary, "mean": MeanSummary, "max": MaxSummary}[mode]()
