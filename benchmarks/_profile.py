"""Section ``profile``: how much of a medium-shape training step the LSTM kernels take.

The medium shape of section 1 (2-layer LSTM 32→128, batch 64 × 50 steps, 10 classes, the full
stack: clipping, dropout, L2, gradient norms) trains through ``Trainer.fit`` and, for the same
steps, through the hand-written loop. After warm-up, windows of unprofiled and profiled steps
alternate (:class:`Alternation`); the kernels' time is the self CPU time of the fused kernels
(``aten::mkldnn_rnn_layer`` and ``aten::mkldnn_rnn_layer_backward``) per profiled step. The
share is that time over the step of the unprofiled window just before (wall clock), so the
profiler's own bookkeeping is not in the denominator; the share over the profiled step and
with the kernels' children (the buffers they allocate) are shown too. Each round pairs two
adjacent windows because a shared machine's speed drifts over seconds. The rest is listed by
operator (self time per step), and what no ``aten::`` operator accounts for (Python, Lightning,
the library's hooks, autograd's engine, the profiler) as "framework".
"""

from __future__ import annotations

import time

from collections import defaultdict
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from torch.profiler import ProfilerActivity, profile

from _hand import DropoutMasks, HandLoop, HandNet, library_model, quiet_trainer, synthetic_batches
from _harness import Row, Table, TimedBatches, format_time, median, per_step_times, quartiles, ratio_row, run_rounds
from _kernel import quiet_stderr
from _stack import LOG_EVERY, MEDIUM, MEDIUM_STACK

KERNELS = ("aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward")


class Alternation:
    """After ``first`` warm-up steps, ``rounds`` pairs of windows of ``count`` steps: one
    unprofiled, then one under ``torch.profiler``. Call :meth:`boundary` at the start of every
    step (and once after the last). Each round gives the unprofiled window's step time and the
    profiled window's step time and operator times, so a round's share compares the kernels
    with the step right beside them (the machine's speed drifts over seconds on shared cores)."""

    def __init__(self, first: int, count: int, rounds: int) -> None:
        self.first, self.count, self.rounds = first, count, rounds
        self.steps = first + 2 * count * rounds
        self.plain: list[float] = []
        self.profiled: list[tuple[float, dict[str, float]]] = []
        self.profiler: Any = None
        self.mark = 0.0

    def boundary(self, step: int) -> None:
        offset = step - self.first
        if offset < 0 or offset % self.count or offset > 2 * self.count * self.rounds:
            return
        now = time.perf_counter()
        window = offset // self.count
        if window > 0 and window % 2 == 1:
            self.plain.append((now - self.mark) / self.count)
        elif window > 0:
            self.profiler.stop()
            self.profiled.append(((now - self.mark) / self.count, self_times(self.profiler)))
        if window < 2 * self.rounds and window % 2 == 1:
            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.start()
        self.mark = time.perf_counter()


