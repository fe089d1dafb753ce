"""The built-in techniques, each a module with a function face and a plugin class.

They use only the public hook API and are registered through the ``lstm_plugins`` entry-point
group, exactly as a third-party technique is.
"""

from lstm_plugins.plugins.activation_regularization import (
    ActivationRegularization,
    activation_regularization,
    temporal_activation_regularization,
)
from lstm_plugins.plugins.dropout import Dropout, add_dropout
from lstm_plugins.plugins.embedding_dropout import EmbeddingDropout, embedding_dropout
from lstm_plugins.plugins.grad_norm import GradientNormMonitor, gradient_norms, total_gradient_norm
from lstm_plugins.plugins.gradient_clipping import (
    GradientClipping,
    clip_gradients_by_norm,
    clip_gradients_by_value,
)
from lstm_plugins.plugins.initialization import Initialization, initialize_lstm
from lstm_plugins.plugins.l2 import L2Penalty, l2_penalty, select_parameters
from lstm_plugins.plugins.locked_dropout import LockedDropout, locked_dropout
from lstm_plugins.plugins.nonfinite_guard import NonFiniteGuard, NonFiniteStepError, gradients_are_finite
from lstm_plugins.plugins.weight_decay import DecoupledWeightDecay, weight_decay_groups
from lstm_plugins.plugins.weight_drop import WeightDrop, drop_connect

__all__ = [
    "ActivationRegularization",
    "DecoupledWeightDecay",
    "Dropout",
    "EmbeddingDropout",
    "GradientClipping",
    "GradientNormMonitor",
    "Initialization",
    "L2Penalty",
    "LockedDropout",
    "NonFiniteGuard",
    "NonFiniteStepError",
    "WeightDrop",
    "activation_regularization",
    "add_dropout",
    "clip_gradients_by_norm",
    "clip_gradients_by_value",
    "drop_connect",
    "embedding_dropout",
    "gradient_norms",
    "gradients_are_finite",
    "initialize_lstm",
    "l2_penalty",
    "locked_dropout",
    "select_parameters",
    "temporal_activation_regularization",
    "total_gradient_norm",
    "weight_decay_groups",
]
