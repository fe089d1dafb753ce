"""Spawn pickling: what the model drops and rebuilds when it crosses a process boundary."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


def unshare_tensors(value: Any, seen: set[int] | None = None) -> Any:
    """``value`` with every shared-memory tensor in it (not parameters, not inside modules)
    replaced by a private copy; containers and plain objects are updated in place.

    Spawn-based strategies pickle the model with torch's shared-memory reducers: every tensor
    arrives in shared memory, and Lightning gives back private copies only of module parameters
    and buffers. A technique's own tensors (counters, histories, statistics) would otherwise be
    updated in place by every process at once.
    """
    seen = set() if seen is None else seen
    if isinstance(value, (nn.Module, nn.Parameter)):
        return value
    if isinstance(value, Tensor):
        return value.clone() if value.is_shared() else value
    if id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = unshare_tensors(item, seen)
    elif isinstance(value, list):
        value[:] = [unshare_tensors(item, seen) for item in value]
    elif isinstance(value, tuple):
        items = [unshare_tensors(item, seen) for item in value]
        if any(a is not b for a, b in zip(items, value)):
            return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        for key, item in vars(value).items():
            replaced = unshare_tensors(item, seen)
            if replaced is not item:
                setattr(value, key, replaced)
    return value


PER_PROCESS_ATTRIBUTES = ("plugin_manager", "_hook")
"""Model attributes rebuilt in each process rather than pickled."""
