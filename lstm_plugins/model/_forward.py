"""Variable-length batches through ``torch.nn.LSTM``'s fused kernel, exactly.

Exact means a sample's result never depends on padding or on its batch-mates. The fused kernel
is oneDNN (``mkldnn_rnn_layer``) on CPU and cuDNN on CUDA. The two need different inputs:

* CUDA: cuDNN takes a ``PackedSequence`` natively, so the batch is packed (lengths stay on the
  host: packing needs no device synchronisation).
* CPU: a ``PackedSequence`` makes PyTorch leave oneDNN for its unfused path (3-4x slower at
  JapaneseVowels shapes), so the padded batch is run instead. The forward direction at step ``t``
  only reads steps ``<= t``, so its outputs up to each sequence's last valid step are exact. The
  backward direction would start in the padding, so for a bidirectional LSTM every layer runs
  its two directions as separate fused calls on the module's own weights, the backward one on
  each sequence reversed *within its own length* (padding stays at the end), and its outputs are
  reversed back.

Weights can be replaced per call (``weights=``), which is how weight transforms such as
DropConnect act without leaving the fused kernel.

Both entry points check their input at the door (:func:`check_lstm_input`): a length outside
``[1, time]`` would otherwise read a padded step (0), step ``T - 2`` (-1) or fail deep inside
an index. The check never synchronises an accelerator: lengths on the CPU (the data modules'
batches keep them there) are checked on the host, which costs a few microseconds; on the CUDA
path they are copied to the host for packing anyway, and the check reads that copy; lengths on
another accelerator are checked with ``torch._assert_async`` (a device-side assert). Feature
values are not scanned for NaN here (a full pass over the batch each step): the data modules
refuse non-finite values when they are built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstm_plugins.model._checks import check_features, check_lengths
from lstm_plugins.toolkit import fast_dropout


class ForwardOutput(NamedTuple):
    """What the model computed for one batch; techniques receive it in ``loss_terms``."""

    logits: Tensor
    """The head's output: ``(batch, outputs)`` for a task with one answer per sequence,
    ``(batch, time, outputs)`` for a per-step task (sequence labelling, language modelling)."""
    final_features: Tensor
    """What the head read, after ``output_layers``: the ``(batch, hidden * directions)`` summary,
    or ``(batch, time, hidden * directions)`` for a per-step task."""
    sequence_output: Tensor
    """``(batch, time, hidden * directions)``: the last LSTM layer's outputs after
    ``sequence_layers`` (dropped outputs, when a technique drops them); padded steps are
    unspecified (mask them with ``lengths``)."""
    raw_sequence_output: Tensor
    """The same outputs before ``sequence_layers``."""
    lengths: Tensor
    """``(batch,)`` int64 valid lengths, on the CPU."""
    state: tuple[Tensor, Tensor] | None = None
    """The LSTM's final ``(h, c)``, each ``(layers * directions, batch, hidden)``, when the task
    carries state from batch to batch (language modelling); else ``None``."""


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


def gather_time(values: Tensor, index: Tensor) -> Tensor:
    """``values[b, index[b, t]]`` for ``(batch, time, features)`` values."""
    return values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.size(-1)))


def lengths_on(lengths: Tensor, device: torch.device | str) -> Tensor:
    """``lengths`` on ``device``, copied without making the host wait for the GPU.

    The data modules keep lengths on the host (packing reads them there). A plain ``.to("cuda")``
    of a host tensor synchronises the host with the GPU's queue after the copy, so every mask or
    index built from lengths would stall each training step; ``non_blocking`` only queues the copy
    (a pageable source is staged at once, so it may change afterwards). Only a copy from the host
    is queued: one towards the host must be waited for before its values are read.

    Example:
        >>> lengths_on(torch.tensor([3, 1]), "cpu")
        tensor([3, 1])
    """
    return lengths.to(device, non_blocking=lengths.device.type == "cpu")


def valid_step_mask(lengths: Tensor, max_length: int, device: torch.device | None = None) -> Tensor:
    """``(batch, time)`` bool mask of the valid (non-padded) steps.

    Example:
        >>> valid_step_mask(torch.tensor([2, 3]), 3).int()
        tensor([[1, 1, 0],
                [1, 1, 1]], dtype=torch.int32)
    """
    lengths = lengths_on(lengths, device) if device is not None else lengths
    return torch.arange(max_length, device=lengths.device) < lengths.unsqueeze(1)


def last_step_summary(sequence_output: Tensor, lengths: Tensor, bidirectional: bool) -> Tensor:
    """Each sequence's ``(hidden * directions)`` summary from the last layer's outputs.

    The forward direction is read at the last valid step; the backward direction at step 0, where
    it has read the whole sequence. This equals the LSTM's final hidden state ``h_n``.
    """
    lengths = lengths_on(lengths, sequence_output.device)
    rows = torch.arange(sequence_output.size(0), device=sequence_output.device)
    last = sequence_output[rows, lengths - 1]
    if not bidirectional:
        return last
    hidden = sequence_output.size(-1) // 2
    return torch.cat((last[:, :hidden], sequence_output[:, 0, hidden:]), dim=-1)


def _single_chunk(weights: Sequence[Tensor]) -> list[Tensor]:
    """Views of one contiguous buffer, so cuDNN uses transformed weights without copying them
    per call (and without its "not part of single contiguous chunk" warning)."""
    flat = torch.cat([w.reshape(-1) for w in weights])
    views, offset = [], 0
    for w in weights:
        views.append(flat[offset : offset + w.numel()].view_as(w))
        offset += w.numel()
    return views


def _run_packed(lstm: nn.LSTM, features: Tensor, lengths: Tensor, weights: Sequence[Tensor] | None) -> Tensor:
    packed = pack_padded_sequence(features, lengths.cpu(), batch_first=True, enforce_sorted=False)
    if weights is None:
        packed_output, _ = lstm(packed)
    else:
        directions = 2 if lstm.bidirectional else 1
        zeros = features.new_zeros(lstm.num_layers * directions, features.size(0), lstm.hidden_size)
        output_data = torch.lstm(
            packed.data, packed.batch_sizes, (zeros, zeros), _single_chunk(weights), lstm.bias,
            lstm.num_layers, float(lstm.dropout), lstm.training, lstm.bidirectional,
        )[0]
        packed_output = PackedSequence(output_data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    sequence_output, _ = pad_packed_sequence(packed_output, batch_first=True, total_length=features.size(1))
    return sequence_output


def _run_layerwise_bidirectional(
    lstm: nn.LSTM, features: Tensor, lengths: Tensor, weights: Sequence[Tensor]
) -> Tensor:
    batch, max_length = features.shape[:2]
    reverse_index = reverse_within_length_index(lengths, max_length)
    per_direction = len(weights) // (2 * lstm.num_layers)
    initial = features.new_zeros(1, batch, lstm.hidden_size)
    state = (initial, initial)
    layer_input = features
    for layer in range(lstm.num_layers):
        if layer > 0 and lstm.dropout > 0 and lstm.training:
            # torch.nn.LSTM's inter-layer dropout, applied where it applies it.
            layer_input = fast_dropout(layer_input, lstm.dropout)
        start = 2 * layer * per_direction
        forward_weights = weights[start : start + per_direction]
        backward_weights = weights[start + per_direction : start + 2 * per_direction]
        forward_output = torch.lstm(
            layer_input, state, forward_weights, lstm.bias, 1, 0.0, lstm.training, False, True
        )[0]
        backward_output = torch.lstm(
            gather_time(layer_input, reverse_index), state, backward_weights, lstm.bias, 1, 0.0,
            lstm.training, False, True,
        )[0]
        layer_input = torch.cat((forward_output, gather_time(backward_output, reverse_index)), dim=-1)
    return layer_input


def _drops_between_layers(lstm: nn.LSTM) -> bool:
    return lstm.training and lstm.num_layers > 1 and lstm.dropout > 0


def _run_layers_with_dropout(
    lstm: nn.LSTM, features: Tensor, state: tuple[Tensor, Tensor], weights: Sequence[Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.lstm`` one layer at a time (still the fused kernel), with the module's dropout
    between layers drawn by :func:`fast_dropout`: what torch does inside one multi-layer call on
    the CPU, except for the masks, which torch draws about 5x slower (``bernoulli_``)."""
    directions = 2 if lstm.bidirectional else 1
    per_layer = len(weights) // lstm.num_layers
    h0, c0 = state
    layer_input, finals_h, finals_c = features, [], []
    for layer in range(lstm.num_layers):
        if layer > 0:
            layer_input = fast_dropout(layer_input, lstm.dropout)
        rows = slice(layer * directions, (layer + 1) * directions)
        layer_input, h, c = torch.lstm(
            layer_input, (h0[rows], c0[rows]), list(weights[layer * per_layer : (layer + 1) * per_layer]),
            lstm.bias, 1, 0.0, True, lstm.bidirectional, True,
        )
        finals_h.append(h)
        finals_c.append(c)
    return layer_input, torch.cat(finals_h), torch.cat(finals_c)


