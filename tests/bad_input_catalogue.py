"""The bad-input catalogue: every row is an input users get wrong and the error they see.

``tests/test_bad_inputs.py`` runs every row and checks that the README's "Bad inputs" table is
this catalogue; ``python tests/bad_input_catalogue.py`` prints the table.
"""

from __future__ import annotations

import functools
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


# --- The CLI's doors: YAML, config sections, Trainer values, checkpoints, technique state -----


class CLIError(Exception):
    """``lstm-plugins`` printed ``lstm-plugins: error: MESSAGE`` (the message is the first line)
    and exited with a non-zero status."""


def _main(*argv: str) -> None:
    """Run ``lstm-plugins ARGV``; a non-zero exit becomes a :class:`CLIError` of its first error line."""
    import contextlib
    import io

    from lstm_plugins import cli

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(argv))
    if code != 0:
        lines = [line for line in errors.getvalue().splitlines() if line.startswith("lstm-plugins: error: ")]
        raise CLIError((lines or [f"exit status {code}"])[0].removeprefix("lstm-plugins: error: "))


def _bytes(content: bytes | str) -> bytes:
    return content.encode() if isinstance(content, str) else content


def _run_in(files: dict[str, bytes | str], *argv: str) -> None:
    """``lstm-plugins ARGV`` in a fresh folder holding ``files`` (so messages name them briefly)."""
    import shutil

    folder, cwd = tempfile.mkdtemp(), os.getcwd()
    for name, content in files.items():
        with open(os.path.join(folder, name), "wb") as file:
            file.write(_bytes(content))
    os.chdir(folder)
    try:
        _main(*argv)
    finally:
        os.chdir(cwd)
        shutil.rmtree(folder, ignore_errors=True)


def _yaml(text: bytes | str) -> None:
    """``lstm-plugins fit --config run.yaml --print_config``, ``run.yaml`` holding ``text``."""
    _run_in({"run.yaml": text}, "fit", "--config", "run.yaml", "--print_config")


_SMALL = {"hidden_size": 8, "techniques": ["gradient_clipping", {"l2": {"weight": 1e-4}}]}


@functools.lru_cache(maxsize=None)
def _checkpoint() -> bytes:
    """A real checkpoint: one step of a small classifier (gradient_clipping, l2; adam) on JapaneseVowels."""
    warnings.filterwarnings("ignore")
    folder = tempfile.mkdtemp()
    model = LSTMClassifier(12, 9, **_SMALL)  # type: ignore[arg-type]
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, max_steps=1, default_root_dir=folder)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=64))
    path = os.path.join(folder, "small.ckpt")
    trainer.save_checkpoint(path)
    with open(path, "rb") as file:
        content = file.read()
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return content


def _edited(edit: Callable[[dict], object]) -> bytes:
    """:func:`_checkpoint` changed by ``edit``."""
    import io

    checkpoint = torch.load(io.BytesIO(_checkpoint()), weights_only=True)
    edit(checkpoint)
    return _tensor_file(checkpoint)


def _resume(**model: object) -> None:
    """``Trainer.fit(model, ckpt_path="small.ckpt")`` with the model built from ``_SMALL`` and ``model``."""
    import shutil

    warnings.filterwarnings("ignore")
    folder, cwd = tempfile.mkdtemp(), os.getcwd()
    with open(os.path.join(folder, "small.ckpt"), "wb") as file:
        file.write(_checkpoint())
    os.chdir(folder)
    try:
        pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, max_steps=2).fit(
            LSTMClassifier(12, 9, **{**_SMALL, **model}),  # type: ignore[arg-type]
            datamodule=JapaneseVowelsDataModule(batch_size=64), ckpt_path="small.ckpt")
    finally:
        os.chdir(cwd)
        shutil.rmtree(folder, ignore_errors=True)


def _load_edited(edit: Callable[[dict], object]) -> None:
    handle, path = tempfile.mkstemp(suffix=".ckpt")
    with os.fdopen(handle, "wb") as file:
        file.write(_edited(edit))
    try:
        LSTMClassifier.load_from_checkpoint(path)
    finally:
        os.remove(path)


def _cli_checkpoint(content: bytes | str | None, *argv: str, subcommand: str = "test") -> None:
    """``lstm-plugins SUBCOMMAND --ckpt_path model.ckpt ARGV --print_config`` (None: no such file)."""
    _run_in({} if content is None else {"model.ckpt": content}, subcommand, "--ckpt_path", "model.ckpt", *argv,
            "--print_config")


def _alias_bomb() -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\nmodel: {hidden_size: *a8}\n"


