"""The study: storage, budget, the cross-validated objective and its pruning.

Each trial samples a config (:func:`~lstm_plugins.tune._search.sample_config`), trains it on every
fold of the training split (:mod:`~lstm_plugins.tune._folds`) as ``lstm-plugins fit`` would
(:func:`~lstm_plugins.cli.build_run`), and scores the mean of the folds' last validation
``metric``. After each fold the running mean is reported to Optuna, whose pruner (the median rule
by default) may stop the trial. The budget is the study's: ``n_trials`` counts every trial any
worker ran (a trial of a killed worker is failed by Optuna's heartbeat and run again, not counted
twice); ``timeout`` bounds this worker's wall time: no trial starts after it, and a running trial
stops at the next fold boundary (recorded as pruned, with the user attribute ``stopped``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import socket
import time
import warnings
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lstm_plugins import validation as check
from lstm_plugins.cli._config import ConfigError
from lstm_plugins.tune._search import Search, sample_config

__all__ = ["load_config", "open_storage", "require_optuna", "run_study"]

_PATH_KEYS = ("train", "test", "val", "csv")
_FORCED_TRAINER = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                   "enable_model_summary": False, "num_sanity_val_steps": 0}


def require_optuna() -> Any:
    """The ``optuna`` module, or an ``ImportError`` that says how to install it."""
    try:
        import optuna
    except ImportError as exc:
        raise ImportError("`lstm-plugins tune` needs Optuna: pip install 'lstm-plugins[tune]'.") from exc
    return optuna


def load_config(config: Mapping[str, Any] | str | Path, what: str) -> dict[str, Any]:
    """A config given as a dict or a YAML file; relative data paths of a file are made absolute
    (relative to the file), so the best config runs from anywhere.

    Example:
        >>> load_config({"model": {"hidden_size": 8}}, "base config")
        {'model': {'hidden_size': 8}}
    """
    if isinstance(config, Mapping):
        return json.loads(json.dumps(dict(config)))
    from lstm_plugins.cli._yaml import load_yaml

    path = Path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileNotFoundError(f"Cannot read the {what} {str(path)!r}: {exc.strerror or exc}.") from None
    loaded = load_yaml(text, str(path))
    if not isinstance(loaded, dict):
        raise ConfigError(f"Expected the {what} {str(path)!r} to be a mapping, but got {loaded!r}.")
    data = loaded.get("data")
    if isinstance(data, dict):
        for key in _PATH_KEYS:
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str((path.parent / data[key]).resolve())
    return loaded


def open_storage(url: str, heartbeat_interval: int = 10, grace_period: int | None = None) -> Any:
    """An Optuna storage for ``url``; an RDB URL (SQLite, PostgreSQL, MySQL) gets heartbeats, so
    a killed worker's running trial is failed after ``grace_period`` seconds and run again.
    A URL that cannot be opened raises ``ValueError`` naming it, before any trial.

    Example:
        >>> import tempfile
        >>> storage = open_storage(f"sqlite:///{tempfile.mkdtemp()}/study.db", heartbeat_interval=5)
        >>> type(storage).__name__, storage.heartbeat_interval
        ('RDBStorage', 5)
        >>> open_storage("study.db")
        Traceback (most recent call last):
        ...
        ValueError: Expected `storage` to be a database URL such as sqlite:///study.db, but got 'study.db'.
    """
    optuna = require_optuna()
    if "://" not in url:
        raise ValueError(f"Expected `storage` to be a database URL such as sqlite:///study.db, but got {url!r}.")
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    keyword = "heartbeat_stale_trial_callback"
    if retry is None:  # Optuna < 4.9
        retry, keyword = optuna.storages.RetryFailedTrialCallback, "failed_trial_callback"
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    attempt = 1
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeats are "experimental" in Optuna's words
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period or 3 * heartbeat_interval, **{keyword: retry(max_retry=3)})
                storage.get_all_studies()  # connects now: an unreachable server fails here
            return storage
        except Exception as exc:
            if not _lost_creation_race(exc) or attempt == _CREATION_ATTEMPTS:
                message = f"Cannot open the study storage {url!r}: {type(exc).__name__}: {exc}"
                raise ValueError(message.split("\n")[0]) from None
        # Workers started together on a new database each create its tables and stamp its schema
        # version; all but one lose that race. The tables exist by now: open it again.
        time.sleep(0.1 * 2**attempt)
        attempt += 1


_CREATION_ATTEMPTS = 6


def _lost_creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` is what a worker gets when another one created the same new database's
    tables or version stamp a moment before it (SQLAlchemy's duplicate-key or table-exists error)."""
    name = type(exc).__name__
    text = str(exc).lower()
    if name == "IntegrityError":  # the schema version row, inserted twice
        return "alembic_version" in text or "version_info" in text
    return name in ("OperationalError", "ProgrammingError") and "already exists" in text


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Lightning's info lines and warnings off while a trial trains."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class TrialFailed(Exception):
    """A trial whose config could not be trained (the study goes on)."""


