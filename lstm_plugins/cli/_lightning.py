"""The ``fit``/``validate``/``test``/``predict`` subcommands: Lightning's ``LightningCLI`` with the
task's model class and data function, and this project's defaults.

The task (``task:`` in a config, or ``--task``) picks the model class and the data function
(:data:`TASK_CLASSES`); sizes that come from the data (``input_size``, ``num_classes``,
``vocab_size``, target statistics, ...) are linked from the built data module to the model, so a
config never gives them. Defaults on top of Lightning's: a CSV logger, one intra-op thread
(``threads``), a checkpoint every 10 epochs plus ``last.ckpt`` (``checkpoint_every_n_epochs``),
or, with ``early_stopping``, a checkpoint of the best monitored value, which ``fit`` then tests.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar, TQDMProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from lstm_plugins.cli import _builders as builders
from lstm_plugins.cli._config import DEFAULT_CONFIG, ConfigError
from lstm_plugins.cli._errors import ExplainingParser
from lstm_plugins.cli._trainer_values import check_threads, check_trainer_values
from lstm_plugins.cli._yaml import register_parser_mode
from lstm_plugins.model import (
    LSTMClassifier, LSTMForecaster, LSTMLanguageModel, LSTMRegressor, LSTMSequenceLabeller,
)

TINY_VALIDATION = 50
"""Below this many validation sequences (windows), ``fit`` says the split is tiny."""


def _statistic(index: int) -> Callable[[Any], Any]:
    def compute(datamodule: Any) -> Any:
        return builders.target_statistics(datamodule)[index]
    return compute


@dataclass(frozen=True)
class TaskClasses:
    """The model class, the data function and the data-to-model links of one task."""

    model: type[LightningModule]
    data: Callable[..., Any]
    links: tuple[tuple[str, str, Callable[[Any], Any] | None], ...]
    """``(data attribute or "data", model argument, compute_fn)``."""


_SIZES = (("data.num_features", "model.input_size", None), ("data.num_classes", "model.num_classes", None))
TASK_CLASSES: dict[str, TaskClasses] = {
    "classification": TaskClasses(LSTMClassifier, builders.classification_data, _SIZES),
    "regression": TaskClasses(LSTMRegressor, builders.regression_data, (
        ("data.num_features", "model.input_size", None), ("data.num_outputs", "model.num_outputs", None),
        ("data", "model.target_mean", _statistic(0)), ("data", "model.target_std", _statistic(1)))),
    "sequence_labelling": TaskClasses(LSTMSequenceLabeller, builders.sequence_labelling_data, _SIZES),
    "forecasting": TaskClasses(LSTMForecaster, builders.forecasting_data, (
        ("data.num_series", "model.num_series", None), ("data.horizon", "model.horizon", None),
        ("data.seasonality", "model.seasonality", None))),
    "language_model": TaskClasses(LSTMLanguageModel, builders.language_model_data, (
        ("data.vocab_size", "model.vocab_size", None), ("data.vocabulary", "model.vocabulary", None))),
}
"""Every task by the name a config gives in ``task:``."""


@dataclass
class EarlyStoppingOptions:
    """``early_stopping:``: stop when ``monitor`` has not improved for ``patience`` validations;
    the checkpoint of its best value is kept and tested."""

    monitor: str = "val/loss"
    patience: int = 10
    mode: Literal["min", "max"] = "min"
    min_delta: float = 0.0


class LSTMPluginsCLI(LightningCLI):
    """``LightningCLI`` for one task of this project (see the module docstring)."""

    def __init__(self, task: str, args: list[str] | dict[str, Any] | None = None, print_only: bool = False,
                 callbacks: Sequence[Callback] = (), exit_on_error: bool = True, **kwargs: Any) -> None:
        """``args``: a command line (a list) or a config (a dict); ``callbacks`` are added to the
        Trainer's, before the defaults (a progress bar or checkpoint given here replaces the default one);
        ``exit_on_error=False`` raises a parse error (``jsonargparse.ArgumentError``) instead of exiting."""
        self.task = task
        self.print_only = print_only
        self.extra_callbacks = list(callbacks)
        self.classes = TASK_CLASSES[task]
        self.started = time.perf_counter()
        # Only the subcommand asked for gets a parser: each costs about 0.5 s of signature reading.
        self.only_subcommand = args[0] if isinstance(args, list) and args else None
        super().__init__(
            self.classes.model, self.classes.data, seed_everything_default=DEFAULT_CONFIG["seed_everything"],
            trainer_defaults=dict(DEFAULT_CONFIG["trainer"]),
            save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
            parser_kwargs={"prog": "lstm-plugins", "exit_on_error": exit_on_error, "parser_mode": register_parser_mode()},
            parser_class=ExplainingParser,
            args=args, **kwargs,
        )

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        """Lightning's subcommands, or only the one the command line names."""
        every = LightningCLI.subcommands()
        return {self.only_subcommand: every[self.only_subcommand]} if self.only_subcommand in every else every

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "fit":
            parser.add_argument("--plot", type=str | None, default=None,
                                help="also draw the run's CSV log as a PNG (needs matplotlib)")
        if subcommand == "predict":
            parser.add_argument("--output", type=str, default="predictions.csv", help="the CSV to write")
            parser.add_argument("--input", type=str | None, default=None,
                                help="a .ts file of series to label (labels optional), read as raw features and "
                                "standardised like the training data; default: the data's test split")
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--task", type=Literal[tuple(TASK_CLASSES)], default=self.task,  # type: ignore[misc]
                            help="the task; picks the model and the data (read before anything else)")
        parser.add_argument("--flush_denormals", type=bool, default=True,
                            help="flush denormal floats to zero while training and evaluating (CPU speed)")
        parser.add_argument("--threads", type=int | None, default=DEFAULT_CONFIG["threads"],
                            help="intra-op CPU threads (torch.set_num_threads); null keeps torch's default")
        parser.add_argument("--checkpoint_every_n_epochs", type=int | None,
                            default=DEFAULT_CONFIG["checkpoint_every_n_epochs"],
                            help="a checkpoint every N epochs and last.ckpt at the end; null: Lightning's default")
        parser.add_argument("--early_stopping", type=EarlyStoppingOptions | None, default=None,
                            help="stop early on a monitored metric and test the best checkpoint")
        for source, target, compute in self.classes.links:
            parser.link_arguments(source, target, compute_fn=compute, apply_on="instantiate")
        if self.task == "classification":
            parser.set_defaults({f"model.{key}": value for key, value in DEFAULT_CONFIG["model"].items()})
            parser.set_defaults({f"data.{key}": value for key, value in DEFAULT_CONFIG["data"].items()})

    # --- building -----------------------------------------------------------------------------

    def _parse_ckpt_path(self) -> None:
        """Read and check ``--ckpt_path`` (a missing, empty, truncated or foreign file is refused
        naming it), and rebuild the model from its hyperparameters, less what the data gives; a
        resumed ``fit`` whose config gives a model value that differs from the checkpoint's is refused."""
        from lstm_plugins.cli._resume import conflicting_model_values
        from lstm_plugins.training._checkpoint_check import check_written_by, read_checkpoint

        self._checkpoint: dict[str, Any] | None = None
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry") or "://" in str(ckpt_path) \
                or str(ckpt_path).startswith("registry:"):
            return  # Lightning's named checkpoints and remote files: Lightning resolves them
        self._checkpoint = read_checkpoint(ckpt_path)
        check_written_by(self._checkpoint, self.classes.model, path=ckpt_path)
        hparams = dict(self._checkpoint.get("hyper_parameters") or {})
        for _, target, _ in self.classes.links:
            hparams.pop(target.split(".", 1)[1], None)
        hparams.pop("_instantiator", None)
        # Arguments of a base class the model class does not take: dropped, as load_from_checkpoint does.
        accepted = inspect.signature(self.classes.model.__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            hparams = {key: value for key, value in hparams.items() if key in accepted}
        if subcommand == "fit":
            conflicting_model_values(self._parser(subcommand), self.config[subcommand], hparams, ckpt_path)
        if hparams:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def instantiate_classes(self) -> None:
        """Build the data module, the model and the Trainer; a value they refuse names its key."""
        from lstm_plugins.cli._errors import keyed_error

        try:
            super().instantiate_classes()
        except (ValueError, TypeError, MisconfigurationException) as exc:
            raise keyed_error(exc, self.classes.data.__name__) from exc
        flush = self._config_value("flush_denormals")
        if flush is not None:  # read when the Trainer first attaches the model
            self.model.flush_denormals = bool(flush)

    def _run_subcommand(self, subcommand: str) -> None:
        checkpoint, self._checkpoint = getattr(self, "_checkpoint", None), None  # not held while training
        if checkpoint is not None and subcommand != "fit":
            # A resumed fit is checked when Lightning loads it (load_state), once techniques have
            # added what they add in on_fit_setup; an evaluation is checked here, before it starts.
            from lstm_plugins.training._checkpoint_check import check_checkpoint

            check_checkpoint(checkpoint, self.model, path=self._config_value("ckpt_path"))
        del checkpoint
        if self.print_only:  # `--print_config`: printed once everything was built (validated)
            print(self._parser(subcommand).dump(self.config[subcommand], skip_none=False), end="")
            return
        super()._run_subcommand(subcommand)

    def _set_seed(self) -> None:
        seed = self._get(self.config, "seed_everything")
        if seed is not None and not isinstance(seed, bool) and not (isinstance(seed, int) and 0 <= seed < 2**32):
            from lstm_plugins.validation import describe

            raise ConfigError(f"Expected `seed_everything` to be an int in [0, {2**32 - 1}], true (a random seed) or "
                              f"false (no seeding), but got {describe(seed)}.")
        super()._set_seed()

    def before_instantiate_classes(self) -> None:
        from lstm_plugins import validation as check

        try:
            check.optional_positive_int("checkpoint_every_n_epochs", self._config_value("checkpoint_every_n_epochs"),
                                        none="null")
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        check_threads(self._config_value("threads"))
        trainer = self._config_value("trainer")
        check_trainer_values(trainer.as_dict() if hasattr(trainer, "as_dict") else dict(trainer or {}))
        threads = self._config_value("threads")
        if threads is not None:
            torch.set_num_threads(threads)
        if trainer.get("deterministic"):
            # Deterministic algorithms (the CLI's default) also fill every new tensor with NaN, the
            # fused kernels' workspaces included: 12 % of a medium training step. Every kernel
            # overwrites what it allocates, so results stay deterministic without the fill.
            torch.utils.deterministic.fill_uninitialized_memory = False

    def _config_value(self, key: str) -> Any:
        config = self.config[self.subcommand] if self.subcommand else self.config
        return config.get(key)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        config = dict(config)
        given = config.get("callbacks")
        callbacks = [*callbacks, *(given if isinstance(given, list) else [given] if given is not None else []),
                     *self.extra_callbacks]
        if config.get("logger") in (None, True):
            from pytorch_lightning.loggers import CSVLogger

            config["logger"] = CSVLogger(config.get("default_root_dir") or ".")
        if self.datamodule is not None and not getattr(self.datamodule, "has_validation", True):
            config["limit_val_batches"] = 0
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            # Redrawn every logging interval: a per-batch redraw costs about 3 % of an epoch.
            callbacks.append(TQDMProgressBar(refresh_rate=max(int(config.get("log_every_n_steps") or 50), 1)))
        early = self._config_value("early_stopping")
        if early is not None and self.subcommand in ("fit", None):  # None: build_run, for a fit
            callbacks.append(EarlyStopping(monitor=early.monitor, patience=early.patience, mode=early.mode,
                                           min_delta=early.min_delta))
        if config.get("enable_checkpointing") is not False and not any(
            isinstance(c, ModelCheckpoint) for c in callbacks
        ):
            if early is not None:
                callbacks.append(ModelCheckpoint(monitor=early.monitor, mode=early.mode, save_last=True,
                                                 filename="best-{epoch}-{step}"))
            elif self._config_value("checkpoint_every_n_epochs") is not None:
                from lstm_plugins.training import PeriodicCheckpoint

                callbacks.append(PeriodicCheckpoint(every_n_epochs=self._config_value("checkpoint_every_n_epochs")))
        config["callbacks"] = []
        return super()._instantiate_trainer(config, callbacks)

    # --- running ------------------------------------------------------------------------------

    def before_fit(self) -> None:
        if self._config_value("plot"):
            from lstm_plugins.cli._plotting import require_matplotlib

            require_matplotlib()  # fail before training, not after it

    def after_fit(self) -> None:
        from lstm_plugins.cli._report import report_fit

        report_fit(self)

    def after_test(self) -> None:
        if self.trainer.is_global_zero and getattr(self.model, "test_results", None) is not None:
            from lstm_plugins.cli._tasks import TASKS

            print(TASKS[self.task](self.model.test_results, self.datamodule))
            tested = self._config_value("ckpt_path") or "the weights as configured (no --ckpt_path)"
            print(f"  tested: {tested}")

    def predict(self, model: Any, datamodule: Any = None, ckpt_path: str | None = None, **_: Any) -> None:
        """Write the predictions on the data's test split as CSV (``--output``)."""
        from lstm_plugins.cli._report import write_predictions

        write_predictions(self, model, datamodule, ckpt_path, self._config_value("output"), self._config_value("input"))
