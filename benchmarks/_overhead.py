"""Section ``overhead``: the framework's fixed cost per step on a near-zero-cost model.

The model is so small (4 hidden units, batches of 4 sequences of 4 steps) that its maths costs
far less than the machinery around it, so the per-step time *is* the overhead. Four variants
run in rotating order every round:

* ``hand``: the hand-written loop, no techniques;
* ``bare PL``: a minimal LightningModule around the same network (Lightning's own cost);
* ``library``: ``LSTMClassifier`` with no technique (the library's fixed cost over bare PL);
* ``hand+stack`` and ``library+stack``: the default technique stack, both ways.

Every variant pulls the same pre-built batches from a time-stamping iterable, and a step time is
the mean over a window of ``log_every_n_steps`` steps (each window holds one logging step).
"""

from __future__ import annotations

from typing import Any

from _hand import BareLightning, HandLoop, HandNet, Recipe, Shape, library_model, quiet_trainer, synthetic_batches
from _harness import Table, TimedBatches, difference_row, median, per_step_times, ratio_row, run_rounds

TINY = Shape("near-zero", input_size=2, hidden_size=4, num_layers=1, bidirectional=False,
             num_classes=2, batch_size=4, length=4)
DEFAULT_STACK = Recipe(clip=1.0, input_dropout=0.1, output_dropout=0.3, l2=1e-5, grad_norm_every=10)
LOG_EVERY = 10


def lightning_runner(model: Any, batches: list[Any], steps: int) -> Any:
    """A callable that fits ``model`` for ``steps`` steps and returns the median step time."""
    data = TimedBatches(batches, steps)

    def run() -> float:
        data.reset()
        trainer = quiet_trainer(max_epochs=1, limit_val_batches=0, log_every_n_steps=LOG_EVERY)
        trainer.fit(model, train_dataloaders=data)
        return median(per_step_times(data.epochs, LOG_EVERY))

    return run


def hand_runner(loop: HandLoop, batches: list[Any], steps: int) -> Any:
    data = TimedBatches(batches, steps)

    def run() -> float:
        data.reset()
        loop.train_epoch(data)
        return median(per_step_times(data.epochs, LOG_EVERY))

    return run


def variants(shape: Shape, recipe: Recipe, steps: int, batches: list[Any], extra_plugins: tuple = ()) -> dict[str, Any]:
    """Runners for the hand loop and the library with ``recipe`` (used by other sections too)."""
    library = library_model(shape, recipe, extra_plugins)
    hand = HandLoop(HandNet(shape, recipe).copy_from(library), shape, recipe, LOG_EVERY)
    return {"hand": hand_runner(hand, batches, steps), "library": lightning_runner(library, batches, steps)}


def run(options: Any) -> list[Table]:
    steps = 101  # 10 windows of 10 steps (+1 to close the last)
    rounds = 5 if options.quick else 25
    batches = synthetic_batches(TINY, 8, seed=0)
    plain = Recipe()
    library_plain = library_model(TINY, plain)
    library_stack = library_model(TINY, DEFAULT_STACK)
    runners = {
        "hand": hand_runner(HandLoop(HandNet(TINY, plain).copy_from(library_plain), TINY, plain, LOG_EVERY), batches, steps),
        "bare PL": lightning_runner(BareLightning(HandNet(TINY, plain).copy_from(library_plain), plain.learning_rate), batches, steps),
        "library": lightning_runner(library_plain, batches, steps),
        "hand+stack": hand_runner(
            HandLoop(HandNet(TINY, DEFAULT_STACK).copy_from(library_stack), TINY, DEFAULT_STACK, LOG_EVERY), batches, steps
        ),
        "library+stack": lightning_runner(library_stack, batches, steps),
    }
    series = run_rounds(runners, rounds)
    hand, bare, library = series["hand"], series["bare PL"], series["library"]
    hand_stack, library_stack_series = series["hand+stack"], series["library+stack"]
    rows = [
        difference_row("Lightning's own cost (bare PL − hand)", bare, hand),
        difference_row("library fixed cost (library − bare PL)", library, bare, budget=0.2e-3),
        difference_row("whole stack (library+stack − hand+stack)", library_stack_series, hand_stack, budget=0.8e-3),
        difference_row("whole stack vs plain hand loop (library+stack − hand)", library_stack_series, hand),
        ratio_row("step time ratio, library+stack / hand+stack", library_stack_series, hand_stack),
    ]
    notes = [
        f"model: LSTM {TINY.input_size}→{TINY.hidden_size}, batch {TINY.batch_size}×{TINY.length}, "
        f"{TINY.num_classes} classes; stack = gradient_clipping(1.0), dropout(input 0.1, output 0.3), "
        f"l2(1e-5), grad_norm(every 10); log_every_n_steps={LOG_EVERY}",
        f"{rounds} rounds × {steps - 1} steps per variant; a step = mean over a {LOG_EVERY}-step window; "
        "differences are medians of per-round differences",
    ]
    return [Table("2. Fixed cost per step, near-zero model (overhead is all there is)", rows, notes)]
