"""Sequence summaries and LSTM-FCN on JapaneseVowels, GunPoint and ArrowHead, over 5 seeds.

Five models, each the same one-layer LSTM (64 units, Adam at 3e-3, batches of 16, 40 epochs,
gradient clipping at norm 1, 10 % of the training set held out for validation, the last epoch's
weights tested) trained exactly as ``lstm-plugins fit`` does:

* ``LSTM (last step)``: the plain LSTM, reading its final hidden state (the default);
* ``LSTM + mean summary`` / ``LSTM + attention summary``: the ``summary`` technique;
* ``LSTM-FCN``: the ``fcn_branch`` technique (Karim et al. 2017: convolution blocks of 128, 256
  and 128 filters, kernels 8, 5, 3, batch norm, ReLU, global average pooling, beside the LSTM);
* ``LSTM-FCN, dimension shuffle``: the same with the paper's dimension shuffle (the LSTM reads
  the whole univariate series as one step); fixed-length data only, so not on JapaneseVowels.

Each row reports test accuracy as mean ± standard deviation (n - 1) over seeds 0-4 and the mean
wall time of one run (training and test, one thread). One cell is one command per seed, e.g.::

    lstm-plugins fit --seed_everything 3 --data.dataset gun_point --model.hidden_size 64 \\
        --model.bidirectional false --model.learning_rate 0.003 --trainer.max_epochs 40 \\
        --model.techniques '[{gradient_clipping: {threshold: 1.0}}, fcn_branch]'

(the shuffled row: ``{fcn_branch: {dimension_shuffle: true, sequence_length: 150}}``, 251 for
ArrowHead). No published figure is printed beside the table: see the README section for why.

Usage::

    python examples/lstm_fcn.py                         # 3 data sets x 5 models x 5 seeds
    python examples/lstm_fcn.py --datasets gun_point --models "LSTM-FCN" --json out.json
    python examples/lstm_fcn.py --table-from a.json b.json   # the table of earlier runs
    python examples/lstm_fcn.py --smoke                 # 1 seed, 1 epoch, small models
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch

from lstm_plugins.cli import build_run

BASE: list[Any] = [{"gradient_clipping": {"threshold": 1.0}}]
"""What every row shares: clipping at global norm 1 (the library's default threshold)."""

MODELS: dict[str, list[Any]] = {
    "LSTM (last step)": BASE,
    "LSTM + mean summary": [*BASE, {"summary": {"mode": "mean"}}],
    "LSTM + attention summary": [*BASE, {"summary": {"mode": "attention"}}],
    "LSTM-FCN": [*BASE, "fcn_branch"],
    "LSTM-FCN, dimension shuffle": [*BASE, "fcn_branch_shuffled"],
}

FIXED_LENGTH = {"gun_point": 150, "arrow_head": 251}
"""Steps of every series of the fixed-length sets (the dimension shuffle needs one length)."""

DATASETS = {"japanese_vowels": "JapaneseVowels", "gun_point": "GunPoint", "arrow_head": "ArrowHead"}

QUIET_TRAINER = {"enable_progress_bar": False, "logger": False, "enable_checkpointing": False,
                 "enable_model_summary": False}


def run(dataset: str, techniques: list[Any], seed: int, max_epochs: int, smoke: bool) -> dict[str, Any]:
    """One ``lstm-plugins fit`` run and its test: accuracy and seconds."""
    branch: dict[str, Any] = {"filters": [8, 16, 8]} if smoke else {}  # small when smoke-testing
    if "fcn_branch_shuffled" in techniques:
        branch.update(dimension_shuffle=True, sequence_length=FIXED_LENGTH[dataset])
    techniques = [{"fcn_branch": branch} if str(t).startswith("fcn_branch") else t for t in techniques]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lstm-fcn-") as workdir:  # the config fit saves
        config = {
            "seed_everything": seed, "threads": 1,
            "model": {"hidden_size": 8 if smoke else 64, "bidirectional": False, "learning_rate": 3e-3,
                      "techniques": techniques},
            "data": {"dataset": dataset, "batch_size": 16, "val_fraction": 0.1},
            "trainer": {**QUIET_TRAINER, "max_epochs": max_epochs, "default_root_dir": workdir},
        }
        datamodule, model, trainer = build_run(config)
        if smoke:
            trainer.limit_train_batches = 2
        trainer.fit(model, datamodule=datamodule)
        trainer.test(model, datamodule=datamodule, verbose=False)
    return {"accuracy": model.test_results["test/accuracy"].item(), "seed": seed,
            "seconds": time.perf_counter() - started}


def mean_std(values: Sequence[float], scale: float = 100.0) -> str:
    mean = statistics.fmean(values) * scale
    std = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def table(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """Markdown: one row per model, one accuracy column and one time column per data set."""
    datasets = [d for d in DATASETS if d in results]
    header = "| model | " + " | ".join(f"{DATASETS[d]} accuracy (%) | time" for d in datasets) + " |"
    lines = [header, "| --- |" + " --- | --- |" * len(datasets)]
    models = [m for m in MODELS if any(m in results[d] for d in datasets)]
    for name in models:
        cells = []
        for dataset in datasets:
            runs = results[dataset].get(name, [])
            if runs:
                cells += [mean_std([r["accuracy"] for r in runs]), f"{statistics.fmean(r['seconds'] for r in runs):.1f} s"]
            else:
                cells += ["variable lengths" if "shuffle" in name and dataset not in FIXED_LENGTH else "", ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sequence summaries and LSTM-FCN on three data sets.")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0, 1, ...")
    parser.add_argument("--max-epochs", type=int, default=40,
                        help="40 by default: the papers train for 2000 epochs; this budget fits ~20 min on one core")
    parser.add_argument("--json", metavar="FILE", help="also write every run's result here")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 1 epoch of 2 batches, small models")
    parser.add_argument("--table-from", nargs="+", metavar="FILE",
                        help="print the table of earlier --json files (merged) instead of running")
    arguments = parser.parse_args(argv)
    if arguments.table_from:
        merged: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for path in arguments.table_from:
            with open(path) as handle:
                for dataset, models in json.load(handle)["results"].items():
                    merged.setdefault(dataset, {}).update(models)
        print(table(merged))
        return 0
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(1)
    seeds = 1 if arguments.smoke else arguments.seeds
    max_epochs = 1 if arguments.smoke else arguments.max_epochs
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for dataset in arguments.datasets:
        results[dataset] = {}
        for name in arguments.models:
            if "fcn_branch_shuffled" in MODELS[name] and dataset not in FIXED_LENGTH:
                continue  # variable lengths: the dimension shuffle refuses them
            results[dataset][name] = []
            for seed in range(seeds):
                result = run(dataset, MODELS[name], seed, max_epochs, arguments.smoke)
                results[dataset][name].append(result)
                print(f"{DATASETS[dataset]}, {name}, seed {seed}: accuracy {result['accuracy']:.4f} "
                      f"({result['seconds']:.1f} s)", flush=True)
    print()
    print(f"Test accuracy, {seeds} seed(s), {max_epochs} epoch(s), 1 thread")
    print(table(results))
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump({"max_epochs": max_epochs, "results": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
