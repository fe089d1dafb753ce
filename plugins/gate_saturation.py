"""Gate saturation: the fraction of input- and forget-gate activations stuck near 0 or 1.

A saturated sigmoid passes almost no gradient to its pre-activation, so a gate that sits near
0 or 1 for most steps has stopped learning; a forget gate near 1 is also what carries
information, and gradient, across many steps. The fractions are measured layer by layer and
direction by direction, from each layer's input and its outputs ``h_{t-1}`` with the LSTM's own
weights, under ``torch.no_grad()``, on valid (non-padded) steps only.

Gate order in ``torch.nn.LSTM`` is input, forget, cell, output: the pre-activations are
``W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``, split in four blocks of ``hidden_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lstm_plugins import Technique, hookimpl, toolkit
from lstm_plugins import validation as check
from lstm_plugins.model import gather_time, lengths_on, reverse_within_length_index, valid_step_mask

__all__ = ["GateSaturation", "gate_saturation", "measure_gate_saturation"]


def _layer_gate_saturation(
    layer_input: Tensor, weights: Sequence[Tensor], has_bias: bool, margin: float, valid: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer and direction: its outputs and the saturated fractions of its input and forget
    gates over the ``valid`` steps."""
    weight_ih, weight_hh = weights[0], weights[1]
    hidden_size = weight_hh.size(1)
    initial = layer_input.new_zeros(1, layer_input.size(0), hidden_size)
    output = torch.lstm(
        layer_input, (initial, initial), list(weights), has_bias, 1, 0.0, False, False, True
    )[0]
    previous = torch.cat((initial.transpose(0, 1), output[:, :-1]), dim=1)  # h_{t-1}, h_{-1} = 0
    pre = layer_input @ weight_ih.t() + previous @ weight_hh.t()
    if has_bias:
        pre = pre + weights[2] + weights[3]
    gates = torch.sigmoid(pre[..., : 2 * hidden_size])
    saturated = ((gates < margin) | (gates > 1.0 - margin)).to(layer_input.dtype)
    valid = valid.to(layer_input.dtype).unsqueeze(-1)
    count = (valid.sum() * hidden_size).clamp_min(1.0)
    input_gate = (saturated[..., :hidden_size] * valid).sum() / count
    forget_gate = (saturated[..., hidden_size:] * valid).sum() / count
    return output, input_gate, forget_gate


def gate_saturation(
    lstm: nn.LSTM,
    inputs: Tensor,
    lengths: Tensor,
    margin: float = 0.05,
    weights: Sequence[Tensor] | None = None,
) -> dict[str, Tensor]:
    """Fractions of input- and forget-gate activations below ``margin`` or above ``1 - margin``.

    Each layer (and, when bidirectional, each direction) is run on its own with
    ``torch.lstm(..., num_layers=1)`` on the LSTM's weights, under ``torch.no_grad()`` and
    without inter-layer dropout, on the padded batch: the backward direction reads each
    sequence reversed within its own length, so only valid steps count and padding never does.

    Args:
        lstm: a ``batch_first`` ``torch.nn.LSTM`` without projections.
        inputs: ``(batch, time, input_size)`` zero-padded input of the first layer.
        lengths: ``(batch,)`` valid lengths.
        margin: a gate activation below ``margin`` or above ``1 - margin`` is saturated.
        weights: replacement for ``lstm._flat_weights`` (as in :func:`lstm_plugins.model.run_lstm`).

    Returns:
        ``{"layer{k}[_reverse]/input": fraction, "layer{k}[_reverse]/forget": fraction}``: scalar
        tensors on the input's device, averaged over units and valid steps.

    Example:
        >>> lstm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)
        >>> fractions = gate_saturation(lstm, torch.randn(2, 5, 3), torch.tensor([5, 3]))
        >>> sorted(fractions)[:4]
        ['layer0/forget', 'layer0/input', 'layer0_reverse/forget', 'layer0_reverse/input']
        >>> all(0.0 <= float(value) <= 1.0 for value in fractions.values())
        True
    """
    if not lstm.batch_first or getattr(lstm, "proj_size", 0):
        raise ValueError("Expected a `batch_first` torch.nn.LSTM without projections.")
    if weights is None:
        lstm._update_flat_weights()  # as nn.LSTM.forward does: picks up replaced parameters
    flat = list(lstm._flat_weights if weights is None else weights)
    directions = 2 if lstm.bidirectional else 1
    per_direction = len(flat) // (lstm.num_layers * directions)
    max_length = inputs.size(1)
    with torch.no_grad():
        lengths = lengths_on(lengths, inputs.device)
        valid = valid_step_mask(lengths, max_length)
        reverse_index = reverse_within_length_index(lengths, max_length) if lstm.bidirectional else None
        results: dict[str, Tensor] = {}
        layer_input = inputs.detach()
        for layer in range(lstm.num_layers):
            outputs = []
            for direction in range(directions):
                start = (layer * directions + direction) * per_direction
                layer_weights = [w.detach() for w in flat[start : start + per_direction]]
                suffix = "_reverse" if direction else ""
                seen = layer_input if direction == 0 else gather_time(layer_input, reverse_index)
                output, input_gate, forget_gate = _layer_gate_saturation(
                    seen, layer_weights, lstm.bias, margin, valid
                )
                outputs.append(output if direction == 0 else gather_time(output, reverse_index))
                results[f"layer{layer}{suffix}/input"] = input_gate
                results[f"layer{layer}{suffix}/forget"] = forget_gate
            layer_input = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
    return results