class Surplus(Exception):
    """A trial started by a worker after the study's budget was reached by others."""


def _retried(trials: list[Any]) -> set[int]:
    from optuna.storages import RetryFailedTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" since Optuna 2.8
        numbers = [RetryFailedTrialCallback.retried_trial_number(trial) for trial in trials]
    return {number for number in numbers if number is not None}


def counted_trials(trials: list[Any]) -> list[Any]:
    """The trials that use the budget: all but surplus ones and the stale originals that were
    run again."""
    retried = _retried(trials)
    return [t for t in trials if not t.user_attrs.get("surplus") and t.number not in retried]


class Objective:
    """Mean fold value of one sampled config (see the module docstring)."""

    def __init__(self, search: Search, base: dict[str, Any], datamodule: Any, n_trials: int, seed: int,
                 deadline: float | None = None) -> None:
        self.search, self.base, self.datamodule = search, base, datamodule
        self.n_trials, self.seed, self.deadline = n_trials, seed, deadline

    def trial_config(self, trial: Any) -> dict[str, Any]:
        """The sampled config, quietened for a trial (no logger, checkpoints or progress bar)."""
        config = sample_config(trial, self.search, self.base)
        config["trainer"] = {**(config.get("trainer") or {}), **_FORCED_TRAINER}
        config["seed_everything"] = self.seed
        return config

    def __call__(self, trial: Any) -> float:
        import optuna

        counted = counted_trials(trial.study.get_trials(deepcopy=False))
        if sum(1 for t in counted if t.number < trial.number) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            raise Surplus(f"trial {trial.number}: the budget of {self.n_trials} trials is used")
        from lstm_plugins.cli import build_run
        from lstm_plugins.tune._folds import fold_datamodules

        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        config = self.trial_config(trial)
        data = config.get("data") or {}
        values: list[float] = []
        try:
            searched = {key: data[key] for key in ("standardize", "length_batching") if key in data}
            folds = fold_datamodules(self.datamodule, self.search.folds, self.seed,
                                     data.get("batch_size", self.datamodule.batch_size), **searched)
            for index, fold in enumerate(folds):
                with quiet():
                    _, model, trainer = build_run(config)
                    trainer.fit(model, datamodule=fold)
                metrics = trainer.callback_metrics
                if self.search.metric not in metrics:
                    raise ConfigError(f"Metric `{self.search.metric}` (search.metric) was not logged; logged: "
                                      f"{', '.join(sorted(metrics)) or 'nothing'}.")
                value = float(metrics[self.search.metric])
                if not math.isfinite(value):
                    raise TrialFailed(f"fold {index}: {self.search.metric} is {value}")
                values.append(value)
                trial.set_user_attr("fold_values", values)
                trial.report(sum(values) / len(values), index)
                if index + 1 < len(folds) and trial.should_prune():
                    raise optuna.TrialPruned(f"after fold {index}")
                if index + 1 < len(folds) and self.deadline is not None and time.monotonic() > self.deadline:
                    # The wall-time budget ends between folds: stopped like a pruned trial, and said so.
                    trial.set_user_attr("stopped", "timeout")
                    raise optuna.TrialPruned(f"timeout after fold {index}")
        except (ValueError, TypeError, RuntimeError) as exc:
            if isinstance(exc, ConfigError) and "search.metric" in str(exc):
                raise
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise TrialFailed(f"trial {trial.number}: {type(exc).__name__}: {exc}") from exc
        return sum(values) / len(values)