def _set(mapping: dict, path: str, value: object) -> None:
    *parents, last = path.split("/")
    for key in parents:
        mapping = mapping[key]
    mapping[last] = value


def _crafted_pickle() -> bytes:
    import io
    import pathlib

    buffer = io.BytesIO()
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.0", "note": pathlib.PurePosixPath("/etc")}, buffer)
    return buffer.getvalue()


CLI_ROWS: list[Row] = [
    # YAML and config files
    Row("config", "a key given twice (`techniques:` twice in `model:`)",
        lambda: _yaml("model:\n  techniques: [gradient_clipping]\n  techniques: [dropout]\n"), CLIError,
        "run.yaml, line 3: key `techniques` is given twice (first on line 2); give it once."),
    Row("config", "a top-level section given twice (`trainer:` twice)",
        lambda: _yaml("trainer: {max_epochs: 3}\ntrainer: {max_epochs: 5}\n"), CLIError,
        "run.yaml, line 2: key `trainer` is given twice (first on line 1); give it once."),
    Row("config", "a key given twice in a flag value (`--model.techniques '[{l2: {weight: 0.1, weight: 0.2}}]'`)",
        lambda: _main("fit", "--model.techniques", "[{l2: {weight: 0.1, weight: 0.2}}]", "--print_config"), CLIError,
        "--model.techniques, line 1: key `weight` is given twice (first on line 1); give it once."),
    Row("config", "an alias bomb (nine levels of nine `*aliases`)", lambda: _yaml(_alias_bomb()), CLIError,
        "run.yaml, line 2: the aliases (`*name`) expand to more than 100000 values; a config is data of bounded size"),
    Row("config", "a recursive anchor (`a: &a [*a]`)", lambda: _yaml("a: &a [*a]\n"), CLIError,
        "run.yaml, line 1: an alias refers to the value that contains it (a recursive anchor); a config is finite data."),
    Row("config", "a config that is a list, not a mapping", lambda: _yaml("- trainer\n- model\n"), CLIError,
        "Expected config 'run.yaml' to be a mapping of keys (trainer:, model:, data:, ...), but got a list: "),
    Row("config", "a config that is not UTF-8 (Latin-1 bytes)", lambda: _yaml(b"model: {hidden_size: 8} # caf\xe9\n"),
        CLIError, "Cannot read config 'run.yaml': byte 29 is not UTF-8 text (b'\\xe9'); save the file as UTF-8."),
    Row("config", "a YAML syntax error", lambda: _yaml("trainer: {max_epochs: [}\n"), CLIError,
        "Cannot read config 'run.yaml': line 1, column 24: expected the node content, but found '}'."),
    Row("config", "a config file that does not exist", lambda: _main("fit", "--config", "no_such_config.yaml"), CLIError,
        "Cannot read config 'no_such_config.yaml': no such file."),
    Row("config", "a folder given as the config", lambda: _run_in({}, "fit", "--config", "."), CLIError,
        "Cannot read config '.': it is not a file."),
    Row("config", "`early_stopping: {monitr: val/loss}` (unknown key)", lambda: _yaml("early_stopping: {monitr: val/loss}"),
        CLIError, "Unknown key 'monitr' in `early_stopping`. Allowed keys: min_delta, mode, monitor, patience."),
    Row("config", "`data: {batchsize: 3}` (unknown data key)", lambda: _yaml("data: {batchsize: 3}"), CLIError,
        "Unknown key 'batchsize' in `data`. Allowed keys: "),
    Row("config", "a misspelt argument of a Lightning callback",
        lambda: _yaml("trainer: {callbacks: [{class_path: EarlyStopping, init_args: {monitr: x}}]}"), CLIError,
        "Unknown key 'monitr' in `trainer.callbacks`. Allowed keys: "),
    Row("config", "`seed_everything: -1`", lambda: _yaml("seed_everything: -1"), CLIError,
        "Expected `seed_everything` to be an int in [0, 4294967295], true (a random seed) or false (no seeding), "
        "but got -1."),
    Row("config", "`model: {techniques: [{l2: {weight: -1}}]}` (a value the technique refuses)",
        lambda: _yaml("model: {techniques: [{l2: {weight: -1}}]}"), CLIError,
        "model.techniques: Technique `l2`: Expected `weight` to be a positive float, but got -1.0."),
    Row("config", "an unknown subcommand (`lstm-plugins trian`)", lambda: _main("trian"), CLIError,
        "unknown subcommand 'trian'; choose from "),
    # Trainer values the CLI passes on to Lightning
    Row("trainer", "`trainer: {max_epochs: -5}`", lambda: _yaml("trainer: {max_epochs: -5}"), CLIError,
        "Expected `trainer.max_epochs` to be a positive int, -1 (no limit) or null, but got -5."),
    Row("trainer", "`trainer: {max_steps: -2}`", lambda: _yaml("trainer: {max_steps: -2}"), CLIError,
        "Expected `trainer.max_steps` to be a positive int or -1 (no limit), but got -2."),
    Row("trainer", "`trainer: {accumulate_grad_batches: 0}`", lambda: _yaml("trainer: {accumulate_grad_batches: 0}"),
        CLIError, "Expected `trainer.accumulate_grad_batches` to be a positive int, but got 0."),
    Row("trainer", "`trainer: {log_every_n_steps: 0}`", lambda: _yaml("trainer: {log_every_n_steps: 0}"), CLIError,
        "Expected `trainer.log_every_n_steps` to be a positive int or null, but got 0."),
    Row("trainer", "`trainer: {devices: 0}`", lambda: _yaml("trainer: {devices: 0}"), CLIError,
        "Expected `trainer.devices` to be a positive int, -1 (all), 'auto' or a list of device indices, but got 0."),
    Row("trainer", "`trainer: {num_nodes: 2}` on one machine (no cluster environment)",
        lambda: _yaml("trainer: {num_nodes: 2}"), CLIError,
        "`trainer.num_nodes` is 2, but no cluster environment (SLURM, torchelastic, Kubeflow, LSF, MPI, or NODE_RANK "
        "and MASTER_ADDR set by hand) is detected"),
    Row("trainer", "`threads: 1000000000`", lambda: _yaml("threads: 1000000000"), CLIError,
        "Expected `threads` to be a positive int of at most "),
    Row("trainer", "`threads: 0`", lambda: _yaml("threads: 0"), CLIError, "Expected `threads` to be a positive int of at most "),
    Row("trainer", "`trainer: {check_val_every_n_epoch: 0}`", lambda: _yaml("trainer: {check_val_every_n_epoch: 0}"),
        CLIError, "Expected `trainer.check_val_every_n_epoch` to be a positive int or null, but got 0."),
    Row("trainer", "`trainer: {val_check_interval: 1.5}`", lambda: _yaml("trainer: {val_check_interval: 1.5}"), CLIError,
        "Expected `trainer.val_check_interval` to be a positive int (batches), a float in (0, 1] (of an epoch) or null, "
        "but got 1.5."),
    Row("trainer", "`trainer: {limit_train_batches: -1}`", lambda: _yaml("trainer: {limit_train_batches: -1}"), CLIError,
        "Expected `trainer.limit_train_batches` to be a non-negative int (batches), a float in [0, 1] or null, but got "),
    Row("trainer", "`trainer: {gradient_clip_val: -1.0}`", lambda: _yaml("trainer: {gradient_clip_val: -1.0}"), CLIError,
        "Expected `trainer.gradient_clip_val` to be a non-negative float or null, but got -1.0."),
    Row("trainer", "`trainer: {min_epochs: -1}`", lambda: _yaml("trainer: {min_epochs: -1}"), CLIError,
        "Expected `trainer.min_epochs` to be a non-negative int or null, but got -1."),
    Row("trainer", "`trainer: {max_time: forever}`", lambda: _yaml("trainer: {max_time: forever}"), CLIError,
        "trainer: `Timer(duration='forever')` is not a valid duration."),
    # Checkpoint files (every --ckpt_path: fit, validate, test, predict; and generate)
    Row("checkpoint", "`--ckpt_path` naming a file that does not exist", lambda: _cli_checkpoint(None), CLIError,
        "Checkpoint 'model.ckpt' does not exist."),
    Row("checkpoint", "an empty checkpoint (0 bytes)", lambda: _cli_checkpoint(b""), CLIError,
        "Checkpoint 'model.ckpt' is empty (0 bytes): its write was interrupted; use an earlier checkpoint."),
    Row("checkpoint", "a truncated checkpoint (its first 4 kB)",
        lambda: _cli_checkpoint(_checkpoint()[:4096]), CLIError,
        "Checkpoint 'model.ckpt' (4096 bytes) cannot be read: it is truncated or not a torch checkpoint ("),
    Row("checkpoint", "a text file given as a checkpoint", lambda: _cli_checkpoint("hello\n"), CLIError,
        "Checkpoint 'model.ckpt' (6 bytes) cannot be read: it is truncated or not a torch checkpoint ("),
    Row("checkpoint", "a bare `torch.save(model.state_dict())` file",
        lambda: _cli_checkpoint(_tensor_file({"head.weight": torch.zeros(2)})), CLIError,
        "Checkpoint 'model.ckpt' is a bare state_dict (torch.save(model.state_dict())), not a Lightning checkpoint: "
        "load it with model.load_state_dict(torch.load(path))."),
    Row("checkpoint", "a torch file that is not a Lightning checkpoint (`{\"epoch\": 1}`)",
        lambda: _cli_checkpoint(_tensor_file({"epoch": 1})), CLIError,
        "Checkpoint 'model.ckpt' is not a Lightning checkpoint: it has no `state_dict` (its keys: `epoch`)."),
    Row("checkpoint", "a crafted checkpoint holding a pickled object", lambda: _cli_checkpoint(_crafted_pickle()), CLIError,
        "Checkpoint 'model.ckpt' holds a pickled `pathlib.PurePosixPath`, not only tensors and plain data; a safe "
        "load refuses it (unpickling it could run code). Load only checkpoints you wrote."),
    Row("checkpoint", "a folder given as the checkpoint",
        lambda: _run_in({}, "test", "--ckpt_path", ".", "--print_config"), CLIError,
        "Checkpoint '.' is not a file."),
    Row("checkpoint", "a checkpoint whose weights were edited (a wrong shape)",
        lambda: _cli_checkpoint(_edited(lambda c: _set(c, "state_dict/head.weight", torch.zeros(9, 3)))), CLIError,
        "Checkpoint 'model.ckpt' does not fit this model: `head.weight` has shape (9, 3) in the checkpoint but (9, 8) "
        "in the model"),
    Row("checkpoint", "a regression checkpoint given to a classification `test`",
        lambda: _cli_checkpoint(_edited(lambda c: _set(c, "hyper_parameters/num_outputs", 1))), CLIError,
        "Checkpoint 'model.ckpt' was not written by model class LSTMClassifier: it has `num_outputs`, which "
        "LSTMClassifier does not take (a checkpoint of another task's model?)."),
    Row("checkpoint", "a classifier's checkpoint given to `generate`",
        lambda: _run_in({"small.ckpt": _checkpoint()}, "generate", "--ckpt_path", "small.ckpt", "--prompt", "ab"), CLIError,
        "Checkpoint 'small.ckpt' was not written by model class LSTMLanguageModel: it lacks `vocab_size`; it has "),
    Row("checkpoint", "`fit --ckpt_path` with a config asking for another `model.hidden_size`",
        lambda: _run_in({"small.ckpt": _checkpoint()}, "fit", "--ckpt_path", "small.ckpt", "--model.hidden_size", "16",
                        "--print_config"), CLIError,
        "`model.hidden_size` is 16 in the config, but the checkpoint '"),
    Row("checkpoint", "`fit --ckpt_path` with a config adding a technique",
        lambda: _run_in({"small.ckpt": _checkpoint()}, "fit", "--ckpt_path", "small.ckpt", "--model.techniques",
                        "[gradient_clipping, l2, dropout]", "--print_config"), CLIError,
        "`model.techniques` is ['gradient_clipping', 'l2', 'dropout'] in the config, but the checkpoint '"),
    # Resuming a fit in Python: Trainer.fit(model, ckpt_path=...)
    Row("checkpoint", "resuming with a technique removed from the stack", lambda: _resume(techniques=["gradient_clipping"]),
        ValueError, "Checkpoint 'small.ckpt' was written with techniques [gradient_clipping, l2], but this model has "
        "[gradient_clipping] (removed: `l2`); a resumed fit continues the same stack"),
    Row("checkpoint", "resuming with a technique added to the stack",
        lambda: _resume(techniques=["gradient_clipping", {"l2": {"weight": 1e-4}}, {"dropout": {"output": 0.1}}]),
        ValueError, "Checkpoint 'small.ckpt' was written with techniques [gradient_clipping, l2], but this model has "
        "[gradient_clipping, l2, dropout] (added: `dropout`); a resumed fit continues the same stack"),
    Row("checkpoint", "resuming with another optimizer (`sgd` for `adam`: `KeyError 'momentum'` before)",
        lambda: _resume(optimizer="sgd"), ValueError,
        "Checkpoint 'small.ckpt' was written with optimizer 'adam', but this model uses 'sgd'; a resumed fit continues "
        "the same optimizer (its state cannot be carried over)."),
    Row("checkpoint", "resuming with another `hidden_size`", lambda: _resume(hidden_size=16), ValueError,
        "Checkpoint 'small.ckpt' does not fit this model: `lstm.weight_ih_l0` has shape (32, 12) in the checkpoint but "
        "(64, 12) in the model"),
    # Technique state in a checkpoint (load_from_checkpoint, and every resume)
    Row("checkpoint", "a technique's state lacking a key",
        lambda: _load_edited(lambda c: c["lstm_plugins"]["state"]["gradient_clipping"].pop("steps")), ValueError,
        "Checkpoint state of technique `gradient_clipping`, key `steps` is missing."),
    Row("checkpoint", "a technique's state with a tensor where a number belongs",
        lambda: _load_edited(lambda c: _set(c, "lstm_plugins/state/gradient_clipping/steps", torch.tensor(1))),
        ValueError, "Checkpoint state of technique `gradient_clipping`, key `steps`: expected a number, but got a tensor "),
    Row("checkpoint", "a technique's counts that cannot be right (`clipped_steps` > `steps`)",
        lambda: _load_edited(lambda c: _set(c, "lstm_plugins/state/gradient_clipping/clipped_steps", 10**6)), ValueError,
        "Technique `gradient_clipping`: expected checkpoint state `clipped_steps` to be an int in [0, "),
    Row("checkpoint", "the technique-state section replaced by a list",
        lambda: _load_edited(lambda c: _set(c, "lstm_plugins/state", [1, 2])), ValueError,
        "Checkpoint section `lstm_plugins` is not a mapping of technique states."),
    Row("checkpoint", "a technique's state removed though the checkpoint lists the technique",
        lambda: _load_edited(lambda c: c["lstm_plugins"]["state"].pop("gradient_clipping")), ValueError,
        "Checkpoint state of technique `gradient_clipping` is missing, although the checkpoint was written with the "
        "technique."),
    # Name patterns of the built-in techniques (a typo is refused, never ignored)
    Row("technique", "`L2Penalty(parameters=[\"lstm.wieght_*\"])` (a misspelt pattern)",
        lambda: _fit(LSTMClassifier(12, 9, techniques=[L2Penalty(parameters=["lstm.wieght_*"])])), ValueError,
        "Technique `l2`: `parameters` pattern(s) 'lstm.wieght_*' match no parameter; parameter names are: "),
    Row("technique", "`AdaptiveGradientClipping(exclude=[\"haed.*\"])` (a misspelt pattern)",
        lambda: _fit(LSTMClassifier(12, 9, techniques=[AdaptiveGradientClipping(exclude=["haed.*"])])), ValueError,
        "Technique `adaptive_clipping`: `exclude` pattern(s) 'haed.*' match no parameter; parameter names are: "),
    Row("technique", "`{adaptive_clipping: {exclude: head.*}}` (a string, not a list)",
        lambda: LSTMClassifier(12, 9, techniques=[{"adaptive_clipping": {"exclude": "head.*"}}]), TypeError,
        "Technique `adaptive_clipping`: Expected `exclude` to be a list of name patterns, but got 'head.*'."),
]


