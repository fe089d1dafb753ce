"""Section ``techniques``: the marginal cost of each technique, and of hook dispatch.

On the near-zero model (where a step's maths costs almost nothing), each technique of the
default stack is added alone, to the library and to the hand-written loop. Its marginal cost is
``library+T − library`` and ``hand+T − hand`` (paired, same round); the budget is that the
library's marginal cost exceeds the hand-written one by at most 20 µs per step. It is measured
twice: through whole ``Trainer.fit`` runs (3a: everything included, but runs of a few hundred
steps differ by more than the budget on a shared machine) and on one step's work timed alone
with ``torch.utils.benchmark.Timer`` (3b: forward, loss, technique hooks, logging flush; no
backward or optimizer update, which the techniques do not change).

Hook dispatch is timed with ``torch.utils.benchmark.Timer`` on a model holding 10 no-op
techniques that implement every per-step hook: one call of a per-step hook through the model's
plugin manager (the model's direct hook calls), against calling the same 10 methods in a plain
Python loop, and against the same call through ``pluggy``'s own dispatch.
"""

from __future__ import annotations

from typing import Any

import pluggy
import torch
from torch.utils import benchmark

import _harness
from _hand import HandLoop, HandNet, Recipe, library_model, synthetic_batches
from _harness import Row, Series, Table, format_time, median, paired_differences, quartiles, run_rounds
from _overhead import LOG_EVERY, TINY, hand_runner, lightning_runner

TECHNIQUES: dict[str, Recipe] = {
    "gradient_clipping(1.0)": Recipe(clip=1.0),
    "dropout(input 0.1, output 0.3)": Recipe(input_dropout=0.1, output_dropout=0.3),
    "l2(1e-5)": Recipe(l2=1e-5),
    "grad_norm(every 10)": Recipe(grad_norm_every=10),
}
EXCESS_BUDGET = 20e-6
HOOK_BUDGET = 10e-6
NUM_PLUGINS = 10


def noop_technique(index: int) -> Any:
    """A technique implementing every per-step hook, doing nothing."""
    from lstm_plugins import Technique, hookimpl

    class NoOp(Technique):
        name = f"noop_{index}"

        @hookimpl
        def loss_terms(self, task_loss):  # noqa: ANN001, ANN201
            return None

        @hookimpl
        def on_gradients_ready(self, model):  # noqa: ANN001, ANN201
            return None

        @hookimpl
        def on_train_step_end(self, step):  # noqa: ANN001, ANN201
            return None

    NoOp.__name__ = NoOp.__qualname__ = f"NoOp{index}"
    return NoOp()


def _timer_median(statement: str, namespace: dict[str, Any], seconds: float) -> float:
    timer = benchmark.Timer(
        stmt=statement, globals=namespace, num_threads=torch.get_num_threads(), timer=_harness.clock
    )
    return timer.blocked_autorange(min_run_time=seconds).median


def hook_dispatch(options: Any) -> list[Row]:
    plugins = [noop_technique(i) for i in range(NUM_PLUGINS)]
    model = library_model(TINY, Recipe(), extra_plugins=plugins)
    hook = model.plugin_manager.hook_calls  # what the model calls on every step

    # The same 10 plugins in a bare pluggy manager: what pluggy's own dispatch costs.
    from lstm_plugins.techniques import hookspecs

    bare = pluggy.PluginManager("lstm_plugins")
    bare.add_hookspecs(hookspecs)
    for plugin in reversed([noop_technique(i) for i in range(NUM_PLUGINS)]):
        bare.register(plugin)
    methods = [plugin.on_train_step_end for plugin in plugins]
    batch = synthetic_batches(TINY, 1, seed=0)[0]

    def loop_call(model: Any, batch: Any, step: int) -> None:
        for method in methods:
            method(step=step)

    namespace = {"hook": hook, "bare": bare.hook, "model": model, "batch": batch, "loop_call": loop_call}
    statements = {
        "library hook": "hook.on_train_step_end(model=model, batch=batch, step=0)",
        "bare pluggy": "bare.on_train_step_end(model=model, batch=batch, step=0)",
        "plain loop": "loop_call(model, batch, 0)",
    }
    seconds = 0.05 if options.quick else 0.2
    rounds = 5 if options.quick else 15
    series = run_rounds(
        {name: (lambda s=statement: _timer_median(s, namespace, seconds)) for name, statement in statements.items()},
        rounds,
    )
    library, pluggy_series, loop = series["library hook"], series["bare pluggy"], series["plain loop"]
    rows = [
        _absolute_row(f"one per-step hook call, {NUM_PLUGINS} plugins (library)", library, HOOK_BUDGET),
        _absolute_row(f"one hook call, {NUM_PLUGINS} plugins, bare pluggy manager", pluggy_series, None),
        _absolute_row(f"{NUM_PLUGINS} plain method calls in a loop (hand-written)", loop, None),
    ]
    differences = paired_differences(library, pluggy_series)
    rows.append(
        Row(
            "library direct calls vs bare pluggy, per hook call",
            f"library: {format_time(library.median)}",
            f"bare pluggy: {format_time(pluggy_series.median)}",
            f"A−B = {format_time(median(differences))}",
            "",
            "-",
            "info",
        )
    )
    return rows


