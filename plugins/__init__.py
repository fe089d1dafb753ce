"""The built-in techniques: each module holds a plugin class and its function face, paired by
name as torchmetrics pairs them (``GradientClipping`` / ``gradient_clipping``), sharing one
implementation.

They use only the public hook API and the core's toolkit, and are registered through the
``lstm_plugins`` entry-point group, exactly as a third-party technique is. Helpers that are not
part of a pair (histories, capture layers, statistics) stay importable from their module.
"""

from lstm_plugins.plugins.activation_regularization import ActivationRegularization, activation_regularization
from lstm_plugins.plugins.adaptive_clipping import AdaptiveGradientClipping, adaptive_gradient_clipping
from lstm_plugins.plugins.auto_clipping import AutoClipping, auto_clipping
from lstm_plugins.plugins.dropout import Dropout, dropout
from lstm_plugins.plugins.embedding_dropout import EmbeddingDropout, embedding_dropout
from lstm_plugins.plugins.exploding_gradients import ExplodingGradients, GradientSpikeWarning, exploding_gradients
from lstm_plugins.plugins.gate_saturation import GateSaturation, gate_saturation
from lstm_plugins.plugins.grad_norm import GradientNorms, gradient_norms
from lstm_plugins.plugins.gradient_clipping import GradientClipping, gradient_clipping
from lstm_plugins.plugins.gradient_reach import GradientReach, gradient_reach
from lstm_plugins.plugins.initialization import Initialization, initialization
from lstm_plugins.plugins.l2 import L2Penalty, l2_penalty
from lstm_plugins.plugins.locked_dropout import LockedDropout, locked_dropout
from lstm_plugins.plugins.nonfinite_guard import NonFiniteGuard, NonFiniteStepError, non_finite_guard
from lstm_plugins.plugins.weight_decay import DecoupledWeightDecay, decoupled_weight_decay
from lstm_plugins.plugins.weight_drop import WeightDrop, weight_drop
from lstm_plugins.plugins.zoneout import Zoneout, zoneout

__all__ = [
    "ActivationRegularization",
    "AdaptiveGradientClipping",
    "AutoClipping",
    "DecoupledWeightDecay",
    "Dropout",
    "EmbeddingDropout",
    "ExplodingGradients",
    "GateSaturation",
    "GradientClipping",
    "GradientNorms",
    "GradientReach",
    "GradientSpikeWarning",
    "Initialization",
    "L2Penalty",
    "LockedDropout",
    "NonFiniteGuard",
    "NonFiniteStepError",
    "WeightDrop",
    "Zoneout",
    "activation_regularization",
    "adaptive_gradient_clipping",
    "auto_clipping",
    "decoupled_weight_decay",
    "dropout",
    "embedding_dropout",
    "exploding_gradients",
    "gate_saturation",
    "gradient_clipping",
    "gradient_norms",
    "gradient_reach",
    "initialization",
    "l2_penalty",
    "locked_dropout",
    "non_finite_guard",
    "weight_drop",
    "zoneout",
]