def _tensor_file(content: dict) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


CATALOGUE += CLI_ROWS


def all_rows() -> list[Row]:
    """This catalogue and the rows of ``bad_input_catalogue_data.py`` (when it exists), grouped
    by area in the order the areas first appear."""
    try:
        from bad_input_catalogue_data import ROWS
    except ModuleNotFoundError as exc:
        if exc.name != "bad_input_catalogue_data":
            raise
        ROWS = []
    rows = [*CATALOGUE, *ROWS]
    order = list(dict.fromkeys(row.area for row in rows))
    return sorted(rows, key=lambda row: order.index(row.area))


def warning_rows() -> list:
    """Inputs accepted with a named warning (``bad_input_catalogue_data.WARNING_ROWS``)."""
    try:
        from bad_input_catalogue_data import WARNING_ROWS
    except ModuleNotFoundError as exc:
        if exc.name != "bad_input_catalogue_data":
            raise
        return []
    return list(WARNING_ROWS)


def markdown_table() -> str:
    """The README table: every error row, grouped by area, then the inputs accepted with a warning."""
    lines = ["| area | input | error |", "| --- | --- | --- |"]
    rows = [(row.area, row.given, row.error, row.message) for row in all_rows()]
    rows += [(row.area, row.given, row[3], row.message) for row in warning_rows()]
    for area, given, kind, message in rows:
        message = message.rstrip()
        shown = message if message.endswith((".", ";", ")")) else message + " ..."
        escaped = shown.replace("|", "\\|")
        warned = " (a warning; the input is accepted)" if issubclass(kind, Warning) else ""
        lines.append(f"| {area} | {given} | `{kind.__name__}`{warned}: {escaped} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
