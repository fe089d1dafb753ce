"""Training services of the model: per-step logging, checkpoint state, optimizers, pickling,
and the CLI's checkpoint policy."""

from lstm_plugins.training._checkpointing import PeriodicCheckpoint
from lstm_plugins.training._denormals import FlushDenormals, denormals_are_flushed
from lstm_plugins.training._optimizers import OPTIMIZERS, OptimizerName, build_optimizer
from lstm_plugins.training._pickling import unshare_tensors
from lstm_plugins.training._state import CHECKPOINT_KEY, load_state, restore_rng, save_state
from lstm_plugins.training._step_log import StepLogger, publish, to_host

__all__ = [
    "CHECKPOINT_KEY",
    "FlushDenormals",
    "OPTIMIZERS",
    "OptimizerName",
    "PeriodicCheckpoint",
    "StepLogger",
    "build_optimizer",
    "denormals_are_flushed",
    "load_state",
    "publish",
    "restore_rng",
    "save_state",
    "to_host",
    "unshare_tensors",
]
