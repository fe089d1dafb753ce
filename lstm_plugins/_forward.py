"""Variable-length batches through ``torch.nn.LSTM`` on its fused kernel, exactly.

Exact means a sample's result never depends on padding or on its batch-mates. The fused kernel
is oneDNN (``mkldnn_rnn_layer``) on CPU and cuDNN on CUDA. The two need different inputs:

* CUDA: cuDNN takes a ``PackedSequence`` natively, so the batch is packed (lengths stay on the
  host: packing needs no device synchronisation).
* CPU: a ``PackedSequence`` makes PyTorch leave oneDNN for its unfused path (3-4x slower at
  JapaneseVowels shapes), so the padded batch is run instead. The forward direction at step ``t``
  only reads steps ``<= t``, so its output gathered at each sequence's last valid step is exact.
  The backward direction would start in the padding, so for a bidirectional LSTM every layer runs
  its two directions as separate fused calls on the module's own weights, the backward one on
  each sequence reversed *within its own length* (padding stays at the end), and its outputs are
  reversed back.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class ForwardOutput(NamedTuple):
    """What the model computed for one batch; techniques receive it in ``loss_terms``."""

    logits: Tensor
    """``(batch, num_classes)`` scores before the softmax."""
    final_features: Tensor
    """``(batch, hidden * directions)``: the summary fed to the head, after ``output_layers``."""
    sequence_output: Tensor
    """``(batch, time, hidden * directions)``: the last LSTM layer's outputs; padded steps are
    unspecified (mask them with ``lengths``)."""
    lengths: Tensor
    """``(batch,)`` int64 valid lengths, on the CPU."""


def reverse_within_length_index(lengths: Tensor, max_length: int) -> Tensor:
    """Index ``(batch, time)`` that reverses each sequence within its length; padding stays put.

    The permutation is its own inverse, so the same index reverses outputs back.

    Example:
        >>> reverse_within_length_index(torch.tensor([3, 1]), 4)
        tensor([[2, 1, 0, 3],
                [0, 1, 2, 3]])
    """
    steps = torch.arange(max_length, device=lengths.device)
    reversed_steps = lengths.unsqueeze(1) - 1 - steps
    return torch.where(reversed_steps >= 0, reversed_steps, steps)


def _gather_time(values: Tensor, index: Tensor) -> Tensor:
    return values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.size(-1)))


def _last_valid(values: Tensor, lengths: Tensor) -> Tensor:
    return values[torch.arange(values.size(0), device=values.device), lengths - 1]


def _run_packed(lstm: nn.LSTM, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    packed = pack_padded_sequence(features, lengths.cpu(), batch_first=True, enforce_sorted=False)
    packed_output, (hidden, _) = lstm(packed)
    sequence_output, _ = pad_packed_sequence(
        packed_output, batch_first=True, total_length=features.size(1)
    )
    if lstm.bidirectional:
        final = torch.cat((hidden[-2], hidden[-1]), dim=-1)
    else:
        final = hidden[-1]
    return sequence_output, final


def _run_layerwise_bidirectional(
    lstm: nn.LSTM, features: Tensor, lengths: Tensor
) -> tuple[Tensor, Tensor]:
    batch, max_length = features.shape[:2]
    reverse_index = reverse_within_length_index(lengths.to(features.device), max_length)
    weights = lstm._flat_weights
    per_direction = len(weights) // (2 * lstm.num_layers)
    initial = features.new_zeros(1, batch, lstm.hidden_size)
    hidden_state = (initial, initial)
    layer_input = features
    for layer in range(lstm.num_layers):
        if layer > 0 and lstm.dropout > 0 and lstm.training:
            # torch.nn.LSTM's inter-layer dropout, applied where it applies it.
            layer_input = torch.nn.functional.dropout(layer_input, lstm.dropout, training=True)
        start = 2 * layer * per_direction
        forward_weights = weights[start : start + per_direction]
        backward_weights = weights[start + per_direction : start + 2 * per_direction]
        forward_output = torch.lstm(
            layer_input, hidden_state, forward_weights, lstm.bias, 1, 0.0, lstm.training, False, True
        )[0]
        backward_output = torch.lstm(
            _gather_time(layer_input, reverse_index),
            hidden_state,
            backward_weights,
            lstm.bias,
            1,
            0.0,
            lstm.training,
            False,
            True,
        )[0]
        if layer == lstm.num_layers - 1:
            # The backward direction's summary is its state after reading the whole sequence:
            # its last valid step in the reversed frame.
            final = torch.cat(
                (_last_valid(forward_output, lengths), _last_valid(backward_output, lengths)), dim=-1
            )
        layer_input = torch.cat((forward_output, _gather_time(backward_output, reverse_index)), dim=-1)
    return layer_input, final


def run_lstm(lstm: nn.LSTM, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Run a ``batch_first`` LSTM over a padded batch on the fused kernel, exactly.

    Args:
        lstm: a ``torch.nn.LSTM`` with ``batch_first=True`` and no projection.
        features: ``(batch, time, input_size)`` zero-padded input.
        lengths: ``(batch,)`` int64 valid lengths, each in ``[1, time]``, preferably on the CPU.

    Returns:
        ``(sequence_output, final)``: the last layer's ``(batch, time, hidden * directions)``
        outputs and each sequence's ``(batch, hidden * directions)`` summary (the forward
        direction at the last valid step, and the backward direction after reading back to step 0).

    Example:
        >>> lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
        >>> sequence_output, final = run_lstm(lstm, torch.randn(2, 5, 3), torch.tensor([5, 2]))
        >>> tuple(sequence_output.shape), tuple(final.shape)
        ((2, 5, 8), (2, 8))
    """
    if features.is_cuda:
        return _run_packed(lstm, features, lengths)
    lengths = lengths.to(features.device)
    if lstm.bidirectional:
        return _run_layerwise_bidirectional(lstm, features, lengths)
    sequence_output, _ = lstm(features)
    return sequence_output, _last_valid(sequence_output, lengths)
