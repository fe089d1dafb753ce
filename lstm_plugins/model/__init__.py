"""The model: network parts, the fused variable-length LSTM path, tasks and the Lightning module."""

from lstm_plugins.model._forward import (
    ForwardOutput,
    gather_time,
    last_step_summary,
    reverse_within_length_index,
    run_lstm,
    valid_step_mask,
)
from lstm_plugins.model._layers import TokenEmbedding
from lstm_plugins.model._metrics import classification_metrics, regression_metrics
from lstm_plugins.model._models import LSTMClassifier, LSTMRegressor
from lstm_plugins.model._module import SequenceModel
from lstm_plugins.model._network import SequenceNetwork
from lstm_plugins.model._tasks import ClassificationTask, RegressionTask, Task

__all__ = [
    "ClassificationTask",
    "ForwardOutput",
    "LSTMClassifier",
    "LSTMRegressor",
    "RegressionTask",
    "SequenceModel",
    "SequenceNetwork",
    "Task",
    "TokenEmbedding",
    "classification_metrics",
    "gather_time",
    "last_step_summary",
    "regression_metrics",
    "reverse_within_length_index",
    "run_lstm",
    "valid_step_mask",
]
