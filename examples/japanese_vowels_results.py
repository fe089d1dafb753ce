"""The JapaneseVowels results table: a plain LSTM and the recommended stack over 5 seeds.

Both rows train the same model (a one-layer bidirectional LSTM, 128 units per direction, Adam at
3e-3, batches of 16, 100 epochs, 10 % of the training set held out for validation) exactly as
``lstm-plugins fit`` does: the plain row with no technique, the recommended row with the stack
below. Each row reports test accuracy, macro recall and macro F1 as mean ± standard deviation
(n - 1) over seeds 0-4, and the mean wall time of one run (training and test), next to the
published accuracies on the same train/test split.

One row of the table is one command per seed, for example, for seed 3::

    lstm-plugins fit --seed_everything 3 --model.techniques '[]'    # the plain LSTM
    lstm-plugins fit --seed_everything 3 --model.techniques+=activation_regularization   # the recommended stack

The recommended stack is the default stack of ``lstm-plugins fit`` plus activation
regularisation (AR and TAR, Merity et al. 2017, at alpha = beta = 1).

Usage::

    python examples/japanese_vowels_results.py                     # 10 runs
    python examples/japanese_vowels_results.py --plot docs/japanese_vowels.png   # and a figure
    python examples/japanese_vowels_results.py --smoke             # 2 seeds x 1 epoch
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch

from lstm_plugins.cli import DEFAULT_CONFIG, build_run
from lstm_plugins.cli._plotting import MetricHistory, require_matplotlib

RECOMMENDED: list[Any] = [
    *DEFAULT_CONFIG["model"]["techniques"],  # gradient clipping, dropout, L2, gradient-norm monitoring
    {"activation_regularization": {"alpha": 1.0, "beta": 1.0}},  # AR and TAR (Merity et al. 2017)
]
"""The recommended stack: the default of ``lstm-plugins fit`` plus activation regularisation."""

STACKS: dict[str, list[Any]] = {
    "plain LSTM (no technique)": [],
    "recommended stack": RECOMMENDED,
}

PUBLISHED = [
    ("Kudo et al. 1999 (passing-through regions)", "94.1"),
    ("Fawaz et al. 2019, MLP", "97.6"),
    ("Fawaz et al. 2019, FCN", "99.3"),
    ("Karim et al. 2019, LSTM-FCN", "99"),
]

QUIET_TRAINER = {"enable_progress_bar": False, "logger": False, "enable_checkpointing": False,
                 "enable_model_summary": False}


def run(techniques: list[Any], seed: int, max_epochs: int, hidden_size: int | None, threads: int) -> dict[str, Any]:
    """One ``lstm-plugins fit`` run: test metrics, seconds, and the validation history."""
    model_options: dict[str, Any] = {"techniques": techniques}
    if hidden_size is not None:
        model_options["hidden_size"] = hidden_size
    history = MetricHistory()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="japanese-vowels-") as workdir:  # the config fit saves
        config = {"seed_everything": seed, "threads": threads, "model": model_options,
                  "trainer": {**QUIET_TRAINER, "max_epochs": max_epochs, "default_root_dir": workdir}}
        datamodule, model, trainer = build_run(config, callbacks=[history])
        trainer.fit(model, datamodule=datamodule)
        trainer.test(model, datamodule=datamodule, verbose=False)
    seconds = time.perf_counter() - started
    results = {name: model.test_results[f"test/{name}"].item() for name in ("accuracy", "recall", "f1")}
    return {**results, "seed": seed, "seconds": seconds, "validation": history.validation}


def mean_std(values: Sequence[float], scale: float = 100.0) -> str:
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def table(rows: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| model | accuracy (%) | macro recall (%) | macro F1 (%) | time per run |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, runs in rows.items():
        cells = [mean_std([r[metric] for r in runs]) for metric in ("accuracy", "recall", "f1")]
        seconds = statistics.fmean(r["seconds"] for r in runs)
        seeds = f"seeds {runs[0]['seed']}-{runs[-1]['seed']}"
        lines.append(f"| {name}, {seeds} | {' | '.join(cells)} | {seconds:.1f} s |")
    for name, accuracy in PUBLISHED:
        lines.append(f"| {name} | {accuracy} | | | |")
    return "\n".join(lines)


def plot(path: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    plt = require_matplotlib()
    figure, (scores, losses) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})
    colors = ("tab:red", "tab:blue")
    for position, ((name, runs), color) in enumerate(zip(rows.items(), colors)):
        accuracy = [100 * result["accuracy"] for result in runs]
        offsets = [0.07 * (index - (len(accuracy) - 1) / 2) for index in range(len(accuracy))]
        scores.plot([position + offset for offset in offsets], accuracy, "o", color=color, alpha=0.7, ms=7)
        scores.plot([position - 0.2, position + 0.2], [statistics.fmean(accuracy)] * 2, color=color, lw=2)
        for index, result in enumerate(runs):
            epochs = [row["epoch"] + 1 for row in result["validation"] if "val/loss" in row]
            loss = [row["val/loss"] for row in result["validation"] if "val/loss" in row]
            losses.plot(epochs, loss, color=color, lw=0.8, alpha=0.7, label=name if index == 0 else None)
    for (name, accuracy), style in zip(PUBLISHED, (":", "-.", "--", (0, (1, 3)))):
        scores.axhline(float(accuracy), color="gray", ls=style, lw=1, label=f"{name}: {accuracy} %")
    scores.set_xticks(range(len(rows)), [name.split(" (")[0] for name in rows])
    scores.set(xlim=(-0.6, len(rows) - 0.4), ylabel="test accuracy (%)",
               title="Test accuracy, one dot per seed (bar: mean)")
    scores.legend(fontsize=7, loc="lower right")
    losses.set(xlabel="epoch", ylabel="validation cross-entropy", yscale="log",
               title="Validation loss (27 held-out sequences), each seed")
    losses.legend(fontsize=8)
    for axes in (scores, losses):
        axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"plot written to {path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="JapaneseVowels: plain LSTM vs the recommended stack.")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ...")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: the numbers do not depend on the core count)")
    parser.add_argument("--plot", metavar="FILE.png", help="write the test accuracies and validation curves here")
    parser.add_argument("--smoke", action="store_true", help="2 seeds, 1 epoch, a small model")
    arguments = parser.parse_args(argv)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if arguments.plot:
        require_matplotlib()
    torch.set_num_threads(arguments.threads)
    seeds = 2 if arguments.smoke else arguments.seeds
    max_epochs = 1 if arguments.smoke else arguments.max_epochs
    hidden_size = 16 if arguments.smoke else None

    rows: dict[str, list[dict[str, Any]]] = {}
    for name, techniques in STACKS.items():
        rows[name] = []
        for seed in range(arguments.first_seed, arguments.first_seed + seeds):
            result = run(techniques, seed, max_epochs, hidden_size, arguments.threads)
            rows[name].append(result)
            print(f"{name}, seed {seed}: accuracy {result['accuracy']:.4f}  recall {result['recall']:.4f}  "
                  f"F1 {result['f1']:.4f}  ({result['seconds']:.1f} s)", flush=True)
    print()
    print(table(rows))
    if arguments.plot:
        plot(arguments.plot, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