def _format_seconds(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """One line per finished trial: its value, the best so far, trials done and time left."""

    def __init__(self, n_trials: int, timeout: float | None, started: float, enabled: bool = True) -> None:
        self.n_trials, self.timeout, self.started, self.enabled = n_trials, timeout, started, enabled
        self.durations: list[float] = []

    def __call__(self, study: Any, trial: Any) -> None:
        if not self.enabled or trial.user_attrs.get("surplus"):
            return
        from optuna.trial import TrialState

        if trial.duration is not None:
            self.durations.append(trial.duration.total_seconds())
        done = [t for t in counted_trials(study.get_trials(deepcopy=False)) if t.state.is_finished()]
        state = trial.state.name.lower()
        value = "" if trial.value is None else f" {trial.value:.4f}"
        if trial.state == TrialState.FAIL:
            value = f" ({trial.user_attrs.get('error', 'failed')})"[:120]
        elif trial.state == TrialState.PRUNED:
            folds = trial.user_attrs.get("fold_values", [])
            why = " (timeout)" if trial.user_attrs.get("stopped") else ""
            value = f"{why} after {len(folds)} fold(s) at {sum(folds) / max(len(folds), 1):.4f}"
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        elapsed = time.monotonic() - self.started
        left = max(self.n_trials - len(done), 0)
        estimate = left * (sum(self.durations) / len(self.durations)) if self.durations else 0.0
        if self.timeout is not None:
            estimate = min(estimate, self.timeout - elapsed)
        print(f"[tune] trial {trial.number} {state}{value} | {best} | {len(done)}/{self.n_trials} trials | "
              f"{_format_seconds(elapsed)} elapsed, ~{_format_seconds(estimate)} left", flush=True)


def _check_same_study(study: Any, attributes: dict[str, Any], name: str) -> None:
    for key, value in attributes.items():
        stored = study.user_attrs.get(key)
        if stored is None:
            study.set_user_attr(key, value)
        elif stored != value:
            raise ConfigError(f"Study `{name}` in this storage was started with a different {key.replace('_', ' ')}; "
                              f"resume it with the same files, or give a new --study_name.")


def fail_trials_killed_before_starting(study: Any, storage: Any) -> list[int]:
    """Fail (and hand to the retry callback) the running trials whose worker was killed between
    Optuna's ``ask`` and the first heartbeat; return their numbers.

    Optuna's stale-trial check skips a running trial with no heartbeat, so such a trial would stay
    running for good and every worker waiting for the budget would wait forever. A live worker
    records its heartbeat and then its ``worker`` attribute within milliseconds of ``ask``, so a
    running trial without that attribute, older than the storage's grace period, has lost its
    worker.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    interval = getattr(storage, "heartbeat_interval", None)
    if not interval:
        return []
    grace = datetime.timedelta(seconds=getattr(storage, "grace_period", None) or 2 * interval)
    getter = getattr(storage, "get_heartbeat_stale_trial_callback", None) or storage.get_failed_trial_callback
    now, failed = datetime.datetime.now(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "worker" in trial.user_attrs or trial.datetime_start is None or now - trial.datetime_start <= grace:
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # another worker failed it first
            continue
        failed.append(trial.number)
        callback = getter()
        if callback is not None:
            callback(study, storage.get_trial(trial._trial_id))
    return failed


def run_study(base: dict[str, Any], search: Search, raw_search: dict[str, Any], *, storage: Any, study_name: str,
              n_trials: int, timeout: float | None, seed: int, pruner: Any, datamodule: Any,
              progress: bool = True) -> Any:
    """Create or load the study and run trials until the budget is used (see the module docstring)."""
    optuna = require_optuna()
    n_trials = check.positive_int("n_trials", n_trials)
    if timeout is not None:
        timeout = check.positive_float("timeout", timeout)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=study_name, direction=search.direction,
                                pruner=pruner, load_if_exists=True)
    _check_same_study(study, {"base_config": json.dumps(base, sort_keys=True),
                              "search": json.dumps(raw_search, sort_keys=True),
                              "folds": search.folds, "seed": seed}, study_name)
    started = time.monotonic()
    objective = Objective(search, base, datamodule, n_trials, seed, None if timeout is None else started + timeout)
    reporter = Progress(n_trials, timeout, started, progress)
    heartbeat = getattr(storage, "heartbeat_interval", None)
    TrialState = optuna.trial.TrialState
    me = f"{socket.gethostname()}:{os.getpid()}"  # as recorded in each trial's "worker"
    while True:
        left = None if timeout is None else timeout - (time.monotonic() - started)
        if left is not None and left <= 0:
            break
        trials = study.get_trials(deepcopy=False)
        counted = counted_trials(trials)
        waiting = any(t.state == TrialState.WAITING for t in counted)
        if len(counted) >= n_trials and not waiting:
            if heartbeat and any(t.state == TrialState.RUNNING for t in counted):
                # Another worker's trial, or a killed one: wait for it to finish, or to go stale
                # and come back as a waiting retry that this worker runs.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "experimental" since Optuna 2.9
                    optuna.storages.fail_stale_trials(study)
                    fail_trials_killed_before_starting(study, storage)
                time.sleep(min(1.0, heartbeat))
                continue
            break
        # Reseeded per trial: a lone worker's sequence is reproducible from `seed`. Once another
        # worker has run trials of this study, two workers could see the same history at the same
        # moment and draw the same values, so the seed then mixes in this worker's identity, and
        # the constant liar counts running trials as poor ones (their neighbourhood is not drawn
        # again before they finish).
        trial_seed = seed * 100_003 + len(trials)
        if any(t.user_attrs.get("worker", me) != me for t in trials):
            trial_seed = zlib.crc32(f"{trial_seed}:{me}".encode())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant_liar is "experimental" in Optuna
            study.sampler = optuna.samplers.TPESampler(seed=trial_seed, constant_liar=True,
                                                       n_startup_trials=min(10, max(3, n_trials // 3)))
        study.optimize(objective, n_trials=1, timeout=left, catch=(TrialFailed, Surplus), callbacks=[reporter],
                       gc_after_trial=False)
    return study
