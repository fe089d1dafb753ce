"""The registry: which techniques are installed, read from the ``lstm_plugins`` entry points.

An entry point makes a technique *available by name*; it is active only in a model that names it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Union

from lstm_plugins.techniques._markers import PROJECT_NAME
from lstm_plugins.techniques._technique import technique_name

BLOCK_ENVIRONMENT_VARIABLE = "LSTM_PLUGINS_BLOCK"
"""Comma-separated technique names that may not be used (``LSTM_PLUGINS_BLOCK=l2,dropout``)."""

DISABLE_ENVIRONMENT_VARIABLE = "LSTM_PLUGINS_DISABLE_ENTRY_POINTS"
"""Set to 1 to load no third-party entry point: only the built-in techniques are available."""

BUILT_IN_DISTRIBUTION = "lstm-plugins"

TechniqueSpec = Union[object, str, Mapping[str, Any]]
"""A technique object, a registered name, ``{"name": ..., **arguments}`` or ``{name: arguments}``."""


@dataclass(frozen=True)
class TechniqueInfo:
    """One installed technique, as ``lstm-plugins plugins`` lists it."""

    name: str
    target: str
    """The entry point's ``module:attribute``."""
    distribution: str
    """The installed package that registers it, with its version."""
    description: str
    error: str | None = None
    """Why it could not be loaded, when it could not."""
    blocked: bool = False


def blocked_names() -> frozenset[str]:
    raw = os.environ.get(BLOCK_ENVIRONMENT_VARIABLE, "")
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def third_party_loading_disabled() -> bool:
    return os.environ.get(DISABLE_ENVIRONMENT_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    only_built_ins = third_party_loading_disabled()
    for entry_point in entry_points(group=PROJECT_NAME):
        if only_built_ins and _distribution_name(entry_point) != BUILT_IN_DISTRIBUTION:
            continue
        # The first distribution on sys.path wins, as for imports.
        found.setdefault(entry_point.name, entry_point)
    return found


def _distribution_name(entry_point: EntryPoint) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return None if dist is None else dist.metadata["Name"]


def _distribution_label(entry_point: EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "unknown"
    return f"{dist.metadata['Name']} {dist.version}"


def available_techniques() -> dict[str, TechniqueInfo]:
    """Every technique registered under the entry-point group, loaded to read its description.

    A technique that fails to import is listed with the error instead of breaking the listing.

    Example:
        >>> from lstm_plugins import available_techniques
        >>> "gradient_clipping" in available_techniques()
        True
    """
    blocked = blocked_names()
    listing: dict[str, TechniqueInfo] = {}
    for name, entry_point in sorted(_entry_points().items()):
        description, error = "", None
        try:
            target = entry_point.load()
            describe = getattr(target, "description", None)
            if callable(describe):
                description = describe()
            else:
                description = ((target.__doc__ or "").strip().splitlines() or [""])[0]
        except Exception as exc:  # a broken third-party package must not break the listing
            error = f"{type(exc).__name__}: {exc}"
        listing[name] = TechniqueInfo(
            name=name,
            target=entry_point.value,
            distribution=_distribution_label(entry_point),
            description=description,
            error=error,
            blocked=name in blocked,
        )
    return listing


def load_technique(name: str) -> Any:
    """The class (or factory) registered under ``name``.

    Raises:
        ValueError: the name is unknown (the message lists the known names) or blocked.
        ImportError: the registering package fails to import.
    """
    if name in blocked_names():
        raise ValueError(
            f"Technique `{name}` is blocked by the environment variable {BLOCK_ENVIRONMENT_VARIABLE}."
        )
    known = _entry_points()
    if name not in known:
        names = ", ".join(sorted(known)) or "(none installed)"
        raise ValueError(f"Unknown technique `{name}`. Known techniques: {names}.")
    try:
        return known[name].load()
    except Exception as exc:
        raise ImportError(
            f"Technique `{name}` ({known[name].value}, from {_distribution_label(known[name])}) "
            f"failed to load: {type(exc).__name__}: {exc}"
        ) from exc


def resolve_technique(spec: TechniqueSpec) -> object:
    """Turn a technique spec into a technique object.

    Example:
        >>> from lstm_plugins.techniques import resolve_technique
        >>> resolve_technique({"name": "gradient_clipping", "threshold": 0.5})
        GradientClipping(threshold=0.5, mode='norm', norm_type=2.0, log_every_n_steps=None)
        >>> resolve_technique({"dropout": {"output": 0.2}})
        Dropout(input=0.0, between_layers=0.0, output=0.2)
    """
    if isinstance(spec, str):
        name, arguments = spec, {}
    elif isinstance(spec, Mapping):
        if "name" in spec:
            arguments = dict(spec)
            name = arguments.pop("name")
        elif len(spec) == 1:
            ((name, arguments),) = spec.items()
            arguments = {} if arguments is None else arguments
        else:
            raise ValueError(
                "Expected a technique spec to be a name, {'name': NAME, **arguments} or "
                f"{{NAME: arguments}}, but got {dict(spec)!r}."
            )
        if not isinstance(name, str):
            raise TypeError(f"Expected a technique name to be a str, but got {name!r}.")
        if not isinstance(arguments, Mapping):
            raise TypeError(
                f"Expected the arguments of technique `{name}` to be a mapping, but got {arguments!r}."
            )
    else:
        if isinstance(spec, type):
            raise TypeError(
                f"Expected a technique object, but got the class {spec.__name__}; "
                f"instantiate it: {spec.__name__}(...)."
            )
        return spec
    factory = load_technique(name)
    try:
        technique = factory(**arguments)
    except TypeError as exc:
        raise TypeError(f"Technique `{name}`: {exc}") from exc
    if getattr(technique, "name", None) is None:
        try:
            technique.name = name
        except AttributeError:
            pass
    return technique


def technique_specs(techniques: Sequence[object]) -> list[dict[str, Any]] | None:
    """The stack as rebuildable specs, or ``None`` when a technique cannot be described by name."""
    specs: list[dict[str, Any]] = []
    for technique in techniques:
        config = getattr(technique, "config", None)
        name = getattr(technique, "name", None)
        if not isinstance(name, str) or not isinstance(config, dict):
            return None
        specs.append({"name": technique_name(technique), **config})
    return specs
