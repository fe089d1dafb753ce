"""What each task needs from a config: its keys, its data sets, how to build the run, its table.

A config names its task (``task: regression``; ``classification`` by default). The task decides
which ``model`` and ``data`` keys are allowed, which embedded data set is the default, how the
data module and the model are built, and how the test results are printed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COMMON_MODEL_KEYS = frozenset({"hidden_size", "num_layers", "bidirectional", "optimizer", "learning_rate"})
COMMON_DATA_KEYS = frozenset({"dataset", "batch_size", "seed", "num_workers"})


@dataclass(frozen=True)
class TaskRecipe:
    """How the CLI runs one task."""

    name: str
    datasets: tuple[str, ...]
    """Embedded data sets by name; the first is the default."""
    model_keys: frozenset[str]
    data_keys: frozenset[str]
    build: Callable[[dict[str, Any], Sequence[Any]], tuple[Any, Any]]
    """``(config, techniques) -> (datamodule, model)``."""
    table: Callable[[Mapping[str, Any], Any], str]
    """``(model.test_results, datamodule) -> printed table``."""
    file_keys: tuple[str, ...] = ()
    """Data keys holding paths (resolved against the config's folder)."""
    file_kind: str = ""
    """What the file keys read, for messages (``.ts files``)."""
    notes: dict[str, str] = field(default_factory=dict)


def _value(results: Mapping[str, Any], name: str) -> float:
    return float(results[name].item() if hasattr(results[name], "item") else results[name])


def scalar_table(results: Mapping[str, Any], rows: Sequence[tuple[str, str]]) -> list[str]:
    """``Test results`` and one line per ``(label, metric name)`` present in ``results``."""
    lines = ["Test results"]
    for label, name in rows:
        if name in results:
            lines.append(f"  {label:<16}{_value(results, name):.4f}")
    return lines


def classification_table(results: Mapping[str, Any], datamodule: Any) -> str:
    """Accuracy, macro recall and macro F1, then recall and F1 per class."""
    lines = scalar_table(results, (("accuracy", "test/accuracy"), ("recall (macro)", "test/recall"),
                                   ("F1 (macro)", "test/f1")))
    lines += ["", f"  {'class':<16}{'recall':>8}{'F1':>8}"]
    recall, f1 = results["test/recall_per_class"], results["test/f1_per_class"]
    for index, name in enumerate(datamodule.class_names):
        lines.append(f"  {str(name):<16}{recall[index].item():>8.4f}{f1[index].item():>8.4f}")
    return "\n".join(lines)


def regression_table(results: Mapping[str, Any], datamodule: Any) -> str:
    """MAE, RMSE and R² (averaged over outputs), then one row per output when there are several."""
    lines = scalar_table(results, (("MAE", "test/mae"), ("RMSE", "test/rmse"), ("R²", "test/r2")))
    if "test/mae_per_output" in results:
        lines += ["", f"  {'output':<16}{'MAE':>8}{'RMSE':>8}{'R²':>8}"]
        for index in range(len(results["test/mae_per_output"])):
            row = [results[f"test/{name}_per_output"][index].item() for name in ("mae", "rmse", "r2")]
            lines.append(f"  {index:<16}" + "".join(f"{value:>8.4f}" for value in row))
    return "\n".join(lines)


def _classification(config: dict[str, Any], techniques: Sequence[Any]) -> tuple[Any, Any]:
    from lstm_plugins.data import JapaneseVowelsDataModule, SequenceDataModule
    from lstm_plugins.model import LSTMClassifier

    data = dict(config["data"])
    if data.pop("dataset", None) == "japanese_vowels":
        datamodule = JapaneseVowelsDataModule(**data)
    else:
        datamodule = SequenceDataModule.from_ts_files(data.pop("train"), data.pop("test", None), task="classification", **data)
    model = LSTMClassifier(datamodule.num_features, datamodule.num_classes, techniques=techniques, **config["model"])
    return datamodule, model


def _regression(config: dict[str, Any], techniques: Sequence[Any]) -> tuple[Any, Any]:
    from lstm_plugins.data import SequenceDataModule, TecatorDataModule
    from lstm_plugins.model import LSTMRegressor

    data, model_options = dict(config["data"]), dict(config["model"])
    if data.pop("dataset", None) == "tecator":
        datamodule = TecatorDataModule(**data)
    else:
        datamodule = SequenceDataModule.from_ts_files(data.pop("train"), data.pop("test", None), task="regression", **data)
    if model_options.pop("standardize_targets", True):
        model_options.update(target_mean=datamodule.target_mean, target_std=datamodule.target_std)
    model = LSTMRegressor(datamodule.num_features, datamodule.num_outputs, techniques=techniques, **model_options)
    return datamodule, model


def _sequence_labelling(config: dict[str, Any], techniques: Sequence[Any]) -> tuple[Any, Any]:
    from lstm_plugins.data import SpeakerTurnsDataModule
    from lstm_plugins.model import LSTMSequenceLabeller

    data = dict(config["data"])
    data.pop("dataset", None)
    datamodule = SpeakerTurnsDataModule(**data)
    model = LSTMSequenceLabeller(datamodule.num_features, datamodule.num_classes, techniques=techniques, **config["model"])
    return datamodule, model


def forecasting_table(results: Mapping[str, Any], datamodule: Any) -> str:
    """MAE, RMSE and MASE on the test span (in the series' units), beside the seasonal-naive
    forecast of the same windows."""
    lines = ["Test results", f"  {'':<16}{'model':>10}{'seasonal naive':>16}"]
    for label in ("MAE", "RMSE", "MASE"):
        name = label.lower()
        model, naive = _value(results, f"test/{name}"), _value(results, f"test/naive_{name}")
        lines.append(f"  {label:<16}{model:>10.4f}{naive:>16.4f}")
    lines.append(f"  (horizon {datamodule.horizon}, seasonality {datamodule.seasonality})")
    return "\n".join(lines)


# Window settings of the embedded series, used where a config gives none.
SERIES_DEFAULTS = {
    "airline": {"lookback": 24, "horizon": 12, "val_size": 24, "test_size": 24, "relative": True},
    "solar": {"lookback": 48, "horizon": 12, "val_size": 48, "test_size": 97, "relative": True},
}


def _forecasting(config: dict[str, Any], techniques: Sequence[Any]) -> tuple[Any, Any]:
    from lstm_plugins.data import ForecastingDataModule
    from lstm_plugins.model import LSTMForecaster

    data = dict(config["data"])
    dataset = data.pop("dataset", None)
    if dataset is not None:
        datamodule = ForecastingDataModule.from_embedded(dataset, **{**SERIES_DEFAULTS[dataset], **data})
    else:
        for key in ("lookback", "horizon"):
            if key not in data:
                raise ValueError(f"Expected `data.{key}` for a forecasting run from `data.csv`.")
        datamodule = ForecastingDataModule.from_csv(data.pop("csv"), **data)
    model = LSTMForecaster(
        datamodule.num_series, datamodule.horizon, seasonality=datamodule.seasonality, techniques=techniques,
        **config["model"],
    )
    return datamodule, model


def language_model_table(results: Mapping[str, Any], datamodule: Any) -> str:
    """Perplexity and bits per token (character or word) on the held-out text."""
    return "\n".join(scalar_table(results, (
        ("perplexity", "test/perplexity"), ("bits per char", "test/bpc"), ("bits per word", "test/bits_per_word"),
    )))


def _language_model(config: dict[str, Any], techniques: Sequence[Any]) -> tuple[Any, Any]:
    from pathlib import Path

    from lstm_plugins.data import ShakespeareDataModule, TextDataModule
    from lstm_plugins.model import LSTMLanguageModel

    data = dict(config["data"])
    data.pop("seed", None)  # the corpus is laid out in order: nothing is drawn
    if data.pop("dataset", None) == "shakespeare":
        datamodule = ShakespeareDataModule(**data)
    else:
        texts = {}
        for key in ("train", "val", "test"):
            if key in data:
                path = Path(data.pop(key))
                try:
                    texts[f"{key}_text"] = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ValueError(f"Cannot read `data.{key}` text file {str(path)!r}: {exc}.") from exc
        datamodule = TextDataModule(texts.pop("train_text"), **texts, **data)
    model = LSTMLanguageModel(
        datamodule.vocab_size, vocabulary=datamodule.vocabulary, techniques=techniques, **config["model"]
    )
    return datamodule, model


TASKS: dict[str, TaskRecipe] = {
    "classification": TaskRecipe(
        "classification", ("japanese_vowels",), COMMON_MODEL_KEYS,
        COMMON_DATA_KEYS | {"train", "test", "val_fraction", "standardize"},
        _classification, classification_table, file_keys=("train", "test"), file_kind=".ts files",
    ),
    "regression": TaskRecipe(
        "regression", ("tecator",), COMMON_MODEL_KEYS | {"loss", "standardize_targets"},
        COMMON_DATA_KEYS | {"train", "test", "val_fraction", "standardize"},
        _regression, regression_table, file_keys=("train", "test"), file_kind=".ts files",
    ),
    "sequence_labelling": TaskRecipe(
        "sequence_labelling", ("speaker_turns",), COMMON_MODEL_KEYS,
        COMMON_DATA_KEYS | {"num_train", "num_val", "num_test", "min_turns", "max_turns", "val_fraction",
                            "recording_seed", "standardize"},
        _sequence_labelling, classification_table,
    ),
    "forecasting": TaskRecipe(
        "forecasting", ("airline", "solar"), COMMON_MODEL_KEYS | {"loss"},
        COMMON_DATA_KEYS | {"csv", "columns", "time_column", "lookback", "horizon", "seasonality", "val_size",
                            "test_size", "standardize", "relative"},
        _forecasting, forecasting_table, file_keys=("csv",), file_kind="a CSV file",
    ),
    "language_model": TaskRecipe(
        "language_model", ("shakespeare",), frozenset({"embedding_size", "hidden_size", "num_layers", "optimizer",
                                                       "learning_rate"}),
        frozenset({"dataset", "seed", "train", "val", "test", "level", "min_count", "batch_size", "eval_batch_size",
                   "chunk_length", "max_train_chars", "max_eval_chars", "train_plays", "val_plays", "test_plays",
                   "unknown", "max_size"}),
        _language_model, language_model_table, file_keys=("train", "val", "test"), file_kind="UTF-8 text files",
    ),
}
"""Every task the CLI runs, by the name a config gives in ``task:``."""
