"""The built-in techniques, each a module with a function face and a plugin class.

They use only the public hook API and are registered through the ``lstm_plugins`` entry-point
group, exactly as a third-party technique is.
"""

from lstm_plugins.plugins.activation_regularization import (
    ActivationRegularization,
    activation_regularization,
    temporal_activation_regularization,
)
from lstm_plugins.plugins.adaptive_clipping import AdaptiveGradientClipping, adaptive_clip_gradients, unitwise_norm
from lstm_plugins.plugins.auto_clipping import (
    AutoClipping,
    GradientNormHistory,
    auto_clip_gradients,
    clip_gradients_to_norm,
    norm_percentile,
)
from lstm_plugins.plugins.dropout import Dropout, add_dropout
from lstm_plugins.plugins.embedding_dropout import EmbeddingDropout, embedding_dropout
from lstm_plugins.plugins.exploding_gradients import (
    ExplodingGradientDetector,
    GradientSpikeStatistics,
    GradientSpikeWarning,
    is_gradient_spike,
)
from lstm_plugins.plugins.gate_saturation import GateSaturation, gate_saturation, measure_gate_saturation
from lstm_plugins.plugins.grad_norm import GradientNormMonitor, gradient_norms, total_gradient_norm
from lstm_plugins.plugins.gradient_clipping import (
    GradientClipping,
    clip_gradients_by_norm,
    clip_gradients_by_value,
)
from lstm_plugins.plugins.gradient_reach import (
    GradientReach,
    InputGradientCapture,
    gradient_reach,
    mean_step_profile,
    measure_gradient_reach,
    step_gradient_norms,
)
from lstm_plugins.plugins.initialization import Initialization, initialize_lstm
from lstm_plugins.plugins.l2 import L2Penalty, l2_penalty, select_parameters
from lstm_plugins.plugins.locked_dropout import LockedDropout, locked_dropout
from lstm_plugins.plugins.nonfinite_guard import NonFiniteGuard, NonFiniteStepError, gradients_are_finite
from lstm_plugins.plugins.weight_decay import DecoupledWeightDecay, weight_decay_groups
from lstm_plugins.plugins.weight_drop import WeightDrop, drop_connect
from lstm_plugins.plugins.zoneout import Zoneout, ZoneoutRecurrence, zoneout_lstm

__all__ = [
    "ActivationRegularization",
    "AdaptiveGradientClipping",
    "AutoClipping",
    "DecoupledWeightDecay",
    "Dropout",
    "EmbeddingDropout",
    "ExplodingGradientDetector",
    "GateSaturation",
    "GradientClipping",
    "GradientNormHistory",
    "GradientNormMonitor",
    "GradientReach",
    "GradientSpikeStatistics",
    "GradientSpikeWarning",
    "InputGradientCapture",
    "Initialization",
    "L2Penalty",
    "LockedDropout",
    "NonFiniteGuard",
    "NonFiniteStepError",
    "WeightDrop",
    "Zoneout",
    "ZoneoutRecurrence",
    "activation_regularization",
    "adaptive_clip_gradients",
    "auto_clip_gradients",
    "add_dropout",
    "clip_gradients_by_norm",
    "clip_gradients_by_value",
    "clip_gradients_to_norm",
    "drop_connect",
    "embedding_dropout",
    "gate_saturation",
    "gradient_norms",
    "gradient_reach",
    "gradients_are_finite",
    "initialize_lstm",
    "is_gradient_spike",
    "l2_penalty",
    "locked_dropout",
    "mean_step_profile",
    "measure_gate_saturation",
    "measure_gradient_reach",
    "norm_percentile",
    "select_parameters",
    "step_gradient_norms",
    "temporal_activation_regularization",
    "total_gradient_norm",
    "unitwise_norm",
    "weight_decay_groups",
    "zoneout_lstm",
]
