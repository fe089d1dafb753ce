"""The ``data:`` section of each task as a typed function: what LightningCLI builds the data module
from.

Each function's signature is the task's ``data`` keys (jsonargparse reads the types and the
defaults from it); it returns the task's data module. A task reads an embedded data set by name
(``dataset``) or files (``train``/``test``, ``csv``, text files); relative paths are read relative
to the current directory, or to the config file that gives them.

Example:
    >>> datamodule = classification_data(batch_size=8)
    >>> datamodule.num_features, datamodule.num_classes
    (12, 9)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from jsonargparse.typing import Path_fr
from pytorch_lightning import LightningDataModule

__all__ = [
    "classification_data", "forecasting_data", "language_model_data", "regression_data", "sequence_labelling_data",
]

# Window settings of the embedded series, used where a config gives none.
SERIES_DEFAULTS: dict[str, dict[str, Any]] = {
    "airline": {"lookback": 24, "horizon": 12, "val_size": 24, "test_size": 24, "relative": True},
    "solar": {"lookback": 48, "horizon": 12, "val_size": 48, "test_size": 97, "relative": True},
}


def _path(value: Any) -> str | None:
    """A parsed path as an absolute string (jsonargparse resolves it against the config's folder)."""
    if value is None:
        return None
    return str(getattr(value, "absolute", value))


def _files(task: str, dataset: str | None, default: str, first: str, given: dict[str, Any], kind: str) -> str | None:
    """The embedded data set to read, or ``None`` for files; refuses a mix of the two."""
    has_files = given.get(first) is not None
    if has_files and dataset is not None and dataset != default:
        raise ValueError(f"Give either `data.dataset` or `data.{first}` ({kind}), not both.")
    for key, value in given.items():
        if key != first and value is not None and not has_files:
            raise ValueError(f"`data.{key}` needs `data.{first}`: give both {kind}.")
    return None if has_files else (dataset or default)


def classification_data(
    dataset: Literal["japanese_vowels", "gun_point", "arrow_head", "plaid"] | None = "japanese_vowels",
    train: Path_fr | None = None,
    test: Path_fr | None = None,
    batch_size: int = 16,
    val_fraction: float = 0.1,
    standardize: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    length_batching: bool | None = None,
) -> LightningDataModule:
    """Classification data: an embedded set (JapaneseVowels, or the archive's GunPoint, ArrowHead
    and PLAID), or ``.ts`` files (``train``, ``test``)."""
    from lstm_plugins.data import ArchiveDataModule, JapaneseVowelsDataModule, SequenceDataModule

    options = dict(batch_size=batch_size, val_fraction=val_fraction, standardize=standardize, seed=seed,
                   num_workers=num_workers, length_batching=length_batching)
    embedded = _files("classification", dataset, "japanese_vowels", "train", {"train": train, "test": test}, ".ts files")
    if embedded == "japanese_vowels":
        return JapaneseVowelsDataModule(**options)
    if embedded is not None:
        return ArchiveDataModule(embedded, **options)
    return SequenceDataModule.from_ts_files(_path(train), _path(test), task="classification", **options)


def regression_data(
    dataset: Literal["tecator"] | None = "tecator",
    train: Path_fr | None = None,
    test: Path_fr | None = None,
    batch_size: int = 16,
    val_fraction: float = 0.1,
    standardize: bool = True,
    standardize_targets: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    length_batching: bool | None = None,
) -> LightningDataModule:
    """Regression data: the embedded Tecator, or ``.ts`` files with ``@targetLabel true``.

    ``standardize_targets``: the model's head learns standardised targets (the training
    statistics, linked to ``model.target_mean`` / ``model.target_std``); predictions stay in the
    original units.
    """
    from lstm_plugins.data import SequenceDataModule, TecatorDataModule

    options = dict(batch_size=batch_size, val_fraction=val_fraction, standardize=standardize, seed=seed,
                   num_workers=num_workers, length_batching=length_batching)
    if _files("regression", dataset, "tecator", "train", {"train": train, "test": test}, ".ts files"):
        datamodule: Any = TecatorDataModule(**options)
    else:
        datamodule = SequenceDataModule.from_ts_files(_path(train), _path(test), task="regression", **options)
    datamodule.cli_standardize_targets = standardize_targets
    return datamodule


def target_statistics(datamodule: Any) -> tuple[Any, Any]:
    """``(target_mean, target_std)`` for the model, or ``(None, None)`` with
    ``standardize_targets: false``."""
    if not getattr(datamodule, "cli_standardize_targets", True):
        return None, None
    return datamodule.target_mean, datamodule.target_std


def sequence_labelling_data(
    dataset: Literal["speaker_turns"] = "speaker_turns",
    num_train: int = 600,
    num_val: int = 100,
    num_test: int = 400,
    min_turns: int = 2,
    max_turns: int = 4,
    val_fraction: float = 0.1,
    recording_seed: int = 0,
    batch_size: int = 32,
    standardize: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    length_batching: bool | None = None,
) -> LightningDataModule:
    """Sequence labelling data: recordings of 2-4 JapaneseVowels speakers talking in turns."""
    from lstm_plugins.data import SpeakerTurnsDataModule

    return SpeakerTurnsDataModule(
        num_train=num_train, num_val=num_val, num_test=num_test, min_turns=min_turns, max_turns=max_turns,
        val_fraction=val_fraction, recording_seed=recording_seed, batch_size=batch_size, standardize=standardize,
        seed=seed, num_workers=num_workers, length_batching=length_batching,
    )


def forecasting_data(
    dataset: Literal["airline", "solar"] | None = "airline",
    csv: Path_fr | None = None,
    columns: list[str] | None = None,
    time_column: str | None = None,
    lookback: int | None = None,
    horizon: int | None = None,
    seasonality: int | None = None,
    val_size: float | None = None,
    test_size: float | None = None,
    standardize: bool = True,
    relative: bool | None = None,
    batch_size: int = 32,
    seed: int = 0,
    num_workers: int = 0,
) -> LightningDataModule:
    """Forecasting data: an embedded series (``airline``, ``solar``) or a ``csv`` of numeric columns.

    ``val_size`` / ``test_size``: a fraction of the series in (0, 1), or a number of steps.
    """
    from lstm_plugins.data import ForecastingDataModule

    # jsonargparse reads 24 as 24.0 for a float: a whole number of at least 1 is a count of steps.
    val_size, test_size = (int(size) if size is not None and size >= 1 and float(size).is_integer() else size
                           for size in (val_size, test_size))
    given = {"lookback": lookback, "horizon": horizon, "seasonality": seasonality, "val_size": val_size,
             "test_size": test_size, "relative": relative}
    options = {key: value for key, value in given.items() if value is not None}
    options.update(standardize=standardize, batch_size=batch_size, seed=seed, num_workers=num_workers)
    if csv is not None and dataset not in (None, "airline"):
        raise ValueError("Give either `data.dataset` or `data.csv` (a CSV file), not both.")
    if csv is None:
        name = dataset or "airline"
        return ForecastingDataModule.from_embedded(name, **{**SERIES_DEFAULTS[name], **options})
    for key in ("lookback", "horizon"):
        if key not in options:
            raise ValueError(f"Expected `data.{key}` for a forecasting run from `data.csv`.")
    return ForecastingDataModule.from_csv(_path(csv), columns=columns, time_column=time_column, **options)


def language_model_data(
    dataset: Literal["shakespeare"] | None = "shakespeare",
    train: Path_fr | None = None,
    val: Path_fr | None = None,
    test: Path_fr | None = None,
    level: Literal["char", "word"] = "char",
    min_count: int = 1,
    max_size: int | None = None,
    unknown: str | None = None,
    batch_size: int = 32,
    eval_batch_size: int | None = None,
    chunk_length: int = 64,
    max_train_chars: int | None = None,
    max_eval_chars: int | None = None,
    train_plays: list[str] | None = None,
    val_plays: Sequence[str] = ("julius_caesar", "twelfth_night"),
    test_plays: Sequence[str] = ("macbeth", "tempest"),
) -> LightningDataModule:
    """Language-model data: public-domain Shakespeare, or UTF-8 text files (``train``, ``val``,
    ``test``)."""
    from lstm_plugins.data import ShakespeareDataModule, TextDataModule

    common = dict(level=level, min_count=min_count, batch_size=batch_size, eval_batch_size=eval_batch_size,
                  chunk_length=chunk_length)
    if _files("language_model", dataset, "shakespeare", "train", {"train": train, "val": val, "test": test},
              "UTF-8 text files"):
        return ShakespeareDataModule(train_plays=train_plays, val_plays=tuple(val_plays), test_plays=tuple(test_plays),
                                     max_train_chars=max_train_chars, max_eval_chars=max_eval_chars, **common)
    texts = {}
    for key, value in (("train", train), ("val", val), ("test", test)):
        if value is not None:
            try:
                texts[f"{key}_text"] = Path(_path(value)).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"Cannot read `data.{key}` text file {value!r}: {exc}.") from exc
    return TextDataModule(texts.pop("train_text"), **texts, unknown=unknown, max_size=max_size, **common)
