"""Classification and regression metrics, from torchmetrics, so they reduce correctly across processes."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

PER_CLASS_SUFFIX = "_per_class"
PER_OUTPUT_SUFFIX = "_per_output"
PER_ELEMENT_SUFFIXES = {PER_CLASS_SUFFIX: "class", PER_OUTPUT_SUFFIX: "output"}
"""Vector metrics whose name ends in a key are logged one value per element, as
``<name without suffix>/<value>_<index>`` (``test/recall/class_3``, ``test/rmse/output_0``)."""


def classification_metrics(
    num_classes: int, extra: Mapping[str, Metric] | None = None
) -> MetricCollection:
    """Accuracy, macro recall and macro F1, plus per-class recall and F1.

    ``accuracy`` is the fraction of samples classified correctly; ``recall`` and ``f1`` are
    unweighted means over classes; ``recall_per_class`` and ``f1_per_class`` are vectors.
    The five metrics share one set of counts (torchmetrics compute groups), so an update costs one.

    Example:
        >>> import torch
        >>> metrics = classification_metrics(3)
        >>> metrics.update(torch.eye(3), torch.tensor([0, 1, 1]))
        >>> round(metrics.compute()["accuracy"].item(), 4)
        0.6667
    """
    return _collection({
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        "recall": MulticlassRecall(num_classes, average="macro"),
        "f1": MulticlassF1Score(num_classes, average="macro"),
        "recall" + PER_CLASS_SUFFIX: MulticlassRecall(num_classes, average=None),
        "f1" + PER_CLASS_SUFFIX: MulticlassF1Score(num_classes, average=None),
    }, extra)


def regression_metrics(num_outputs: int = 1, extra: Mapping[str, Metric] | None = None) -> MetricCollection:
    """Mean absolute error, root mean squared error and R²; with several outputs, per output too.

    ``mae``, ``rmse`` and ``r2`` are scalars: for ``num_outputs > 1``, the unweighted mean over
    outputs of each output's value (so ``mae`` is the MAE of all values, ``rmse`` the mean of the
    outputs' RMSEs, ``r2`` scikit-learn's ``uniform_average``). With ``num_outputs > 1``,
    ``mae_per_output``, ``rmse_per_output`` and ``r2_per_output`` are the vectors averaged, logged
    one value per output. R² is NaN with fewer than two samples (it is undefined there). The
    averages share their per-output counts (torchmetrics compute groups).

    Example:
        >>> import torch
        >>> metrics = regression_metrics()
        >>> metrics.update(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 2.0, 3.0]))
        >>> {name: round(value.item(), 4) for name, value in sorted(metrics.compute().items())}
        {'mae': 0.3333, 'r2': 0.5, 'rmse': 0.5774}
        >>> metrics = regression_metrics(2)
        >>> metrics.update(torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.tensor([[1.0, 1.0], [2.0, -1.0]]))
        >>> results = metrics.compute()
        >>> results["mae_per_output"].tolist(), results["mae"].item()
        ([0.5, 1.0], 0.75)
    """
    metrics: dict[str, Metric] = {
        "mae": _AveragedMeanAbsoluteError(num_outputs=num_outputs),
        "rmse": _AveragedRootMeanSquaredError(num_outputs=num_outputs),
        "r2": _R2Score(num_outputs, average=True),
    }
    if num_outputs > 1:
        metrics.update({
            "mae" + PER_OUTPUT_SUFFIX: MeanAbsoluteError(num_outputs=num_outputs),
            "rmse" + PER_OUTPUT_SUFFIX: MeanSquaredError(squared=False, num_outputs=num_outputs),
            "r2" + PER_OUTPUT_SUFFIX: _R2Score(num_outputs, average=False),
        })
    return _collection(metrics, extra)


class _AveragedMeanAbsoluteError(MeanAbsoluteError):
    """MAE per output, averaged over outputs."""

    def compute(self) -> Tensor:
        return super().compute().mean()


class _AveragedRootMeanSquaredError(MeanSquaredError):
    """RMSE per output, averaged over outputs."""

    def __init__(self, num_outputs: int) -> None:
        super().__init__(squared=False, num_outputs=num_outputs)

    def compute(self) -> Tensor:
        return super().compute().mean()


class _R2Score(R2Score):
    """R² per output (or its mean over outputs); NaN with fewer than two samples."""

    def __init__(self, num_outputs: int, average: bool) -> None:
        super().__init__(multioutput="raw_values")
        self.num_outputs = num_outputs
        self.average = average

    def compute(self) -> Tensor:
        if int(self.total) < 2:
            return torch.full(() if self.average else (self.num_outputs,), float("nan"), device=self.total.device)
        values = super().compute().reshape(-1)
        return values.mean() if self.average else values


def _collection(metrics: dict[str, Metric], extra: Mapping[str, Metric] | None) -> MetricCollection:
    for name, metric in (extra or {}).items():
        if name in metrics:
            raise ValueError(f"Metric name `{name}` is already used; choose another name.")
        if not isinstance(metric, Metric):
            raise TypeError(f"Expected metric `{name}` to be a torchmetrics.Metric, but got {metric!r}.")
        metrics[name] = metric
    return MetricCollection(metrics)
