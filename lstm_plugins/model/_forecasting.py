"""Forecasting: the next ``horizon`` steps of one or several series, predicted directly.

The head emits ``horizon * num_series`` values at once (direct multi-step forecasting, no
feedback of predictions). Metrics are MAE, RMSE and MASE in the series' own units: the targets
arrive standardised (:class:`lstm_plugins.data.ForecastingDataModule`), and the metrics scale
errors back with the training span's standard deviation. MASE divides a series' MAE by the
in-sample MAE of the seasonal-naive forecast on the training span (Hyndman & Koehler 2006).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from lstm_plugins import validation as check
from lstm_plugins.model._module import SequenceModel
from lstm_plugins.model._tasks import Task
from lstm_plugins.techniques._registry import TechniqueSpec
from lstm_plugins.training._optimizers import OptimizerName

ForecastLoss = Literal["mse", "mae"]
ErrorKind = Literal["mae", "rmse", "mase"]


class Statistics(Protocol):
    """What the metrics read from the data (:class:`lstm_plugins.data.ForecastStatistics`)."""

    std: Sequence[float]
    naive_scale: Sequence[float]


class ForecastError(Metric):
    """MAE, RMSE or MASE of standardised forecasts, in the series' units; averaged over series.

    The states are sums (absolute and squared errors per series, and a count), reduced by
    summation across processes, so the result under DDP is the result over all windows.
    ``statistics`` gives each series' standard deviation (errors are multiplied by it) and its
    MASE scale; they are buffers, saved with the model, and :meth:`set_statistics` replaces
    them. MASE without a scale is refused when computed.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> stats = SimpleNamespace(std=[2.0], naive_scale=[4.0])
        >>> mase = ForecastError("mase", statistics=stats)
        >>> mase.update(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))  # errors 2 and 4
        >>> mase.compute()
        tensor(0.7500)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    absolute: Tensor
    squared: Tensor
    count: Tensor
    target_std: Tensor
    naive_scale: Tensor

    def __init__(self, kind: ErrorKind, num_series: int = 1, statistics: Statistics | None = None) -> None:
        super().__init__()
        self.kind: ErrorKind = check.choice("kind", kind, ("mae", "rmse", "mase"))
        self.num_series = check.positive_int("num_series", num_series)
        self.add_state("absolute", torch.zeros(num_series, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("squared", torch.zeros(num_series, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.register_buffer("target_std", torch.ones(num_series, dtype=torch.float64))
        self.register_buffer("naive_scale", torch.full((num_series,), float("nan"), dtype=torch.float64))
        if statistics is not None:
            self.set_statistics(statistics)

    def set_statistics(self, statistics: Statistics) -> None:
        """Use the training span's per-series standard deviations and MASE scales."""
        for name in ("std", "naive_scale"):
            values = torch.as_tensor(getattr(statistics, name), dtype=torch.float64)
            if values.shape != (self.num_series,) or not bool((values > 0).all()) or not values.isfinite().all():
                raise ValueError(
                    f"Expected `statistics.{name}` to hold {self.num_series} positive finite values, "
                    f"but got {getattr(statistics, name)!r}."
                )
        self.target_std.copy_(torch.as_tensor(statistics.std, dtype=torch.float64))
        self.naive_scale.copy_(torch.as_tensor(statistics.naive_scale, dtype=torch.float64))

    def update(self, predictions: Tensor, targets: Tensor) -> None:
        if predictions.shape != targets.shape:
            raise ValueError(f"Expected predictions and targets of one shape, but got {tuple(predictions.shape)} "
                             f"and {tuple(targets.shape)}.")
        errors = (predictions.detach().double() - targets.double()).reshape(-1, self.num_series) * self.target_std
        self.absolute += errors.abs().sum(0)
        self.squared += errors.square().sum(0)
        self.count += errors.shape[0]

    def compute(self) -> Tensor:
        if self.kind == "rmse":
            return (self.squared / self.count).sqrt().mean().float()
        mae = self.absolute / self.count
        if self.kind == "mae":
            return mae.mean().float()
        if bool(self.naive_scale.isnan().any()):
            raise ValueError(
                "MASE needs the seasonal-naive scale of the training span: build the task with "
                "`statistics=datamodule.statistics`, or use LSTMForecaster, which reads it from the data module."
            )
        return (mae / self.naive_scale).mean().float()


class ForecastingTask(Task):
    """The next ``horizon`` steps of ``num_series`` series, predicted at once from a window.

    The head has ``horizon * num_series`` units; predictions are ``(batch, horizon)`` for one
    series, else ``(batch, horizon, num_series)``, standardised like the targets. The loss is
    MSE or MAE on standardised values; the metrics (:class:`ForecastError`) are ``mae``,
    ``rmse`` and ``mase`` in the series' units, averaged over series. ``statistics`` (the data
    module's :attr:`~lstm_plugins.data.ForecastingDataModule.statistics`) may be given here or
    set later (:meth:`LSTMForecaster.setup` reads it from the data module).

    Example:
        >>> import torch
        >>> task = ForecastingTask(3, num_series=2, seasonality=12)
        >>> task.output_size, tuple(task.predictions(torch.zeros(5, 6)).shape)
        (6, (5, 3, 2))
        >>> task.loss(torch.ones(1, 3, 2), torch.zeros(1, 3, 2))
        tensor(1.)
    """

    name = "forecasting"

    def __init__(
        self,
        horizon: int,
        num_series: int = 1,
        *,
        seasonality: int = 1,
        loss: ForecastLoss = "mse",
        statistics: Statistics | None = None,
    ) -> None:
        self.horizon = check.positive_int("horizon", horizon)
        self.num_series = check.positive_int("num_series", num_series)
        self.seasonality = check.positive_int("seasonality", seasonality)
        self.loss_name: ForecastLoss = check.choice("loss", loss, ("mse", "mae"))
        self.statistics = statistics
        self.output_size = self.horizon * self.num_series

    def predictions(self, head_output: Tensor) -> Tensor:
        shape = (self.horizon,) if self.num_series == 1 else (self.horizon, self.num_series)
        return head_output.reshape(head_output.shape[0], *shape)

    def loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        if self.loss_name == "mse":
            return F.mse_loss(predictions, targets)
        return F.l1_loss(predictions, targets)

    def metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        metrics: dict[str, Metric] = {
            kind: ForecastError(kind, self.num_series, self.statistics) for kind in ("mae", "rmse", "mase")
        }
        for name, metric in extra.items():
            if name in metrics:
                raise ValueError(f"Metric name `{name}` is already used; choose another name.")
            metrics[name] = metric
        return MetricCollection(metrics)

    def data_checks(self) -> tuple[tuple[str, str, int], ...]:
        return (
            ("horizon", "horizon", self.horizon),
            ("num_series", "num_series", self.num_series),
            ("seasonality", "seasonality", self.seasonality),
        )


def set_forecast_statistics(model: Any, statistics: Statistics) -> None:
    """Give every :class:`ForecastError` of ``model`` (validation and test copies included) and
    its task the data's statistics.

    Example:
        >>> from types import SimpleNamespace
        >>> model = LSTMForecaster(1, 4)
        >>> set_forecast_statistics(model, SimpleNamespace(std=[2.0], naive_scale=[3.0]))
        >>> model.test_metrics["mase"].naive_scale.tolist()
        [3.0]
    """
    for module in model.modules():
        if isinstance(module, ForecastError):
            module.set_statistics(statistics)
    model.task.statistics = statistics


class LSTMForecaster(SequenceModel):
    """Direct multi-step forecaster: the LSTM reads a window of ``num_series`` series and its
    head predicts the next ``horizon`` steps of each (:class:`ForecastingTask`).

    At ``setup`` it takes the data module's statistics (MASE's scale, the standard deviations
    that bring errors back to the series' units); after ``Trainer.test`` with a data module that
    has ``seasonal_naive_results``, :attr:`test_results` also holds ``test/naive_mae``,
    ``test/naive_rmse`` and ``test/naive_mase``: the seasonal-naive baseline on the same windows.

    Args:
        num_series: series read and forecast (the input features).
        horizon: steps forecast per window.
        seasonality: the data's season length (checked against the data module).
        loss: ``"mse"`` or ``"mae"`` on standardised values.
        hidden_size, num_layers, bidirectional, optimizer, learning_rate, techniques:
            keyword-only, as for :class:`SequenceModel`.

    Example:
        >>> import torch
        >>> model = LSTMForecaster(2, 6, seasonality=12, techniques=["gradient_clipping"])
        >>> model(torch.randn(4, 24, 2), torch.full((4,), 24)).shape
        torch.Size([4, 6, 2])
    """

    def __init__(
        self,
        num_series: int = 1,
        horizon: int = 1,
        *,
        seasonality: int = 1,
        loss: ForecastLoss = "mse",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        optimizer: OptimizerName = "adam",
        learning_rate: float = 1e-3,
        techniques: Sequence[TechniqueSpec] = (),
        stop_on_nonfinite_loss: bool = True,
    ) -> None:
        task = ForecastingTask(horizon, num_series, seasonality=seasonality, loss=loss)
        super().__init__(
            task.num_series, task, hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
            optimizer=optimizer, learning_rate=learning_rate, techniques=techniques,
            stop_on_nonfinite_loss=stop_on_nonfinite_loss,
        )
        self.num_series, self.horizon, self.seasonality = task.num_series, task.horizon, task.seasonality

    def _datamodule(self) -> Any:
        trainer = self._trainer
        return None if trainer is None else getattr(trainer, "datamodule", None)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        statistics = getattr(self._datamodule(), "statistics", None)
        if statistics is not None:
            set_forecast_statistics(self, statistics)

    def on_test_epoch_end(self) -> None:
        baseline = getattr(self._datamodule(), "seasonal_naive_results", None)
        naive = {f"test/naive_{k}": v for k, v in baseline("test").items()} if callable(baseline) else {}
        if naive:
            self.log_dict(naive, sync_dist=True)  # identical on every process: the mean is exact
        super().on_test_epoch_end()
        self.test_results.update({name: torch.tensor(value) for name, value in naive.items()})
