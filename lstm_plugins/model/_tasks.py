"""Tasks: what a model learns from its head's output (targets, loss, metrics, data checks).

The network, the technique stack, DDP, checkpoints and logging are the same for every task; a
task only says what the head predicts and how it is scored. A new kind of task (forecasting,
sequence labelling, language modelling) is a new :class:`Task`, not a branch inside the model.
"""

from __future__ import annotations

from collections.abc import Mapping
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
        return F.cross_entropy(predictions, targets)

    def metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        return classification_metrics(self.num_classes, extra)

    def data_checks(self) -> tuple[tuple[str, str, int], ...]:
        return (("num_classes", "num_classes", self.num_classes),)


class RegressionTask(Task):
    """One value (or ``num_outputs`` values) per sequence: MSE or MAE; MAE, RMSE and R².

    Targets are ``(batch,)`` floats for ``num_outputs=1``, else ``(batch, num_outputs)``.

    Example:
        >>> import torch
        >>> RegressionTask(loss="mae").loss(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]))
        tensor(1.)
    """

    name = "regression"

    def __init__(self, num_outputs: int = 1, loss: RegressionLoss = "mse") -> None:
        self.num_outputs = check.positive_int("num_outputs", num_outputs)
        self.loss_name: RegressionLoss = check.choice("loss", loss, ("mse", "mae"))
        self.output_size = self.num_outputs

    def predictions(self, head_output: Tensor) -> Tensor:
        return head_output.squeeze(-1) if self.num_outputs == 1 else head_output

    def loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        if self.loss_name == "mse":
            return F.mse_loss(predictions, targets)
        return F.l1_loss(predictions, targets)

    def metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        return regression_metrics(self.num_outputs, extra)

    def data_checks(self) -> tuple[tuple[str, str, int], ...]:
        return (("num_outputs", "num_outputs", self.num_outputs),)
