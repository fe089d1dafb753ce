"""The adding problem at T = 100: the 1/6 plateau, the breakthrough, and clipping at a high learning rate.

The adding problem (Hochreiter & Schmidhuber 1997; the two-channel form of Le et al. 2015 and
Arjovsky et al. 2016): each sequence carries random values in channel 0 and two markers in
channel 1; the target is the sum of the two marked values. A model that has not yet learned to
remember predicts the mean and sits at MSE = 1/6 ≈ 0.167; a model that has learned it drops far
below. This script shows it in two parts.

1. One run (``--figure-lr``, with gradient clipping at ``--threshold``), logging every step: the
   training loss against the step with the 1/6 plateau, the breakthrough step (the first step
   after which the running mean of the training loss stays below ``--breakthrough-loss``), and
   the global gradient norm before and after clipping around it.
2. ``--seeds`` seeds at a deliberately high learning rate (``--lr``), each trained twice from the
   same initial weights and batches: without clipping and with ``GradientClipping(--threshold)``.
   Every ``--val-every`` steps the validation MSE is measured; a run has solved the task at the
   first check with MSE < 0.01, or is "not solved" within ``--max-steps`` steps.

Usage::

    python examples/adding_problem.py --plot docs/adding_problem.png
    python examples/adding_problem.py --smoke             # a tiny version, to check that it runs

The plot needs matplotlib (``pip install 'lstm-plugins[plot]'``).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from lstm_plugins import LSTMRegressor
from lstm_plugins.cli._plotting import MetricHistory, require_matplotlib
from lstm_plugins.data import MEAN_PREDICTOR_MSE, AddingProblemDataModule
from lstm_plugins.plugins import GradientClipping

SOLVED_MSE = 0.01


class StopWhenSolved(Callback):
    """Stops training at the first validation whose MSE is below ``SOLVED_MSE``."""

    def __init__(self) -> None:
        self.solved_at: int | None = None

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        mse = trainer.callback_metrics.get("val/loss")
        if mse is not None and float(mse) < SOLVED_MSE and self.solved_at is None:
            self.solved_at = trainer.global_step
            trainer.should_stop = True


def train(arguments: argparse.Namespace, seed: int, learning_rate: float, clip: bool,
          log_every_n_steps: int, stop_when_solved: bool) -> tuple[MetricHistory, StopWhenSolved, float]:
    """One run; returns its history, when it solved the task, and its wall time."""
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule = AddingProblemDataModule(
        length=arguments.length, train_size=arguments.train_size, val_size=arguments.val_size,
        test_size=0, batch_size=arguments.batch_size, seed=seed,
    )
    model = LSTMRegressor(
        2, hidden_size=arguments.hidden_size, optimizer=arguments.optimizer, learning_rate=learning_rate,
        techniques=[GradientClipping(arguments.threshold)] if clip else [],
    )
    history, stopper = MetricHistory(), StopWhenSolved()
    steps_per_epoch = math.ceil(arguments.train_size / arguments.batch_size)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=arguments.max_steps, max_epochs=-1,
        val_check_interval=min(arguments.val_every, steps_per_epoch), check_val_every_n_epoch=None,
        num_sanity_val_steps=0, log_every_n_steps=log_every_n_steps,
        callbacks=[history, *([stopper] if stop_when_solved else [])],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        deterministic=True,
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    return history, stopper, time.perf_counter() - started


def running_mean(values: Sequence[float], window: int) -> list[float]:
    """The mean of the last ``window`` values at each position (fewer at the start)."""
    means, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        means.append(total / min(index + 1, window))
    return means


def breakthrough_step(steps: Sequence[float], smoothed: Sequence[float], level: float) -> int | None:
    """The first step after which the smoothed loss stays below ``level``, or ``None``."""
    if not smoothed or smoothed[-1] >= level:
        return None
    index = len(smoothed) - 1
    while index > 0 and smoothed[index - 1] < level:
        index -= 1
    return int(steps[index])


def figure_run(arguments: argparse.Namespace) -> dict[str, Any]:
    history, _, seconds = train(arguments, arguments.figure_seed, arguments.figure_lr, clip=True,
                                log_every_n_steps=1, stop_when_solved=False)
    rows = [row for row in history.train if "train/task_loss" in row]
    steps = [row["step"] for row in rows]
    loss = [row["train/task_loss"] for row in rows]
    before = [row.get("grad_norm_before_clipping", math.nan) for row in rows]
    after = [row.get("grad_norm_after_clipping", math.nan) for row in rows]
    smoothed = running_mean(loss, arguments.window)
    found = breakthrough_step(steps, smoothed, arguments.breakthrough_loss)
    val = [(row["step"], row["val/loss"]) for row in history.validation if "val/loss" in row]
    print(f"Part 1: one run, seed {arguments.figure_seed}, {arguments.optimizer} lr {arguments.figure_lr:g}, "
          f"GradientClipping({arguments.threshold:g}), T = {arguments.length}, {len(steps)} steps, {seconds:.0f} s")
    plateau = [s for s, m in zip(steps, smoothed) if found is None or s < found]
    print(f"  running-mean training MSE ({arguments.window} steps) at step {int(steps[min(len(steps) - 1, 2 * arguments.window)])}: "
          f"{smoothed[min(len(smoothed) - 1, 2 * arguments.window)]:.4f}  (mean predictor: {MEAN_PREDICTOR_MSE:.4f})")
    summary: dict[str, Any] = {"steps": steps, "loss": loss, "smoothed": smoothed, "before": before,
                               "after": after, "breakthrough": found, "val": val}
    if found is None:
        print(f"  no breakthrough: the running-mean loss never stays below {arguments.breakthrough_loss:g}")
        return summary
    print(f"  breakthrough at step {found}: the running-mean training MSE stays below "
          f"{arguments.breakthrough_loss:g} from there on")
    start = next(i for i, s in enumerate(steps) if s >= found)
    # Where the loss falls: from the last step with the running mean still on the plateau.
    plateau_level = 0.8 * MEAN_PREDICTOR_MSE
    fall = max((i for i in range(start + 1) if smoothed[i] >= plateau_level), default=0)
    plateau_norms = sorted(v for v in before[:fall] if math.isfinite(v))
    median = plateau_norms[len(plateau_norms) // 2] if plateau_norms else math.nan
    lo, hi = max(0, fall - arguments.window), min(len(steps), start + arguments.window)
    peak_index = max(range(lo, hi), key=lambda i: before[i] if math.isfinite(before[i]) else -1.0)
    later = sorted(v for v in before[hi:] if math.isfinite(v))
    later_median = later[len(later) // 2] if later else math.nan
    clipped = sum(1 for b in before if b > arguments.threshold) / max(len(before), 1)
    print(f"  the loss leaves the plateau (running mean below {plateau_level:.3f}) after step {int(steps[fall])}")
    print(f"  gradient norm before clipping: median {median:.3f} on the plateau (steps 0-{int(steps[fall])}), "
          f"largest {before[peak_index]:.3f} at step {int(steps[peak_index])} "
          f"(steps {int(steps[lo])}-{int(steps[hi - 1])}), median {later_median:.3f} afterwards")
    print(f"  clipping changed the gradients in {100 * clipped:.1f} % of the steps")
    summary.update(fall=int(steps[fall]), peak=(steps[peak_index], before[peak_index]), plateau_median=median)
    if val:
        print(f"  validation MSE at step {int(val[-1][0])}: {val[-1][1]:.4f}")
    return summary


def comparison(arguments: argparse.Namespace) -> dict[tuple[int, bool], Any]:
    runs: dict[tuple[int, bool], Any] = {}
    print(f"\nPart 2: {arguments.seeds} seeds, {arguments.optimizer} lr {arguments.lr:g}, T = {arguments.length}, "
          f"at most {arguments.max_steps} steps; solved = validation MSE < {SOLVED_MSE:g} "
          f"(checked every {arguments.val_every} steps)")
    for seed in range(arguments.seeds):
        for clip in (False, True):
            history, stopper, seconds = train(arguments, seed, arguments.lr, clip=clip,
                                              log_every_n_steps=arguments.val_every, stop_when_solved=True)
            curve = [(row["step"], row["val/loss"]) for row in history.validation if "val/loss" in row]
            runs[(seed, clip)] = {"solved_at": stopper.solved_at, "val": curve, "seconds": seconds}
            last = curve[-1][1] if curve else math.nan
            outcome = f"solved at step {stopper.solved_at}" if stopper.solved_at is not None else "not solved"
            print(f"  seed {seed} {'clipping' if clip else 'no clipping':<12} {outcome:<22} "
                  f"last validation MSE {last:.4g}  ({seconds:.0f} s)", flush=True)
    threshold = f"GradientClipping({arguments.threshold:g})"
    print(f"\n| seed | no clipping | {threshold} |")
    print("| --- | --- | --- |")
    for seed in range(arguments.seeds):
        cells = []
        for clip in (False, True):
            solved = runs[(seed, clip)]["solved_at"]
            cells.append(f"{solved} steps" if solved is not None else f"not solved in {arguments.max_steps}")
        print(f"| {seed} | {cells[0]} | {cells[1]} |")
    for clip in (False, True):
        solved = [runs[(seed, clip)]["solved_at"] for seed in range(arguments.seeds)]
        done = sorted(s for s in solved if s is not None)
        median = f", median {done[len(done) // 2]} steps among them" if done else ""
        print(f"{'with' if clip else 'without'} clipping: {len(done)}/{arguments.seeds} solved{median}")
    return runs


def plot(path: str, arguments: argparse.Namespace, figure: dict[str, Any], runs: dict[tuple[int, bool], Any]) -> None:
    plt = require_matplotlib()
    fig, (loss_axes, norm_axes, val_axes) = plt.subplots(1, 3, figsize=(17, 4.8))
    steps = figure["steps"]
    loss_axes.plot(steps, figure["loss"], lw=0.5, alpha=0.35, color="tab:blue", label="training MSE (each step)")
    loss_axes.plot(steps, figure["smoothed"], lw=1.5, color="tab:blue",
                   label=f"running mean ({arguments.window} steps)")
    loss_axes.axhline(MEAN_PREDICTOR_MSE, ls="--", color="black", lw=1, label="mean predictor, 1/6")
    norm_axes.plot(steps, figure["before"], lw=0.6, color="tab:red", label="before clipping")
    norm_axes.plot(steps, figure["after"], lw=0.6, color="tab:green", alpha=0.8, label="after clipping")
    norm_axes.axhline(arguments.threshold, ls="--", color="black", lw=1, label=f"threshold {arguments.threshold:g}")
    if figure.get("breakthrough") is not None:
        for axes in (loss_axes, norm_axes):
            axes.axvline(figure["breakthrough"], color="tab:purple", lw=1.2,
                         label=f"breakthrough (step {figure['breakthrough']})")
    if figure.get("peak") is not None:
        norm_axes.plot(*figure["peak"], "o", ms=7, mfc="none", color="black", label="largest norm near it")
    loss_axes.set(yscale="log", xlabel="optimizer step", ylabel="MSE",
                  title=f"(a) Training loss, T = {arguments.length}, lr {arguments.figure_lr:g}")
    norm_axes.set(yscale="log", xlabel="optimizer step", ylabel="global L2 gradient norm",
                  title="(b) Gradient norm, same run")
    for (seed, clip), run in sorted(runs.items()):
        if run["val"]:
            xs, ys = zip(*run["val"])
            val_axes.plot(xs, ys, lw=1.0, color="tab:green" if clip else "tab:red", alpha=0.8,
                          label=("with clipping" if clip else "without clipping") if seed == 0 else None)
    val_axes.axhline(MEAN_PREDICTOR_MSE, ls="--", color="black", lw=1, label="1/6")
    val_axes.axhline(SOLVED_MSE, ls=":", color="black", lw=1, label=f"solved: {SOLVED_MSE:g}")
    val_axes.set(yscale="log", xlabel="optimizer step", ylabel="validation MSE",
                 title=f"(c) {arguments.seeds} seeds at lr {arguments.lr:g}")
    for axes in (loss_axes, norm_axes, val_axes):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nplot written to {path}")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=100, help="sequence length T")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--val-size", type=int, default=1_000)
    parser.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd", "rmsprop"))
    parser.add_argument("--threshold", type=float, default=1.0, help="GradientClipping threshold")
    parser.add_argument("--figure-lr", type=float, default=1e-2, help="learning rate of the part-1 run")
    parser.add_argument("--figure-seed", type=int, default=0)
    parser.add_argument("--figure-steps", type=int, default=2000, help="steps of the part-1 run")
    parser.add_argument("--lr", type=float, default=5e-2, help="the high learning rate of part 2")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=3000, help="step budget of each part-2 run")
    parser.add_argument("--val-every", type=int, default=100, help="validation interval, in steps")
    parser.add_argument("--window", type=int, default=50, help="running-mean window, in steps")
    parser.add_argument("--breakthrough-loss", type=float, default=0.1)
    parser.add_argument("--part", choices=("1", "2", "both"), default="both")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--plot", metavar="FILE.png", help="write the figure here")
    parser.add_argument("--smoke", action="store_true", help="a tiny version that runs in seconds")
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.length, arguments.hidden_size, arguments.train_size, arguments.val_size = 20, 16, 400, 100
        arguments.figure_steps, arguments.max_steps, arguments.seeds, arguments.val_every = 20, 20, 2, 10
        arguments.window = 5
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse(argv)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no per-run banners
    if arguments.plot:
        require_matplotlib()
    torch.set_num_threads(arguments.threads)
    figure: dict[str, Any] = {"steps": [], "loss": [], "smoothed": [], "before": [], "after": []}
    runs: dict[tuple[int, bool], Any] = {}
    if arguments.part in ("1", "both"):
        budget = arguments.max_steps
        arguments.max_steps = arguments.figure_steps
        figure = figure_run(arguments)
        arguments.max_steps = budget
    if arguments.part in ("2", "both"):
        runs = comparison(arguments)
    if arguments.plot:
        plot(arguments.plot, arguments, figure, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
