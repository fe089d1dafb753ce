"""Validation, test and prediction: metrics from torchmetrics, the evaluation hooks around them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from torch import Tensor
from torchmetrics import MeanMetric, Metric, MetricCollection

from lstm_plugins.model._metrics import PER_ELEMENT_SUFFIXES
from lstm_plugins.toolkit import log_step
from lstm_plugins.training._safeguards import Safeguards
from lstm_plugins.training._step_log import publish, to_host


class EvaluationGuard(Safeguards):
    """The model's core callback: ends an evaluation that stops with an exception, so
    ``on_evaluation_end`` restores what ``on_evaluation_start`` changed (swapped-in averaged
    weights, for example), and carries the training :class:`~lstm_plugins.training.Safeguards`
    (atomic checkpoint writes, SIGTERM, the non-finite loss stop) in the same callback, since each
    callback costs every step.

    Example:
        >>> EvaluationGuard(stop_on_nonfinite_loss=False).nonfinite is None
        True
    """

    def on_exception(self, trainer: pl.Trainer, pl_module: Any, exception: BaseException) -> None:
        end = getattr(pl_module, "end_evaluation", None)
        if callable(end):
            end()
        super().on_exception(trainer, pl_module, exception)


class EvaluationSteps(pl.LightningModule):
    """The evaluation half of :class:`lstm_plugins.SequenceModel` (a mixin: the model calls
    :meth:`build_evaluation` once). Metrics are computed with ``compute()``, which synchronises
    them across processes, so every rank holds global values."""

    task: Any
    _hook: Any
    encode_carrying_state: Any

    def build_evaluation(self, extra_metrics: Mapping[str, Metric]) -> None:
        metrics = self.task.metrics(extra_metrics)
        self.val_metrics = metrics.clone(prefix="val/")
        self.val_loss = MeanMetric()
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_results: dict[str, Tensor] = {}
        """Test metrics of the last ``Trainer.test`` (vectors included), on the CPU."""
        self.evaluating: str | None = None
        """The evaluation stage in progress (between ``on_evaluation_start`` and its end)."""

    def start_evaluation(self, stage: str) -> None:
        """Fire ``on_evaluation_start`` for ``stage`` (``validate``, ``test``, ``predict``); the
        model's own loops do, and so do evaluations outside a Trainer (inference, export,
        generation), which then call :meth:`end_evaluation`."""
        self.evaluating = stage
        self._hook.on_evaluation_start(model=self, stage=stage)

    def end_evaluation(self) -> None:
        """Fire ``on_evaluation_end`` for the evaluation in progress, if there is one."""
        stage, self.evaluating = self.evaluating, None
        if stage is not None:
            self._hook.on_evaluation_end(model=self, stage=stage)

    def _predict(self, batch: Any, batch_index: int) -> Tensor:
        output = self.encode_carrying_state(batch, batch_index, self.evaluating or "evaluate")
        return self.task.predictions(output.logits)

    # --- validation -----------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self.start_evaluation("validate")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        predictions = self._predict(batch, batch_idx)
        targets = self.task.step_targets(batch.targets, batch.lengths)
        self.val_loss.update(self.task.loss(predictions, targets), weight=self.task.loss_weight(targets))
        self.val_metrics.update(*self.task.metric_inputs(predictions, targets))

    def on_validation_epoch_end(self) -> None:
        try:
            self._log_metrics(self.val_metrics, per_class=False, extra={"val/loss": self.val_loss})
        finally:
            self.end_evaluation()

    # --- test -------------------------------------------------------------------------------------

    def on_test_epoch_start(self) -> None:
        self.start_evaluation("test")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        targets = self.task.step_targets(batch.targets, batch.lengths)
        self.test_metrics.update(*self.task.metric_inputs(self._predict(batch, batch_idx), targets))

    def on_test_epoch_end(self) -> None:
        try:
            results = self._log_metrics(self.test_metrics, per_class=True)
            self.test_results = {name: value.detach().cpu() for name, value in results.items()}
        finally:
            self.end_evaluation()

    # --- predict ----------------------------------------------------------------------------------

    def on_predict_epoch_start(self) -> None:
        self.start_evaluation("predict")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """The task's predictions for a :class:`lstm_plugins.data.SequenceBatch` (class scores
        for a classifier, values for a regressor)."""
        return self._predict(batch, batch_idx)

    def on_predict_epoch_end(self) -> None:
        self.end_evaluation()

    # --- logging ----------------------------------------------------------------------------------

    def _log_metrics(
        self, metrics: MetricCollection, per_class: bool, extra: Mapping[str, Metric] | None = None
    ) -> dict[str, Tensor]:
        results = metrics.compute()
        metrics.reset()
        for name, metric in (extra or {}).items():
            results[name] = metric.compute()
            metric.reset()
        scalars = {name: value for name, value in results.items() if value.dim() == 0}
        if per_class:
            for name, value in results.items():
                for suffix, element in PER_ELEMENT_SUFFIXES.items():
                    if name.endswith(suffix) and value.dim() == 1:
                        base = name[: -len(suffix)]
                        scalars.update({f"{base}/{element}_{i}": v for i, v in enumerate(value)})
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "fit":
            # Validation during fit: one host copy, handed over directly (self.log costs ~1 ms
            # per value). Lightning discards what the sanity check logs; so does this.
            if not trainer.sanity_checking and scalars:
                publish(trainer, to_host(scalars), log_step(trainer))
            return results
        # validate() and test() return what was logged through Lightning. The values are already
        # global; sync_dist averages identical copies (exact) and tells Lightning they are synced.
        self.log_dict(scalars, sync_dist=True)
        return results