def run_lstm(
    lstm: nn.LSTM, features: Tensor, lengths: Tensor, weights: Sequence[Tensor] | None = None
) -> Tensor:
    """Run a ``batch_first`` LSTM over a zero-padded batch on the fused kernel, exactly.

    Args:
        lstm: a ``torch.nn.LSTM`` with ``batch_first=True`` and no projection.
        features: ``(batch, time, input_size)`` zero-padded input.
        lengths: ``(batch,)`` int64 valid lengths, each in ``[1, time]``, preferably on the CPU.
            Checked (see :func:`check_lengths`): anything else raises a ``ValueError`` naming the
            first offending sample.
        weights: replacement for ``lstm._flat_weights`` (same order and shapes), for example
            weights with DropConnect applied; ``None`` uses the module's own.

    Returns:
        The last layer's ``(batch, time, hidden * directions)`` outputs; steps beyond a
        sequence's length are unspecified. :func:`last_step_summary` reads the final states.

    Example:
        >>> lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
        >>> output = run_lstm(lstm, torch.randn(2, 5, 3), torch.tensor([5, 2]))
        >>> tuple(output.shape), tuple(last_step_summary(output, torch.tensor([5, 2]), True).shape)
        ((2, 5, 8), (2, 8))
    """
    check_features(features, lstm)
    if features.is_cuda:
        lengths = lengths.cpu() if isinstance(lengths, Tensor) else lengths  # packing needs them there
        check_lengths(lengths, features.size(0), features.size(1))
        return _run_packed(lstm, features, lengths, weights)
    check_lengths(lengths, features.size(0), features.size(1))
    lengths = lengths_on(lengths, features.device)
    if weights is None:
        lstm._update_flat_weights()  # what nn.LSTM.forward does first: picks up replaced weights
    flat_weights = lstm._flat_weights if weights is None else list(weights)
    if lstm.bidirectional:
        return _run_layerwise_bidirectional(lstm, features, lengths, flat_weights)
    zeros = features.new_zeros(lstm.num_layers, features.size(0), lstm.hidden_size)
    if _drops_between_layers(lstm):
        return _run_layers_with_dropout(lstm, features, (zeros, zeros), flat_weights)[0]
    return torch.lstm(
        features, (zeros, zeros), flat_weights, lstm.bias, lstm.num_layers, 0.0, lstm.training, False, True
    )[0]


