"""The search config: what ``lstm-plugins tune`` varies on top of a base ``fit`` config.

A search config (YAML, optionally under a top-level ``search:`` key)::

    metric: val/accuracy        # default: val/accuracy for classification, val/loss otherwise
    direction: maximize         # default: maximize for accuracy/F1/recall/R², minimize otherwise
    folds: 3                    # stratified k-fold on the training split
    model:
      hidden_size: {int: [16, 128], log: true}
      learning_rate: default    # the tuner's default range (DEFAULT_RANGES)
    data:
      batch_size: {choice: [8, 16, 32]}
    trainer:
      max_epochs: {int: [20, 60]}
    techniques:
      gradient_clipping: true   # on; its declared search space is sampled
      dropout: optional         # on or off; its declared space sampled when on
      l2: {optional: true, space: {weight: {float: [1.0e-6, 1.0e-4], log: true}}}
      grad_norm: false          # taken off the base stack

Every name is checked (model, data and Trainer arguments against their signatures, techniques
against the registry, technique arguments against ``__init__``) before any trial runs.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lstm_plugins.cli._config import DEFAULT_CONFIG, ConfigError
from lstm_plugins.techniques import Choice, FloatRange, IntRange, SearchValue, load_technique
from lstm_plugins.techniques._search_space import parse_search_value

__all__ = ["DEFAULT_RANGES", "Search", "TechniqueCandidate", "parse_search", "sample_config", "technique_stack"]

DEFAULT_RANGES: dict[str, SearchValue] = {
    "model.hidden_size": IntRange(16, 256, log=True),
    "model.num_layers": IntRange(1, 2),
    "model.bidirectional": Choice(True, False),
    "model.learning_rate": FloatRange(1e-4, 1e-2, log=True),
    "model.optimizer": Choice("adam", "adamw"),
    "data.batch_size": Choice(8, 16, 32, 64),
    "trainer.max_epochs": IntRange(10, 100, log=True),
}
"""The range ``default`` stands for, per ``section.argument``."""

_LINKED = {"input_size", "num_classes", "num_outputs", "target_mean", "target_std", "num_series", "horizon",
           "seasonality", "vocab_size", "vocabulary", "techniques"}
# The data arguments a fold honours (the folds replace `val_fraction`; the data set is the base's).
_DATA_SEARCHED = {"batch_size", "standardize", "length_batching"}
_HIGHER_IS_BETTER = ("accuracy", "f1", "recall", "precision", "r2", "auroc")


@dataclass(frozen=True)
class TechniqueCandidate:
    """One technique of a search: ``optional`` (switched on and off), its ``space`` (declared
    ranges merged with overrides) and ``fixed`` arguments."""

    name: str
    optional: bool
    space: dict[str, SearchValue]
    fixed: dict[str, Any]


@dataclass
class Search:
    """A parsed, checked search config (see the module docstring)."""

    metric: str
    direction: str
    folds: int
    space: dict[str, SearchValue]
    """``section.argument`` -> range, for the model, data and Trainer."""
    techniques: list[TechniqueCandidate] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def _signature_names(function: Any) -> set[str]:
    return {name for name in inspect.signature(function).parameters if name != "self"}


def _section_names(task: str) -> dict[str, set[str]]:
    from pytorch_lightning import Trainer

    from lstm_plugins.cli._lightning import TASK_CLASSES

    classes = TASK_CLASSES[task]
    return {
        "model": _signature_names(classes.model.__init__) - _LINKED,
        "data": _signature_names(classes.data) & _DATA_SEARCHED,
        "trainer": _signature_names(Trainer.__init__) - {"callbacks", "logger", "plugins", "strategy"},
    }


def technique_stack(base: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The base config's technique stack as ``(name, arguments)`` pairs (``fit``'s default stack
    when a classification config gives none).

    Example:
        >>> technique_stack({"model": {"techniques": ["l2", {"dropout": {"output": 0.2}}]}})
        [('l2', {}), ('dropout', {'output': 0.2})]
    """
    model = base.get("model") or {}
    if "techniques" in model:
        entries = model["techniques"] or []
    else:
        entries = DEFAULT_CONFIG["model"]["techniques"] if base.get("task", "classification") == "classification" else []
    stack: list[tuple[str, dict[str, Any]]] = []
    for entry in entries:
        if isinstance(entry, str):
            stack.append((entry, {}))
        elif isinstance(entry, Mapping) and "name" in entry:
            stack.append((entry["name"], {k: v for k, v in entry.items() if k != "name"}))
        elif isinstance(entry, Mapping) and len(entry) == 1:
            ((name, arguments),) = entry.items()
            stack.append((name, dict(arguments or {})))
        else:
            raise ConfigError(f"Expected each `model.techniques` entry to be a name or {{NAME: arguments}}, but got "
                              f"{entry!r}.")
    return stack