class AlternationCallback(pl.Callback):
    def __init__(self, alternation: Alternation) -> None:
        self.alternation = alternation

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.alternation.boundary(trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.alternation.boundary(trainer.global_step)


def self_times(profiler: Any) -> dict[str, float]:
    """Self seconds per operator name over the profiled window, and under ``"kernels, inclusive"``
    the kernels' time with their children."""
    totals: dict[str, float] = defaultdict(float)
    for event in profiler.key_averages():
        totals[event.key] += event.self_cpu_time_total / 1e6
        if event.key in KERNELS:
            totals["kernels, inclusive"] += event.cpu_time_total / 1e6
    return totals


def library_profile(batches: list[Any], alternation: Alternation) -> None:
    model = library_model(MEDIUM, MEDIUM_STACK)
    with quiet_stderr():
        quiet_trainer(max_steps=alternation.steps, limit_val_batches=0, callbacks=[AlternationCallback(alternation)],
                      log_every_n_steps=LOG_EVERY).fit(model, train_dataloaders=TimedBatches(batches, alternation.steps))


def hand_profile(batches: list[Any], alternation: Alternation, masks: DropoutMasks = "lanes") -> None:
    loop = HandLoop(HandNet(MEDIUM, MEDIUM_STACK, masks), MEDIUM, MEDIUM_STACK, LOG_EVERY)
    with quiet_stderr():
        for step, batch in enumerate(TimedBatches(batches, alternation.steps)):
            alternation.boundary(step)
            loop.train_step(batch.features, batch.lengths, batch.targets)
        alternation.boundary(alternation.steps)


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
    # Windows of 20 steps: 5 of each of the 4 batches (their lengths vary) and 2 logging steps each.
    warm, count, rounds = (1, 4, 1) if smoke else (10, 2 * LOG_EVERY, 2 if options.quick else 5)
    batches = synthetic_batches(MEDIUM, 4, seed=1, variable_length=True)
    rows: list[Row] = []
    notes: list[str] = []
    import torch.utils.deterministic as deterministic

    filling = deterministic.fill_uninitialized_memory
    # As `lstm-plugins fit` runs: deterministic algorithms on (quiet_trainer) without the filling of
    # new buffers, which the CLI turns off; the hand-written loop alike, for a like-for-like share.
    cli_fill = False if torch.are_deterministic_algorithms_enabled() else filling
    # The hand-written loop twice: with the library's way of drawing dropout masks (the same maths)
    # and with torch's nn.Dropout / nn.LSTM(dropout=...), as most hand-written loops are.
    variants = [("library", library_profile, cli_fill), ("hand", hand_profile, cli_fill),
                ("hand, torch's dropout masks", partial(hand_profile, masks="torch"), cli_fill)]
    if torch.are_deterministic_algorithms_enabled():
        # torch's own default under deterministic algorithms (a script's `Trainer(deterministic=True)`):
        # every new buffer filled with NaN, the kernels' workspaces included.
        variants.append(("library, new buffers filled", library_profile, True))
    for name, measure, fill in variants:
        deterministic.fill_uninitialized_memory = fill
        alternation = Alternation(warm, count, rounds)
        try:
            measure(batches, alternation)
        finally:
            deterministic.fill_uninitialized_memory = filling
        kernels = [sum(times.get(k, 0.0) for k in KERNELS) / count for _, times in alternation.profiled]
        # The share is the kernels over the unprofiled step just before them, so the profiler's
        # bookkeeping (per operator and hook) is not in the denominator; over the profiled step too.
        shares = [k / step for k, step in zip(kernels, alternation.plain)]
        bounds = [k / step for k, (step, _) in zip(kernels, alternation.profiled)]
        inclusive = [times["kernels, inclusive"] / count / step for step, times in alternation.profiled]
        share, (low, high) = median(shares), quartiles(shares)
        rows.append(Row(f"medium: share of a training step in the LSTM kernels (self time), {name}",
                        f"kernels {format_time(median(kernels))}/step",
                        f"step {format_time(median(alternation.plain))} unprofiled, "
                        f"{format_time(median([step for step, _ in alternation.profiled]))} profiled",
                        f"{share:.3f}", f"{low:.3f}–{high:.3f}; over the profiled step {median(bounds):.3f}, "
                        f"with the kernels' children {median(inclusive):.3f}",
                        "≥ 0.85" if name == "library" else "-",
                        ("PASS" if share >= 0.85 else "GAP") if name == "library" else "info"))
        totals: dict[str, float] = defaultdict(float)
        for _, times in alternation.profiled:
            for key, value in times.items():
                totals[key] += value / count / len(alternation.profiled)
        profiled_step = median([step for step, _ in alternation.profiled])
        operators = sum(t for k, t in totals.items() if k.startswith("aten::"))
        others = sorted(((t, k) for k, t in totals.items() if k.startswith("aten::") and k not in KERNELS),
                        reverse=True)[:6]
        listing = ", ".join(f"{k[6:]} {format_time(t)}" for t, k in others)
        notes.append(f"{name}: per profiled step {format_time(profiled_step)}: kernels "
                     f"{format_time(sum(totals.get(k, 0.0) for k in KERNELS))}, framework (Python, hooks, "
                     f"autograd engine, profiler) {format_time(max(profiled_step - operators, 0.0))}; top other "
                     f"operators (self): {listing}")
    notes.insert(0, f"medium = 2-layer LSTM {MEDIUM.input_size}→{MEDIUM.hidden_size}, batch {MEDIUM.batch_size}×"
                 f"{MEDIUM.length} (variable lengths), full stack; after {warm} warm-up steps, {rounds} round(s) of "
                 f"{count} unprofiled then {count} profiled steps (wall clock); the share is the median over "
                 f"rounds; deterministic algorithms {'on' if torch.are_deterministic_algorithms_enabled() else 'off'}, "
                 f"new buffers {'filled' if cli_fill else 'not filled'} (as `lstm-plugins fit` runs)")
    if len(variants) == 4:
        rows.append(filling_row(batches, 1 if options.quick else 5, 2 * LOG_EVERY + 1 if smoke else 4 * LOG_EVERY + 1))
    return [Table("9. Where a medium-shape training step goes", rows, notes)]
