"""What is read from the command line before LightningCLI parses it: the task, and a check that no
``class_path`` in a config or a flag names anything but Lightning's own callbacks and loggers.

jsonargparse imports the module a ``class_path`` names before it checks the class, so the check runs
first, on the raw YAML (``yaml.safe_load``: data only) of every ``--config`` and of every flag value.

Example:
    >>> read_task(["fit", "--task", "regression"])
    'regression'
    >>> check_class_paths(["fit", "--trainer.callbacks", "os.system"])
    Traceback (most recent call last):
    ...
    lstm_plugins.cli._config.ConfigError: `trainer.callbacks` names 'os.system', ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from lstm_plugins.cli._config import ConfigError
from lstm_plugins.cli._yaml import check_yaml, load_yaml, shorten

__all__ = ["check_class_paths", "check_config", "read_task", "task_of"]

_LOGGERS = ("CSVLogger", "TensorBoardLogger")
_PREFIXES = ("pytorch_lightning.", "lightning.pytorch.")


def _allowed_callbacks() -> list[str]:
    import pytorch_lightning.callbacks as callbacks

    return sorted(name for name in callbacks.__all__ if name[:1].isupper())


def _flag_values(argv: Sequence[str]) -> Iterator[tuple[str, str]]:
    """``(key, raw value)`` of every ``--key value`` / ``--key=value`` flag."""
    index = 0
    while index < len(argv):
        item = argv[index]
        if item.startswith("--"):
            key, separator, value = item[2:].partition("=")
            if separator:
                yield key, value
            elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
                index += 1
                yield key, argv[index]
        index += 1


def _load(text: str, what: str) -> Any:
    """``text`` as YAML (a repeated key or an alias bomb refused, naming ``what``), or the text
    itself when it is not YAML."""
    try:
        return load_yaml(text, what)
    except yaml.YAMLError:
        return text  # a plain string: jsonargparse will say what is wrong with it


def _read_config(value: str) -> tuple[str, str]:
    """``(text, name for messages)`` of a ``--config`` value: a file, or YAML given inline."""
    path = Path(value)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8-sig"), value  # -sig: a byte-order mark is not a key
        except UnicodeDecodeError as exc:
            raise ConfigError(f"Cannot read config {value!r}: byte {exc.start} is not UTF-8 text "
                              f"({exc.object[exc.start:exc.start + 1]!r}); save the file as UTF-8.") from None
        except OSError as exc:
            raise ConfigError(f"Cannot read config {value!r}: {exc.strerror or exc}.") from None
    if path.exists():
        raise ConfigError(f"Cannot read config {value!r}: it is not a file.")
    if "\n" not in value and ":" not in value:
        raise ConfigError(f"Cannot read config {shorten(value)!r}: no such file.")
    return value, "--config"


def _configs(argv: Sequence[str]) -> Iterator[Any]:
    for key, value in _flag_values(argv):
        if key == "config":
            text, name = _read_config(value)
            try:
                loaded = load_yaml(text, name)
            except yaml.YAMLError as exc:
                raise ConfigError(f"Cannot read config {name!r}: {_yaml_problem(exc)}") from None
            if isinstance(loaded, dict):
                yield loaded
            elif loaded is not None:
                raise ConfigError(f"Expected config {name!r} to be a mapping of keys (trainer:, model:, data:, "
                                  f"...), but got a {type(loaded).__name__}: {shorten(text.strip(), 80)!r}.")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}." if mark is not None else f"{problem}."


_TOP_LEVEL = ("seed_everything", "task", "threads", "checkpoint_every_n_epochs", "early_stopping", "trainer", "model",
              "data", "ckpt_path", "weights_only", "plot", "output", "input", "flush_denormals")


def _check_top_level(config: dict[Any, Any]) -> None:
    """Refuse an unknown top-level key in a config (jsonargparse skips an empty ``modle: {}``)."""
    unknown = sorted(str(key) for key in config if key not in _TOP_LEVEL)
    if unknown:
        raise ConfigError(f"Unknown key(s) {', '.join(map(repr, unknown))} in the config. "
                          f"Allowed keys: {', '.join(sorted(_TOP_LEVEL))}.")


def _known_task(task: Any) -> str:
    from lstm_plugins.cli._tasks import TASKS

    if task not in TASKS:
        raise ConfigError(f"Expected `task` to be one of {', '.join(map(repr, TASKS))}, but got {task!r}.")
    return task


def read_task(argv: Sequence[str]) -> str:
    """The task a command line asks for: ``--task``, else the last config's ``task:``, else
    ``classification``; an unknown task is refused with the list of tasks."""
    task = "classification"
    for config in _configs(argv):
        task = config.get("task", task)
    for key, value in _flag_values(argv):
        if key == "task":
            task = value
    return _known_task(task)


def task_of(config: Any) -> str:
    """The task a config (a dict) asks for: its ``task:``, else ``classification``."""
    if not isinstance(config, dict):
        raise ConfigError(f"Expected the config to be a mapping, but got {config!r}.")
    return _known_task(config.get("task", "classification"))


def _class_paths(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """``(key, class path)`` of every ``class_path`` below ``value`` and of the strings given
    directly as ``trainer.callbacks`` / ``trainer.logger`` entries."""
    if isinstance(value, dict):
        for name, item in value.items():
            name = str(name)
            if name == "class_path":
                yield key, str(item)
            else:
                yield from _class_paths(item, f"{key}.{name}" if key else name)
    elif isinstance(value, list):
        for item in value:
            yield from _class_paths(item, key)
    elif isinstance(value, str) and key.split("+")[0] in ("trainer.callbacks", "trainer.logger"):
        if value.strip().lower() not in ("true", "false", "null", "none", ""):
            yield key, value


def _refuse(key: str, path: str) -> None:
    area = "logger" if key.startswith("trainer.logger") else "callbacks"
    module, _, name = path.rpartition(".")
    allowed = list(_LOGGERS) if area == "logger" else _allowed_callbacks()
    fine = name in allowed and (not module or any(module.startswith(prefix) for prefix in _PREFIXES))
    if key.startswith(("trainer.callbacks", "trainer.logger")) and fine:
        return
    if not key.startswith("trainer."):
        raise ConfigError(f"`{key}` names class {path!r}, but a config names techniques by registered name only "
                          "(nothing is imported): `- gradient_clipping: {threshold: 1.0}`.")
    raise ConfigError(
        f"`{key}` names {path!r}, but a config may only name Lightning's own "
        f"{'loggers' if area == 'logger' else 'callbacks'} (nothing else is imported). Allowed: {', '.join(allowed)}."
    )


def check_config(config: dict[Any, Any]) -> None:
    """Refuse an unknown top-level key, and any ``class_path`` but a Lightning callback or logger,
    in a config (a dict), before anything is imported."""
    _check_top_level(config)
    _check_config_class_paths(config)


def _check_config_class_paths(config: dict[Any, Any]) -> None:
    for key, path in _class_paths(config, ""):
        _refuse(key.removeprefix("fit.").removeprefix("test.").removeprefix("validate.")
                .removeprefix("predict."), path)


def check_class_paths(argv: Sequence[str]) -> None:
    """Refuse any ``class_path`` but a Lightning callback or logger, before anything is imported."""
    configs = list(_configs(argv))
    for config in configs:
        _check_top_level(config)
    for config in configs:
        _check_config_class_paths(config)
    for key, value in _flag_values(argv):
        if key == "config":
            continue
        check_yaml(value, f"--{key}")
        if key.endswith(".class_path"):
            _refuse(key[: -len(".class_path")], value)
            continue
        direct = key.split("+")[0] in ("trainer.callbacks", "trainer.logger")
        if not direct and "class_path" not in value:
            continue
        loaded = _load(value, key)
        for found_key, path in _class_paths(loaded, key):
            _refuse(found_key, path)
