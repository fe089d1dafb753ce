"""Argument checks for techniques, data and configs: one place, one message form.

Every message has the same form, so users learn it once:
``Expected `max_norm` to be a positive float, but got -1.``

Third-party techniques use these too, so their errors read like the built-ins'.

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
from collections.abc import Collection, Iterable
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = [
    "boolean",
    "choice",
    "describe",
    "int_at_least",
    "name_patterns",
    "non_negative_float",
    "norm_type",
    "open_fraction",
    "optional_positive_int",
    "percentile",
    "positive_float",
    "positive_int",
    "probability",
]


def describe(value: Any) -> str:
    """A short description of a value for an error message (arrays by shape and dtype)."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(name: str, expectation: str, value: Any, error: type[Exception] = ValueError) -> Exception:
    return error(f"Expected `{name}` to be {expectation}, but got {describe(value)}.")


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def int_at_least(name: str, value: Any, minimum: int, what: str | None = None) -> int:
    """An integer (not a bool) ``>= minimum``; ``what`` words the expectation."""
    what = what or ("a positive int" if minimum == 1 else "a non-negative int" if minimum == 0 else f"an int >= {minimum}")
    if not _is_int(value):
        raise _fail(name, what, value, TypeError)
    if value < minimum:
        raise _fail(name, what, value)
    return int(value)


def positive_int(name: str, value: Any) -> int:
    return int_at_least(name, value, 1)


def optional_positive_int(name: str, value: Any, *, none: str = "None") -> int | None:
    """``None`` or a positive int (an interval that defaults to the Trainer's, for example);
    ``none`` is how the message spells ``None`` (``"null"`` for a YAML key)."""
    if value is None:
        return None
    if not _is_int(value):
        raise _fail(name, f"a positive int or {none}", value, TypeError)
    if value < 1:
        raise _fail(name, f"a positive int or {none}", value)
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
    """A dropout probability or a fraction: a float in [0, 1)."""
    if not _is_real(value):
        raise _fail(name, "a float in [0, 1)", value, TypeError)
    value = float(value)
    if not (0.0 <= value < 1.0):
        raise _fail(name, "a float in [0, 1)", value)
    return value


def open_fraction(name: str, value: Any) -> float:
    """A float strictly between 0 and 1 (a decay, a smoothing factor).

    Example:
        >>> open_fraction("decay", 2)
        Traceback (most recent call last):
        ...
        ValueError: Expected `decay` to be a float in (0, 1), but got 2.0.
    """
    if not _is_real(value):
        raise _fail(name, "a float in (0, 1)", value, TypeError)
    value = float(value)
    if not (0.0 < value < 1.0):
        raise _fail(name, "a float in (0, 1)", value)
    return value


def percentile(name: str, value: Any) -> float:
    """A percentile in (0, 100]."""
    if not _is_real(value):
        raise _fail(name, "a float in (0, 100]", value, TypeError)
    value = float(value)
    if not (0.0 < value <= 100.0):
        raise _fail(name, "a float in (0, 100]", value)
    return value


def norm_type(name: str, value: Any) -> float:
    """A p-norm order: a positive float, ``inf``, or the string ``"inf"``.

    Example:
        >>> norm_type("norm_type", "inf")
        inf
    """
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    return positive_float(name, value, allow_inf=True)


def choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise _fail(name, f"one of {options}", value)
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(name, "a bool", value, TypeError)
    return bool(value)


def name_patterns(name: str, value: Any) -> list[str]:
    """A list of shell-style name patterns (``["head.*"]``); a bare string is refused, since it
    would be read as one pattern per character.

    Example:
        >>> name_patterns("exclude", ("head.*",))
        ['head.*']
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _fail(name, "a list of name patterns", value, TypeError)
    patterns = list(value)
    if not all(isinstance(p, str) for p in patterns):
        raise _fail(name, "a list of name patterns", patterns, TypeError)
    return patterns
