"""Section ``profile``: how much of a medium-shape training step the LSTM kernels take.

The medium shape of section 1 (2-layer LSTM 32→128, batch 64 × 50 steps, 10 classes, the full
stack: clipping, dropout, L2, gradient norms) trains through ``Trainer.fit`` and, for the same
steps, through the hand-written loop. ``torch.profiler`` records a window of steps after
warm-up; the kernels' time is the self CPU time of the fused kernels (``aten::mkldnn_rnn_layer``
and ``aten::mkldnn_rnn_layer_backward``) per profiled step. The share is that time over the
unprofiled step (wall clock, timed in the same run after the profiled window): the profiler's
bookkeeping per operator and hook lengthens the profiled step but not the kernels' self time.
Over the profiled step instead (a lower bound on a quiet machine) it is also shown, as is the share with the
kernels' children (the buffers they allocate). The rest is listed by operator (self time per
step), and what no ``aten::`` operator accounts for (Python, Lightning, the library's hooks,
autograd's engine, the profiler) as "framework".
"""

from __future__ import annotations

import time

from collections import defaultdict
from typing import Any

import pytorch_lightning as pl
import torch
from torch.profiler import ProfilerActivity, profile

import _harness
from _hand import HandLoop, HandNet, library_model, quiet_trainer, synthetic_batches
from _harness import Row, Table, TimedBatches, format_time, median, per_step_times, ratio_row, run_rounds
from _kernel import quiet_stderr
from _stack import LOG_EVERY, MEDIUM, MEDIUM_STACK

KERNELS = ("aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward")


class Window(pl.Callback):
    """Profiles training steps ``first`` to ``first + count - 1``."""

    def __init__(self, first: int, count: int) -> None:
        self.first, self.count = first, count
        self.profiler: Any = None
        self.span = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.first:
            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.start()
            self.span = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.first + self.count and self.profiler is not None:
            self.profiler.stop()
            self.span = time.perf_counter() - self.span


def self_times(profiler: Any) -> dict[str, float]:
    """Self seconds per operator name over the profiled window, and under ``"kernels, inclusive"``
    the kernels' time with their children."""
    totals: dict[str, float] = defaultdict(float)
    for event in profiler.key_averages():
        totals[event.key] += event.self_cpu_time_total / 1e6
        if event.key in KERNELS:
            totals["kernels, inclusive"] += event.cpu_time_total / 1e6
    return totals


def library_profile(batches: list[Any], warm: int, count: int, timed: int) -> tuple[dict[str, float], float, float]:
    window = Window(warm, count)
    data = TimedBatches(batches, warm + count + timed)
    model = library_model(MEDIUM, MEDIUM_STACK)
    with quiet_stderr():
        quiet_trainer(max_steps=warm + count + timed, limit_val_batches=0, callbacks=[window],
                      log_every_n_steps=LOG_EVERY).fit(model, train_dataloaders=data)
    stamps = data.epochs[0][warm + count :]
    step = median(per_step_times([stamps], LOG_EVERY, skip_windows=0))
    return self_times(window.profiler), window.span / count, step


def hand_profile(batches: list[Any], warm: int, count: int, timed: int) -> tuple[dict[str, float], float, float]:
    loop = HandLoop(HandNet(MEDIUM, MEDIUM_STACK), MEDIUM, MEDIUM_STACK, LOG_EVERY)
    data = TimedBatches(batches, warm + count + timed)
    iterator = iter(data)
    for _ in range(warm):
        batch = next(iterator)
        loop.train_step(batch.features, batch.lengths, batch.targets)
    with quiet_stderr():
        profiler = profile(activities=[ProfilerActivity.CPU])
        profiler.start()
        span = time.perf_counter()
        for _ in range(count):
            batch = next(iterator)
            loop.train_step(batch.features, batch.lengths, batch.targets)
        span = time.perf_counter() - span
        profiler.stop()
    for batch in iterator:
        loop.train_step(batch.features, batch.lengths, batch.targets)
    stamps = data.epochs[0][warm + count :]
    step = median(per_step_times([stamps], LOG_EVERY, skip_windows=0))
    return self_times(profiler), span / count, step


