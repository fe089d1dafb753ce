"""``build_run``: the data module, model and Trainer a config describes, in Python, built exactly as
``lstm-plugins fit`` builds them; the benchmarks and ``examples/japanese_vowels_results.py`` use it."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["build_run"]


def build_run(config: Mapping[str, Any], callbacks: Sequence[Any] = ()) -> tuple[Any, Any, Any]:
    """The data module, model and Trainer of ``config``, a config in the format of
    ``lstm-plugins fit --config`` (:data:`~lstm_plugins.cli.DEFAULT_CONFIG` shows it) as a dict.

    What is not given takes ``fit``'s defaults (the task's, and for classification the default
    stack on JapaneseVowels); ``seed_everything`` seeds, ``threads`` sets torch's intra-op threads.
    The same checks apply (unknown keys, class paths, values the classes refuse), as
    :class:`~lstm_plugins.cli.ConfigError`. ``callbacks`` are added to the Trainer's; a progress bar
    or a checkpoint callback among them replaces the default one. Like ``fit``, the Trainer saves
    the run's ``config.yaml`` beside its logger's files; with ``trainer.logger: false`` it writes
    nothing (``fit`` would write it into the working folder, which trials and scripts must not).

    Example:
        >>> from lstm_plugins.cli import build_run
        >>> config = {"model": {"hidden_size": 8}, "trainer": {"max_epochs": 1, "logger": False}}
        >>> datamodule, model, trainer = build_run(config)
        >>> model.hparams.hidden_size, trainer.max_epochs
        (8, 1)
    """
    import warnings

    from jsonargparse import ArgumentError

    from lstm_plugins.cli._config import ConfigError
    from lstm_plugins.cli._guard import check_config, task_of

    config = copy.deepcopy(dict(config)) if isinstance(config, Mapping) else config
    task = task_of(config)
    check_config(config)
    from lstm_plugins.cli._lightning import LSTMPluginsCLI

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            logged = (config.get("trainer") or {}).get("logger", True) not in (False, None)
            saving = {} if logged else {"save_config_callback": None}
            cli = LSTMPluginsCLI(task, args=config, run=False, callbacks=callbacks, exit_on_error=False, **saving)
    except ArgumentError as exc:
        raise ConfigError(str(exc)) from None
    return cli.datamodule, cli.model, cli.trainer
