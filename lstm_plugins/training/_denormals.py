"""Denormal floats flushed to zero while the Trainer runs the kernels, in every thread that runs them.

Vanishing gradients on long sequences become denormal numbers (below ~1.2e-38 in float32), and
CPUs compute with them many times slower: the fused LSTM's backward pass at 300 steps
(bidirectional, 128 units, batch 16, one thread, torch 2.13) takes 0.31 s with denormals and
0.046 s flushed. Flushing changes nothing a float32 model can use (such values are below its
resolution around any normal number), and TensorFlow flushes by default.

``torch.set_flush_denormal`` sets the floating-point control register (MXCSR) of the calling
thread only. With more than one intra-op thread, the other threads belong to the OpenMP pool
(GNU ``libgomp`` in the Linux wheels), created once and kept: they keep the setting the main
thread had when they were created (measured at 2 threads, 300 steps: backward 1.39 s unflushed,
0.14 s with only the main thread flushing, 0.05 s with every thread flushing). So
:func:`set_flush_denormal` also releases the idle ``libgomp`` pool (``omp_pause_resource_all``,
OpenMP 5.0), and the next parallel region creates its threads afresh from the main thread,
which on Linux inherit its floating-point environment. The LLVM and Intel OpenMP runtimes copy
the main thread's control registers to the workers at every parallel region already.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch

__all__ = ["FlushDenormals", "denormals_are_flushed", "flushed_denormals", "set_flush_denormal"]


def denormals_are_flushed() -> bool:
    """Whether this thread treats denormal floats as zero now.

    Example:
        >>> previous = denormals_are_flushed()
        >>> _ = torch.set_flush_denormal(True); denormals_are_flushed()
        True
        >>> _ = torch.set_flush_denormal(previous)
    """
    return float(torch.tensor([1e-40], dtype=torch.float32).mul(1.0)) == 0.0


@functools.lru_cache(maxsize=1)
def _release_gnu_openmp_pool() -> Any:
    """``omp_pause_resource_all`` of the GNU OpenMP runtime torch loaded, or ``None`` when torch
    does not run on ``libgomp`` (other runtimes propagate the main thread's setting themselves)."""
    if not sys.platform.startswith("linux") or "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            pause = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):  # an older libgomp without OpenMP 5.0's pause
            continue
        pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
        return pause
    return None


def set_flush_denormal(enabled: bool) -> bool:
    """``torch.set_flush_denormal`` for the calling thread and torch's intra-op worker threads.

    Returns what ``torch.set_flush_denormal`` returns: whether the CPU supports flushing. The
    idle GNU OpenMP pool is released, so its threads are created again, with this thread's
    setting, at the next parallel operation (a few tens of microseconds, once); call it from
    the thread that runs torch's operators, outside any of them.

    Example:
        >>> previous = denormals_are_flushed()
        >>> _ = set_flush_denormal(True); denormals_are_flushed()
        True
        >>> _ = set_flush_denormal(previous)
    """
    supported = torch.set_flush_denormal(bool(enabled))
    pause = _release_gnu_openmp_pool()
    if pause is not None:
        pause(1)  # omp_pause_soft: libgomp frees its pool; nothing else is released
    return supported


@contextlib.contextmanager
def flushed_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush denormals (or keep them, ``enabled=False``) in every intra-op thread inside the
    block, and restore the previous setting after it, also after an exception.

    Example:
        >>> previous = denormals_are_flushed()
        >>> with flushed_denormals():
        ...     float(torch.tensor([1e-40]).mul(1.0))
        0.0
        >>> denormals_are_flushed() == previous
        True
    """
    previous = denormals_are_flushed()
    if previous == bool(enabled):  # nothing to change: no pool to release
        yield
        return
    set_flush_denormal(enabled)
    try:
        yield
    finally:
        set_flush_denormal(previous)


class FlushDenormals(pl.Callback):
    """Flushes denormals to zero from a stage's ``setup`` to its ``teardown`` (fit, validate,
    test, predict) in every process and every intra-op thread, and restores the previous setting
    afterwards, also when the run stops with an exception. The model attaches it unless
    ``model.flush_denormals`` is false.

    Example:
        >>> callback = FlushDenormals()
        >>> previous = denormals_are_flushed()
        >>> callback.setup(None, None, "predict"); denormals_are_flushed()
        True
        >>> callback.teardown(None, None, "predict"); denormals_are_flushed() == previous
        True
    """

    def __init__(self) -> None:
        self._previous: bool | None = None

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        if self._previous is None:  # not already inside a stage
            self._previous = denormals_are_flushed()
            # Also when this thread flushes already: the worker threads may not.
            set_flush_denormal(True)  # False (and nothing changes) on a CPU without the flag

    def _restore(self) -> None:
        if self._previous is not None:
            if not self._previous:
                set_flush_denormal(False)
            self._previous = None

    def teardown(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        self._restore()
