"""Looking inside an LSTM: attributions over time (on Captum, the ``explain`` extra) and gate
activations over time, with their plots. The core never imports this package; Captum is
imported only when :func:`attribute` runs (``pip install 'lstm-plugins[explain]'``).

Example:
    >>> import torch
    >>> from lstm_plugins import LSTMClassifier
    >>> from lstm_plugins.explain import attribute, gate_activations
    >>> model = LSTMClassifier(1, 2, hidden_size=4)
    >>> features, lengths = torch.randn(3, 8, 1), torch.tensor([8, 5, 2])
    >>> attribute(model, features, lengths, method="saliency").shape
    torch.Size([3, 8, 1])
    >>> [gates.direction for gates in gate_activations(model, features[1], lengths[1])]
    ['forward']
"""

from lstm_plugins.explain._attributions import METHODS, ConvergenceWarning, Method, attribute
from lstm_plugins.explain._gates import GateActivations, gate_activations
from lstm_plugins.explain._plots import plot_attributions, plot_gates

__all__ = [
    "METHODS",
    "ConvergenceWarning",
    "GateActivations",
    "Method",
    "attribute",
    "gate_activations",
    "plot_attributions",
    "plot_gates",
]
