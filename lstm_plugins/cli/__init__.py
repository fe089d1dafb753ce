"""The ``lstm-plugins`` command, on Lightning's ``LightningCLI``.

* ``lstm-plugins fit|validate|test|predict [--config FILE.yaml] [--trainer.* --model.* --data.*]``:
  LightningCLI subcommands for the config's task (``task:``; classification by default). ``fit``
  with no argument trains the default stack on JapaneseVowels and prints the test table.
* ``lstm-plugins plugins``: the installed techniques and the package of each.
* ``lstm-plugins plot LOG_FOLDER --output FILE.png``: redraw a run from its CSV log.

``build_run`` builds, in Python, the data module, model and Trainer that ``lstm-plugins fit``
builds from the same config given as a dict (:data:`DEFAULT_CONFIG` shows the format); the
benchmarks and examples use it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lstm_plugins.cli._config import DEFAULT_CONFIG, ConfigError
from lstm_plugins.cli._run import build_run

__all__ = ["DEFAULT_CONFIG", "ConfigError", "build_run", "main"]

SUBCOMMANDS = ("fit", "validate", "test", "predict")
TRACEBACK_VARIABLE = "LSTM_PLUGINS_TRACEBACK"
"""Set (to anything) to see the full traceback of an error instead of its one-line report."""
_USAGE = """usage: lstm-plugins {fit,validate,test,predict,generate,tune,plugins,plot} ...

Train an LSTM with a stack of techniques, evaluate it, predict with it; list the techniques.

subcommands:
  fit        train (the default stack on JapaneseVowels without --config), then test and print
             the results table; --early_stopping.monitor val/loss stops early and tests the best
             checkpoint; --ckpt_path resumes; --plot FILE.png draws the CSV log
  validate   evaluate on the validation split (--ckpt_path FILE.ckpt)
  test       evaluate on the test split (--ckpt_path FILE.ckpt)
  predict    write predictions as CSV (--ckpt_path, --output): of a .ts file of series to label
             (--input FILE.ts, labels optional) or of the data's test split
  generate   continue a prompt with a language model (--ckpt_path, --prompt, --length)
  tune       search hyper-parameters and techniques by cross-validation on the training split
             (--config BASE.yaml --search SEARCH.yaml; pip install 'lstm-plugins[tune]')
  plugins    list installed techniques and the package of each
  plot       redraw a run from its CSV log folder: plot LOG_FOLDER --output FILE.png
  explain    attribution heatmaps per sequence (--ckpt_path, --input FILE.ts or --dataset NAME,
             --method, --output FOLDER), or --gates --index N: the gates over one sequence

