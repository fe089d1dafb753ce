"""Argument checks for techniques, public so third-party techniques word errors alike.

Every message has the same form, so users learn it once:
``Expected `max_norm` to be a positive float, but got -1.``

Example:
    >>> from lstm_plugins import validation as check
    >>> check.probability("output", 0.3)
    0.3
    >>> check.positive_float("max_norm", -1)
    Traceback (most recent call last):
    ...
    ValueError: Expected `max_norm` to be a positive float, but got -1.0.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real
from typing import Any


__all__ = [
    "boolean",
    "choice",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "probability",
]


def _fail(name: str, expectation: str, value: Any, error: type[Exception] = ValueError) -> Exception:
    return error(f"Expected `{name}` to be {expectation}, but got {value!r}.")


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    if not _is_int(value):
        raise _fail(name, "a positive int", value, TypeError)
    if value <= 0:
        raise _fail(name, "a positive int", value)
    return int(value)


def positive_float(name: str, value: Any, *, allow_inf: bool = False) -> float:
    if not _is_real(value):
        raise _fail(name, "a positive float", value, TypeError)
    value = float(value)
    if not (value > 0) or (math.isinf(value) and not allow_inf):
        raise _fail(name, "a positive float", value)
    return value


def non_negative_float(name: str, value: Any) -> float:
    if not _is_real(value):
        raise _fail(name, "a non-negative float", value, TypeError)
    value = float(value)
    if not (value >= 0) or math.isinf(value):
        raise _fail(name, "a non-negative float", value)
    return value


def probability(name: str, value: Any) -> float:
    """A dropout probability: a float in [0, 1)."""
    if not _is_real(value):
        raise _fail(name, "a float in [0, 1)", value, TypeError)
    value = float(value)
    if not (0.0 <= value < 1.0):
        raise _fail(name, "a float in [0, 1)", value)
    return value


def choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise _fail(name, f"one of {options}", value)
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, "a bool", value, TypeError)
    return value
