"""The function faces of the built-in techniques, for your own training loop.

As torchmetrics pairs ``torchmetrics.Accuracy`` with ``torchmetrics.functional.accuracy``, each
technique class in :mod:`lstm_plugins.plugins` has a function here with its name in snake case
(``GradientClipping`` / ``gradient_clipping``), sharing one implementation.

Example:
    >>> import torch
    >>> from lstm_plugins.plugins.functional import gradient_clipping
    >>> w = torch.zeros(2, requires_grad=True); w.grad = torch.tensor([3.0, 4.0])
    >>> gradient_clipping([w], threshold=1.0)
    tensor(5.)
"""

from lstm_plugins.plugins.activation_regularization import activation_regularization
from lstm_plugins.plugins.adaptive_clipping import adaptive_gradient_clipping
from lstm_plugins.plugins.auto_clipping import auto_clipping
from lstm_plugins.plugins.dropout import dropout
from lstm_plugins.plugins.embedding_dropout import embedding_dropout
from lstm_plugins.plugins.exploding_gradients import exploding_gradients
from lstm_plugins.plugins.fcn_branch import fcn_branch
from lstm_plugins.plugins.gate_saturation import gate_saturation
from lstm_plugins.plugins.grad_norm import gradient_norms
from lstm_plugins.plugins.gradient_clipping import gradient_clipping
from lstm_plugins.plugins.gradient_reach import gradient_reach
from lstm_plugins.plugins.initialization import initialization
from lstm_plugins.plugins.l2 import l2_penalty
from lstm_plugins.plugins.locked_dropout import locked_dropout
from lstm_plugins.plugins.lr_schedule import lr_schedule
from lstm_plugins.plugins.nonfinite_guard import non_finite_guard
from lstm_plugins.plugins.summary import sequence_summary
from lstm_plugins.plugins.weight_decay import decoupled_weight_decay
from lstm_plugins.plugins.weight_drop import weight_drop
from lstm_plugins.plugins.zoneout import zoneout

__all__ = [
    "activation_regularization",
    "adaptive_gradient_clipping",
    "auto_clipping",
    "decoupled_weight_decay",
    "dropout",
    "embedding_dropout",
    "exploding_gradients",
    "fcn_branch",
    "gate_saturation",
    "gradient_clipping",
    "gradient_norms",
    "gradient_reach",
    "initialization",
    "l2_penalty",
    "locked_dropout",
    "lr_schedule",
    "non_finite_guard",
    "sequence_summary",
    "weight_drop",
    "zoneout",
]