def run_lstm_from_state(
    lstm: nn.LSTM,
    features: Tensor,
    initial_state: tuple[Tensor, Tensor] | None,
    weights: Sequence[Tensor] | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Run a ``batch_first`` LSTM over an unpadded batch from a given state, on the fused kernel.

    For streams cut into consecutive chunks (truncated backpropagation through time): every
    sequence of the batch has the full length, so no packing or reversal is needed, and the
    final state of one chunk is the initial state of the next.

    Args:
        lstm: a ``torch.nn.LSTM`` with ``batch_first=True`` and no projection.
        features: ``(batch, time, input_size)``, every sequence of length ``time``.
        initial_state: ``(h, c)``, each ``(layers * directions, batch, hidden)``; ``None`` for zeros.
        weights: replacement for ``lstm._flat_weights`` (as in :func:`run_lstm`).

    Returns:
        The last layer's ``(batch, time, hidden * directions)`` outputs and the final ``(h, c)``.

    Example:
        >>> lstm = torch.nn.LSTM(3, 4, batch_first=True)
        >>> x = torch.randn(2, 6, 3)
        >>> whole, _ = run_lstm_from_state(lstm, x, None)
        >>> first, state = run_lstm_from_state(lstm, x[:, :4], None)
        >>> second, _ = run_lstm_from_state(lstm, x[:, 4:], state)
        >>> torch.allclose(torch.cat((first, second), 1), whole, atol=1e-6)
        True
    """
    check_features(features, lstm)
    if weights is None:
        lstm._update_flat_weights()
    flat_weights = lstm._flat_weights if weights is None else list(weights)
    if features.is_cuda and weights is not None:
        flat_weights = _single_chunk(flat_weights)
    if initial_state is None:
        directions = 2 if lstm.bidirectional else 1
        zeros = features.new_zeros(lstm.num_layers * directions, features.size(0), lstm.hidden_size)
        initial_state = (zeros, zeros)
    if features.device.type == "cpu" and _drops_between_layers(lstm):
        output, h, c = _run_layers_with_dropout(lstm, features, initial_state, flat_weights)
    else:
        output, h, c = torch.lstm(
            features, initial_state, flat_weights, lstm.bias, lstm.num_layers, float(lstm.dropout),
            lstm.training, lstm.bidirectional, True,
        )
    return output, (h, c)