`lstm-plugins SUBCOMMAND --help` lists every option; `--print_config` prints the validated config;
`--traceback` (or LSTM_PLUGINS_TRACEBACK=1) shows an error's full traceback, for a bug report.
"""


def _plugins() -> int:
    from lstm_plugins.techniques import BLOCK_ENVIRONMENT_VARIABLE, available_techniques

    listing = available_techniques()
    if not listing:
        print("No technique is installed.")
        return 0
    width = max(len(name) for name in listing) + 2
    source_width = max(len(info.distribution) for info in listing.values()) + 2
    print(f"{'technique':<{width}}{'package':<{source_width}}description")
    for name, info in listing.items():
        if info.error:
            note = f"BROKEN: {info.error}"
        elif info.blocked:
            note = f"blocked by {BLOCK_ENVIRONMENT_VARIABLE}: {info.description}"
        else:
            note = info.description
        print(f"{name:<{width}}{info.distribution:<{source_width}}{note}")
    return 0


def _plot(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lstm-plugins plot",
        description="Redraw a finished (or running) run from what its CSV logger wrote: losses, the gradient "
        "norm before and after clipping, the validation metrics (needs pip install 'lstm-plugins[plot]').",
    )
    parser.add_argument("log", help="a log folder (lightning_logs/version_0), its metrics.csv, or a folder of runs")
    parser.add_argument("--output", default="run.png", metavar="FILE.png", help="the PNG to write")
    parser.add_argument("--title", default=None, help="a title over the panels")
    arguments = parser.parse_args(list(argv))
    from lstm_plugins.cli._plotting import plot_from_log

    path = plot_from_log(arguments.log, arguments.output, title=arguments.title)
    print(f"plot written to {path}")
    return 0


def _generate(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lstm-plugins generate",
        description="Continue a prompt with a language model trained by `lstm-plugins fit` (task: language_model).",
    )
    parser.add_argument("--ckpt_path", required=True, metavar="FILE.ckpt", help="a language model's checkpoint")
    parser.add_argument("--prompt", required=True, help="the text to continue (in the model's vocabulary)")
    parser.add_argument("--length", type=int, default=200, help="how many tokens to add (default 200)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 is greedy")
    parser.add_argument("--seed", type=int, default=None, help="a seed for the sampling")
    arguments = parser.parse_args(list(argv))
    from lstm_plugins.model import LSTMLanguageModel
    from lstm_plugins.training._checkpoint_check import check_written_by, read_checkpoint

    # A missing, empty, truncated or foreign file, or another task's checkpoint: named.
    check_written_by(read_checkpoint(arguments.ckpt_path), LSTMLanguageModel, path=arguments.ckpt_path)
    try:
        model = LSTMLanguageModel.load_from_checkpoint(arguments.ckpt_path, map_location="cpu")
    except Exception as exc:  # tampered technique state: say which file
        from lstm_plugins.training._checkpoint_check import name_checkpoint

        name_checkpoint(exc, arguments.ckpt_path)
        raise
    text = model.generate(arguments.prompt, arguments.length, temperature=arguments.temperature, seed=arguments.seed)
    print(arguments.prompt + text)
    return 0


def _lightning_cli(argv: Sequence[str]) -> int:
    from lstm_plugins.cli._guard import check_class_paths, read_task

    check_class_paths(argv)
    task = read_task(argv)
    print_only = any(item == "--print_config" or item.startswith("--print_config=") for item in argv)
    argv = [item for item in argv if not (item == "--print_config" or item.startswith("--print_config="))]
    import warnings

    from lstm_plugins.cli._lightning import LSTMPluginsCLI

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        LSTMPluginsCLI(task, args=list(argv), print_only=print_only)
    from lstm_plugins.training import end_process_group

    end_process_group()  # under DDP: before gloo's threads meet the interpreter's exit
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lstm-plugins`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The full traceback, for a bug report: `--traceback` anywhere, or LSTM_PLUGINS_TRACEBACK=1.
    show_traceback = "--traceback" in argv or bool(os.environ.get(TRACEBACK_VARIABLE))
    argv = [item for item in argv if item != "--traceback"]
    command = argv[0] if argv else None
    if command in (None, "-h", "--help"):
        print(_USAGE, end="")
        return 0 if command else 2
    try:
        if command == "plugins":
            return _plugins()
        if command == "plot":
            return _plot(argv[1:])
        if command == "generate":
            return _generate(argv[1:])
        if command == "tune":
            from lstm_plugins.cli._tune import tune_command

            return tune_command(argv[1:])
        if command == "explain":
            from lstm_plugins.cli._explain import explain

            return explain(argv[1:])
        if command not in SUBCOMMANDS:
            print(_USAGE, end="", file=sys.stderr)
            print(f"lstm-plugins: error: unknown subcommand {command!r}; choose from "
                  f"{', '.join((*SUBCOMMANDS, 'plugins', 'plot', 'generate', 'tune'))}.", file=sys.stderr)
            return 2
        return _lightning_cli(argv)
    except SystemExit as exit_:
        if exit_.code is None and type(exit_).__name__ == "SIGTERMException":
            return 143  # preempted: lstm_plugins.training.Preemption saved and named the checkpoint
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except KeyboardInterrupt:
        if show_traceback:
            raise
        print("lstm-plugins: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
    except Exception as exc:  # every error: one line (and its notes) and a non-zero status
        if show_traceback:
            raise
        from lstm_plugins.cli._errors import error_report, exit_status

        print(error_report(exc), file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":
    raise SystemExit(main())
