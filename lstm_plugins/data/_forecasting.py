"""Forecasting data: one or several series windowed with a lookback and a horizon, split by time.

The series is cut into three consecutive spans: training, then validation, then test. The
standardisation statistics and the seasonal-naive scale of MASE come from the training span only;
training windows lie wholly inside it; a validation or test window forecasts steps of its own span
only (its lookback reads the observed past, which may lie in the earlier spans: what a forecaster
has at that time). So changing the validation or test values never changes a training batch or a
statistic.

Embedded series (``ForecastingDataModule.from_embedded(name, ...)``), converted by
``scripts/convert_forecasting_series.py`` from the aeon 1.6.0 wheel (BSD-3-Clause):

* ``airline``: monthly totals of international airline passengers (thousands), 1949-1960, 144
  values: Box & Jenkins (1976), *Time Series Analysis: Forecasting and Control*, series G
  (aeon's ``Airline.csv``). Seasonality 12.
* ``solar``: half-hourly estimates of GB national solar generation (share of installed capacity),
  2021-05-01 00:00 to 2021-05-07 00:00 UTC, 289 values, from Sheffield Solar's PV_Live
  (https://www.solar.sheffield.ac.uk/pvlive/), as shipped in aeon's ``solar.csv``. Seasonality 48.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lstm_plugins import validation as check
from lstm_plugins.data._batch import SequenceBatch, collate_sequence_batch
from lstm_plugins.data._checks import feature_statistics
from lstm_plugins.data._loaders import SplitLoaders
from lstm_plugins.data._series import EMBEDDED_SERIES, as_series, names_of_series, read_series_csv, span_steps

__all__ = ["ForecastStatistics", "ForecastingDataModule"]

_HERE = Path(__file__).resolve().parent


class ForecastStatistics(NamedTuple):
    """Per-series statistics of the training span, in the series' own units.

    ``naive_scale`` is MASE's denominator: the mean absolute error of the seasonal-naive
    forecast ``y[t - seasonality]`` over the training span (in-sample).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    naive_scale: tuple[float, ...]
    seasonality: int


class _Windows(Dataset[SequenceBatch]):
    """Forecast windows of one span: inputs ``(N, lookback, S)`` and targets ``(N, horizon[, S])``."""

    def __init__(self, series: np.ndarray, origins: np.ndarray, lookback: int, horizon: int, relative: bool) -> None:
        values = torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32))
        self.origins = origins
        starts = torch.from_numpy(origins - lookback)
        features = values[starts[:, None] + torch.arange(lookback)]
        targets = values[torch.from_numpy(origins)[:, None] + torch.arange(horizon)]
        # Each window's level: its last input value when relative (else 0), (N, 1, S).
        self.levels = features[:, -1:] if relative else torch.zeros_like(features[:, -1:])
        self.features = features - self.levels
        targets = targets - self.levels
        self.targets = targets.squeeze(-1) if values.shape[1] == 1 else targets
        self.lengths = torch.full((len(origins),), lookback, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, index: int) -> SequenceBatch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> SequenceBatch:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return SequenceBatch(self.features[index], self.lengths[index], self.targets[index])


