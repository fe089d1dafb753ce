"""Sequence labelling: one class per valid time step (speaker turns, tagging, segmentation).

The head reads every step's output (``per_step``); targets are ``(batch, time)`` class indices
with every padded step set to :data:`IGNORE_INDEX` (``-100``), so padding never enters the loss,
the metrics or the validation loss's weight. Variable-length batches are exact in both
directions (see :mod:`lstm_plugins.model._forward`): a sample's per-step outputs do not depend on
its padding or on its batch-mates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from lstm_plugins import validation as check
from lstm_plugins.data._batch import IGNORE_INDEX
from lstm_plugins.model._forward import valid_step_mask
from lstm_plugins.model._metrics import classification_metrics
from lstm_plugins.model._module import SequenceModel
from lstm_plugins.model._tasks import Task
from lstm_plugins.techniques._registry import TechniqueSpec
from lstm_plugins.training._optimizers import OptimizerName

__all__ = ["IGNORE_INDEX", "LSTMSequenceLabeller", "SequenceLabellingTask"]



class SequenceLabellingTask(Task):
    """One class per valid step: cross-entropy over the valid steps; per-step accuracy, macro
    recall and macro F1 (per-class vectors too).

    Predictions are ``(batch, time, num_classes)`` logits; targets are ``(batch, time)`` int64
    class indices, :data:`IGNORE_INDEX` on padded steps. The loss is the mean over the batch's
    valid steps (every frame weighs the same, whatever its sequence's length), and a batch weighs
    its number of valid steps in the epoch's validation loss, which is therefore the mean over
    every valid step of the split. Metrics count valid steps only (``accuracy`` is the fraction
    of frames labelled correctly). Bad targets (one label per sequence, the wrong number of
    steps, floats, a label outside ``[0, num_classes)``) are refused at the first step, named.

    Example:
        >>> import torch
        >>> task = SequenceLabellingTask(3)
        >>> logits = torch.zeros(2, 3, 3)
        >>> targets = torch.tensor([[0, 1, 2], [2, IGNORE_INDEX, IGNORE_INDEX]])
        >>> round(task.loss(logits, targets).item(), 4), int(task.loss_weight(targets))
        (1.0986, 4)
    """

    name = "sequence_labelling"
    per_step = True

    def __init__(self, num_classes: int) -> None:
        self.num_classes = check.positive_int("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"Expected `num_classes` to be at least 2, but got {num_classes}.")
        self.output_size = self.num_classes

    def step_targets(self, targets: Tensor, lengths: Tensor) -> Tensor:
        """``targets`` with every step at or beyond its sequence's length set to
        :data:`IGNORE_INDEX`, whatever it held: what makes padded targets never count.

        Example:
            >>> import torch
            >>> task = SequenceLabellingTask(3)
            >>> task.step_targets(torch.tensor([[1, 2, 0], [2, 1, 1]]), torch.tensor([3, 1]))
            tensor([[   1,    2,    0],
                    [   2, -100, -100]])
        """
        if targets.dim() != 2 or targets.is_floating_point() or targets.size(0) != lengths.size(0):
            return targets  # not per-step class indices: the loss refuses them, named
        mask = valid_step_mask(lengths, targets.size(1), targets.device)
        return targets.masked_fill(~mask, IGNORE_INDEX)

    def check_targets(self, predictions: Tensor, targets: Tensor) -> None:
        """Refuse targets that do not label the predictions' steps with valid classes.

        Raises ``TypeError`` for non-integer targets and ``ValueError`` for a shape other than the
        predictions' ``(batch, time)`` or a label outside ``[0, num_classes)`` (other than
        :data:`IGNORE_INDEX`), naming the sequence and step.

        Example:
            >>> import torch
            >>> SequenceLabellingTask(3).check_targets(torch.zeros(1, 2, 3), torch.tensor([[0, 3]]))
            Traceback (most recent call last):
            ...
            ValueError: Expected per-step targets in [0, 3) (or -100 on padded steps), but sequence 0 has 3 at step 1.
        """
        if predictions.dim() != 3 or predictions.size(-1) != self.num_classes:
            raise ValueError(
                f"Expected per-step predictions of shape (batch, time, {self.num_classes}), but got "
                f"{tuple(predictions.shape)}."
            )
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(
                "Expected per-step targets to be integer class indices (int64, -100 on padded "
                f"steps), but got dtype {targets.dtype}; class probabilities are not supported."
            )
        expected = tuple(predictions.shape[:2])
        if tuple(targets.shape) != expected:
            hint = (
                " (one label per sequence: sequence labelling needs one label per step)"
                if targets.dim() == 1
                else ""
            )
            raise ValueError(
                f"Expected per-step targets of shape (batch, time) = {expected}, like the "
                f"predictions, but got {tuple(targets.shape)}{hint}."
            )
        if targets.device.type != "cpu":
            return  # reading the check back would synchronise the device every step
        bad = (targets != IGNORE_INDEX) & ((targets < 0) | (targets >= self.num_classes))
        if bool(bad.any()):
            sequence, step = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"Expected per-step targets in [0, {self.num_classes}) (or {IGNORE_INDEX} on padded "
                f"steps), but sequence {sequence} has {int(targets[sequence, step])} at step {step}."
            )

    def loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        self.check_targets(predictions, targets)
        return F.cross_entropy(
            predictions.reshape(-1, self.num_classes), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )

    def metric_inputs(self, predictions: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The valid steps only: ``(steps, num_classes)`` logits and ``(steps,)`` targets."""
        self.check_targets(predictions, targets)
        valid = targets != IGNORE_INDEX
        return predictions[valid], targets[valid]

    def loss_weight(self, targets: Tensor) -> Tensor:
        """The batch's number of valid steps."""
        return (targets != IGNORE_INDEX).sum()

    def metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        return classification_metrics(self.num_classes, extra)

    def data_checks(self) -> tuple[tuple[str, str, int], ...]:
        return (("num_classes", "num_classes", self.num_classes),)


