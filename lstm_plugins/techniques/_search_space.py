"""Search-space values: what a hyper-parameter search may try for one argument.

A technique declares the ranges worth searching for its arguments in its ``search_space`` class
attribute (see :class:`~lstm_plugins.techniques.Technique`), and a search config gives ranges for
the model's arguments, with the same three kinds of value. They are plain data: the core never
imports a tuner; ``lstm-plugins tune`` (the ``tune`` extra, on Optuna) reads them.

Example:
    >>> from lstm_plugins.techniques import Choice, FloatRange, IntRange
    >>> FloatRange(1e-4, 1e-2, log=True)
    FloatRange(0.0001, 0.01, log=True)
    >>> IntRange(16, 128, step=16).values()[:3]
    [16, 32, 48]
    >>> Choice("adam", "adamw").options
    ('adam', 'adamw')
    >>> FloatRange(0.5, 0.1)
    Traceback (most recent call last):
    ...
    ValueError: Expected `high` to be a float >= low (0.5), but got 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Union

from lstm_plugins import validation as check

__all__ = ["Choice", "FloatRange", "IntRange", "SearchValue", "parse_search_value"]


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"Expected `{name}` to be a finite float, but got {check.describe(value)}.")
    return float(value)


class FloatRange:
    """Floats from ``low`` to ``high`` (both included); ``log=True`` samples on a log scale
    (``low`` must then be positive).

    Example:
        >>> FloatRange(0.0, 0.5).contains(0.3), FloatRange(0.0, 0.5).contains(0.6)
        (True, False)
    """

    def __init__(self, low: float, high: float, *, log: bool = False) -> None:
        self.low = _real("low", low)
        self.high = _real("high", high)
        self.log = check.boolean("log", log)
        if self.high < self.low:
            raise ValueError(f"Expected `high` to be a float >= low ({self.low!r}), but got {self.high!r}.")
        if self.log and self.low <= 0:
            raise ValueError(f"Expected `low` to be a positive float with log=True, but got {self.low!r}.")

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the range."""
        return not isinstance(value, bool) and isinstance(value, (int, float)) and self.low <= value <= self.high

    def to_data(self) -> dict[str, Any]:
        """The range as a search config writes it."""
        return {"float": [self.low, self.high], **({"log": True} if self.log else {})}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FloatRange) and self.to_data() == other.to_data()

    def __repr__(self) -> str:
        return f"FloatRange({self.low!r}, {self.high!r}{', log=True' if self.log else ''})"


class IntRange:
    """Integers from ``low`` to ``high`` (both included) every ``step``; ``log=True`` samples on a
    log scale (needs ``low >= 1`` and ``step == 1``).

    Example:
        >>> IntRange(1, 3).values()
        [1, 2, 3]
        >>> IntRange(0, 4, log=True)
        Traceback (most recent call last):
        ...
        ValueError: Expected `low` to be a positive int with log=True, but got 0.
    """

    def __init__(self, low: int, high: int, *, log: bool = False, step: int = 1) -> None:
        self.low = check.int_at_least("low", low, -(2**62), "an int")
        self.high = check.int_at_least("high", high, self.low, f"an int >= low ({self.low})")
        self.log = check.boolean("log", log)
        self.step = check.positive_int("step", step)
        if self.log and self.low < 1:
            raise ValueError(f"Expected `low` to be a positive int with log=True, but got {self.low}.")
        if self.log and self.step != 1:
            raise ValueError(f"Expected `step` to be 1 with log=True, but got {self.step}.")

    def values(self) -> list[int]:
        """Every value of the range."""
        return list(range(self.low, self.high + 1, self.step))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of :meth:`values`."""
        return (not isinstance(value, bool) and isinstance(value, int) and self.low <= value <= self.high
                and (value - self.low) % self.step == 0)

    def to_data(self) -> dict[str, Any]:
        """The range as a search config writes it."""
        extra: dict[str, Any] = {"log": True} if self.log else {}
        if self.step != 1:
            extra["step"] = self.step
        return {"int": [self.low, self.high], **extra}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IntRange) and self.to_data() == other.to_data()

    def __repr__(self) -> str:
        extra = (", log=True" if self.log else "") + (f", step={self.step}" if self.step != 1 else "")
        return f"IntRange({self.low}, {self.high}{extra})"


class Choice:
    """One of a few options (numbers, strings, booleans or ``None``).

    Example:
        >>> Choice(1, 2).contains(2)
        True
        >>> Choice()
        Traceback (most recent call last):
        ...
        ValueError: Expected `options` to be at least one option, but got ().
    """

    def __init__(self, *options: Any) -> None:
        if not options:
            raise ValueError("Expected `options` to be at least one option, but got ().")
        for option in options:
            if option is not None and not isinstance(option, (bool, int, float, str)):
                raise TypeError(f"Expected each option to be a number, a str, a bool or None, but got "
                                f"{check.describe(option)}.")
        if len(set(map(repr, options))) != len(options):
            raise ValueError(f"Expected `options` to be distinct, but got {options!r}.")
        self.options = tuple(options)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of the options."""
        return any(type(value) is type(option) and value == option for option in self.options)

    def to_data(self) -> dict[str, Any]:
        """The choice as a search config writes it."""
        return {"choice": list(self.options)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Choice) and self.options == other.options

    def __repr__(self) -> str:
        return f"Choice({', '.join(map(repr, self.options))})"


SearchValue = Union[FloatRange, IntRange, Choice]
"""What a search space holds for one argument."""

_KINDS = {"float": FloatRange, "int": IntRange}


def parse_search_value(name: str, value: Any) -> SearchValue:
    """A search value from its config form: ``{float: [low, high], log: true}``, ``{int: [low,
    high], step: 2}``, ``{choice: [a, b]}``, or a value object as is. ``name`` is named in errors.

    Example:
        >>> parse_search_value("model.hidden_size", {"int": [16, 64], "log": True})
        IntRange(16, 64, log=True)
        >>> parse_search_value("model.learning_rate", {"float": [0.1]})
        Traceback (most recent call last):
        ...
        ValueError: `model.learning_rate`: Expected `float` to be a list [low, high], but got [0.1].
    """
    if isinstance(value, (FloatRange, IntRange, Choice)):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"`{name}`: Expected a range ({{float: [low, high]}}, {{int: [low, high]}} or "
                        f"{{choice: [...]}}), but got {check.describe(value)}.")
    kinds = [kind for kind in ("float", "int", "choice") if kind in value]
    if len(kinds) != 1:
        raise ValueError(f"`{name}`: Expected exactly one of `float`, `int` or `choice`, but got "
                         f"{check.describe(dict(value))}.")
    kind = kinds[0]
    options = {key: item for key, item in value.items() if key != kind}
    try:
        if kind == "choice":
            if options:
                raise ValueError(f"Expected no option beside `choice`, but got {sorted(options)}.")
            if not isinstance(value[kind], (list, tuple)):
                raise TypeError(f"Expected `choice` to be a list, but got {check.describe(value[kind])}.")
            return Choice(*value[kind])
        bounds = value[kind]
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise ValueError(f"Expected `{kind}` to be a list [low, high], but got {check.describe(bounds)}.")
        allowed = {"log", "step"} if kind == "int" else {"log"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(f"Expected options among {sorted(allowed)}, but got {unknown}.")
        return _KINDS[kind](*bounds, **options)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"`{name}`: {exc}") from None
