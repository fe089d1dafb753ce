"""Tasks: what a model learns from its head's output (targets, loss, metrics, data checks).

The network, the technique stack, DDP, checkpoints and logging are the same for every task; a
task only says what the head predicts and how it is scored. A new kind of task (forecasting,
sequence labelling, language modelling) is a new :class:`Task`, not a branch inside the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any, ClassVar, Literal

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from lstm_plugins import validation as check
from lstm_plugins.model._metrics import classification_metrics, regression_metrics

RegressionLoss = Literal["mse", "mae"]


class Task:
    """Base of tasks. Subclasses set :attr:`output_size` and define :meth:`loss` and :meth:`metrics`.

    A task is plain data plus functions; it holds no parameters and no state.
    """

    name: ClassVar[str] = "task"
    output_size: int
    """Units of the model's head."""
    per_step: ClassVar[bool] = False
    """Whether the head reads every step's output (sequence labelling, language modelling)
    rather than one summary per sequence."""
    carries_state: ClassVar[bool] = False
    """Whether the LSTM's final state of a batch is the initial state of the next (truncated
    backpropagation through time over consecutive chunks of streams)."""

    def check_network(self, model: Any) -> None:
        """Refuse a network this task cannot work with (``ValueError`` naming the task); called
        once the techniques have changed the network."""

    def step_targets(self, targets: Tensor, lengths: Tensor) -> Tensor:
        """The batch's targets as the loss and the metrics receive them: a per-step task marks
        every step at or beyond its sequence's length as ignored, whatever it held."""
        return targets

    def metric_inputs(self, predictions: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """What the metrics are updated with: a per-step task keeps only the valid steps."""
        return predictions, targets

    def loss_weight(self, targets: Tensor) -> Tensor | int:
        """How much a batch's mean loss weighs in the epoch's mean: its sequences (or, for a
        per-step task, its valid steps)."""
        return targets.size(0)

    def predictions(self, head_output: Tensor) -> Tensor:
        """The head's output as the task's predictions (what the loss and metrics receive)."""
        return head_output

    def loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        """The task's loss, before technique terms."""
        raise NotImplementedError

    def metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        """Fresh validation/test metrics, updated with ``(predictions, targets)``."""
        raise NotImplementedError

    def data_checks(self) -> tuple[tuple[str, str, int], ...]:
        """``(model argument, data module attribute, value)`` that must agree with the data."""
        return ()


class ClassificationTask(Task):
    """One class per sequence: cross-entropy; accuracy, macro recall and macro F1 (per-class too).

    ``num_classes=2`` is binary classification with a two-way softmax. Targets are class indices,
    or class probabilities ``(batch, num_classes)`` (from mixup, for example).

    Example:
        >>> import torch
        >>> task = ClassificationTask(3)
        >>> round(task.loss(torch.zeros(2, 3), torch.tensor([0, 2])).item(), 4)
        1.0986
    """

    name = "classification"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = check.positive_int("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"Expected `num_classes` to be at least 2, but got {num_classes}.")
        self.output_size = self.num_classes

    def loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        if targets.is_floating_point() and targets.dim() == 1:
            # Class probabilities are (batch, num_classes); one float per sequence is a value.
            raise ValueError(
                "Expected class indices (integers) as targets of the `classification` task, but got "
                "floats: for values, use the `regression` task (LSTMRegressor)."
            )
        return F.cross_entropy(predictions, targets)

    def metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        return classification_metrics(self.num_classes, extra)

    def data_checks(self) -> tuple[tuple[str, str, int], ...]:
        return (("num_classes", "num_classes", self.num_classes),)


class RegressionTask(Task):
    """One value (or ``num_outputs`` values) per sequence: MSE or MAE; MAE, RMSE and R².

    Targets are ``(batch,)`` floats for ``num_outputs=1``, else ``(batch, num_outputs)``; integer
    targets (class indices) are refused. Metrics are averaged over outputs and, for several
    outputs, also reported per output (``test/rmse_per_output``; see :func:`regression_metrics`).

    Targets are standardised inside the task when ``target_mean`` and ``target_std`` are given
    (statistics of the training targets, e.g. :attr:`SequenceDataModule.target_mean`): the head
    learns ``(target - mean) / std``, the loss is computed on that scale, and predictions,
    metrics and ``predict`` come back in the targets' own units (``head * std + mean``).

    Example:
        >>> import torch
        >>> RegressionTask(loss="mae").loss(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]))
        tensor(1.)
        >>> task = RegressionTask(target_mean=10.0, target_std=2.0)
        >>> task.predictions(torch.tensor([[0.0], [1.5]]))
        tensor([10., 13.])
        >>> task.loss(torch.tensor([10.0, 13.0]), torch.tensor([12.0, 13.0]))  # ((10 - 12) / 2)² / 2
        tensor(0.5000)
    """

    name = "regression"

    def __init__(
        self,
        num_outputs: int = 1,
        loss: RegressionLoss = "mse",
        *,
        target_mean: float | Sequence[float] | None = None,
        target_std: float | Sequence[float] | None = None,
    ) -> None:
        self.num_outputs = check.positive_int("num_outputs", num_outputs)
        self.loss_name: RegressionLoss = check.choice("loss", loss, ("mse", "mae"))
        self.output_size = self.num_outputs
        if (target_mean is None) != (target_std is None):
            raise ValueError("Expected `target_mean` and `target_std` to be given together, but got one.")
        self.target_mean = None if target_mean is None else self._statistic("target_mean", target_mean)
        self.target_std = None if target_std is None else self._statistic("target_std", target_std, True)
        self._scales: dict[tuple[Any, Any], tuple[Tensor, Tensor]] = {}

    def _statistic(self, name: str, value: Any, positive: bool = False) -> tuple[float, ...]:
        value = value.tolist() if hasattr(value, "tolist") else value  # numpy arrays, tensors
        values = value if isinstance(value, Sequence) and not isinstance(value, str) else (value,)
        if len(values) != self.num_outputs:
            raise ValueError(f"Expected `{name}` to have one value per output ({self.num_outputs}), "
                             f"but got {check.describe(value)}.")
        convert = check.positive_float if positive else _finite_float
        return tuple(convert(name, v) for v in values)

    def _scale(self, like: Tensor) -> tuple[Tensor | float, Tensor | float]:
        """``(mean, std)`` as numbers (one output) or tensors cached on ``like``'s device."""
        assert self.target_mean is not None and self.target_std is not None
        if self.num_outputs == 1:
            return self.target_mean[0], self.target_std[0]
        key = (like.device, like.dtype)
        if key not in self._scales:
            self._scales[key] = (like.new_tensor(self.target_mean), like.new_tensor(self.target_std))
        return self._scales[key]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_scales": {}}  # device tensors stay with their process

    def predictions(self, head_output: Tensor) -> Tensor:
        values = head_output.squeeze(-1) if self.num_outputs == 1 else head_output
        if self.target_std is None:
            return values
        mean, std = self._scale(values)
        return values * std + mean

    def _check_targets(self, predictions: Tensor, targets: Tensor) -> None:
        if not targets.is_floating_point():
            raise TypeError(
                f"The regression task needs float targets, but the batch has {targets.dtype} targets "
                "(class indices?); build the data module with task='regression', or use a classifier."
            )
        if targets.shape != predictions.shape:
            raise ValueError(f"Expected regression targets of shape {tuple(predictions.shape)} "
                             f"(num_outputs={self.num_outputs}), but got {tuple(targets.shape)}.")

    def loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        self._check_targets(predictions, targets)
        if self.target_std is not None:  # the loss on the standardised scale (the mean cancels)
            std = self._scale(predictions)[1]
            predictions, targets = predictions / std, targets / std
        if self.loss_name == "mse":
            return F.mse_loss(predictions, targets)
        return F.l1_loss(predictions, targets)

    def metric_inputs(self, predictions: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        self._check_targets(predictions, targets)
        return predictions, targets

    def metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        return regression_metrics(self.num_outputs, extra)

    def data_checks(self) -> tuple[tuple[str, str, int], ...]:
        return (("num_outputs", "num_outputs", self.num_outputs),)


def _finite_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"Expected `{name}` to be a finite float, but got {check.describe(value)}.")
    if not math.isfinite(value):
        raise ValueError(f"Expected `{name}` to be a finite float, but got {check.describe(value)}.")
    return float(value)
