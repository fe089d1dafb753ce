"""Dropout on the input sequence, between stacked LSTM layers and on the output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check
from lstm_plugins.techniques import FloatRange, SearchValue
from lstm_plugins.toolkit import FastDropout


def dropout(model: Any, input: float = 0.0, between_layers: float = 0.0, output: float = 0.0) -> None:
    """Insert dropout into a model with ``input_layers``, ``lstm`` and ``output_layers``, in place.

    * ``input``: element-wise dropout on the ``(batch, time, features)`` input sequence;
    * ``between_layers``: ``torch.nn.LSTM``'s own dropout on the outputs of every layer but the
      last, so the LSTM stays on its fused kernel (needs ``num_layers >= 2``);
    * ``output``: dropout on the sequence summary before the head.

    All three are identity in ``eval()`` mode. This is what :class:`Dropout` does when the model
    is built.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(12, 9, num_layers=2)
        >>> dropout(model, between_layers=0.25, output=0.5)
        >>> model.lstm.dropout, model.output_layers
        (0.25, Sequential(
          (0): FastDropout(p=0.5, inplace=False)
        ))
    """
    input = check.probability("input", input)
    between_layers = check.probability("between_layers", between_layers)
    output = check.probability("output", output)
    if between_layers > 0 and model.lstm.num_layers < 2:
        raise ValueError(
            f"Expected `between_layers` to be 0 for a one-layer LSTM (it acts between stacked "
            f"layers), but got {between_layers}. Use num_layers >= 2, or `input`/`output` dropout."
        )
    if input > 0:
        model.input_layers.append(FastDropout(input))
    if between_layers > 0:
        model.lstm.dropout = between_layers
    if output > 0:
        model.output_layers.append(FastDropout(output))


class Dropout(Technique):
    """Dropout on the input sequence, between stacked LSTM layers and before the head.

    Inserted once when the model is built (:func:`dropout`); the LSTM stays ``torch.nn.LSTM`` on
    its fused kernel. A new mask is drawn every training step; all dropout is off in ``eval()``
    mode.

    Args:
        input: probability of zeroing an input feature at a time step.
        between_layers: probability of zeroing an LSTM output between stacked layers
            (``torch.nn.LSTM(dropout=...)``); needs ``num_layers >= 2``.
        output: probability of zeroing a unit of the sequence summary before the head.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> Dropout(input=0.1, output=0.3)
        Dropout(input=0.1, between_layers=0.0, output=0.3)
        >>> LSTMClassifier(12, 9, techniques=[Dropout(input=0.1)]).input_layers
        Sequential(
          (0): FastDropout(p=0.1, inplace=False)
        )
    """

    name = "dropout"

    # Zaremba et al. (2014): 0.1-0.5 (the README's typical span); `between_layers` is left out because a
    # one-layer LSTM refuses it.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"input": FloatRange(0.0, 0.3), "output": FloatRange(0.0, 0.5)}

    def __init__(self, input: float = 0.0, between_layers: float = 0.0, output: float = 0.0) -> None:
        self.input = check.probability("input", input)
        self.between_layers = check.probability("between_layers", between_layers)
        self.output = check.probability("output", output)

    @hookimpl
    def configure_network(self, model: Any) -> None:
        dropout(model, self.input, self.between_layers, self.output)
