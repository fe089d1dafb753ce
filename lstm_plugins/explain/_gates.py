"""Gate activations over time for one sequence, from the weights the fused kernel uses."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from lstm_plugins.explain._mode import explained

__all__ = ["GateActivations", "gate_activations"]


class GateActivations(NamedTuple):
    """One LSTM layer and direction over one sequence; each field is ``(length, hidden)``,
    indexed by the sequence's own step (the backward direction's too).

    Example:
        >>> GateActivations._fields
        ('layer', 'direction', 'input', 'forget', 'cell_candidate', 'output', 'cell', 'hidden')
    """

    layer: int
    direction: str
    """``"forward"`` or ``"backward"``."""
    input: Tensor
    """Input gate ``i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)``."""
    forget: Tensor
    """Forget gate ``f_t``."""
    cell_candidate: Tensor
    """Cell candidate ``g_t = tanh(...)``."""
    output: Tensor
    """Output gate ``o_t``."""
    cell: Tensor
    """Cell state ``c_t = f_t * c_{t-1} + i_t * g_t``."""
    hidden: Tensor
    """Hidden output ``h_t = o_t * tanh(c_t)``."""


def _kernel_weights(model: Any) -> list[Tensor]:
    transformed = model.lstm_weights()
    if transformed is not None:
        return list(transformed)
    model.lstm._update_flat_weights()  # what the kernel call does first
    return list(model.lstm._flat_weights)


def _run_direction(inputs: Tensor, weights: list[Tensor], bias: bool) -> tuple[Tensor, ...]:
    weight_ih, weight_hh = weights[0], weights[1]
    bias_sum = weights[2] + weights[3] if bias else inputs.new_zeros(weight_ih.size(0))
    hidden_size = weight_hh.size(1)
    h = inputs.new_zeros(hidden_size)
    c = inputs.new_zeros(hidden_size)
    projected = inputs @ weight_ih.T + bias_sum  # the input half of every step at once
    rows: list[tuple[Tensor, ...]] = []
    for step in range(inputs.size(0)):
        # PyTorch's gate order in the stacked weights: input, forget, cell candidate, output.
        i, f, g, o = (projected[step] + weight_hh @ h).chunk(4)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c = f * c + i * g
        h = o * c.tanh()
        rows.append((i, f, g, o, c, h))
    return tuple(torch.stack(column) for column in zip(*rows))


def gate_activations(model: Any, features: Tensor | np.ndarray, length: int | None = None) -> list[GateActivations]:
    """Input, forget and output gates, the cell candidate, cell state and hidden output of every
    layer and direction over one sequence, computed step by step in Python from the weights the
    fused kernel is given (``model.lstm_weights()``: weight transforms applied; else the LSTM's
    own), in evaluation mode.

    The last layer's ``hidden`` equals the kernel's outputs (the backward direction read within
    the sequence's length, as the model reads it). When a technique sets ``model.sequence_view``
    (the LSTM-FCN's dimension shuffle, say), the steps are those the LSTM reads.

    Args:
        model: a :class:`lstm_plugins.SequenceModel` reading float features (``input_layers``
            run first, as in the model); refused when a technique replaces the recurrence.
        features: ``(time, input_size)`` features of one sequence, as the model reads them.
        length: its valid length (``None``: all ``time`` steps).

    Returns:
        One :class:`GateActivations` per layer and direction: layer 0 forward, layer 0 backward
        (when bidirectional), layer 1 forward, ...

    Example:
        >>> import torch
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(2, 3, hidden_size=4, bidirectional=True)
        >>> gates = gate_activations(model, torch.randn(6, 2), length=5)
        >>> [(g.layer, g.direction, tuple(g.forget.shape)) for g in gates]
        [(0, 'forward', (5, 4)), (0, 'backward', (5, 4))]
    """
    if getattr(model, "recurrence", None) is not None:
        raise ValueError(
            f"`gate_activations` reads the fused LSTM, but a technique replaces its recurrence ({model.recurrence!r})."
        )
    if getattr(model, "embedding", None) is not None:
        raise ValueError("`gate_activations` reads float features, but the model reads token ids (`num_embeddings`).")
    features = torch.as_tensor(features)
    if not features.is_floating_point() or features.dim() != 2 or features.size(-1) != model.input_size:
        raise ValueError(
            f"Expected `features` of one sequence, of shape (time, {model.input_size}), "
            f"but got shape {tuple(features.shape)} of dtype {features.dtype}."
        )
    length = features.size(0) if length is None else int(length)
    if not 1 <= length <= features.size(0):
        raise ValueError(f"Expected `length` in [1, {features.size(0)}], but got {length}.")
    parameter = next(model.parameters())
    features = features[:length].to(parameter.device, parameter.dtype)
    lstm = model.lstm
    directions = ("forward", "backward") if lstm.bidirectional else ("forward",)
    per_direction = 4 if lstm.bias else 2
    result: list[GateActivations] = []
    with explained(model), torch.no_grad():
        weights = _kernel_weights(model)
        layer_input = model.input_layers(features.unsqueeze(0))
        view = getattr(model, "sequence_view", None)
        if view is not None:  # the LSTM reads other steps (a dimension shuffle): gate those
            layer_input, read = view(layer_input, torch.tensor([length]))
            layer_input = layer_input[:, : int(read[0])]
        layer_input = layer_input.squeeze(0)
        for layer in range(lstm.num_layers):
            outputs = []
            for index, direction in enumerate(directions):
                start = (layer * len(directions) + index) * per_direction
                own = weights[start : start + per_direction]
                steps = layer_input if direction == "forward" else layer_input.flip(0)
                columns = _run_direction(steps, own, lstm.bias)
                if direction == "backward":
                    columns = tuple(column.flip(0) for column in columns)
                result.append(GateActivations(layer, direction, *columns))
                outputs.append(columns[-1])
            layer_input = torch.cat(outputs, dim=-1)
    return result
