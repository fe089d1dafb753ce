"""``build_run``: the data module, model and Trainer of a :mod:`lstm_plugins.cli._config` config, in
Python (without the command line); the benchmarks and ``examples/japanese_vowels_results.py`` use it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["build_run"]


def build_run(config: dict[str, Any], callbacks: Sequence[Any] = ()) -> tuple[Any, Any, Any]:
    """The data module, model and Trainer a validated config describes; ``callbacks`` are added
    to the Trainer."""
    import pytorch_lightning as pl
    import torch

    from lstm_plugins.cli._tasks import TASKS

    pl.seed_everything(config["seed"], workers=True, verbose=False)
    if config.get("threads") is not None:
        torch.set_num_threads(config["threads"])
    data = dict(config["data"])
    data.setdefault("seed", config["seed"])
    datamodule, model = TASKS[config["task"]].build({**config, "data": data}, config["techniques"])
    trainer_options = {"deterministic": True, **config["trainer"]}
    if not datamodule.has_validation:
        trainer_options.setdefault("limit_val_batches", 0)
    trainer_callbacks = list(callbacks)
    if trainer_options.get("enable_progress_bar") is not False and not any(
        isinstance(callback, pl.callbacks.ProgressBar) for callback in trainer_callbacks
    ):
        # Redrawn every logging interval rather than every batch: at the default configuration
        # a per-batch redraw costs about 3 % of the epoch.
        refresh_rate = max(int(trainer_options.get("log_every_n_steps") or 50), 1)
        trainer_callbacks.append(pl.callbacks.TQDMProgressBar(refresh_rate=refresh_rate))
    every = config.get("checkpoint_every_n_epochs")
    if every is not None and trainer_options.get("enable_checkpointing") is not False and not any(
        isinstance(callback, pl.callbacks.ModelCheckpoint) for callback in trainer_callbacks
    ):
        from lstm_plugins.training import PeriodicCheckpoint

        trainer_callbacks.append(PeriodicCheckpoint(every_n_epochs=every))
    if trainer_callbacks:
        trainer_options["callbacks"] = trainer_callbacks
    trainer = pl.Trainer(**trainer_options)
    return datamodule, model, trainer
