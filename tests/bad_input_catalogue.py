"""The bad-input catalogue: every row is an input users get wrong and the error they see.

``tests/test_bad_inputs.py`` runs every row and checks that the README's "Bad inputs" table is
this catalogue; ``python tests/bad_input_catalogue.py`` prints the table.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch

from lstm_plugins import LSTMClassifier, Technique, hookimpl
from lstm_plugins.cli._config import ConfigError
from lstm_plugins.data import JapaneseVowelsDataModule, SequenceDataModule, read_ts
from lstm_plugins.plugins import ActivationRegularization, AdaptiveGradientClipping, AutoClipping, DecoupledWeightDecay, Dropout, EmbeddingDropout, GradientClipping, GradientNorms, L2Penalty, LockedDropout, NonFiniteGuard, WeightDrop, Zoneout


class Row(NamedTuple):
    area: str
    given: str
    run: Callable[[], object]
    error: type[Exception]
    message: str
    """The start of the message (the rest lists alternatives or echoes values)."""


def _sequences(count: int = 4, features: int = 3) -> list[np.ndarray]:
    return [np.ones((5, features), np.float32) for _ in range(count)]


def _fit(model: LSTMClassifier, **trainer: object) -> None:
    warnings.filterwarnings("ignore")
    pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, max_steps=1, **trainer).fit(model, datamodule=JapaneseVowelsDataModule())


def _ts_file(text: str) -> str:
    handle, path = tempfile.mkstemp(suffix=".ts")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    return path


def _cli(config: str) -> None:
    """``lstm-plugins fit --config`` (this YAML) ``--print_config``; its error as a ConfigError."""
    import contextlib
    import io

    from lstm_plugins import cli

    handle, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(handle, "w") as file:
        file.write(config)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["fit", "--config", path, "--print_config"])
    finally:
        os.remove(path)
    if code != 0:
        raise ConfigError(errors.getvalue().strip().splitlines()[0].removeprefix("lstm-plugins: error: "))


class _Typo:
    name = "typo"

    @hookimpl
    def on_gradient_ready(self, model: object) -> None: ...


class _WrongArguments:
    name = "wrong_arguments"

    @hookimpl
    def loss_terms(self, logits: object) -> None: ...


class _NoHooks:
    pass


class _WrapsBatch:
    name = "wraps_batch"

    @hookimpl(wrapper=True)
    def transform_batch(self, batch: object) -> object:
        return (yield)


class FocalLoss(Technique):
    name = "focal_loss"

    @hookimpl
    def compute_task_loss(self, predictions: object) -> None: ...


class ClassWeights(Technique):
    name = "class_weights"

    @hookimpl
    def compute_task_loss(self, predictions: object) -> None: ...


def _load_tampered_checkpoint() -> None:
    """A checkpoint whose technique state gained a key the technique never stores."""
    model = LSTMClassifier(12, 9, techniques=[GradientClipping()])
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "pytorch-lightning_version": pl.__version__}
    model.on_save_checkpoint(checkpoint)
    checkpoint["lstm_plugins"]["state"]["gradient_clipping"]["clipped"] = 0
    handle, path = tempfile.mkstemp(suffix=".ckpt")
    os.close(handle)
    try:
        torch.save(checkpoint, path)
        LSTMClassifier.load_from_checkpoint(path)
    finally:
        os.remove(path)


CATALOGUE: list[Row] = [
    # Model arguments
    Row("model", "`LSTMClassifier(input_size=0, ...)`", lambda: LSTMClassifier(0, 9), ValueError,
        "Expected `input_size` to be a positive int, but got 0."),
    Row("model", "`num_classes=1`", lambda: LSTMClassifier(12, 1), ValueError,
        "Expected `num_classes` to be at least 2, but got 1."),
    Row("model", "`hidden_size=2.5`", lambda: LSTMClassifier(12, 9, hidden_size=2.5), TypeError,
        "Expected `hidden_size` to be a positive int, but got 2.5."),
    Row("model", "`num_layers=0`", lambda: LSTMClassifier(12, 9, num_layers=0), ValueError,
        "Expected `num_layers` to be a positive int, but got 0."),
    Row("model", "`optimizer=\"adagrad\"`", lambda: LSTMClassifier(12, 9, optimizer="adagrad"), ValueError,
        "Expected `optimizer` to be one of 'adam', 'adamw', 'sgd', 'rmsprop', but got 'adagrad'."),
    Row("model", "`learning_rate=-0.1`", lambda: LSTMClassifier(12, 9, learning_rate=-0.1), ValueError,
        "Expected `learning_rate` to be a positive float, but got -0.1."),
    Row("model", "`techniques=\"l2\"` (a string, not a list)", lambda: LSTMClassifier(12, 9, techniques="l2"), TypeError,
        "Expected `techniques` to be a list of techniques, names or mappings, but got 'l2'."),
    # Technique arguments
    Row("technique", "`GradientClipping(threshold=-1)`", lambda: GradientClipping(threshold=-1), ValueError,
        "Expected `threshold` to be a positive float, but got -1.0."),
    Row("technique", "`GradientClipping(mode=\"both\")`", lambda: GradientClipping(mode="both"), ValueError,
        "Expected `mode` to be one of 'norm', 'value', but got 'both'."),
    Row("technique", "`Dropout(output=1.0)`", lambda: Dropout(output=1.0), ValueError,
        "Expected `output` to be a float in [0, 1), but got 1.0."),
    Row("technique", "`Dropout(between_layers=0.2)` on a one-layer LSTM",
        lambda: LSTMClassifier(12, 9, techniques=[Dropout(between_layers=0.2)]), ValueError,
        "Expected `between_layers` to be 0 for a one-layer LSTM"),
    Row("technique", "`L2Penalty(weight=0)`", lambda: L2Penalty(weight=0), ValueError,
        "Expected `weight` to be a positive float, but got 0.0."),
    Row("technique", "`GradientNorms(log_every_n_steps=0)`", lambda: GradientNorms(log_every_n_steps=0), ValueError,
        "Expected `log_every_n_steps` to be a positive int or None, but got 0."),
    Row("technique", "`AutoClipping(percentile=0)`", lambda: AutoClipping(percentile=0), ValueError,
        "Expected `percentile` to be a float in (0, 100], but got 0.0."),
    Row("technique", "`AdaptiveGradientClipping(clipping=-1)`", lambda: AdaptiveGradientClipping(clipping=-1), ValueError,
        "Expected `clipping` to be a positive float, but got -1.0."),
    Row("technique", "`WeightDrop(probability=1.0)`", lambda: WeightDrop(probability=1.0), ValueError,
        "Expected `probability` to be a float in [0, 1), but got 1.0."),
    Row("technique", "`LockedDropout(input=-0.1)`", lambda: LockedDropout(input=-0.1), ValueError,
        "Expected `input` to be a float in [0, 1), but got -0.1."),
    Row("technique", "`DecoupledWeightDecay()` with `optimizer=\"adam\"`",
        lambda: LSTMClassifier(12, 9, techniques=[DecoupledWeightDecay()]), ValueError,
        "Technique `weight_decay` needs optimizer 'adamw' (or 'sgd'), but the model uses 'adam'"),
    Row("technique", "`DecoupledWeightDecay(exclude=[\"haed.*\"])` (a misspelt pattern)",
        lambda: LSTMClassifier(12, 9, optimizer="adamw", techniques=[DecoupledWeightDecay(exclude=["haed.*"])]), ValueError,
        "Technique `weight_decay`: `exclude` pattern(s) 'haed.*' match no parameter; parameter names are: "),
    Row("technique", "`NonFiniteGuard(max_consecutive_skips=0)`", lambda: NonFiniteGuard(max_consecutive_skips=0), ValueError,
        "Expected `max_consecutive_skips` to be a positive int, but got 0."),
    Row("technique", "`Zoneout(cell=1.5)`", lambda: Zoneout(cell=1.5), ValueError,
        "Expected `cell` to be a float in [0, 1), but got 1.5."),
    Row("technique", "`EmbeddingDropout()` on a model without token inputs",
        lambda: LSTMClassifier(12, 9, techniques=[EmbeddingDropout()]), ValueError,
        "Technique `embedding_dropout` needs token inputs: build the model with `num_embeddings`."),
    Row("technique", "`ActivationRegularization(alpha=0, beta=0)`", lambda: ActivationRegularization(alpha=0, beta=0), ValueError,
        "Expected `alpha` or `beta` to be positive, but got 0 for both."),
    # Conflicting stacks
    Row("conflict", "two clippers: `[GradientClipping(), AutoClipping()]`",
        lambda: LSTMClassifier(12, 9, techniques=[GradientClipping(), AutoClipping()]), ValueError,
        "Techniques `gradient_clipping` (GradientClipping("),
    Row("conflict", "a clipper and `Trainer(gradient_clip_val=0.5)`",
        lambda: _fit(LSTMClassifier(12, 9, techniques=[GradientClipping()]), gradient_clip_val=0.5), ValueError,
        "Technique `gradient_clipping` (GradientClipping("),
    Row("conflict", "`l2` and `weight_decay` on the same weights",
        lambda: LSTMClassifier(12, 9, optimizer="adamw", techniques=[L2Penalty(), DecoupledWeightDecay()]), ValueError,
        "Techniques `l2` and `weight_decay` both regularise head.weight, lstm.weight_hh_l0, lstm.weight_ih_l0;"),
    Row("conflict", "two weight drops on one matrix",
        lambda: LSTMClassifier(12, 9, techniques=[WeightDrop(0.5), _renamed(WeightDrop(0.2), "other_drop")]), ValueError,
        "Techniques `weight_drop` and `other_drop` both transform the LSTM weight `weight_hh_l0`;"),
    Row("conflict", "two techniques replacing the task loss (`compute_task_loss`)",
        lambda: LSTMClassifier(12, 9, techniques=[FocalLoss(), ClassWeights()]), ValueError,
        "Techniques `focal_loss` (FocalLoss()) and `class_weights` (ClassWeights()) cannot be stacked: "
        "both take the `task_loss` slot. Keep one of them."),
    # Configs and technique specs
    Row("config", "`trainer: {epochs: 3}` (unknown key)", lambda: _cli("trainer: {epochs: 3}"), ConfigError,
        "Unknown key 'epochs' in `trainer`. Allowed keys: accelerator, "),
    Row("config", "`modle: {}` (unknown section)", lambda: _cli("modle: {}"), ConfigError,
        "Unknown key(s) 'modle' in the config. Allowed keys: checkpoint_every_n_epochs, ckpt_path, data, "
        "early_stopping, flush_denormals, input, model, output, plot, seed_everything, task, threads, trainer, "
        "weights_only."),
    Row("config", "`model: {hidden: 3}` (unknown model key)", lambda: _cli("model: {hidden: 3}"), ConfigError,
        "Unknown key 'hidden' in `model`. Allowed keys: bidirectional, hidden_size, "),
    Row("config", "`checkpoint_every_n_epochs: 0`", lambda: _cli("checkpoint_every_n_epochs: 0"), ConfigError,
        "Expected `checkpoint_every_n_epochs` to be a positive int or null, but got 0."),
    Row("config", "`seed_everything: zero` (wrong type)", lambda: _cli("seed_everything: zero"), ConfigError,
        'Parser key "seed_everything":'),
    Row("config", "`model: {hidden_size: 0}` (a value the model refuses)", lambda: _cli("model: {hidden_size: 0}"),
        ConfigError, "model.hidden_size: Expected `hidden_size` to be a positive int, but got 0."),
    Row("config", "`model: {techniques: {l2: {}}}` (a mapping, not a list)",
        lambda: _cli("model: {techniques: {l2: {}}}"), ConfigError, 'Parser key "model.techniques":'),
    Row("config", "`data: {dataset: mnist}`", lambda: _cli("data: {dataset: mnist}"), ConfigError,
        'Parser key "data.dataset":'),
    Row("config", "`model: {techniques: [dropuot]}` (unknown technique)", lambda: _cli("model: {techniques: [dropuot]}"),
        ConfigError, "model.techniques: Unknown technique `dropuot`. Known techniques: activation_regularization, "),
    Row("config", "a `class_path` in `model.techniques`",
        lambda: _cli("model: {techniques: [{class_path: collections.OrderedDict}]}"), ConfigError,
        "`model.techniques` names class 'collections.OrderedDict', but a config names techniques by registered "
        "name only (nothing is imported)"),
    Row("config", "a callback that is not Lightning's", lambda: _cli("trainer: {callbacks: [{class_path: os.system}]}"),
        ConfigError, "`trainer.callbacks` names 'os.system', but a config may only name Lightning's own callbacks"),
    Row("config", "technique `dropuot` (unknown name)", lambda: LSTMClassifier(12, 9, techniques=["dropuot"]), ValueError,
        "Unknown technique `dropuot`. Known techniques: activation_regularization, "),
    Row("config", "`l2` listed twice", lambda: LSTMClassifier(12, 9, techniques=["l2", {"l2": {"weight": 0.1}}]), TypeError,
        "Technique `l2` is given twice; give it once with all its arguments."),
    Row("config", "`{l2: 0.1}` (arguments not a mapping)", lambda: LSTMClassifier(12, 9, techniques=[{"l2": 0.1}]), TypeError,
        "Expected the arguments of technique `l2` to be a mapping, but got 0.1."),
    Row("config", "`{l2: {wieght: 0.1}}` (misspelt argument)", lambda: LSTMClassifier(12, 9, techniques=[{"l2": {"wieght": 0.1}}]),
        TypeError, "Technique `l2`: "),
    # Data
    Row("data", "an empty dataset", lambda: SequenceDataModule([], []), ValueError,
        "Expected `train_sequences` to contain at least one sequence, but got 0."),
    Row("data", "a zero-length sequence",
        lambda: SequenceDataModule(_sequences() + [np.zeros((0, 3), np.float32)], [0, 1, 0, 1, 0]), ValueError,
        "Expected `train_sequences[4]` to have at least one time step, but got shape (0, 3)."),
    Row("data", "ragged feature counts",
        lambda: SequenceDataModule(_sequences() + [np.ones((5, 4), np.float32)], [0, 1, 0, 1, 0]), ValueError,
        "Expected every sequence in `train_sequences` to have 3 features like `train_sequences[0]`, but `train_sequences[4]` has 4."),
    Row("data", "NaN features",
        lambda: SequenceDataModule(_sequences(3) + [np.full((5, 3), np.nan, np.float32)], [0, 1, 0, 1]), ValueError,
        "Expected `train_sequences[3]` to contain only finite float32 values, but it contains NaN or infinity."),
    Row("data", "infinite features",
        lambda: SequenceDataModule(_sequences(3) + [np.full((5, 3), np.inf, np.float32)], [0, 1, 0, 1]), ValueError,
        "Expected `train_sequences[3]` to contain only finite float32 values, but it contains NaN or infinity."),
    Row("data", "a label out of range", lambda: SequenceDataModule(_sequences(), [0, 1, 0, 5], num_classes=2), ValueError,
        "Expected `train_labels` in [0, 2), but `train_labels[3]` is 5."),
    Row("data", "float labels", lambda: SequenceDataModule(_sequences(), [0.0, 1.0, 0.0, 1.0]), TypeError,
        "Expected `train_labels` to be a 1-D array of integers, but got dtype float64."),
    Row("data", "fewer labels than sequences", lambda: SequenceDataModule(_sequences(), [0, 1, 0]), ValueError,
        "Expected `train_labels` to have one label per sequence in `train_sequences` (4), but got 3."),
    Row("data", "1-D sequences (no feature axis)",
        lambda: SequenceDataModule([np.ones(5, np.float32)] * 4, [0, 1, 0, 1]), ValueError,
        "Expected `train_sequences[0]` to be a 2-D array of shape (length, num_features), but got shape (5,)."),
    Row("data", "model and data disagree on the class count", lambda: _fit(LSTMClassifier(12, 5)), ValueError,
        "The model has `num_classes`=5 but the data module has `num_classes`=9; build the model with num_classes=9."),
    Row("data", "a batch with the wrong feature count",
        lambda: LSTMClassifier(13, 9)(torch.zeros(2, 5, 12), torch.tensor([5, 3])), ValueError,
        "Expected `features` of shape (batch, time, 13), but got (2, 5, 12)."),
    Row("data", "`batch_size=0`", lambda: SequenceDataModule(_sequences(), [0, 1, 0, 1], batch_size=0), ValueError,
        "Expected `batch_size` to be a positive int, but got 0."),
    Row("data", "`val_fraction=1.0`", lambda: SequenceDataModule(_sequences(), [0, 1, 0, 1], val_fraction=1.0), ValueError,
        "Expected `val_fraction` to be a float in [0, 1), but got 1.0."),
    Row("data", "a `.ts` file over the size bound", lambda: read_ts(_ts_file("#" * 2000), max_bytes=1000), ValueError,
        "Expected `path` to be a .ts file of at most 1000 bytes, but got 2000 bytes."),
    Row("data", "a `.ts` file with missing values (`?`)",
        lambda: read_ts(_ts_file("@problemName x\n@univariate true\n@classLabel true a b\n@data\n1,?,3:a\n")), ValueError,
        "Line 5 of "),
    # Hook misuse
    Row("hooks", "a hook name the core does not define", lambda: LSTMClassifier(12, 9, techniques=[_Typo()]),
        TypeError, "Technique `typo` implements unknown hook 'on_gradient_ready'. Known hooks: compute_task_loss, "),
    Row("hooks", "a hook asking for an argument the hook lacks", lambda: LSTMClassifier(12, 9, techniques=[_WrongArguments()]),
        TypeError, "Technique `wrong_arguments`: hook `loss_terms` asks for 'logits', which the hook does not provide."),
    Row("hooks", "an object with no hook", lambda: LSTMClassifier(12, 9, techniques=[_NoHooks()]), TypeError,
        "Technique `_NoHooks` (_NoHooks) implements no hook."),
    Row("hooks", "a technique class instead of an instance", lambda: LSTMClassifier(12, 9, techniques=[Dropout]), TypeError,
        "Expected a technique object, but got the class Dropout; instantiate it: Dropout(...)."),
    Row("hooks", "`@hookimpl(wrapper=True)` on the chained `transform_batch`",
        lambda: LSTMClassifier(12, 9, techniques=[_WrapsBatch()]), TypeError,
        "Technique `wraps_batch`: hook `transform_batch` is chained (each implementation receives the previous "
        "one's result) and cannot be a wrapper."),
    # Checkpoints
    Row("checkpoint", "a technique's state in a checkpoint with an unexpected key", _load_tampered_checkpoint,
        ValueError, "Checkpoint state of technique `gradient_clipping`, key `clipped` is not a key this technique stores."),
]


def _renamed(technique: object, name: str) -> object:
    technique.name = name  # type: ignore[attr-defined]
    return technique


def markdown_table() -> str:
    lines = ["| area | input | error |", "| --- | --- | --- |"]
    for row in CATALOGUE:
        message = row.message.rstrip()
        shown = message if message.endswith((".", ";", ")")) else message + " ..."
        escaped = shown.replace("|", "\\|")
        lines.append(f"| {row.area} | {row.given} | `{row.error.__name__}`: {escaped} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
