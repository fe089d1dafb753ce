"""Tuned against default: does ``lstm-plugins tune`` beat the default stack on unseen data sets?

For each of JapaneseVowels, GunPoint and ArrowHead (embedded; the UCR archive sets from the
``sktime`` 1.2.0 wheel), a study searches examples/configs/search_archive.yaml on top of the
default stack of ``lstm-plugins fit`` (data set changed, nothing else), scored by stratified
3-fold cross-validation on the training split alone, under a fixed budget (``--n_trials`` trials,
at most ``--timeout`` seconds per study). Then the default config and the study's best config
are each trained with seeds 0-4 (the fit's own 10 % validation split and test protocol, as
``lstm-plugins fit`` does) and scored once on the test split: mean ± sd (n - 1) of test accuracy,
and the mean wall time of one run.

Usage::

    python examples/tuning_results.py                    # 3 studies + 30 runs (~30-45 min on 2 shared cores)
    python examples/tuning_results.py --datasets gun_point --n_trials 6
    python examples/tuning_results.py --smoke            # 1 data set, 2 trials x 1 epoch, 2 seeds
    python examples/tuning_results.py --datasets gun_point arrow_head \
        --search examples/configs/search_archive_hybrids.yaml --output tuning_hybrids
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lstm_plugins.cli import DEFAULT_CONFIG, build_run

EXAMPLES = Path(__file__).resolve().parent
SEARCH = EXAMPLES / "configs" / "search_archive.yaml"
DATASETS = ("japanese_vowels", "gun_point", "arrow_head")
QUIET_TRAINER = {"enable_progress_bar": False, "logger": False, "enable_checkpointing": False,
                 "enable_model_summary": False}


def default_config(dataset: str) -> dict[str, Any]:
    """``lstm-plugins fit``'s default config with ``data.dataset`` set (what a new user runs)."""
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["data"]["dataset"] = dataset
    return config


def test_accuracy(config: dict[str, Any], seed: int, max_epochs: int | None = None) -> tuple[float, float]:
    """Test accuracy of ``config`` trained with ``seed``, and the run's wall seconds."""
    from lstm_plugins.tune._study import quiet

    config = copy.deepcopy(config)
    config["seed_everything"] = seed
    config["data"] = {**(config.get("data") or {}), "seed": seed}
    config["trainer"] = {**(config.get("trainer") or {}), **QUIET_TRAINER}
    if max_epochs is not None:
        config["trainer"]["max_epochs"] = max_epochs
    started = time.perf_counter()
    with quiet():
        datamodule, model, trainer = build_run(config)
        trainer.fit(model, datamodule=datamodule)
        results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    return float(results["test/accuracy"]), time.perf_counter() - started


def _summary(values: Sequence[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--n_trials", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=360.0, help="wall seconds per study")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--output", default="tuning_results", help="studies, best configs and results.json")
    parser.add_argument("--search", default=str(SEARCH),
                        help="the search file (search_archive_hybrids.yaml adds the summary and the FCN branch)")
    parser.add_argument("--smoke", action="store_true", help="gun_point, 2 trials x 1 epoch x 2 folds, 2 seeds")
    arguments = parser.parse_args(argv)
    torch.set_num_threads(1)
    from lstm_plugins.tune import best_config, tune
    from lstm_plugins.tune._study import load_config

    search = load_config(arguments.search, "search config")
    datasets, seeds, epochs = arguments.datasets, range(arguments.seeds), None
    if arguments.smoke:
        search["search"]["trainer"] = {"max_epochs": {"int": [1, 1]}}
        datasets, seeds, epochs = ["gun_point"], range(2), 1
        arguments.n_trials, arguments.folds = 2, 2
    output = Path(arguments.output)
    rows = []
    for dataset in datasets:
        started = time.perf_counter()
        base = default_config(dataset)
        if epochs is not None:
            base["trainer"]["max_epochs"] = epochs
        study = tune(base, search, n_trials=arguments.n_trials, timeout=arguments.timeout, folds=arguments.folds,
                     output=output / dataset, study_name=dataset, progress=not arguments.smoke)
        study_seconds = time.perf_counter() - started
        tuned = best_config(study)
        row: dict[str, Any] = {"dataset": dataset, "study_seconds": study_seconds, "cv_best": study.best_value,
                               "trials": len(study.trials), "best_params": study.best_trial.params}
        for label, config in (("default", base), ("tuned", tuned)):
            runs = [test_accuracy(config, seed, epochs) for seed in seeds]
            row[label] = [accuracy for accuracy, _ in runs]
            row[f"{label}_seconds"] = statistics.fmean(seconds for _, seconds in runs)
            print(f"{dataset:<16} {label:<8} test accuracy {_summary(row[label])} %  "
                  f"({row[f'{label}_seconds']:.1f} s per run)", flush=True)
        rows.append(row)
        output.mkdir(parents=True, exist_ok=True)
        (output / "results.json").write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")
    print(f"\n| data set | default stack | tuned (CV on train) | CV best | study | run (default / tuned) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['dataset']} | {_summary(row['default'])} | {_summary(row['tuned'])} | "
              f"{100 * row['cv_best']:.1f} | {row['trials']} trials, {row['study_seconds']:.0f} s | "
              f"{row['default_seconds']:.1f} / {row['tuned_seconds']:.1f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
