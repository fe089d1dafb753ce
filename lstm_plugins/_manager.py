"""One pluggy plugin manager per model, built from the techniques the user named."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

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
    for caller in manager.hook.__dict__.values():
        if isinstance(caller, pluggy.HookCaller):
            for implementation in caller.get_hookimpls():
                implementation.function = _naming_errors(  # type: ignore[misc]
                    implementation.function, implementation.plugin_name, caller.name
                )
    return manager


def _naming_errors(function: Callable[..., Any], technique: str, hook: str) -> Callable[..., Any]:
    """Wrap a hook implementation so an exception it raises names the technique and the hook.

    The exception keeps its type and message (callers may catch it); a note is added. Costs one
    extra call frame per hook call and nothing when no exception is raised.
    """

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            note = f"(raised by technique `{technique}` in hook `{hook}`)"
            if hasattr(exc, "add_note"):
                if note not in getattr(exc, "__notes__", ()):
                    exc.add_note(note)
            elif exc.args and isinstance(exc.args[0], str) and note not in exc.args[0]:
                exc.args = (f"{exc.args[0]} {note}", *exc.args[1:])
            raise

    return call


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
