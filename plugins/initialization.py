"""LSTM initialisation: forget-gate bias and orthogonal hidden-to-hidden weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check
from lstm_plugins.techniques import Choice, FloatRange, SearchValue


def initialization(lstm: nn.LSTM, forget_bias: float | None = 1.0, orthogonal_hidden: bool = True) -> None:
    """Set the forget-gate bias and make each gate's hidden-to-hidden block orthogonal, in place.

    ``torch.nn.LSTM`` orders gates ``i, f, g, o`` and adds two biases; the forget-gate slice of
    ``bias_ih`` is set to ``forget_bias`` and that of ``bias_hh`` to 0, so their sum is
    ``forget_bias``. Each of the four ``(hidden, hidden)`` blocks of ``weight_hh`` is drawn
    orthogonal.

    Example:
        >>> lstm = torch.nn.LSTM(3, 4)
        >>> initialization(lstm, forget_bias=1.0)
        >>> (lstm.bias_ih_l0 + lstm.bias_hh_l0)[4:8].tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    hidden = lstm.hidden_size
    with torch.no_grad():
        for name, weight in zip(lstm._flat_weights_names, lstm._flat_weights):
            if forget_bias is not None and name.startswith("bias_ih"):
                weight[hidden : 2 * hidden] = forget_bias
            elif forget_bias is not None and name.startswith("bias_hh"):
                weight[hidden : 2 * hidden] = 0.0
            elif orthogonal_hidden and name.startswith("weight_hh"):
                for gate in range(4):
                    nn.init.orthogonal_(weight[gate * hidden : (gate + 1) * hidden])


class Initialization(Technique):
    """Forget-gate bias (1.0 by default) and orthogonal recurrent weights, at construction.

    A positive forget-gate bias makes the LSTM remember by default early in training
    (Gers et al. 2000; Jozefowicz et al. 2015 found 1.0 closes most of the gap to the best
    architectures); orthogonal recurrent matrices keep the recurrent Jacobian well-conditioned
    at the start (Saxe et al. 2014). Applied with :func:`initialization` when the model is
    built, before every other technique's :func:`~lstm_plugins.techniques.hookspecs.configure_network`
    (``tryfirst``), so techniques that wrap or read weights see the initialised ones.

    Args:
        forget_bias: the forget gate's total bias; ``None`` leaves biases as they are.
        orthogonal_hidden: draw each gate's hidden-to-hidden block orthogonal.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> Initialization(forget_bias=2.0)
        Initialization(forget_bias=2.0, orthogonal_hidden=True)
        >>> model = LSTMClassifier(12, 9, hidden_size=4, techniques=[Initialization(forget_bias=2.0)])
        >>> (model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0)[4:8].tolist()
        [2.0, 2.0, 2.0, 2.0]
    """

    name = "initialization"
    exclusive = "initialization"

    # Jozefowicz et al. (2015) found a forget bias of 1 closes most of the gap; 0-3 spans it.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"forget_bias": FloatRange(0.0, 3.0),
                                                         "orthogonal_hidden": Choice(True, False)}

    def __init__(self, forget_bias: float | None = 1.0, orthogonal_hidden: bool = True) -> None:
        if forget_bias is not None:
            if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)):
                raise TypeError(f"Expected `forget_bias` to be a float or None, but got {forget_bias!r}.")
            forget_bias = float(forget_bias)
        self.forget_bias = forget_bias
        self.orthogonal_hidden = check.boolean("orthogonal_hidden", orthogonal_hidden)

    # First, so techniques that wrap or inspect weights see the initialised ones.
    @hookimpl(tryfirst=True)
    def configure_network(self, model: Any) -> None:
        initialization(model.lstm, self.forget_bias, self.orthogonal_hidden)
