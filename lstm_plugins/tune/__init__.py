"""Hyper-parameter search on Optuna (the ``tune`` extra: ``pip install 'lstm-plugins[tune]'``);
imported only when used.

``lstm-plugins tune --config base.yaml --search search.yaml`` (or :func:`tune`) searches the
model's arguments and the technique stack on top of a ``fit`` config, scoring each trial by
cross-validation on the training split alone (the test split is never read), in a study kept in
a database (SQLite by default: a killed run resumes, several workers share one study), and
writes the best config as a file ``lstm-plugins fit --config`` runs, a table and plots.
The search config's format is in :mod:`lstm_plugins.tune._search`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lstm_plugins.tune._report import best_config, trials_table, write_outputs
from lstm_plugins.tune._search import DEFAULT_RANGES, Search, parse_search, sample_config

__all__ = ["DEFAULT_RANGES", "Search", "best_config", "parse_search", "sample_config", "trials_table", "tune",
           "write_outputs"]

DEFAULT_STUDY_NAME = "lstm_plugins_tune"


class _Extreme:
    """A stand-in trial taking every range's low (or high) end: the configs checked before any trial."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return high if self.high else low

    def suggest_int(self, name: str, low: int, high: int, log: bool = False, step: int = 1) -> int:
        return low + (high - low) // step * step if self.high else low

    def suggest_categorical(self, name: str, options: list[Any]) -> Any:
        return options[-1] if self.high else options[0]


def _training_data(base: dict[str, Any]) -> Any:
    """The base config's data module (its training split is what the folds cut)."""
    from lstm_plugins.cli import build_run
    from lstm_plugins.data import SequenceDataModule
    from lstm_plugins.tune._study import quiet

    with quiet():
        datamodule, _, _ = build_run({**base, "trainer": {**(base.get("trainer") or {}), "logger": False}})
    if not isinstance(datamodule, SequenceDataModule):
        raise ValueError(f"`lstm-plugins tune` cross-validates classification and regression data (a sequence per "
                         f"label); task `{base.get('task')}` ({type(datamodule).__name__}) is not supported yet.")
    return datamodule


def tune(
    base_config: Mapping[str, Any] | str | Path,
    search: Mapping[str, Any] | str | Path,
    *,
    storage: str | None = None,
    study_name: str = DEFAULT_STUDY_NAME,
    n_trials: int = 20,
    timeout: float | None = None,
    folds: int | None = None,
    output: str | Path = "tune",
    seed: int = 0,
    pruner: str = "median",
    heartbeat_interval: int = 10,
    grace_period: int | None = None,
    progress: bool = True,
) -> Any:
    """Run (or resume, or join) a study and write its outputs into ``output``; returns the
    ``optuna.Study``.

    ``base_config``: a ``fit`` config (dict or YAML file); ``search``: what to vary (dict or YAML
    file, see :mod:`lstm_plugins.tune._search`). ``storage``: an Optuna database URL (default
    ``sqlite:///OUTPUT/study.db``); a study of the same ``study_name`` there is resumed, and must
    have been started with the same files. ``n_trials``: the study's budget (all workers
    together); ``timeout``: this call's wall seconds. ``folds`` overrides ``search.folds``;
    ``pruner``: ``"median"`` (Optuna's ``MedianPruner`` on fold-level values) or ``"none"``.
    Every input is checked, and two configs at the ends of the ranges are built, before any trial.

    Example:
        >>> import tempfile
        >>> from lstm_plugins.tune import tune
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     study = tune({"model": {"hidden_size": 4, "techniques": []}, "trainer": {"max_epochs": 1}},
        ...                  {"model": {"learning_rate": {"float": [0.001, 0.01], "log": True}}, "folds": 2},
        ...                  n_trials=1, output=folder, progress=False)
        ...     len(study.trials), sorted(study.best_trial.params)
        (1, ['model.learning_rate'])
    """
    from lstm_plugins import validation as check
    from lstm_plugins.cli import build_run
    from lstm_plugins.cli._guard import task_of
    from lstm_plugins.tune._study import load_config, open_storage, quiet, require_optuna, run_study

    optuna = require_optuna()
    base = load_config(base_config, "base config")
    raw_search = load_config(search, "search config")
    raw_search = dict(raw_search.get("search", raw_search))
    if folds is not None:
        raw_search["folds"] = check.int_at_least("folds", folds, 2)
    parsed = parse_search(raw_search, task_of(base))
    check.positive_int("n_trials", n_trials)
    if timeout is not None:
        check.positive_float("timeout", timeout)
    pruner = check.choice("pruner", pruner, ("median", "none"))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    store = open_storage(storage or f"sqlite:///{(output / 'study.db').resolve()}", heartbeat_interval, grace_period)
    datamodule = _training_data(base)
    for high in (False, True):
        with quiet():
            build_run(sample_config(_Extreme(high), parsed, base))
    chosen = optuna.pruners.MedianPruner(n_startup_trials=3) if pruner == "median" else optuna.pruners.NopPruner()
    study = run_study(base, parsed, raw_search, storage=store, study_name=study_name, n_trials=n_trials,
                      timeout=timeout, seed=seed, pruner=chosen, datamodule=datamodule, progress=progress)
    write_outputs(study, output, echo=progress)
    return study