def _absolute_row(case: str, series: Series, budget: float | None) -> Row:
    value = series.median
    low, high = quartiles(series.values)
    if budget is None:
        verdict, budget_text = "info", "-"
    else:
        verdict = _verdict(value, low, high, budget)
        budget_text = f"≤ {format_time(budget)}"
    return Row(case, f"{format_time(value)}/call", "", f"{format_time(value)}", f"{format_time(low)}–{format_time(high)}", budget_text, verdict)


def _verdict(value: float, low: float, high: float, budget: float) -> str:
    verdict = "PASS" if value <= budget else "GAP"
    return verdict + ("?" if low <= budget <= high and low != high else "")


def marginal_costs(options: Any) -> tuple[list[Row], int, int]:
    """Per technique, its own rounds of four variants (library, library+T, hand, hand+T), so the
    four runs of a round are close together in time."""
    steps = 101
    rounds = 3 if options.quick else 15
    batches = synthetic_batches(TINY, 8, seed=0)
    plain = Recipe()
    base_library = library_model(TINY, plain)
    base = {
        "library": lightning_runner(base_library, batches, steps),
        "hand": hand_runner(HandLoop(HandNet(TINY, plain).copy_from(base_library), TINY, plain, LOG_EVERY), batches, steps),
    }
    rows: list[Row] = []
    for name, recipe in TECHNIQUES.items():
        library = library_model(TINY, recipe)
        runners = dict(base)
        runners["library+T"] = lightning_runner(library, batches, steps)
        runners["hand+T"] = hand_runner(HandLoop(HandNet(TINY, recipe).copy_from(library), TINY, recipe, LOG_EVERY), batches, steps)
        series = run_rounds(runners, rounds)
        rows.append(excess_row(name, series))
    noop = library_model(TINY, plain, extra_plugins=[noop_technique(i) for i in range(NUM_PLUGINS)])
    series = run_rounds({"library": base["library"], "noop": lightning_runner(noop, batches, steps)}, rounds)
    noop_cost = paired_differences(series["noop"], series["library"])
    low, high = quartiles(noop_cost)
    rows.append(
        Row(
            f"{NUM_PLUGINS} no-op plugins on 3 per-step hooks",
            f"library: {_signed(median(noop_cost))}/step",
            "",
            f"per hook call ≈ {_signed(median(noop_cost) / 3)}",
            f"{_signed(low)} … {_signed(high)}",
            "-",
            "info",
        )
    )
    return rows, rounds, steps


class _TrainerStandIn:
    """What the model and the techniques read from a Trainer during a training step, so that
    one step's work can be timed alone, outside ``Trainer.fit``."""

    def __init__(self) -> None:
        from pytorch_lightning.plugins.precision import Precision

        self.global_step = 0
        self.log_every_n_steps = LOG_EVERY
        self.accumulate_grad_batches = 1
        self.training = True
        self.sanity_checking = False
        self.current_epoch = 0
        self.loggers: list[Any] = []
        self.callback_metrics: dict[str, Any] = {}
        self.logged_metrics: dict[str, Any] = {}
        self.gradient_clip_val = None
        self.gradient_clip_algorithm = None
        self.precision_plugin = Precision()
        self.datamodule = None


def library_step_work(recipe: Recipe, batch: Any) -> Any:
    """One training step of the library without backward and optimizer update: the hooks and
    methods Lightning calls around them, in Lightning's order, on a model with gradients."""
    model = library_model(TINY, recipe)
    trainer = _TrainerStandIn()
    model._trainer = trainer
    model.setup("fit")
    optimizer = model.configure_optimizers()
    model.train()
    model.training_step(batch, 0).backward()  # gradients for the hooks to read

    def work() -> None:
        trainer.global_step += 1
        model.training_step(batch, 0)
        model.on_before_optimizer_step(optimizer)
        model.configure_gradient_clipping(optimizer)
        model.step_logger.flush(model.trainer)  # what optimizer_step does after the update
        model.on_train_batch_end(None, batch, 0)

    work.model = model  # type: ignore[attr-defined]
    return work


