"""The built-in techniques, each a module with a function face and a plugin class.

They use only the public hook API and are registered through the ``lstm_plugins`` entry-point
group, exactly as a third-party technique is.
"""

from lstm_plugins.plugins.dropout import Dropout, add_dropout
from lstm_plugins.plugins.grad_norm import GradientNormMonitor, gradient_norms, total_gradient_norm
from lstm_plugins.plugins.gradient_clipping import (
    GradientClipping,
    clip_gradients_by_norm,
    clip_gradients_by_value,
)
from lstm_plugins.plugins.l2 import L2Penalty, l2_penalty, select_parameters

__all__ = [
    "Dropout",
    "GradientClipping",
    "GradientNormMonitor",
    "L2Penalty",
    "add_dropout",
    "clip_gradients_by_norm",
    "clip_gradients_by_value",
    "gradient_norms",
    "l2_penalty",
    "select_parameters",
    "total_gradient_norm",
]