class ForecastingDataModule(SplitLoaders, pl.LightningDataModule):
    """Windows of one or several aligned series for direct multi-step forecasting.

    Each window's features are the ``lookback`` steps before its forecast origin,
    ``(lookback, num_series)`` standardised with the training span's per-series mean and
    standard deviation; its targets are the next ``horizon`` steps, standardised the same way,
    ``(horizon,)`` for one series or ``(horizon, num_series)``. Use it with
    :class:`lstm_plugins.model.LSTMForecaster`; predictions go back to the series' units with
    :meth:`inverse_transform`.

    Args:
        series: ``(time,)`` or ``(time, num_series)`` real values, oldest first.
        lookback: steps a window reads.
        horizon: steps a window forecasts.
        seasonality: season length ``m`` of the seasonal-naive forecast ``y[t - m]`` (MASE's
            scale and the baseline); 1 is the naive forecast.
        val_size, test_size: the validation and test spans at the end of the series: a float in
            (0, 1) is a share of the series (rounded), an int a number of steps, 0 none.
        batch_size: windows per batch.
        standardize: standardise with the training span's statistics (else mean 0, std 1).
        relative: take each window's inputs and targets relative to its last input value, so
            the model forecasts changes from the current level (a trending series' later levels
            need no extrapolation). Errors, and so the metrics, do not change;
            :meth:`inverse_transform` with ``split`` adds the levels back.
        series_names: one name per series (defaults ``"0"``, ``"1"``, ...).
        time_labels: one label per time step (a CSV's time column), kept for reports.
        seed: seed of the training shuffle order.
        num_workers: ``DataLoader`` worker processes.

    Example:
        >>> import numpy as np
        >>> dm = ForecastingDataModule(np.sin(np.arange(100) / 3), lookback=12, horizon=4,
        ...                            seasonality=19, val_size=20, test_size=20, batch_size=8)
        >>> dm.spans, len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)
        ({'train': (0, 60), 'val': (60, 80), 'test': (80, 100)}, 45, 17, 17)
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch.features.shape), tuple(batch.targets.shape), batch.lengths[0].item()
        ((8, 12, 1), (8, 4), 12)
    """

    collate_fn = staticmethod(collate_sequence_batch)
    missing_test = "Expected a test span for `test_dataloader`, but the data module has test_size=0."

    def __init__(
        self,
        series: Any,
        *,
        lookback: int,
        horizon: int,
        seasonality: int = 1,
        val_size: float | int = 0.2,
        test_size: float | int = 0.2,
        batch_size: int = 32,
        standardize: bool = True,
        relative: bool = False,
        series_names: Sequence[str] | None = None,
        time_labels: Sequence[str] | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.lookback = check.positive_int("lookback", lookback)
        self.horizon = check.positive_int("horizon", horizon)
        self.seasonality = check.positive_int("seasonality", seasonality)
        self.batch_size = check.positive_int("batch_size", batch_size)
        self.standardize = check.boolean("standardize", standardize)
        self.relative = check.boolean("relative", relative)
        self.seed = check.int_at_least("seed", seed, 0)
        self.num_workers = check.int_at_least("num_workers", num_workers, 0)
        values = as_series(series)
        length, self.num_series = values.shape
        self.series_names = names_of_series(series_names, self.num_series)
        if time_labels is not None and len(time_labels) != length:
            raise ValueError(f"Expected one time label per step ({length}), but got {len(time_labels)}.")
        self.time_labels = None if time_labels is None else tuple(time_labels)
        self.values = values
        """The series in its own units, ``(time, num_series)`` float64."""
        n_val, n_test = span_steps("val_size", val_size, length), span_steps("test_size", test_size, length)
        n_train = length - n_val - n_test
        self.spans = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, length)}
        """``(start, stop)`` time indices of each span."""
        self._check_spans(length, n_train, n_val, n_test)

        train = values[:n_train]  # the only part any statistic reads
        scale = np.abs(train[self.seasonality:] - train[: -self.seasonality]).mean(axis=0)
        for name, value in zip(self.series_names, scale):
            if not value > 0:
                raise ValueError(
                    f"The seasonal-naive forecast (seasonality {self.seasonality}) is exact on the training span "
                    f"of series `{name}`, so MASE is undefined; check the series and `seasonality`."
                )
        mean, std = feature_statistics(train, what="series") if standardize else (
            np.zeros(self.num_series), np.ones(self.num_series))
        self.statistics = ForecastStatistics(
            tuple(map(float, mean)), tuple(map(float, std)), tuple(map(float, scale)), self.seasonality
        )
        self._mean, self._std = mean, std
        self._datasets: dict[str, _Windows] = {}

    def _check_spans(self, length: int, n_train: int, n_val: int, n_test: int) -> None:
        window = self.lookback + self.horizon
        if n_train <= 0:
            raise ValueError(
                f"Expected `val_size` and `test_size` to leave a training span, but they take {n_val} and "
                f"{n_test} of the series' {length} steps."
            )
        if n_train < window:
            raise ValueError(
                f"Expected `lookback` + `horizon` ({self.lookback} + {self.horizon} = {window}) to fit in the "
                f"training span, but it has {n_train} steps (the series' {length} less {n_val} for validation "
                f"and {n_test} for test); shorten `lookback` or `horizon`, or give validation and test less."
            )
        if n_train <= self.seasonality:
            raise ValueError(
                f"Expected the training span ({n_train} steps) to be longer than `seasonality` "
                f"({self.seasonality}), which MASE's scale needs."
            )
        for name, size in (("validation", n_val), ("test", n_test)):
            if 0 < size < self.horizon:
                raise ValueError(
                    f"Expected the {name} span ({size} steps) to hold at least one `horizon` ({self.horizon}); "
                    f"lengthen it or set it to 0."
                )

    # ------------------------------------------------------------------ properties
    @property
    def num_features(self) -> int:
        """Features per time step: the number of series."""
        return self.num_series

    @property
    def has_validation(self) -> bool:
        """Whether there is a validation span."""
        return self.spans["val"][1] > self.spans["val"][0]

    @property
    def has_test(self) -> bool:
        """Whether there is a test span."""
        return self.spans["test"][1] > self.spans["test"][0]

    def origins(self, split: str) -> np.ndarray:
        """Time index of the first forecast step of each window of ``split`` (in loader order
        for validation and test)."""
        start, stop = self.spans[check.choice("split", split, ("train", "val", "test"))]
        first = max(start, self.lookback)
        return np.arange(first, max(first, stop - self.horizon + 1), dtype=np.int64)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardise ``(..., num_series)`` values with the training statistics."""
        return (np.asarray(values, dtype=np.float64) - self._mean) / self._std

    def inverse_transform(self, values: Tensor | np.ndarray, split: str | None = None) -> Tensor | np.ndarray:
        """Standardised predictions or targets back to the series' units: ``(..., horizon)`` for
        one series, ``(..., horizon, num_series)`` for several. Tensors stay tensors. With
        ``split``, ``values`` are all the windows of that split in order (``Trainer.predict``
        gives the test windows), and relative windows get their levels back.

        Example:
            >>> import numpy as np
            >>> dm = ForecastingDataModule(np.arange(40.0) % 7, lookback=7, horizon=2, relative=True)
            >>> start = dm.origins("test")[0]
            >>> restored = dm.inverse_transform(dm.test_dataset.targets, split="test")
            >>> restored[0].tolist(), dm.values[start : start + 2, 0].tolist()
            ([4.0, 5.0], [4.0, 5.0])
        """
        levels: Tensor | float = 0.0
        if split is not None:
            dataset = self._dataset(check.choice("split", split, ("train", "val", "test")))
            count = 0 if dataset is None else len(dataset)
            if values.shape[0] != count:
                raise ValueError(f"Expected one row per `{split}` window ({count}), but got {values.shape[0]}.")
            if dataset is not None:
                levels = dataset.levels if self.num_series > 1 else dataset.levels[:, :, 0]
        elif self.relative:
            raise ValueError("Expected `split` for relative windows, whose levels must be added back.")
        mean, std = (self._mean, self._std) if self.num_series > 1 else (self._mean[0], self._std[0])
        if isinstance(values, Tensor):
            like = {"dtype": values.dtype, "device": values.device}
            shifted = values + torch.as_tensor(levels, **like)
            return shifted * torch.as_tensor(std, **like) + torch.as_tensor(mean, **like)
        return (np.asarray(values, dtype=np.float64) + np.asarray(levels, dtype=np.float64)) * std + mean

    # ------------------------------------------------------------------ windows and loaders
    def _dataset(self, split: str) -> _Windows | None:
        if split not in self._datasets:
            origins = self.origins(split)
            if not len(origins):
                return None
            # Each span reads the series up to its own end only: later values cannot leak in.
            stop = self.spans[split][1]
            self._datasets[split] = _Windows(
                self.transform(self.values[:stop]), origins, self.lookback, self.horizon, self.relative
            )
        return self._datasets[split]

    def predict_dataloader(self) -> DataLoader[Any]:
        """The test windows in time order (``Trainer.predict``); see :meth:`inverse_transform`."""
        return self.test_dataloader()

    # ------------------------------------------------------------------ the baseline
    def seasonal_naive_forecast(self, split: str) -> np.ndarray:
        """The seasonal-naive forecast of every window of ``split``, in the series' units:
        step ``h`` of a window with origin ``t`` is ``y[t + h - m * (h // m + 1)]``, the last
        observed value of the same season. Shape ``(windows, horizon, num_series)``."""
        steps = np.arange(self.horizon)
        lag = self.seasonality * (steps // self.seasonality + 1)
        return self.values[self.origins(split)[:, None] + steps - lag]

    def seasonal_naive_results(self, split: str = "test") -> dict[str, float]:
        """MAE, RMSE and MASE of the seasonal-naive forecast on the windows of ``split``, in the
        series' units; averaged over series like the model's metrics.

        Example:
            >>> import numpy as np
            >>> dm = ForecastingDataModule(np.arange(60.0), lookback=4, horizon=2, seasonality=1)
            >>> dm.seasonal_naive_results("test")  # the naive forecast lags a unit slope by 1 and 2
            {'mae': 1.5, 'rmse': 1.5811388300841898, 'mase': 1.5}
        """
        origins = self.origins(split)
        if not len(origins):
            raise ValueError(f"Expected windows in the `{split}` span, but it has none.")
        targets = self.values[origins[:, None] + np.arange(self.horizon)]
        errors = self.seasonal_naive_forecast(split) - targets
        mae = np.abs(errors).mean(axis=(0, 1))
        rmse = np.sqrt((errors**2).mean(axis=(0, 1)))
        mase = mae / np.asarray(self.statistics.naive_scale)
        return {"mae": float(mae.mean()), "rmse": float(rmse.mean()), "mase": float(mase.mean())}

    # ------------------------------------------------------------------ construction from files
    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike[str],
        *,
        columns: Sequence[str] | None = None,
        time_column: str | None = None,
        **kwargs: Any,
    ) -> ForecastingDataModule:
        """Build from a CSV file (see :func:`lstm_plugins.data.read_series_csv`); ``kwargs`` go to
        the constructor.

        Example:
            >>> from lstm_plugins.data._forecasting import _HERE
            >>> dm = ForecastingDataModule.from_csv(_HERE / "forecasting_airline.csv", time_column="Date",
            ...                                     lookback=24, horizon=12, seasonality=12)
            >>> dm.series_names, dm.spans["test"]
            (('Passengers',), (115, 144))
        """
        table = read_series_csv(path, columns=columns, time_column=time_column)
        return cls(table.values, series_names=table.names, time_labels=table.time_labels, **kwargs)

    @classmethod
    def from_embedded(cls, name: str, **kwargs: Any) -> ForecastingDataModule:
        """An embedded series (:data:`EMBEDDED_SERIES`), with its seasonality unless given.

        Example:
            >>> dm = ForecastingDataModule.from_embedded("solar", lookback=48, horizon=12, val_size=48, test_size=97)
            >>> dm.seasonality, dm.spans["train"], len(dm.test_dataset)
            (48, (0, 144), 86)
        """
        entry = EMBEDDED_SERIES[check.choice("name", name, tuple(EMBEDDED_SERIES))]
        kwargs.setdefault("seasonality", entry.seasonality)
        return cls.from_csv(_HERE / entry.file, time_column=entry.time_column, **kwargs)