def filling_row(batches: list[Any], rounds: int, steps: int) -> Row:
    """Paired: the library's medium step with deterministic mode's filling of new buffers on and off."""
    import torch.utils.deterministic as deterministic

    filling = deterministic.fill_uninitialized_memory
    model = library_model(MEDIUM, MEDIUM_STACK)

    def variant(fill: bool) -> Any:
        def run() -> float:
            data = TimedBatches(batches, steps)
            deterministic.fill_uninitialized_memory = fill
            try:
                quiet_trainer(max_steps=steps, limit_val_batches=0, log_every_n_steps=LOG_EVERY).fit(
                    model, train_dataloaders=data)
            finally:
                deterministic.fill_uninitialized_memory = filling
            return median(per_step_times(data.epochs, LOG_EVERY))

        return run

    series = run_rounds({"filled": variant(True), "not filled": variant(False)}, rounds)
    return ratio_row("medium: library step, deterministic mode filling new buffers / not filling", series["filled"],
                     series["not filled"])


def run(options: Any) -> list[Table]:
    smoke = getattr(options, "smoke", False)
    warm, count, timed = (1, 1, 11) if smoke else (10, 10, 41 if not options.quick else 21)
    batches = synthetic_batches(MEDIUM, 4, seed=1, variable_length=True)
    rows: list[Row] = []
    notes: list[str] = []
    import torch.utils.deterministic as deterministic

    filling = deterministic.fill_uninitialized_memory
    # As `lstm-plugins fit` runs: deterministic algorithms on (quiet_trainer) without the filling of
    # new buffers, which the CLI turns off; the hand-written loop alike, for a like-for-like share.
    cli_fill = False if torch.are_deterministic_algorithms_enabled() else filling
    variants = [("library", library_profile, cli_fill), ("hand", hand_profile, cli_fill)]
    if torch.are_deterministic_algorithms_enabled():
        # torch's own default under deterministic algorithms (a script's `Trainer(deterministic=True)`):
        # every new buffer filled with NaN, the kernels' workspaces included.
        variants.append(("library, new buffers filled", library_profile, True))
    for name, measure, fill in variants:
        deterministic.fill_uninitialized_memory = fill
        # The profiler's times are wall-clock: the unprofiled steps are timed on the same clock.
        chosen, _harness.clock = _harness.clock, time.perf_counter
        try:
            times, profiled_step, step = measure(batches, warm, count, timed)
        finally:
            deterministic.fill_uninitialized_memory = filling
            _harness.clock = chosen
        inclusive = times.pop("kernels, inclusive") / count
        kernels = sum(times.get(k, 0.0) for k in KERNELS) / count
        operators = sum(t for k, t in times.items() if k.startswith("aten::")) / count
        # The profiler's bookkeeping (per operator and hook) lengthens the profiled step, not the
        # kernels' self time: over the unprofiled step is the estimate without that overhead (on a
        # quiet machine; on a busy one both wall-clock steps include time slices of other work).
        share, estimate = kernels / profiled_step, kernels / step
        rows.append(Row(f"medium: share of a training step in the LSTM kernels (self time), {name}",
                        f"kernels {format_time(kernels)}/step",
                        f"step {format_time(step)} unprofiled, {format_time(profiled_step)} profiled",
                        f"{estimate:.3f}", f"over the profiled step {share:.3f}; with their children {inclusive / profiled_step:.3f}",
                        "≥ 0.85" if name == "library" else "-",
                        ("PASS" if estimate >= 0.85 else "GAP") if name == "library" else "info"))
        others = sorted(((t / count, k) for k, t in times.items() if k.startswith("aten::") and k not in KERNELS),
                        reverse=True)[:6]
        listing = ", ".join(f"{k[6:]} {format_time(t)}" for t, k in others)
        notes.append(f"{name}: unprofiled step {format_time(step)}; profiled {format_time(profiled_step)}: kernels "
                     f"{format_time(kernels)} ({format_time(inclusive)} with children), framework (Python, hooks, "
                     f"autograd engine, profiler) {format_time(max(profiled_step - operators, 0.0))}; top other "
                     f"operators (self): {listing}")
    notes.insert(0, f"medium = 2-layer LSTM {MEDIUM.input_size}→{MEDIUM.hidden_size}, batch {MEDIUM.batch_size}×"
                 f"{MEDIUM.length} (variable lengths), full stack; {count} steps profiled after {warm} warm-up, "
                 f"step time (wall clock) from {timed - 1} unprofiled steps; deterministic algorithms "
                 f"{'on' if torch.are_deterministic_algorithms_enabled() else 'off'}, new buffers "
                 f"{'filled' if cli_fill else 'not filled'} (as `lstm-plugins fit` runs)")
    if len(variants) == 3:
        rows.append(filling_row(batches, 1 if options.quick else 5, 2 * LOG_EVERY + 1 if smoke else 4 * LOG_EVERY + 1))
    return [Table("9. Where a medium-shape training step goes", rows, notes)]
