"""Classification metrics, from torchmetrics, so they reduce correctly across processes."""

from __future__ import annotations

from collections.abc import Mapping

from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

PER_CLASS_SUFFIX = "_per_class"


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
    """Mean absolute error, root mean squared error and R² (averaged over outputs).

    Example:
        >>> import torch
        >>> metrics = regression_metrics()
        >>> metrics.update(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 2.0, 3.0]))
        >>> {name: round(value.item(), 4) for name, value in sorted(metrics.compute().items())}
        {'mae': 0.3333, 'r2': 0.5, 'rmse': 0.5774}
    """
    return _collection({
        "mae": MeanAbsoluteError(num_outputs=num_outputs),
        "rmse": MeanSquaredError(squared=False, num_outputs=num_outputs),
        "r2": R2Score(multioutput="uniform_average") if num_outputs > 1 else R2Score(),
    }, extra)


def _collection(metrics: dict[str, Metric], extra: Mapping[str, Metric] | None) -> MetricCollection:
    for name, metric in (extra or {}).items():
        if name in metrics:
            raise ValueError(f"Metric name `{name}` is already used; choose another name.")
        if not isinstance(metric, Metric):
            raise TypeError(f"Expected metric `{name}` to be a torchmetrics.Metric, but got {metric!r}.")
        metrics[name] = metric
    return MetricCollection(metrics)
