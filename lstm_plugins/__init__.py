"""lstm-plugins: stackable, third-party-extensible training techniques around one fused LSTM.

Example:
    >>> from lstm_plugins import LSTMClassifier
    >>> model = LSTMClassifier(input_size=12, num_classes=9, plugins=["gradient_clipping", "grad_norm"])
"""

from lstm_plugins._forward import (
    ForwardOutput,
    gather_time,
    last_step_summary,
    reverse_within_length_index,
    run_lstm,
    valid_step_mask,
)
from lstm_plugins._layers import TokenEmbedding
from lstm_plugins._manager import TechniqueValidationError, build_plugin_manager
from lstm_plugins._markers import PROJECT_NAME, hookimpl, hookspec
from lstm_plugins._plotting import MetricHistory, plot_run
from lstm_plugins._module import LSTMClassifier, LSTMRegressor, SequenceModel
from lstm_plugins._registry import (
    BLOCK_ENVIRONMENT_VARIABLE,
    DISABLE_ENVIRONMENT_VARIABLE,
    TechniqueInfo,
    TechniqueSpec,
    available_techniques,
    load_technique,
    resolve_technique,
)
from lstm_plugins._technique import Technique
from lstm_plugins import validation

__version__ = "0.1.0"

__all__ = [
    "BLOCK_ENVIRONMENT_VARIABLE",
    "DISABLE_ENVIRONMENT_VARIABLE",
    "PROJECT_NAME",
    "ForwardOutput",
    "LSTMClassifier",
    "LSTMRegressor",
    "MetricHistory",
    "SequenceModel",
    "Technique",
    "TechniqueInfo",
    "TechniqueSpec",
    "TechniqueValidationError",
    "TokenEmbedding",
    "available_techniques",
    "gather_time",
    "last_step_summary",
    "build_plugin_manager",
    "hookimpl",
    "hookspec",
    "load_technique",
    "plot_run",
    "resolve_technique",
    "reverse_within_length_index",
    "run_lstm",
    "valid_step_mask",
    "validation",
]
