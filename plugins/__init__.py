"""The built-in techniques: one module each, a plugin class here and its function face in
:mod:`lstm_plugins.plugins.functional` (``GradientClipping`` / ``gradient_clipping``), sharing one
implementation.

They use only the public hook API and the core's toolkit, and are registered through the
``lstm_plugins`` entry-point group, exactly as a third-party technique is. Helpers that are not
part of a pair (histories, capture layers, statistics) stay importable from their module.
"""

from lstm_plugins.plugins.activation_regularization import ActivationRegularization
from lstm_plugins.plugins.adaptive_clipping import AdaptiveGradientClipping
from lstm_plugins.plugins.auto_clipping import AutoClipping
from lstm_plugins.plugins.dropout import Dropout
from lstm_plugins.plugins.embedding_dropout import EmbeddingDropout
from lstm_plugins.plugins.exploding_gradients import ExplodingGradients, GradientSpikeWarning
from lstm_plugins.plugins.fcn_branch import FCNBranch
from lstm_plugins.plugins.gate_saturation import GateSaturation
from lstm_plugins.plugins.grad_norm import GradientNorms
from lstm_plugins.plugins.gradient_clipping import GradientClipping
from lstm_plugins.plugins.gradient_reach import GradientReach
from lstm_plugins.plugins.initialization import Initialization
from lstm_plugins.plugins.l2 import L2Penalty
from lstm_plugins.plugins.locked_dropout import LockedDropout
from lstm_plugins.plugins.lr_schedule import LRSchedule
from lstm_plugins.plugins.nonfinite_guard import NonFiniteGuard, NonFiniteStepError
from lstm_plugins.plugins.summary import SequenceSummary
from lstm_plugins.plugins.weight_decay import DecoupledWeightDecay
from lstm_plugins.plugins.weight_drop import WeightDrop
from lstm_plugins.plugins.zoneout import Zoneout

__all__ = [
    "ActivationRegularization",
    "AdaptiveGradientClipping",
    "AutoClipping",
    "DecoupledWeightDecay",
    "Dropout",
    "EmbeddingDropout",
    "ExplodingGradients",
    "FCNBranch",
    "GateSaturation",
    "GradientClipping",
    "GradientNorms",
    "GradientReach",
    "GradientSpikeWarning",
    "Initialization",
    "L2Penalty",
    "LRSchedule",
    "LockedDropout",
    "NonFiniteGuard",
    "NonFiniteStepError",
    "SequenceSummary",
    "WeightDrop",
    "Zoneout",
]