def _declared_space(name: str, factory: Any) -> dict[str, SearchValue]:
    declared = getattr(factory, "search_space", None) or {}
    if not isinstance(declared, Mapping):
        raise ConfigError(f"Technique `{name}`: expected `search_space` to be a mapping, but got {declared!r}.")
    arguments = _signature_names(factory.__init__ if isinstance(factory, type) else factory)
    space = {}
    for key, value in declared.items():
        if key not in arguments:
            raise ConfigError(f"Technique `{name}` declares a search space for `{key}`, which is not an argument "
                              f"of its __init__ ({', '.join(sorted(arguments))}).")
        space[key] = parse_search_value(f"{name}.search_space.{key}", value)
    return space


def _candidate(name: str, entry: Any) -> TechniqueCandidate | None:
    where = f"search.techniques.{name}"
    try:
        factory = load_technique(name)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"`{where}`: {exc}") from None
    if entry is False or entry in ("off", "false"):
        return None
    if entry is True or entry in ("on", "true", None):
        entry = {}
    elif entry == "optional":
        entry = {"optional": True}
    if not isinstance(entry, Mapping):
        raise ConfigError(f"Expected `{where}` to be true, false, optional or {{optional:, declared:, space:}}, "
                          f"but got {entry!r}.")
    unknown = sorted(set(entry) - {"optional", "declared", "space"})
    if unknown:
        raise ConfigError(f"Unknown key(s) {unknown} in `{where}`; expected optional, declared, space.")
    space = _declared_space(name, factory) if entry.get("declared", True) else {}
    arguments = _signature_names(factory.__init__ if isinstance(factory, type) else factory)
    fixed: dict[str, Any] = {}
    for key, value in (entry.get("space") or {}).items():
        if key not in arguments:
            raise ConfigError(f"Unknown argument `{key}` of technique `{name}` in `{where}.space`; its arguments: "
                              f"{', '.join(sorted(arguments))}.")
        if isinstance(value, (Mapping, FloatRange, IntRange, Choice)):
            space[key] = parse_search_value(f"{where}.space.{key}", value)
        else:
            space.pop(key, None)
            fixed[key] = value
    return TechniqueCandidate(name, bool(entry.get("optional", False)), space, fixed)


def parse_search(search: Mapping[str, Any], task: str = "classification") -> Search:
    """Check a search config (a dict; see the module docstring) and return it parsed.

    Example:
        >>> search = parse_search({"model": {"hidden_size": "default"}, "techniques": {"dropout": "optional"}})
        >>> search.space, search.techniques[0].space["output"], search.metric
        ({'model.hidden_size': IntRange(16, 256, log=True)}, FloatRange(0.0, 0.5), 'val/accuracy')
        >>> parse_search({"model": {"hiden_size": {"int": [8, 16]}}})
        Traceback (most recent call last):
        ...
        lstm_plugins.cli._config.ConfigError: Unknown parameter `search.model.hiden_size`; known: bidirectional, ...
    """
    if not isinstance(search, Mapping):
        raise ConfigError(f"Expected the search config to be a mapping, but got {search!r}.")
    raw = copy.deepcopy(dict(search.get("search", search)))
    unknown = sorted(set(raw) - {"metric", "direction", "folds", "model", "data", "trainer", "techniques"})
    if unknown:
        raise ConfigError(f"Unknown key(s) {unknown} in the search config; expected metric, direction, folds, model, "
                          "data, trainer, techniques.")
    metric = raw.get("metric") or ("val/accuracy" if task in ("classification", "sequence_labelling") else "val/loss")
    if not isinstance(metric, str):
        raise ConfigError(f"Expected `search.metric` to be a logged metric name, but got {metric!r}.")
    default_direction = "maximize" if any(word in metric.lower() for word in _HIGHER_IS_BETTER) else "minimize"
    direction = raw.get("direction") or default_direction
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"Expected `search.direction` to be maximize or minimize, but got {direction!r}.")
    folds = raw.get("folds", 3)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"Expected `search.folds` to be an int >= 2, but got {folds!r}.")
    names = _section_names(task)
    space: dict[str, SearchValue] = {}
    for section in ("model", "data", "trainer"):
        entries = raw.get(section) or {}
        if not isinstance(entries, Mapping):
            raise ConfigError(f"Expected `search.{section}` to be a mapping of argument to range, but got {entries!r}.")
        for key, value in entries.items():
            where = f"{section}.{key}"
            if key not in names[section]:
                raise ConfigError(f"Unknown parameter `search.{where}`; known: {', '.join(sorted(names[section]))}.")
            if value == "default":
                if where not in DEFAULT_RANGES:
                    raise ConfigError(f"`search.{where}` has no default range; give one ({{float: [low, high]}}, "
                                      f"...). Defaults exist for: {', '.join(DEFAULT_RANGES)}.")
                space[where] = DEFAULT_RANGES[where]
            else:
                space[where] = parse_search_value(f"search.{where}", value)
    techniques, removed = [], []
    entries = raw.get("techniques") or {}
    if not isinstance(entries, Mapping):
        raise ConfigError(f"Expected `search.techniques` to be a mapping of technique name to true, false, optional "
                          f"or a mapping, but got {entries!r}.")
    for name, entry in entries.items():
        candidate = _candidate(name, entry)
        if candidate is None:
            removed.append(name)
        else:
            techniques.append(candidate)
    return Search(metric, direction, folds, space, techniques, removed, raw)