class GateSaturation(Technique):
    """Logs the fraction of saturated input- and forget-gate activations per layer, on the logging steps.

    After the optimizer step of the logging steps (:func:`lstm_plugins.toolkit.log_due`: optimizer
    steps ``N - 1, 2N - 1, ...``, the rows of Lightning's ``self.log``; once per optimizer step
    under gradient accumulation, on its last micro-batch) the batch's features go through the
    embedding (token models) and ``model.input_layers`` in eval mode (no input dropout) and
    :func:`gate_saturation` recomputes every layer's gates with the LSTM's updated weights (weight
    transforms applied in eval mode, no inter-layer dropout), under ``torch.no_grad()``: the
    figures describe the network as it would run at evaluation, on a training batch. Logged as
    ``gate_saturation/layer{k}[_reverse]/input`` and ``.../forget``, device tensors handed to the
    logger, so nothing is synchronised; steps in between cost one integer comparison.

    Args:
        log_every_n_steps: measure after optimizer steps ``N - 1, 2N - 1, ...``; ``None`` uses
            the Trainer's ``log_every_n_steps``.
        margin: an activation below ``margin`` or above ``1 - margin`` counts as saturated.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(12, 9, techniques=[GateSaturation(log_every_n_steps=20, margin=0.1)])
    """

    name = "gate_saturation"

    def __init__(self, log_every_n_steps: int | None = None, margin: float = 0.05) -> None:
        self.log_every_n_steps = check.optional_positive_int("log_every_n_steps", log_every_n_steps)
        self.margin = check.positive_float("margin", margin)
        if self.margin >= 0.5:
            raise ValueError(f"Expected `margin` to be a float in (0, 0.5), but got {self.margin!r}.")

    @hookimpl
    def on_train_step_end(self, model: Any, batch: Any) -> None:
        if not toolkit.log_due(model.trainer, self.log_every_n_steps):
            return
        fractions = measure_gate_saturation(model, batch.features, batch.lengths, self.margin)
        model.log_step_values({f"gate_saturation/{key}": value for key, value in fractions.items()})


def measure_gate_saturation(model: Any, features: Tensor, lengths: Tensor, margin: float = 0.05) -> dict[str, Tensor]:
    """:func:`gate_saturation` of a model (:class:`~lstm_plugins.LSTMClassifier` or alike) on a
    batch, as at evaluation.

    The embedding (token models), input layers and weight transforms run in eval mode (their
    training flags are restored afterwards). The gates are those of the plain LSTM recurrence,
    also when a technique replaces it (``model.recurrence``, zoneout for example), on the steps
    the LSTM reads (after ``model.sequence_view``, when a technique sets one).
    """
    embedding = getattr(model, "embedding", None)
    parts = [model.input_layers, model.weight_transforms] + ([embedding] if embedding is not None else [])
    modules = [module for part in parts for module in part.modules()]
    modes = [module.training for module in modules]
    try:
        for module in modules:
            module.training = False
        with torch.no_grad():
            inputs = model.input_layers(features if embedding is None else embedding(features))
            view = getattr(model, "sequence_view", None)
            if view is not None:  # the steps the LSTM reads (the FCN branch's dimension shuffle)
                inputs, lengths = view(inputs, lengths)
            weights = model.lstm_weights()
        return gate_saturation(model.lstm, inputs, lengths, margin, weights)
    finally:
        for module, mode in zip(modules, modes):
            module.training = mode
