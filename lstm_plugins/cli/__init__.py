"""The ``lstm-plugins`` command: ``fit`` a stack, list installed ``plugins``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from lstm_plugins.cli._config import (
    DEFAULT_CONFIG,
    ConfigError,
    load_config,
    merge,
    parse_assignment,
    validate_config,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-plugins",
        description="Train an LSTM with a stack of techniques; list the installed techniques.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser(
        "fit",
        help="train, then test and print accuracy, recall and F1",
        description="Train the default stack on JapaneseVowels, or what --config describes, "
        "then test and print accuracy, macro recall and macro F1 (and per-class values).",
    )
    fit.add_argument("--config", metavar="FILE.yaml", help="a YAML config; see the README")
    fit.add_argument(
        "--technique",
        action="append",
        metavar="NAME[:KEY=VALUE,...]",
        help="use this stack instead of the config's (repeat the flag to stack several)",
    )
    fit.add_argument("--max-epochs", type=int, help="Trainer max_epochs")
    fit.add_argument("--seed", type=int, help="global seed")
    fit.add_argument("--accelerator", help="Trainer accelerator: cpu, gpu, auto, ...")
    fit.add_argument("--devices", help="Trainer devices: a count, a list, or auto")
    fit.add_argument("--strategy", help="Trainer strategy: auto, ddp, ddp_spawn, fsdp, ...")
    fit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, for example --set model.hidden_size=128",
    )
    fit.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    fit.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also write a PNG of the training and validation curves, the gradient norm before and "
        "after clipping, and the validation metrics (needs matplotlib: pip install 'lstm-plugins[plot]')",
    )
    commands.add_parser("plugins", help="list installed techniques and the package of each")
    return parser


def _technique_flag(text: str) -> Any:
    """``"l2:weight=0.001,include_biases=true"`` as a technique spec."""
    import yaml

    name, _, arguments = text.partition(":")
    if not arguments:
        return name.strip()
    spec: dict[str, Any] = {}
    for pair in arguments.split(","):
        key, separator, raw = pair.partition("=")
        if not separator:
            raise ConfigError(f"Expected `--technique` arguments as KEY=VALUE, but got {pair!r}.")
        spec[key.strip()] = yaml.safe_load(raw)
    return {name.strip(): spec}


def resolve_run_config(arguments: argparse.Namespace) -> dict[str, Any]:
    config = load_config(arguments.config) if arguments.config else validate_config(DEFAULT_CONFIG)
    overrides: dict[str, Any] = {}
    for assignment in arguments.set:
        overrides = merge(overrides, parse_assignment(assignment))
    if arguments.technique:
        overrides["techniques"] = [_technique_flag(text) for text in arguments.technique]
    if arguments.seed is not None:
        overrides["seed"] = arguments.seed
    for flag, key in (("max_epochs", "max_epochs"), ("accelerator", "accelerator"),
                      ("devices", "devices"), ("strategy", "strategy")):
        value = getattr(arguments, flag)
        if value is not None:
            if flag == "devices" and value.isdigit():
                value = int(value)
            overrides.setdefault("trainer", {})[key] = value
    return validate_config(merge(config, overrides)) if overrides else config


def build_run(config: dict[str, Any], callbacks: Sequence[Any] = ()) -> tuple[Any, Any, Any]:
    """The data module, model and Trainer a validated config describes; ``callbacks`` are added
    to the Trainer."""
    import pytorch_lightning as pl
    import torch

    from lstm_plugins.cli._tasks import TASKS

    pl.seed_everything(config["seed"], workers=True, verbose=False)
    if config.get("threads") is not None:
        torch.set_num_threads(config["threads"])
    data = dict(config["data"])
    data.setdefault("seed", config["seed"])
    datamodule, model = TASKS[config["task"]].build({**config, "data": data}, config["techniques"])
    trainer_options = {"deterministic": True, **config["trainer"]}
    if not datamodule.has_validation:
        trainer_options.setdefault("limit_val_batches", 0)
    trainer_callbacks = list(callbacks)
    if trainer_options.get("enable_progress_bar") is not False and not any(
        isinstance(callback, pl.callbacks.ProgressBar) for callback in trainer_callbacks
    ):
        # Redrawn every logging interval rather than every batch: at the default configuration
        # a per-batch redraw costs about 3 % of the epoch.
        refresh_rate = max(int(trainer_options.get("log_every_n_steps") or 50), 1)
        trainer_callbacks.append(pl.callbacks.TQDMProgressBar(refresh_rate=refresh_rate))
    every = config.get("checkpoint_every_n_epochs")
    if every is not None and trainer_options.get("enable_checkpointing") is not False and not any(
        isinstance(callback, pl.callbacks.ModelCheckpoint) for callback in trainer_callbacks
    ):
        from lstm_plugins.training import PeriodicCheckpoint

        trainer_callbacks.append(PeriodicCheckpoint(every_n_epochs=every))
    if trainer_callbacks:
        trainer_options["callbacks"] = trainer_callbacks
    trainer = pl.Trainer(**trainer_options)
    return datamodule, model, trainer


def _fit(arguments: argparse.Namespace) -> int:
    import yaml

    config = resolve_run_config(arguments)
    if arguments.print_config:
        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    history = None
    if arguments.plot:
        from lstm_plugins.cli._plotting import MetricHistory, require_matplotlib

        require_matplotlib()  # fail before training, not after it
        history = MetricHistory()
    started = time.perf_counter()
    datamodule, model, trainer = build_run(config, callbacks=[history] if history is not None else ())
    trainer.fit(model, datamodule=datamodule)
    if datamodule.has_test:
        trainer.test(model, datamodule=datamodule, verbose=False)
        if trainer.is_global_zero:
            from lstm_plugins.cli._tasks import TASKS

            print(TASKS[config["task"]].table(model.test_results, datamodule))
            tested = getattr(datamodule, "test_dataset", None)
            count = f"{len(tested)} test sequences, " if hasattr(tested, "__len__") else ""
            print(f"  ({count}{time.perf_counter() - started:.1f} s in all)")
    if history is not None and trainer.is_global_zero:
        from lstm_plugins.cli._plotting import plot_run

        path = plot_run(history, arguments.plot, title=_plot_title(config))
        print(f"  plot written to {path}")
    return 0


def _plot_title(config: dict[str, Any]) -> str:
    names = []
    for spec in config["techniques"]:
        if isinstance(spec, str):
            names.append(spec)
        elif "name" in spec:
            names.append(str(spec["name"]))
        else:
            names.extend(str(name) for name in spec)
    stack = ", ".join(names) if names else "no techniques"
    return f"seed {config['seed']}: {stack}"


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lstm-plugins`` console script."""
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "plugins":
            return _plugins()
        return _fit(arguments)
    except (ConfigError, ValueError, TypeError, ImportError) as exc:
        if os.environ.get("LSTM_PLUGINS_TRACEBACK"):
            raise
        print(f"lstm-plugins: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