def _suggest(trial: Any, name: str, value: SearchValue) -> Any:
    if isinstance(value, FloatRange):
        return trial.suggest_float(name, value.low, value.high, log=value.log)
    if isinstance(value, IntRange):
        return trial.suggest_int(name, value.low, value.high, log=value.log, step=value.step)
    return trial.suggest_categorical(name, list(value.options))


def sample_config(trial: Any, search: Search, base: Mapping[str, Any]) -> dict[str, Any]:
    """The base config with one sample of the search (``trial``: anything with Optuna's
    ``suggest_float``/``suggest_int``/``suggest_categorical``, e.g. an ``optuna.Trial`` or
    ``optuna.trial.FixedTrial``). Parameter names: ``model.hidden_size``, ``technique.dropout``
    (on/off), ``dropout.output``.

    Example:
        >>> class Low:  # takes every range's low end, every choice's first option
        ...     def suggest_float(self, name, low, high, log=False): return low
        ...     def suggest_int(self, name, low, high, log=False, step=1): return low
        ...     def suggest_categorical(self, name, options): return options[0]
        >>> search = parse_search({"model": {"hidden_size": {"int": [8, 16]}}, "techniques": {"l2": True}})
        >>> config = sample_config(Low(), search, {"model": {"techniques": [{"dropout": {"output": 0.1}}]}})
        >>> config["model"]
        {'techniques': [{'dropout': {'output': 0.1}}, {'l2': {'weight': 1e-06}}], 'hidden_size': 8}
    """
    config = copy.deepcopy(dict(base))
    for name, value in search.space.items():
        section, key = name.split(".", 1)
        config.setdefault(section, {})
        config[section] = dict(config[section] or {})
        config[section][key] = _suggest(trial, name, value)
    stack = [(name, args) for name, args in technique_stack(base) if name not in search.removed]
    chosen: dict[str, dict[str, Any] | None] = {}
    for candidate in search.techniques:
        on = trial.suggest_categorical(f"technique.{candidate.name}", [True, False]) if candidate.optional else True
        if not on:
            chosen[candidate.name] = None
            continue
        arguments = dict(candidate.fixed)
        for key, value in candidate.space.items():
            arguments[key] = _suggest(trial, f"{candidate.name}.{key}", value)
        chosen[candidate.name] = arguments
    techniques = []
    for name, arguments in stack:
        if name in chosen:
            if chosen[name] is not None:
                techniques.append({name: {**arguments, **chosen.pop(name)}})  # type: ignore[dict-item]
            else:
                chosen.pop(name)
        else:
            techniques.append({name: arguments} if arguments else name)
    techniques += [{name: arguments} for name, arguments in chosen.items() if arguments is not None]
    config.setdefault("model", {})
    config["model"] = {"techniques": techniques, **{k: v for k, v in (config["model"] or {}).items()
                                                    if k != "techniques"}}
    return config
