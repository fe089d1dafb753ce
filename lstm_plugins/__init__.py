"""lstm-plugins: stackable, third-party-extensible training techniques around one fused LSTM.

The public API is the names below; machinery stays importable from its own module
(:mod:`lstm_plugins.model`, :mod:`lstm_plugins.techniques`, :mod:`lstm_plugins.training`,
:mod:`lstm_plugins.data`, :mod:`lstm_plugins.cli`).

Example:
    >>> from lstm_plugins import LSTMClassifier
    >>> model = LSTMClassifier(input_size=12, num_classes=9, techniques=["gradient_clipping", "grad_norm"])
"""

from importlib.metadata import PackageNotFoundError, version

from lstm_plugins import toolkit, validation
from lstm_plugins.cli._plotting import MetricHistory, plot_run
from lstm_plugins.model import (
    ClassificationTask,
    ForwardOutput,
    LSTMClassifier,
    LSTMRegressor,
    RegressionTask,
    SequenceModel,
    Task,
)
from lstm_plugins.techniques import (
    Technique,
    TechniqueValidationError,
    available_techniques,
    hookimpl,
)
from lstm_plugins.training import NonFiniteLossError

try:
    __version__ = version("lstm-plugins")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ClassificationTask",
    "ForwardOutput",
    "LSTMClassifier",
    "LSTMRegressor",
    "MetricHistory",
    "NonFiniteLossError",
    "NonFiniteLossError",
    "RegressionTask",
    "SequenceModel",
    "Task",
    "Technique",
    "TechniqueValidationError",
    "__version__",
    "available_techniques",
    "hookimpl",
    "plot_run",
    "toolkit",
    "validation",
]
