"""Section ``threads``: one intra-op thread against two, now that denormals are flushed.

The library's training step (``Trainer.fit``, the default technique stack, denormals flushed as
by default) at three shapes: *small* (JapaneseVowels-like: bidirectional 12→128, batch 16 × 29
steps, variable lengths), *medium* (2-layer 32→128, batch 64 × 50, variable lengths, full
stack) and *long* (bidirectional 12→128, batch 16 × 300). Each round fits the same model once
with ``torch.set_num_threads(1)`` and once with 2, in alternating order; a step time is the mean
over a window of 10 steps, a run's figure the median over its windows. Two threads do their
work in less wall time but use more CPU time, so this section always uses the wall clock
(whatever ``--clock`` says): on a machine shared with other work it is noisy, and the load
average is printed with the table.
"""

from __future__ import annotations

from typing import Any

import torch

import _harness
from _hand import Recipe, Shape, library_model, quiet_trainer, synthetic_batches
from _harness import Row, Table, TimedBatches, load_average, median, per_step_times, ratio_row, run_rounds
from _long import LONG
from _stack import MEDIUM, MEDIUM_STACK

SMALL = Shape("small", input_size=12, hidden_size=128, num_layers=1, bidirectional=True,
              num_classes=9, batch_size=16, length=29)
DEFAULT_STACK = Recipe(clip=1.0, input_dropout=0.1, output_dropout=0.3, l2=1e-5, grad_norm_every=10)
LOG_EVERY = 10


def shapes(smoke: bool) -> list[tuple[Shape, Recipe, int]]:
    """(shape, techniques, steps per run)."""
    if smoke:
        return [(Shape("small", 12, 8, 1, True, 9, 4, 29), DEFAULT_STACK, 2 * LOG_EVERY + 1)]
    return [(SMALL, DEFAULT_STACK, 6 * LOG_EVERY + 1), (MEDIUM, MEDIUM_STACK, 3 * LOG_EVERY + 1),
            (LONG, DEFAULT_STACK, 2 * LOG_EVERY + 1)]


def compare(shape: Shape, recipe: Recipe, steps: int, rounds: int) -> Row:
    batches = synthetic_batches(shape, 4, seed=5, variable_length=shape.length < 300)
    model = library_model(shape, recipe)

    def with_threads(count: int) -> Any:
        def run() -> float:
            data = TimedBatches(batches, steps)
            torch.set_num_threads(count)
            quiet_trainer(max_steps=steps, limit_val_batches=0, log_every_n_steps=LOG_EVERY).fit(
                model, train_dataloaders=data)
            return median(per_step_times(data.epochs, LOG_EVERY))

        return run

    series = run_rounds({"2 threads": with_threads(2), "1 thread": with_threads(1)}, rounds)
    return ratio_row(f"{shape.name} ({shape.batch_size}×{shape.length}): 2 threads / 1 thread, throughput (wall)",
                     series["2 threads"], series["1 thread"], invert=True)


def run(options: Any) -> list[Table]:
    smoke = getattr(options, "smoke", False)
    rounds = 1 if options.quick or smoke else 8
    saved_clock, saved_threads = _harness.clock, torch.get_num_threads()
    _harness.set_clock("wall")
    started = load_average()
    try:
        rows = [compare(shape, recipe, steps, rounds) for shape, recipe, steps in shapes(smoke)]
    finally:
        _harness.clock = saved_clock
        torch.set_num_threads(saved_threads)
    notes = [
        f"{rounds} round(s); steps timed per run after a warm-up window: "
        f"{', '.join(f'{shape.name} {steps - 1 - LOG_EVERY}' for shape, _, steps in shapes(smoke))}; wall clock; "
        f"load average (1, 5, 15 min) {started} at start, {load_average()} at end",
        "the CLI's `threads` default stays 1 unless 2 threads win clearly at every shape",
    ]
    return [Table("10. Intra-op threads: 2 against 1, denormals flushed", rows, notes)]
