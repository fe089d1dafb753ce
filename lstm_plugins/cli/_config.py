"""Run configuration: a YAML file, parsed as data, validated key by key.

A config composes the technique stack by name, and sets the model, the data and the Trainer::

    seed: 0
    model: {hidden_size: 64, bidirectional: true, learning_rate: 0.003}
    techniques:
      - gradient_clipping: {threshold: 1.0}
      - dropout: {output: 0.3}
    data: {dataset: japanese_vowels, batch_size: 32}
    trainer: {max_epochs: 60, accelerator: cpu, devices: 1}

Nothing in a config is evaluated or imported except technique names, which are looked up in the
``lstm_plugins`` entry-point registry.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lstm_plugins import validation as check
from lstm_plugins.cli._tasks import TASKS

DEFAULT_CONFIG: dict[str, Any] = {
    "seed": 0,
    # One intra-op thread: at these sizes a second oneDNN thread gains nothing on an idle
    # 2-core machine and, when anything else runs, makes each step many times slower.
    "threads": 1,
    # A checkpoint every 10 epochs, and last.ckpt at the end: saving every epoch of a 0.2 s
    # epoch costs about 7 % of the run. null keeps Lightning's checkpoint after every epoch.
    "checkpoint_every_n_epochs": 10,
    "model": {
        "hidden_size": 128,
        "num_layers": 1,
        "bidirectional": True,
        "optimizer": "adam",
        "learning_rate": 0.003,
    },
    "techniques": [
        {"gradient_clipping": {"threshold": 1.0}},
        {"dropout": {"input": 0.1, "output": 0.3}},
        {"l2": {"weight": 1e-5}},
        {"grad_norm": {"log_every_n_steps": 10}},
    ],
    "data": {"dataset": "japanese_vowels", "batch_size": 16, "val_fraction": 0.1},
    "trainer": {"max_epochs": 100, "accelerator": "auto", "devices": 1, "log_every_n_steps": 10},
}
"""The default stack that ``lstm-plugins fit`` trains on JapaneseVowels."""

_SECTIONS = {"seed", "threads", "checkpoint_every_n_epochs", "task", "model", "techniques", "data", "trainer"}
_TRAINER_KEYS = {
    "max_epochs", "min_epochs", "max_steps", "accelerator", "devices", "num_nodes", "strategy",
    "precision", "log_every_n_steps", "gradient_clip_val", "gradient_clip_algorithm",
    "accumulate_grad_batches", "deterministic", "benchmark", "enable_progress_bar",
    "enable_checkpointing", "enable_model_summary", "default_root_dir", "limit_train_batches",
    "limit_val_batches", "limit_test_batches", "check_val_every_n_epoch", "logger",
    "num_sanity_val_steps", "use_distributed_sampler",
}


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key."""


def _check_keys(section: str, mapping: Any, allowed: set[str]) -> dict[str, Any]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"Expected `{section}` to be a mapping, but got {mapping!r}.")
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {', '.join(map(repr, unknown))} in `{section}`. "
            f"Allowed keys: {', '.join(sorted(allowed))}."
        )
    return dict(mapping)


def _optional_positive_int(config: Mapping[str, Any], key: str) -> int | None:
    try:
        return check.optional_positive_int(key, config.get(key), none="null")
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, mapping by mapping; lists are replaced whole."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate_config(config: Any, base_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Check every key and resolve data paths relative to ``base_dir``; returns a clean copy.

    Example:
        >>> validate_config({"trainer": {"max_epochs": 1}})["trainer"]
        {'max_epochs': 1}
        >>> validate_config({"trainer": {"epochs": 1}})
        Traceback (most recent call last):
        ...
        lstm_plugins.cli._config.ConfigError: Unknown key(s) 'epochs' in `trainer`. Allowed keys: ...
    """
    config = _check_keys("config", config, _SECTIONS)
    seed = config.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"Expected `seed` to be an int, but got {seed!r}.")
    threads = _optional_positive_int(config, "threads")
    every = _optional_positive_int(config, "checkpoint_every_n_epochs")
    task = config.get("task", "classification")
    if task not in TASKS:
        raise ConfigError(f"Expected `task` to be one of {', '.join(map(repr, TASKS))}, but got {task!r}.")
    recipe = TASKS[task]
    model = _check_keys("model", config.get("model"), set(recipe.model_keys))
    data = _check_keys("data", config.get("data"), set(recipe.data_keys))
    trainer = _check_keys("trainer", config.get("trainer"), _TRAINER_KEYS)
    techniques = config.get("techniques") or []
    if not isinstance(techniques, list):
        raise ConfigError(f"Expected `techniques` to be a list, but got {techniques!r}.")
    for spec in techniques:
        if not isinstance(spec, (str, Mapping)):
            raise ConfigError(
                "Expected each entry of `techniques` to be a name or a mapping, "
                f"but got {spec!r}."
            )
    first_file = recipe.file_keys[0] if recipe.file_keys else None
    has_files = first_file is not None and first_file in data
    dataset = data.get("dataset", None if has_files else recipe.datasets[0])
    if has_files and dataset is not None:
        raise ConfigError(f"Give either `data.dataset` or `data.{first_file}` ({recipe.file_kind}), not both.")
    if dataset is not None and dataset not in recipe.datasets:
        raise ConfigError(
            f"Expected `data.dataset` to be one of {', '.join(recipe.datasets)} for the `{task}` task, "
            f"but got {dataset!r}."
        )
    for key in recipe.file_keys[1:]:
        if key in data and not has_files:
            raise ConfigError(f"`data.{key}` needs `data.{first_file}`: give both {recipe.file_kind}.")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    for key in recipe.file_keys:
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError(f"Expected `data.{key}` to be a path, but got {data[key]!r}.")
            path = Path(data[key]).expanduser()
            data[key] = str(path if path.is_absolute() else base / path)
    if dataset is not None:
        data["dataset"] = dataset
    return {
        "seed": seed, "threads": threads, "checkpoint_every_n_epochs": every, "task": task, "model": model,
        "techniques": list(techniques), "data": data, "trainer": trainer,
    }


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config with ``yaml.safe_load`` (no tags, no code) and validate it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read config {str(path)!r}: {exc.strerror}.") from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config {str(path)!r} is not valid YAML: {exc}") from exc
    return validate_config(loaded if loaded is not None else {}, base_dir=path.parent)


def parse_assignment(text: str) -> dict[str, Any]:
    """``"trainer.max_epochs=5"`` as a nested mapping; the value is parsed as YAML data.

    Example:
        >>> parse_assignment("model.bidirectional=false")
        {'model': {'bidirectional': False}}
    """
    key, separator, raw = text.partition("=")
    if not separator or not key.strip():
        raise ConfigError(f"Expected `--set` to look like section.key=value, but got {text!r}.")
    value: Any = yaml.safe_load(raw) if raw.strip() else None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value