class LSTMSequenceLabeller(SequenceModel):
    """Sequence labeller: the fused LSTM, its technique stack, and a head on every valid step
    (:class:`SequenceLabellingTask`).

    Batches are :class:`lstm_plugins.data.SequenceBatch` with ``(batch, time)`` targets (see
    :class:`lstm_plugins.data.SequenceLabellingDataModule`). Before the loss and the metrics,
    every target at or beyond its sequence's length is replaced by :data:`IGNORE_INDEX`
    (:meth:`SequenceLabellingTask.step_targets`), so padded targets never count, whatever they
    hold. ``model(features, lengths)`` returns ``(batch, time, num_classes)`` logits (padded
    steps unspecified).

    Args:
        input_size: features per time step (the embedding size for token inputs).
        num_classes: number of step labels, at least 2.
        hidden_size, num_layers, bidirectional, optimizer, learning_rate, techniques,
            num_embeddings, stop_on_nonfinite_loss: keyword-only, as for :class:`SequenceModel`.

    Example:
        >>> import torch
        >>> model = LSTMSequenceLabeller(12, 9, hidden_size=16, bidirectional=True)
        >>> model(torch.randn(2, 7, 12), torch.tensor([7, 4])).shape
        torch.Size([2, 7, 9])
    """

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        *,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        optimizer: OptimizerName = "adam",
        learning_rate: float = 1e-3,
        techniques: Sequence[TechniqueSpec] = (),
        num_embeddings: int | None = None,
        stop_on_nonfinite_loss: bool = True,
    ) -> None:
        super().__init__(
            input_size, SequenceLabellingTask(num_classes), hidden_size=hidden_size, num_layers=num_layers,
            bidirectional=bidirectional, optimizer=optimizer, learning_rate=learning_rate,
            techniques=techniques, num_embeddings=num_embeddings, stop_on_nonfinite_loss=stop_on_nonfinite_loss,
        )
        self.num_classes = self.task.num_classes
