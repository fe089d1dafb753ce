"""Training services of the model: per-step logging, checkpoint state, optimizers, pickling,
the CLI's checkpoint policy, atomic checkpoint writes, SIGTERM, the non-finite loss stop and the
end of a distributed run."""

from lstm_plugins.training._checkpoint_io import AtomicCheckpointIO, install_atomic_checkpoint_io
from lstm_plugins.training._checkpointing import PeriodicCheckpoint
from lstm_plugins.training._denormals import (
    FlushDenormals,
    denormals_are_flushed,
    flushed_denormals,
    set_flush_denormal,
)
from lstm_plugins.training._nonfinite import NonFiniteLossError, NonFiniteLossStop
from lstm_plugins.training._optimizers import OPTIMIZERS, OptimizerName, build_optimizer
from lstm_plugins.training._pickling import unshare_tensors
from lstm_plugins.training._preemption import PREEMPTED_EXIT_STATUS, Preemption
from lstm_plugins.training._process_group import end_process_group
from lstm_plugins.training._safeguards import Safeguards
from lstm_plugins.training._state import CHECKPOINT_KEY, load_state, restore_rng, save_state
from lstm_plugins.training._step_log import StepLogger, publish, to_host

__all__ = [
    "AtomicCheckpointIO",
    "CHECKPOINT_KEY",
    "FlushDenormals",
    "NonFiniteLossError",
    "NonFiniteLossStop",
    "OPTIMIZERS",
    "OptimizerName",
    "PREEMPTED_EXIT_STATUS",
    "PeriodicCheckpoint",
    "Preemption",
    "Safeguards",
    "StepLogger",
    "build_optimizer",
    "denormals_are_flushed",
    "end_process_group",
    "flushed_denormals",
    "install_atomic_checkpoint_io",
    "load_state",
    "publish",
    "restore_rng",
    "save_state",
    "set_flush_denormal",
    "to_host",
    "unshare_tensors",
]
