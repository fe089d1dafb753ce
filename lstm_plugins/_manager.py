"""One pluggy plugin manager per model, built from the techniques the user named."""

from __future__ import annotations

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


def build_plugin_manager(techniques: Sequence[object]) -> TechniqueManager:
    """A fresh plugin manager holding ``techniques``, called in the order given.

    pluggy calls implementations last-registered-first, so techniques are registered in reverse:
    the first technique the user lists is called first within each hook.

    Raises:
        TechniqueValidationError: a technique implements a hook the core does not define, asks
            for an argument the hook does not have, implements no hook at all, or is given twice.
        ValueError: two techniques claim the same exclusive slot (two clippers).
    """
    _check_exclusive(techniques)
    manager = TechniqueManager(PROJECT_NAME)
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
    manager.hook_calls.refresh()
    return manager


class TechniqueManager(pluggy.PluginManager):
    """pluggy's plugin manager, plus :attr:`hook_calls`: the hooks as the model calls them.

    Registering, unregistering or adding call monitoring (``enable_tracing``) refreshes
    :attr:`hook_calls`, so the manager stays a normal pluggy manager.
    """

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self._monitored = False
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
        self._monitored = True  # monitors see calls only through pluggy's own dispatch
        self.hook_calls.refresh()
        return undo


class HookCalls:
    """One callable per hook, with pluggy's semantics for the model's (non-firstresult) hooks:
    ``hook_calls.loss_terms(model=..., ...)`` calls every implementation in pluggy's order and
    returns the non-``None`` results in a list.

    Plain implementations are called directly, each with the arguments it asks for: at 10
    plugins that is about 3x cheaper than pluggy's general dispatch, and a hook without
    implementations costs one function call. An exception keeps its type and gains a note
    naming the technique and the hook. Hooks with wrapper implementations (``wrapper=True``,
    ``hookwrapper=True``) or under call monitoring go through pluggy.
    """

    def __init__(self, manager: TechniqueManager) -> None:
        self._manager = manager

    def refresh(self) -> None:
        """Rebuild every hook's call from the manager's current registrations."""
        self._implemented = {
            name: bool(getattr(self._manager.hook, name).get_hookimpls()) for name in hookspecs.__all__
        }
        for name in hookspecs.__all__:
            setattr(self, name, self._call_for(name))

    def implemented(self, hook: str) -> bool:
        """Whether any registered technique implements ``hook``."""
        return self._implemented.get(hook, False)

    def _call_for(self, hook: str) -> Callable[..., list[Any]]:
        caller: pluggy.HookCaller = getattr(self._manager.hook, hook)
        implementations = caller.get_hookimpls()
        if self._manager._monitored or any(
            impl.hookwrapper or getattr(impl, "wrapper", False) for impl in implementations
        ):
            return _through_pluggy(caller, hook, {id(impl.plugin): impl.plugin_name for impl in implementations})
        if not implementations:
            return _no_implementations
        # pluggy calls the last of get_hookimpls() first (tryfirst ones are at the end).
        calls = tuple(
            (impl.function, tuple(impl.argnames), impl.plugin_name) for impl in reversed(implementations)
        )

        def call(**kwargs: Any) -> list[Any]:
            results = []
            technique = ""
            argument = kwargs.__getitem__
            try:
                for function, argnames, technique in calls:
                    result = function(*map(argument, argnames))
                    if result is not None:
                        results.append(result)
            except Exception as exc:
                _name_technique(exc, technique, hook)
                raise
            return results

        call.__name__ = call.__qualname__ = hook
        return call


def _no_implementations(**kwargs: Any) -> list[Any]:
    return []


def _through_pluggy(caller: pluggy.HookCaller, hook: str, names: dict[int, str]) -> Callable[..., Any]:
    def call(**kwargs: Any) -> Any:
        try:
            return caller(**kwargs)
        except Exception as exc:
            # The innermost frame whose ``self`` is a registered technique raised it (or called it).
            technique = ""
            traceback = exc.__traceback__
            while traceback is not None:
                plugin = traceback.tb_frame.f_locals.get("self")
                if plugin is not None and id(plugin) in names:
                    technique = names[id(plugin)]
                traceback = traceback.tb_next
            if technique:
                _name_technique(exc, technique, hook)
            raise

    call.__name__ = call.__qualname__ = hook
    return call


def _name_technique(exc: BaseException, technique: str, hook: str) -> None:
    """Add "(raised by technique `x` in hook `y`)" to an exception, keeping its type and message."""
    note = f"(raised by technique `{technique}` in hook `{hook}`)"
    if hasattr(exc, "add_note"):
        if note not in getattr(exc, "__notes__", ()):
            exc.add_note(note)
    elif exc.args and isinstance(exc.args[0], str) and note not in exc.args[0]:  # Python 3.10
        exc.args = (f"{exc.args[0]} {note}", *exc.args[1:])


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
