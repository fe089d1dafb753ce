"""Zoneout: each LSTM unit keeps its previous cell and hidden value at random (Krueger et al. 2016).

Zoneout is the one built-in technique that leaves ``torch.nn.LSTM``'s fused kernel: the random
choice is made inside the recurrence, at every step, so the LSTM runs as a per-step loop of
plain PyTorch operations. It fills the model's ``recurrence`` slot and warns once per process
that it is slower.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check
from lstm_plugins.model import gather_time, lengths_on, reverse_within_length_index
from lstm_plugins.techniques import FloatRange, SearchValue
from lstm_plugins.toolkit import fast_dropout

__all__ = ["Zoneout", "ZoneoutRecurrence", "zoneout"]

SLOWDOWN = 3
"""Measured slowdown of :func:`zoneout` against the fused path, rounded (forward + backward,
CPU, one thread, torch 2.13, batch 16, length 29, 12 features, hidden 64, bidirectional)."""

_warned_slow = False  # the slowdown warning is given once per process


def _zoneout_weights(
    probability: float, training: bool, shape: tuple[int, ...], like: Tensor
) -> Sequence[Tensor] | Sequence[float]:
    """Per-step interpolation weights towards the previous state: in training, a 0/1 mask per
    step (1 keeps the previous value, with ``probability``); in evaluation, ``probability``."""
    if not training or probability == 0.0:
        return [probability] * shape[0]
    keep = torch.rand(shape, device=like.device) < probability
    return keep.to(like.dtype).unbind(0)


def zoneout(
    lstm_input: Tensor,
    lengths: Tensor,
    lstm: nn.LSTM,
    weights: Sequence[Tensor] | None = None,
    cell: float = 0.15,
    hidden: float = 0.05,
    training: bool = True,
) -> Tensor:
    """Run ``lstm`` over a zero-padded batch with zoneout, step by step, exactly.

    At every step ``t`` the LSTM computes its candidate states from the previous ones, gates in
    ``torch.nn.LSTM``'s order (input ``i``, forget ``f``, cell ``g``, output ``o``)::

        c~_t = f * c_{t-1} + i * g
        h~_t = o * tanh(c~_t)

    and each unit then keeps its previous value with probability ``cell`` (for ``c``) or
    ``hidden`` (for ``h``)::

        training:   c_t = d_c * c_{t-1} + (1 - d_c) * c~_t,   d_c ~ Bernoulli(cell)
                    h_t = d_h * h_{t-1} + (1 - d_h) * h~_t,   d_h ~ Bernoulli(hidden)
        evaluation: c_t = cell * c_{t-1} + (1 - cell) * c~_t
                    h_t = hidden * h_{t-1} + (1 - hidden) * h~_t

    with a fresh mask per sample, per unit and per step, as in the paper and its reference
    implementation (``h~_t`` is computed from ``c~_t``, before ``c`` is zoned out). The output at
    step ``t`` is ``h_t``. States start at zero. Every layer and both directions are zoned out;
    between stacked layers, ``torch.nn.LSTM``'s own inter-layer dropout (``lstm.dropout``)
    applies when ``training``. With ``cell = hidden = 0`` this is the plain LSTM.

    Variable length is exact: the forward direction reads steps ``0 .. length - 1`` and the
    backward direction reads each sequence reversed within its own length, so a sequence's
    outputs and gradients never depend on padding or, in evaluation, on its batch-mates.

    Random numbers, for reproducibility: per layer, the inter-layer dropout mask (when it
    applies), then one ``torch.rand((time, directions, batch, hidden_size))`` for the cell masks
    (``< cell`` keeps the previous value) and one for the hidden masks, each drawn only when its
    probability is positive; ``[t, 1]`` is the backward direction's ``t``-th step (position
    ``length - 1 - t``).

    This is a per-step loop of plain PyTorch operations, off the fused kernel: measured about
    3x slower than :func:`lstm_plugins.model.run_lstm` for forward + backward at JapaneseVowels
    shapes on CPU (batch 16, length 29, 12 features, hidden 64, bidirectional); see
    :class:`Zoneout`.

    Args:
        lstm_input: ``(batch, time, input_size)`` zero-padded input.
        lengths: ``(batch,)`` int64 valid lengths, each in ``[1, time]``.
        lstm: a ``torch.nn.LSTM`` without projection; its configuration (layers, directions,
            bias, inter-layer dropout) and, unless ``weights`` is given, its weights are used.
        weights: replacement for ``lstm._flat_weights`` (same order and shapes: per layer, per
            direction, ``w_ih, w_hh, b_ih, b_hh``), for example weights with DropConnect applied.
        cell: probability that a unit of the cell state keeps its previous value, in ``[0, 1)``.
        hidden: probability that a unit of the hidden state keeps its previous value, in
            ``[0, 1)``.
        training: draw random masks (``True``) or use the expectation (``False``).

    Returns:
        The last layer's ``(batch, time, hidden_size * directions)`` outputs; steps beyond a
        sequence's length are unspecified.

    Example:
        >>> import torch
        >>> from lstm_plugins.model import run_lstm
        >>> lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
        >>> features, lengths = torch.randn(2, 5, 3), torch.tensor([5, 2])
        >>> tuple(zoneout(features, lengths, lstm).shape)
        (2, 5, 8)
        >>> plain = zoneout(features, lengths, lstm, cell=0.0, hidden=0.0)
        >>> torch.allclose(plain[0], run_lstm(lstm, features, lengths)[0], atol=1e-6)
        True
    """
    cell = check.probability("cell", cell)
    hidden = check.probability("hidden", hidden)
    training = check.boolean("training", training)
    if lstm.proj_size > 0:
        raise ValueError(
            f"Expected an LSTM without projection for zoneout, but got `proj_size`={lstm.proj_size}."
        )
    if lstm_input.dim() != 3 or lstm_input.size(-1) != lstm.input_size:
        raise ValueError(
            f"Expected `lstm_input` of shape (batch, time, {lstm.input_size}), "
            f"but got {tuple(lstm_input.shape)}."
        )
    if weights is None:
        lstm._update_flat_weights()  # what nn.LSTM.forward does first: picks up replaced weights
        weights = lstm._flat_weights
    weights = list(weights)
    directions = 2 if lstm.bidirectional else 1
    per_direction = 4 if lstm.bias else 2
    if len(weights) != lstm.num_layers * directions * per_direction:
        raise ValueError(
            f"Expected {lstm.num_layers * directions * per_direction} LSTM weights "
            f"(per layer, per direction: w_ih, w_hh{', b_ih, b_hh' if lstm.bias else ''}), "
            f"but got {len(weights)}."
        )

    batch, time = lstm_input.shape[:2]
    size = lstm.hidden_size
    lengths = lengths_on(lengths, lstm_input.device)
    reverse_index = reverse_within_length_index(lengths, time) if directions == 2 else None
    order = torch.cat(
        [torch.arange(0, 2 * size), torch.arange(3 * size, 4 * size), torch.arange(2 * size, 3 * size)]
    ).to(lstm_input.device)
    layer_input = lstm_input
    for layer in range(lstm.num_layers):
        if layer > 0 and lstm.dropout > 0 and training:
            # torch.nn.LSTM's inter-layer dropout, applied where it applies it.
            layer_input = fast_dropout(layer_input, lstm.dropout)
        # Gate rows reordered from torch's (i, f, g, o) to (i, f, o, g), so each step splits the
        # gates once into a sigmoid part and a tanh part. Input projections of every step and
        # both directions are computed at once: (time, directions, batch, 4H).
        projected = []
        recurrent = []
        for direction in range(directions):
            start = (layer * directions + direction) * per_direction
            w_ih, w_hh = weights[start].index_select(0, order), weights[start + 1].index_select(0, order)
            inputs = layer_input if direction == 0 else gather_time(layer_input, reverse_index)
            projection = inputs @ w_ih.t()
            if lstm.bias:
                projection = projection + (weights[start + 2] + weights[start + 3]).index_select(0, order)
            projected.append(projection)
            recurrent.append(w_hh.t())
        # unbind, not indexing, in the loop: its backward is one stack instead of a zero-filled
        # full-size gradient per step.
        step_inputs = torch.stack(projected).permute(2, 0, 1, 3).unbind(0)
        recurrent_weights = torch.stack(recurrent)  # (directions, H, 4H)
        cell_weights = _zoneout_weights(cell, training, (time, directions, batch, size), lstm_input)
        hidden_weights = _zoneout_weights(hidden, training, (time, directions, batch, size), lstm_input)

        h = lstm_input.new_zeros(directions, batch, size)
        c = lstm_input.new_zeros(directions, batch, size)
        outputs = []
        for t in range(time):
            gates = torch.baddbmm(step_inputs[t], h, recurrent_weights)
            sigmoid_gates, g = gates.split((3 * size, size), dim=-1)
            i, f, o = sigmoid_gates.sigmoid().chunk(3, dim=-1)
            c_new = torch.addcmul(f * c, i, g.tanh())
            h_new = o * c_new.tanh()
            # lerp(new, previous, w): exactly `new` at w = 0 and `previous` at w = 1.
            c = c_new if cell == 0.0 else torch.lerp(c_new, c, cell_weights[t])
            h = h_new if hidden == 0.0 else torch.lerp(h_new, h, hidden_weights[t])
            outputs.append(h)
        sequence = torch.stack(outputs, dim=2)  # (directions, batch, time, H)
        if directions == 1:
            layer_input = sequence[0]
        else:
            layer_input = torch.cat((sequence[0], gather_time(sequence[1], reverse_index)), dim=-1)
    return layer_input


class ZoneoutRecurrence(nn.Module):
    """The model's ``recurrence`` slot filled with :func:`zoneout`.

    Called as ``recurrence(lstm_input, lengths, lstm, weights)``; draws masks in ``train()``
    mode and uses the expectation in ``eval()`` mode. Holds no parameters, so the model's
    ``state_dict`` is that of a plain LSTM.

    Example:
        >>> ZoneoutRecurrence(cell=0.5, hidden=0.05)
        ZoneoutRecurrence(cell=0.5, hidden=0.05)
    """

    def __init__(self, cell: float = 0.15, hidden: float = 0.05) -> None:
        super().__init__()
        self.cell = check.probability("cell", cell)
        self.hidden = check.probability("hidden", hidden)

    def forward(
        self, lstm_input: Tensor, lengths: Tensor, lstm: nn.LSTM, weights: Sequence[Tensor] | None = None
    ) -> Tensor:
        return zoneout(
            lstm_input, lengths, lstm, weights, cell=self.cell, hidden=self.hidden, training=self.training
        )

    def extra_repr(self) -> str:
        return f"cell={self.cell}, hidden={self.hidden}"


class Zoneout(Technique):
    """Zoneout on the LSTM's cell and hidden states (per-step loop, off the fused kernel).

    At every step each unit of the cell state keeps its previous value with probability ``cell``
    and each unit of the hidden state with probability ``hidden``, instead of taking its new
    value; a new mask is drawn per sample, unit and step in training, and the expectation is used
    in ``eval()`` mode (see :func:`zoneout`). Like dropout it regularises, but it keeps the
    gradient flowing through time along the identity. All layers and both directions are zoned
    out; ``lstm.dropout`` (from :class:`Dropout`'s ``between_layers``) still applies between
    stacked layers.

    Reference: D. Krueger, T. Maharaj, J. Kramár, M. Pezeshki, N. Ballas, N. R. Ke, A. Goyal,
    Y. Bengio, A. Courville, C. Pal, "Zoneout: Regularizing RNNs by Randomly Preserving Hidden
    Activations", ICLR 2017 (arXiv:1606.01305).

    Suggested values: ``cell=0.5, hidden=0.05`` as in the paper for character-level Penn
    Treebank; ``cell=0.15, hidden=0.05`` (the default) is a common choice for word-level models.

    Slower: zoneout cannot run on ``torch.nn.LSTM``'s fused kernel, so the model's
    ``recurrence`` slot runs a per-step loop of plain PyTorch operations (exclusive slot
    ``"recurrence"``: it cannot be stacked with another off-kernel recurrence). Measured on CPU
    (torch 2.13, one thread; batch 16, length 29, 12 features, hidden 64, bidirectional): a
    training step's forward + backward is about 3x slower than on the fused path (median
    ratio 2.8-3.2x over interleaved repeats; fastest runs 2.5 ms fused vs 7.8 ms zoneout), and
    inference about 2.5x slower (0.7 ms vs 1.8 ms). The gap on GPU, where cuDNN runs each
    layer in one kernel, was not measured and is likely larger. Enabling it warns once per
    process.

    Args:
        cell: probability that a cell-state unit keeps its previous value, in ``[0, 1)``.
        hidden: probability that a hidden-state unit keeps its previous value, in ``[0, 1)``.

    Example:
        >>> Zoneout(cell=0.5)
        Zoneout(cell=0.5, hidden=0.05)
    """

    name = "zoneout"
    exclusive = "recurrence"

    # Krueger et al. (2017): cells 0.05-0.5, hidden states 0.05 (0-0.3 searched).
    search_space: ClassVar[Mapping[str, SearchValue]] = {"cell": FloatRange(0.05, 0.5), "hidden": FloatRange(0.0, 0.3)}

    def __init__(self, cell: float = 0.15, hidden: float = 0.05) -> None:
        self.cell = check.probability("cell", cell)
        self.hidden = check.probability("hidden", hidden)

    @hookimpl
    def configure_network(self, model: Any) -> None:
        global _warned_slow
        if getattr(model, "recurrence", None) is not None:
            raise ValueError(
                f"Technique `{self.name}` needs the model's `recurrence` slot, but it already holds "
                f"{model.recurrence!r}. Keep one of them."
            )
        model.recurrence = ZoneoutRecurrence(self.cell, self.hidden)
        if not _warned_slow:
            _warned_slow = True
            warnings.warn(
                f"Zoneout runs the LSTM as a per-step loop off the fused kernel (cuDNN/oneDNN): "
                f"training and inference are about {SLOWDOWN}x slower than without it.",
                UserWarning,
                stacklevel=2,
            )
