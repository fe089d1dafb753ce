"""The model: network parts, the fused variable-length LSTM path, tasks and the Lightning module."""

from lstm_plugins.model._forward import (
    ForwardOutput,
    gather_time,
    last_step_summary,
    lengths_on,
    reverse_within_length_index,
    run_lstm,
    valid_step_mask,
)
from lstm_plugins.model._export import export_model, exported_parity
from lstm_plugins.model._forecasting import ForecastError, ForecastingTask, LSTMForecaster, set_forecast_statistics
from lstm_plugins.model._inference import predict_sequences, write_predictions_csv
from lstm_plugins.model._labelling import IGNORE_INDEX, LSTMSequenceLabeller, SequenceLabellingTask
from lstm_plugins.model._language import (
    BitsPerToken,
    LanguageModelTask,
    LSTMLanguageModel,
    Perplexity,
    generate,
    language_model_metrics,
)
from lstm_plugins.model._layers import TokenEmbedding
from lstm_plugins.model._metrics import classification_metrics, regression_metrics
from lstm_plugins.model._models import LSTMClassifier, LSTMRegressor
from lstm_plugins.model._module import SequenceModel
from lstm_plugins.model._network import SequenceNetwork
from lstm_plugins.model._summaries import (
    AttentionSummary,
    LastStepSummary,
    MaxSummary,
    MeanSummary,
    masked_max,
    masked_mean,
)
from lstm_plugins.model._tasks import ClassificationTask, RegressionTask, Task

__all__ = [
    "AttentionSummary",
    "BitsPerToken",
    "ClassificationTask",
    "ForecastError",
    "ForecastingTask",
    "ForwardOutput",
    "IGNORE_INDEX",
    "LSTMClassifier",
    "LSTMForecaster",
    "LSTMLanguageModel",
    "LSTMRegressor",
    "LSTMSequenceLabeller",
    "LanguageModelTask",
    "LastStepSummary",
    "MaxSummary",
    "MeanSummary",
    "Perplexity",
    "RegressionTask",
    "SequenceLabellingTask",
    "SequenceModel",
    "SequenceNetwork",
    "Task",
    "TokenEmbedding",
    "classification_metrics",
    "export_model",
    "exported_parity",
    "gather_time",
    "generate",
    "language_model_metrics",
    "last_step_summary",
    "lengths_on",
    "masked_max",
    "masked_mean",
    "predict_sequences",
    "regression_metrics",
    "reverse_within_length_index",
    "run_lstm",
    "set_forecast_statistics",
    "valid_step_mask",
    "write_predictions_csv",
]
