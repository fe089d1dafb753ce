"""One pluggy plugin manager per model, built from the techniques the user named."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import pluggy

from lstm_plugins import hookspecs
from lstm_plugins._markers import PROJECT_NAME
from lstm_plugins._technique import technique_name


class TechniqueValidationError(TypeError):
    """A technique does not fit the hook API or the rest of the stack."""


def _known_hooks() -> str:
    return ", ".join(sorted(hookspecs.__all__))


def _check_exclusive(techniques: Sequence[object]) -> None:
    holders: dict[str, object] = {}
    for technique in techniques:
        slot = getattr(technique, "exclusive", None)
        if slot is None:
            continue
        if slot in holders:
            first = holders[slot]
            raise ValueError(
                f"Techniques `{technique_name(first)}` ({first!r}) and `{technique_name(technique)}` "
                f"({technique!r}) cannot be stacked: both take the `{slot}` slot. Keep one of them."
            )
        holders[slot] = technique


def build_plugin_manager(techniques: Sequence[object]) -> pluggy.PluginManager:
    """A fresh plugin manager holding ``techniques``, called in the order given.

    pluggy calls implementations last-registered-first, so techniques are registered in reverse:
    the first technique the user lists is called first within each hook.

    Raises:
        TechniqueValidationError: a technique implements a hook the core does not define, asks
            for an argument the hook does not have, implements no hook at all, or is given twice.
        ValueError: two techniques claim the same exclusive slot (two clippers).
    """
    _check_exclusive(techniques)
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    seen: set[str] = set()
    for technique in techniques:
        name = technique_name(technique)
        if name in seen:
            raise TechniqueValidationError(
                f"Technique `{name}` is given twice; give it once with all its arguments."
            )
        seen.add(name)
    for technique in techniques:
        _check_hook_implementations(manager, technique)
    for technique in reversed(techniques):
        name = technique_name(technique)
        try:
            manager.register(technique, name=name)
        except pluggy.PluginValidationError as exc:  # a backstop: the checks above name the problem
            raise TechniqueValidationError(
                f"Technique `{name}` does not match the hook API: {exc}"
            ) from exc
    return manager


def _check_hook_implementations(manager: pluggy.PluginManager, technique: object) -> None:
    name = technique_name(technique)
    implemented = []
    for attribute in dir(technique):
        if manager.parse_hookimpl_opts(technique, attribute) is None:
            continue
        implemented.append(attribute)
        spec = getattr(hookspecs, attribute, None)
        if attribute not in hookspecs.__all__ or spec is None:
            raise TechniqueValidationError(
                f"Technique `{name}` implements unknown hook '{attribute}'. Known hooks: {_known_hooks()}."
            )
        provided = list(inspect.signature(spec).parameters)
        asked = [
            parameter.name
            for parameter in inspect.signature(getattr(technique, attribute)).parameters.values()
            if parameter.default is inspect.Parameter.empty
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        ]
        missing = [argument for argument in asked if argument not in provided]
        if missing:
            raise TechniqueValidationError(
                f"Technique `{name}`: hook `{attribute}` asks for {', '.join(map(repr, missing))}, "
                f"which the hook does not provide. It provides: {', '.join(provided)}."
            )
    if not implemented:
        raise TechniqueValidationError(
            f"Technique `{name}` ({type(technique).__name__}) implements no hook. Decorate its "
            f"methods with `@lstm_plugins.hookimpl` and name them after a hook: {_known_hooks()}."
        )