def hand_step_work(recipe: Recipe, batch: Any) -> Any:
    """The hand-written loop's same step: forward, loss, L2, logging, norms, clipping."""
    loop = HandLoop(HandNet(TINY, recipe), TINY, recipe, LOG_EVERY)
    loop.train_step(batch.features, batch.lengths, batch.targets)  # gradients

    def work() -> None:
        loop.step += 1
        log_now = loop.step % loop.log_every == 0
        loop.forward_and_loss(batch.features, batch.lengths, batch.targets, log_now)
        loop.before_optimizer_step(log_now)
        if len(loop.logged) > 100:
            loop.logged.clear()

    return work


def direct_costs(options: Any) -> list[Row]:
    """Per technique: the step work with and without it, timed alone, library and hand-written."""
    batch = synthetic_batches(TINY, 1, seed=0)[0]
    seconds = 0.1 if options.quick else 0.3
    rounds = 5 if options.quick else 15
    plain = Recipe()
    base = {"library": library_step_work(plain, batch), "hand": hand_step_work(plain, batch)}
    rows: list[Row] = []
    for name, recipe in TECHNIQUES.items():
        works = {**base, "library+T": library_step_work(recipe, batch), "hand+T": hand_step_work(recipe, batch)}
        series = run_rounds(
            {key: (lambda w=work: _timer_median("work()", {"work": w}, seconds)) for key, work in works.items()},
            rounds,
        )
        rows.append(excess_row(name, series))
    return rows


def excess_row(name: str, series: dict[str, Series]) -> Row:
    """The row of one technique from the four series ``library``, ``library+T``, ``hand``,
    ``hand+T``: excess = (library+T − library) − (hand+T − hand), per round."""
    library_cost = paired_differences(series["library+T"], series["library"])
    hand_cost = paired_differences(series["hand+T"], series["hand"])
    excess = [a - b for a, b in zip(library_cost, hand_cost)]
    value = median(excess)
    low, high = quartiles(excess)
    return Row(
        name,
        f"library: {_signed(median(library_cost))}/step",
        f"hand: {_signed(median(hand_cost))}/step",
        f"excess = {_signed(value)}",
        f"{_signed(low)} … {_signed(high)}",
        f"≤ +{format_time(EXCESS_BUDGET)}",
        _verdict(value, low, high, EXCESS_BUDGET),
    )


def _signed(seconds: float) -> str:
    return ("+" if seconds >= 0 else "−") + format_time(abs(seconds))


def run(options: Any) -> list[Table]:
    marginal, rounds, steps = marginal_costs(options)
    direct = direct_costs(options)
    dispatch = hook_dispatch(options)
    notes_marginal = [
        f"near-zero model ({TINY.input_size}→{TINY.hidden_size}, batch {TINY.batch_size}×{TINY.length}); "
        f"per technique, {rounds} rounds × {steps - 1} steps of 4 variants; excess = (library+T − library) − (hand+T − hand), "
        "median over rounds; marginal = paired difference to the same loop without the technique; "
        "'?' = the budget lies inside the inter-quartile range (inconclusive at this noise)",
    ]
    notes_dispatch = [
        "torch.utils.benchmark.Timer.blocked_autorange medians (same clock as the rest), variants alternated "
        "round by round; "
        "each no-op plugin implements loss_terms, on_gradients_ready and on_train_step_end",
    ]
    notes_direct = [
        "one training step's work without backward and the optimizer update, timed alone with "
        "torch.utils.benchmark.Timer (about 0.3 s per measurement, the logging interval cycling every 10 calls): "
        "library = training_step and the hooks Lightning calls around it, flush of the logged values included; "
        "hand = the hand-written loop's forward, loss, L2 term, logging, gradient norms and clipping",
        "excess = (library+T − library) − (hand+T − hand), median over rounds; far less noisy than 3a, "
        "which includes everything Trainer.fit does",
    ]
    return [
        Table("3a. Marginal cost of each technique (library vs its hand-written equivalent)", marginal, notes_marginal,
              ("technique", "library: marginal", "hand: marginal", "excess", "spread (IQR)", "budget", "verdict")),
        Table("3b. Marginal cost of each technique, the step's work timed alone", direct, notes_direct,
              ("technique", "library: marginal", "hand: marginal", "excess", "spread (IQR)", "budget", "verdict")),
        Table(f"3c. Hook dispatch with {NUM_PLUGINS} registered plugins", dispatch, notes_dispatch,
              ("case", "A (median)", "B (median)", "per call", "spread (IQR)", "budget", "verdict")),
    ]
