"""One pluggy plugin manager per model, built from the techniques the user named."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import pluggy

from lstm_plugins.techniques import hookspecs
from lstm_plugins.techniques._hookcalls import HookCalls
from lstm_plugins.techniques._markers import PROJECT_NAME
from lstm_plugins.techniques._technique import technique_name


class TechniqueValidationError(TypeError):
    """A technique does not fit the hook API or the rest of the stack."""


def _known_hooks() -> str:
    return ", ".join(sorted(hookspecs.__all__))


def exclusive_slots(technique: object, manager: pluggy.PluginManager) -> list[str]:
    """The exclusive slots a technique takes: its declared ``exclusive`` slot, and the slot of
    every exclusive hook it implements (:data:`~lstm_plugins.techniques.hookspecs.EXCLUSIVE_HOOKS`)."""
    slots = []
    declared = getattr(technique, "exclusive", None)
    if declared is not None:
        slots.append(declared)
    for hook in _implemented_hooks(manager, technique):
        slot = hookspecs.EXCLUSIVE_HOOKS.get(hook)
        if slot is not None and slot not in slots:
            slots.append(slot)
    return slots


def _implemented_hooks(manager: pluggy.PluginManager, technique: object) -> list[str]:
    hooks = []
    for attribute in dir(technique):
        options = manager.parse_hookimpl_opts(technique, attribute)
        if options is not None:
            hooks.append(options.get("specname") or attribute)
    return hooks


def build_technique_manager(techniques: Sequence[object]) -> TechniqueManager:
    """A fresh plugin manager holding ``techniques``, called in the order given.

    pluggy calls implementations last-registered-first, so techniques are registered in reverse:
    the first technique the user lists is called first within each hook.

    Raises:
        TechniqueValidationError: a technique implements a hook the core does not define, asks
            for an argument the hook does not have (pluggy's validation, ``specname`` included),
            wraps a chained hook, implements no hook at all, or is given twice.
        ValueError: two techniques claim the same exclusive slot (two clippers, two task-loss
            replacements), naming both.
    """
    manager = TechniqueManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    seen: set[str] = set()
    holders: dict[str, object] = {}
    for technique in techniques:
        name = technique_name(technique)
        if name in seen:
            raise TechniqueValidationError(
                f"Technique `{name}` is given twice; give it once with all its arguments."
            )
        seen.add(name)
        hooks = _implemented_hooks(manager, technique)
        if not hooks:
            raise TechniqueValidationError(
                f"Technique `{name}` ({type(technique).__name__}) implements no hook. Decorate its "
                f"methods with `@lstm_plugins.hookimpl` and name them after a hook: {_known_hooks()}."
            )
        for slot in exclusive_slots(technique, manager):
            if slot in holders:
                first = holders[slot]
                raise ValueError(
                    f"Techniques `{technique_name(first)}` ({first!r}) and `{name}` ({technique!r}) "
                    f"cannot be stacked: both take the `{slot}` slot. Keep one of them."
                )
            holders[slot] = technique
    for technique in reversed(techniques):
        name = technique_name(technique)
        try:
            manager.register(technique, name=name)
            manager.check_pending()
        except pluggy.PluginValidationError as exc:
            raise TechniqueValidationError(f"Technique `{name}`{_mismatch(manager, technique, exc)}") from exc
        _refuse_chained_wrappers(manager, name)
    manager.hook_calls.refresh()
    return manager


def _mismatch(manager: pluggy.PluginManager, technique: object, error: Exception) -> str:
    """What pluggy's validation found, worded with the hook's own arguments."""
    for attribute in dir(technique):
        options = manager.parse_hookimpl_opts(technique, attribute)
        if options is None:
            continue
        hook = options.get("specname") or attribute
        if hook not in hookspecs.__all__:
            return f" implements unknown hook '{hook}'. Known hooks: {_known_hooks()}."
        provided = getattr(manager.hook, hook).spec.argnames
        asked = [
            parameter.name
            for parameter in inspect.signature(getattr(technique, attribute)).parameters.values()
            if parameter.default is inspect.Parameter.empty
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        ]
        missing = [argument for argument in asked if argument not in provided]
        if missing:
            return (
                f": hook `{hook}` asks for {', '.join(map(repr, missing))}, which the hook does not "
                f"provide. It provides: {', '.join(provided)}."
            )
    return f" does not match the hook API: {error}"


def _refuse_chained_wrappers(manager: pluggy.PluginManager, name: str) -> None:
    for hook in (*hookspecs.CHAINED_HOOKS, *hookspecs.UNDO_HOOKS):
        for impl in getattr(manager.hook, hook).get_hookimpls():
            if impl.plugin_name == name and (impl.hookwrapper or getattr(impl, "wrapper", False)):
                why = (
                    "is chained (each implementation receives the previous one's result)"
                    if hook in hookspecs.CHAINED_HOOKS
                    else "undoes a change (every implementation must run)"
                )
                raise TechniqueValidationError(f"Technique `{name}`: hook `{hook}` {why} and cannot be a wrapper.")


class TechniqueManager(pluggy.PluginManager):
    """pluggy's plugin manager, plus :attr:`hook_calls`: the hooks as the model calls them.

    Registering, unregistering or adding call monitoring (``enable_tracing``) refreshes
    :attr:`hook_calls`, so the manager stays a normal pluggy manager.
    """

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self.monitored = False
        """Whether call monitoring is on: monitors see calls only through pluggy's dispatch."""
        self.hook_calls = HookCalls(self)

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        self.hook_calls.refresh()
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        removed = super().unregister(plugin, name)
        self.hook_calls.refresh()
        return removed

    def add_hookcall_monitoring(self, before: Any, after: Any) -> Callable[[], None]:
        undo = super().add_hookcall_monitoring(before, after)
        self.monitored = True
        self.hook_calls.refresh()
        return undo
