"""``lstm-plugins tune``: the command line of :func:`lstm_plugins.tune.tune` (the ``tune`` extra)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["tune_command"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-plugins tune",
        description="Search the model's arguments and the technique stack on top of a fit config, scored by "
        "cross-validation on the training split alone (never the test split), in an Optuna study kept in a "
        "database: a killed run resumes, several workers share one study. Writes best.yaml (run it with "
        "`lstm-plugins fit --config`), trials.csv, history.png and importances.png "
        "(needs pip install 'lstm-plugins[tune]').",
    )
    parser.add_argument("--config", required=True, metavar="BASE.yaml", help="the fit config searched around")
    parser.add_argument("--search", required=True, metavar="SEARCH.yaml", help="what to vary (see the README)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="an Optuna database URL (default: sqlite:///OUTPUT/study.db)")
    parser.add_argument("--study_name", default="lstm_plugins_tune", help="the study to create, resume or join")
    parser.add_argument("--n_trials", type=int, default=20, help="the study's trial budget, all workers together")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="this worker's wall-time budget: no trial starts after it, a running one stops at its next fold")
    parser.add_argument("--folds", type=int, default=None, help="cross-validation folds (default: search.folds, 3)")
    parser.add_argument("--output", default="tune", metavar="DIR", help="where the study and its outputs go")
    parser.add_argument("--seed", type=int, default=0, help="seed of the trials, the folds and the sampler")
    parser.add_argument("--pruner", choices=("median", "none"), default="median",
                        help="stop trials whose fold values fall below the median of earlier trials")
    parser.add_argument("--heartbeat_interval", type=int, default=10, metavar="SECONDS",
                        help="a running trial's heartbeat; a trial silent for 3 beats is failed and run again")
    return parser


def tune_command(argv: Sequence[str]) -> int:
    """Parse ``argv`` (after ``tune``), run the study, print where the outputs went."""
    arguments = _parser().parse_args(list(argv))
    from lstm_plugins.tune import tune

    tune(arguments.config, arguments.search, storage=arguments.storage, study_name=arguments.study_name,
         n_trials=arguments.n_trials, timeout=arguments.timeout, folds=arguments.folds, output=arguments.output,
         seed=arguments.seed, pruner=arguments.pruner, heartbeat_interval=arguments.heartbeat_interval)
    return 0
