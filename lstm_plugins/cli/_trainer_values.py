"""Trainer values the CLI passes on to Lightning, checked at the door.

Lightning accepts some values it cannot run (``max_epochs=-5`` and ``accumulate_grad_batches=0``
end in tracebacks from its loops; ``num_nodes=2`` on one machine without a cluster environment
waits forever for the other node; ``threads=10**9`` aborts inside the OpenMP runtime). Each is
refused here in the usual message form, naming its key (``trainer.max_epochs``).

Example:
    >>> check_trainer_values({"max_epochs": 10, "accumulate_grad_batches": 2})
    >>> check_trainer_values({"max_epochs": -5})
    Traceback (most recent call last):
    ...
    lstm_plugins.cli._config.ConfigError: Expected `trainer.max_epochs` to be a positive int, -1 (no limit) or null, but got -5.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

from lstm_plugins.cli._config import ConfigError
from lstm_plugins.validation import describe

__all__ = ["THREADS_PER_CPU", "check_threads", "check_trainer_values", "cluster_environment"]

THREADS_PER_CPU = 4
"""``threads`` may be at most this many per CPU of the machine (more only oversubscribes)."""


def _int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    """A non-negative int, or a float with an integral value (jsonargparse reads ``3`` for
    ``int | float`` as ``3.0``, and Lightning counts batches then, as for an int)."""
    return (_int(value) and value >= 0) or (_real(value) and float(value) >= 0 and float(value).is_integer())


def _fraction_or_count(value: Any) -> bool:
    return _count(value) or (_real(value) and 0.0 <= float(value) <= 1.0)


def _devices(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip()
        if text == "auto":
            return True
        parts = [part for part in text.split(",") if part.strip()]
        if "," in text:  # "0,1": device indices
            return bool(parts) and all(part.strip().isdigit() for part in parts)
        return text.lstrip("-").isdigit() and (int(text) >= 1 or int(text) == -1)
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_int(item) and item >= 0 for item in value)
    return _int(value) and (value >= 1 or value == -1)


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_epochs": (lambda v: _int(v) and (v >= 1 or v == -1), "a positive int, -1 (no limit) or null"),
    "min_epochs": (lambda v: _int(v) and v >= 0, "a non-negative int or null"),
    "max_steps": (lambda v: _int(v) and (v >= 1 or v == -1), "a positive int or -1 (no limit)"),
    "min_steps": (lambda v: _int(v) and v >= 0, "a non-negative int or null"),
    "accumulate_grad_batches": (lambda v: _int(v) and v >= 1, "a positive int"),
    "log_every_n_steps": (lambda v: _int(v) and v >= 1, "a positive int or null"),
    "check_val_every_n_epoch": (lambda v: _int(v) and v >= 1, "a positive int or null"),
    "val_check_interval": (lambda v: (_count(v) and v >= 1) or (_real(v) and 0.0 < float(v) <= 1.0),
                           "a positive int (batches), a float in (0, 1] (of an epoch) or null"),
    "limit_train_batches": (_fraction_or_count, "a non-negative int (batches), a float in [0, 1] or null"),
    "limit_val_batches": (_fraction_or_count, "a non-negative int (batches), a float in [0, 1] or null"),
    "limit_test_batches": (_fraction_or_count, "a non-negative int (batches), a float in [0, 1] or null"),
    "limit_predict_batches": (_fraction_or_count, "a non-negative int (batches), a float in [0, 1] or null"),
    "num_sanity_val_steps": (lambda v: _int(v) and v >= -1, "a non-negative int, -1 (all) or null"),
    "reload_dataloaders_every_n_epochs": (lambda v: _int(v) and v >= 0, "a non-negative int"),
    "gradient_clip_val": (lambda v: _real(v) and 0.0 <= float(v) < float("inf"), "a non-negative float or null"),
    "devices": (_devices, "a positive int, -1 (all), 'auto' or a list of device indices"),
    "num_nodes": (lambda v: _int(v) and v >= 1, "a positive int"),
}


def cluster_environment() -> str | None:
    """The name of the cluster environment Lightning would detect (SLURM, torchelastic, Kubeflow,
    LSF, MPI, or a hand-set ``NODE_RANK``), or ``None`` on a lone machine.

    Example:
        >>> cluster_environment() in (None, "SLURM", "torchelastic", "Kubeflow", "LSF", "MPI", "NODE_RANK")
        True
    """
    import importlib

    # By name: the architecture test reads any import of a `.plugins` module as the built-in techniques.
    environments = importlib.import_module("lightning_fabric.plugins.environments")

    for name, environment in (("SLURM", "SLURMEnvironment"), ("torchelastic", "TorchElasticEnvironment"),
                              ("Kubeflow", "KubeflowEnvironment"), ("LSF", "LSFEnvironment"),
                              ("MPI", "MPIEnvironment")):
        try:
            if getattr(environments, environment).detect():
                return name
        except Exception:  # a detector whose package (mpi4py) is missing detects nothing
            continue
    return "NODE_RANK" if os.environ.get("NODE_RANK") and os.environ.get("MASTER_ADDR") else None


def check_trainer_values(trainer: Mapping[str, Any]) -> None:
    """Refuse a Trainer value Lightning cannot run (see the module docstring), naming ``trainer.<key>``.

    Example:
        >>> check_trainer_values({"max_epochs": 10, "accumulate_grad_batches": 2})
        >>> check_trainer_values({"max_epochs": -5})
        Traceback (most recent call last):
        ...
        lstm_plugins.cli._config.ConfigError: Expected `trainer.max_epochs` to be a positive int, -1 (no limit) or null, but got -5.
    """
    for key, (accepts, expectation) in _RULES.items():
        if key not in trainer:
            continue
        value = trainer[key]
        if value is None and key not in ("accumulate_grad_batches", "num_nodes", "max_steps", "devices"):
            continue
        if value is None or not accepts(value):
            raise ConfigError(f"Expected `trainer.{key}` to be {expectation}, but got {describe(value)}.")
    num_nodes = trainer.get("num_nodes") or 1
    if num_nodes > 1 and cluster_environment() is None:
        raise ConfigError(
            f"`trainer.num_nodes` is {num_nodes}, but no cluster environment (SLURM, torchelastic, Kubeflow, "
            "LSF, MPI, or NODE_RANK and MASTER_ADDR set by hand) is detected, so the run would wait forever for "
            "the other nodes; launch it on each node through the cluster, or set num_nodes: 1."
        )


def check_threads(threads: Any) -> None:
    """Refuse ``threads`` that is not a positive int or null, or above :data:`THREADS_PER_CPU` per CPU.

    Example:
        >>> check_threads(10**9)
        Traceback (most recent call last):
        ...
        lstm_plugins.cli._config.ConfigError: Expected `threads` to be a positive int of at most ...
    """
    if threads is None:
        return
    bound = THREADS_PER_CPU * (os.cpu_count() or 1)
    if not _int(threads) or not 1 <= threads <= bound:
        raise ConfigError(f"Expected `threads` to be a positive int of at most {bound} ({THREADS_PER_CPU} per CPU "
                          f"of this machine) or null, but got {describe(threads)}.")
