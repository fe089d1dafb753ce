"""Hook specifications: every point at which a technique can act on training.

A technique is any object whose methods carry :data:`lstm_plugins.hookimpl` and are named after
a hook below (or ``@hookimpl(specname="...")``). Each implementation may accept any *subset* of
its hook's arguments. An unknown hook or argument is refused when the model is built.

Hooks are grouped by the phase of training in which they fire. Within one phase, implementations
run **in the order the techniques were given to the model** (first listed, first called), unless a
technique declares ``@hookimpl(tryfirst=True)`` or ``@hookimpl(trylast=True)``. Unless a hook says
otherwise, every implementation runs, the non-``None`` results are collected in a list, and a hook
documented without a return value ignores what implementations return.

Per-step hooks are on the hot path: keep tensors on the device, never ``.item()`` every step; log
with ``model.log_step_values({...})`` when :func:`lstm_plugins.toolkit.log_due` says so (one host
copy per logging step, on the rows of Lightning's ``self.log``); iterate
``model.cached_named_parameters()``. Forward-path changes are made once, in
:func:`configure_network`, never by a hook called inside ``forward``.

Checkpointed state is not a hook: see ``state_dict()`` in :class:`lstm_plugins.Technique`.

Example:
    >>> from lstm_plugins import hookimpl
    >>> class HiddenActivityPenalty:
    ...     '''Adds 1e-3 * mean(h^2) of the LSTM summary to the loss.'''
    ...     @hookimpl
    ...     def loss_terms(self, output):
    ...         return {"activity": 1e-3 * output.final_features.pow(2).mean()}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from lstm_plugins.techniques._markers import hookspec

if TYPE_CHECKING:
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import Callback
    from torchmetrics import Metric

    from lstm_plugins.model import ForwardOutput, SequenceModel

__all__ = [
    "compute_task_loss",
    "configure_callbacks",
    "configure_lr_scheduler",
    "configure_metrics",
    "configure_network",
    "configure_parameter_groups",
    "loss_terms",
    "on_evaluation_end",
    "on_evaluation_start",
    "on_fit_setup",
    "on_gradients_ready",
    "on_load_checkpoint",
    "on_loss_computed",
    "on_save_checkpoint",
    "on_train_epoch_end",
    "on_train_step_end",
    "transform_batch",
    "transform_gradients",
]

CHAINED_HOOKS = {"transform_batch": "batch"}
"""Chained hooks, with the argument each implementation receives from the previous one's result."""

EXCLUSIVE_HOOKS = {"compute_task_loss": "task_loss", "configure_lr_scheduler": "lr_scheduler"}
"""Hooks at most one technique of a model may implement, with the slot name they take."""

UNDO_HOOKS = frozenset({"on_evaluation_end"})
"""Hooks that undo something: every implementation runs even if one raises (the first error is
raised once all have run), so one failing technique never leaves another's change in place."""

EvaluationStage = Literal["validate", "test", "predict"]

# --- Model construction ---------------------------------------------------------------------


@hookspec
def configure_network(model: SequenceModel) -> None:
    """Change the network, once, while the model is being constructed.

    Fires inside the model's ``__init__``, after every part of the network exists and before
    metrics, callbacks and the optimizer. The forward pass, in order: ``model.embedding`` (token
    models; its ``weight_transform`` Sequential acts on the embedding matrix) →
    ``model.input_layers`` (Sequential on the padded ``(batch, time, features)`` input) →
    ``model.sequence_view`` (``None``, or ``(lstm_input, lengths) -> (lstm_input, lengths)``:
    what the LSTM reads as steps) → ``model.lstm`` (``torch.nn.LSTM``, ``batch_first``) run with
    ``model.weight_transforms`` (ModuleDict: weight name such as ``"weight_hh_l0"`` → module
    mapping it to the weight used in this pass) → ``model.sequence_layers`` (Sequential on the
    ``(batch, time, hidden * directions)`` outputs) → ``model.summary`` (``(outputs, lengths,
    bidirectional) -> (batch, features)``, the last valid step by default; a technique setting it
    claims ``exclusive = "summary"``), joined by each of ``model.branches``
    (``model.add_branch(name, module, size)``: ``module(features, lengths) -> (batch, size)`` on
    the input, beside the LSTM; rebuilds the head) → ``model.output_layers`` → ``model.head``.

    :param model: the model being built; ``model.task`` and ``model.techniques`` are set.

    May change: append to those Sequentials, fill the slots, add weight transforms, set the LSTM's
    ``dropout``, re-initialise weights. Off the fused kernel, set ``model.recurrence``
    (``recurrence(lstm_input, lengths, lstm, weights)``; claim ``exclusive = "recurrence"``, say
    so in the docs). Raise ``ValueError`` to refuse a model the technique cannot work with.
    """


@hookspec
def configure_metrics(model: SequenceModel) -> Mapping[str, Metric] | None:
    """Contribute extra ``torchmetrics`` metrics, once, at model construction.

    :param model: the model being built, after :func:`configure_network`.

    Return ``{name: fresh torchmetrics.Metric}`` taking ``(predictions, targets)``: cloned for
    validation and test, synchronised across processes, logged as ``val/<name>``, ``test/<name>``.
    """


@hookspec
def configure_callbacks(model: SequenceModel) -> Sequence[pl.Callback] | Callback | None:
    """Contribute Lightning callbacks, once per model (from ``LightningModule.configure_callbacks``).

    :param model: the model.

    Return a callback, a sequence of callbacks, or ``None``; they are added to the Trainer's
    callbacks (replacing a Trainer callback of the same type, as Lightning documents).
    """


# --- Fit setup and optimizer construction -----------------------------------------------------


@hookspec
def on_fit_setup(model: SequenceModel, trainer: pl.Trainer) -> None:
    """Check the technique against the Trainer, once per ``fit``, before the first step.

    Fires from ``LightningModule.setup("fit")`` on every process, before the optimizer is built,
    **before** the model is moved to its device and **before** a checkpoint given to
    ``fit(ckpt_path=...)`` is restored: create device state lazily, at the first step, and expect
    ``load_state_dict`` to run after this hook.

    :param model: the model; every module a technique added is in place.
    :param trainer: the Trainer that is about to fit.

    Raise ``ValueError`` to refuse an incompatible Trainer (for example a clipping technique when
    ``Trainer(gradient_clip_val=...)`` is set), naming both sides. May change: its own state.
    """


@hookspec
def configure_parameter_groups(model: SequenceModel, parameter_groups: list[dict[str, Any]]) -> None:
    """Shape the optimizer's parameter groups, once, before the optimizer is built.

    Fires from ``configure_optimizers``.

    :param model: the model.
    :param parameter_groups: starts as one group, ``[{"params": [...all trainable
        parameters...], "names": [...their qualified names...]}]``.

    May change: the list in place: split groups, set per-group options such as ``weight_decay``
    or ``lr``. Every parameter must stay in exactly one group and each group must keep its
    ``"names"`` aligned with its ``"params"`` (the core removes ``"names"`` before building the
    optimizer).
    """


@hookspec(firstresult=True)
def configure_lr_scheduler(model: SequenceModel, optimizer: torch.optim.Optimizer) -> Mapping[str, Any] | None:
    """Schedule the learning rate, once, right after the optimizer is built (an exclusive slot).

    :param model: the model (``model.trainer`` gives ``estimated_stepping_batches`` and the epochs).
    :param optimizer: the optimizer just built.

    Return Lightning's scheduler configuration (``{"scheduler": ..., "interval": "step",
    "monitor": "val/loss"}``) or ``None``; at most one technique may implement it.
    """


# --- Batch --------------------------------------------------------------------------------------


@hookspec
def transform_batch(model: SequenceModel, batch: Any, batch_index: int) -> Any:
    """Transform or observe a training batch, every training step, before the forward pass.

    Fires first in ``training_step`` (once per micro-batch under gradient accumulation), on the
    batch already on the model's device. Not called for validation, test or prediction batches.

    :param model: the model.
    :param batch: the batch (a :class:`lstm_plugins.data.SequenceBatch` with ``features``,
        ``lengths`` and ``targets``), as returned by the previous implementation.
    :param batch_index: the index of the batch in the epoch.

    **Chained**: implementations run in order and each receives the batch the previous one
    returned. Return a new batch (``batch._replace(features=...)``) to replace it, or ``None`` to
    leave it as it is (observe only: arming a diagnostic). Lengths must stay within the padded
    time dimension. Targets may change form when the loss accepts it, for example class
    probabilities ``(batch, num_classes)`` for a classifier (cross-entropy takes both).
    """


# --- Loss -------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def compute_task_loss(
    model: SequenceModel, batch: Any, output: ForwardOutput, predictions: torch.Tensor
) -> torch.Tensor | None:
    """Replace the task's loss, every training step (an exclusive slot).

    Fires in ``training_step`` after the forward pass, instead of the task's own loss
    (cross-entropy for a classifier, MSE or MAE for a regressor). At most one technique of a
    model may implement it (the ``task_loss`` slot; two are refused at construction, naming
    both). Validation loss stays the task's own, so runs with and without the technique compare.

    :param model: the model (``model.task`` is the task object; ``model.task.loss(predictions,
        targets)`` is the loss being replaced).
    :param batch: the training batch, after :func:`transform_batch`.
    :param output: the :class:`lstm_plugins.ForwardOutput` of the batch.
    :param predictions: the task's predictions (class scores, values) the loss is taken on.

    Return a scalar tensor on the model's device, or ``None`` to keep the task's loss
    (``firstresult``). The returned value is logged as ``train/task_loss``.
    """


@hookspec
def loss_terms(
    model: SequenceModel, batch: Any, output: ForwardOutput, task_loss: torch.Tensor
) -> Mapping[str, torch.Tensor] | None:
    """Contribute named terms to the optimized loss, every training step.

    Fires in ``training_step`` after the task loss.

    :param model: the model.
    :param batch: the training batch, after :func:`transform_batch`.
    :param output: the :class:`lstm_plugins.ForwardOutput` (``logits``, ``sequence_output``,
        ``raw_sequence_output``, ``final_features``, ``lengths``).
    :param task_loss: the task loss (or its replacement from :func:`compute_task_loss`).

    Return a mapping from a term name to a scalar tensor on the model's device, or ``None``.
    The core sums every term into the loss that is back-propagated and logs each one as
    ``train/<name>``. Two techniques returning the same name is an error. May change: nothing
    else; do not call ``backward``.
    """


@hookspec
def on_loss_computed(
    model: SequenceModel,
    batch: Any,
    output: ForwardOutput,
    predictions: torch.Tensor,
    loss: torch.Tensor,
    task_loss: torch.Tensor,
    terms: Mapping[str, torch.Tensor],
) -> None:
    """Observe the loss of a training step, after every term is summed, before ``backward``.

    Fires last in ``training_step`` (once per micro-batch under gradient accumulation).

    :param model: the model.
    :param batch: the training batch, after :func:`transform_batch`.
    :param output: the :class:`lstm_plugins.ForwardOutput` of the batch.
    :param predictions: the task's predictions the loss was taken on.
    :param loss: the loss that will be back-propagated.
    :param task_loss: the task loss alone.
    :param terms: the named terms of :func:`loss_terms` (read only).

    May change: the technique's own state only (keep device tensors; do not synchronise).
    """


# --- Gradients ----------------------------------------------------------------------------------


@hookspec
def on_gradients_ready(model: SequenceModel, optimizer: torch.optim.Optimizer) -> None:
    """Look at the gradients of a step, after they are complete and before they are transformed.

    Fires from Lightning's ``on_before_optimizer_step``, once per optimizer step: after
    ``backward`` and gradient accumulation, after DDP has averaged gradients across processes,
    after AMP has unscaled them, and before :func:`transform_gradients`.

    :param model: the model; ``model.trainer.global_step`` is the index of the optimizer step
        about to happen.
    :param optimizer: the optimizer about to step.

    May change: nothing; observe only.
    """


@hookspec
def transform_gradients(model: SequenceModel, optimizer: torch.optim.Optimizer) -> None:
    """Transform the gradients in place, just before the optimizer step.

    Fires from Lightning's ``configure_gradient_clipping`` slot, after :func:`on_gradients_ready`;
    without an implementation, the Trainer's own ``gradient_clip_val`` applies as usual.

    :param model: the model.
    :param optimizer: the optimizer about to step; its ``param_groups`` hold the parameters.

    May change: ``param.grad`` of the optimizer's parameters, in place. When two techniques
    transform gradients, the order is declared with ``tryfirst``/``trylast``.
    """


# --- Step end and epoch end -------------------------------------------------------------------


@hookspec
def on_train_step_end(model: SequenceModel, batch: Any, step: int) -> None:
    """React once per optimizer step, after the optimizer has stepped.

    Fires after ``optimizer.step()`` (manual optimization: at the batch's end), before the
    Trainer's callbacks see the batch's end; once per optimizer step under gradient accumulation.

    :param model: the model, with the updated weights.
    :param batch: the last micro-batch of the step, after :func:`transform_batch`.
    :param step: the index of the optimizer step just taken (0 for the first).

    May change: the technique's own state and schedules (weight averages, statistics), model
    attributes (for example a dropout probability).
    """


@hookspec
def on_train_epoch_end(model: SequenceModel) -> None:
    """React at the end of a training epoch (Lightning's ``on_train_epoch_end``, same meaning).

    :param model: the model.

    May change: the technique's own state and schedules.
    """


# --- Evaluation -------------------------------------------------------------------------------


@hookspec
def on_evaluation_start(model: SequenceModel, stage: EvaluationStage) -> None:
    """Prepare the model for evaluation, before the first validation, test or predict batch.

    Fires from ``on_validation_epoch_start``, ``on_test_epoch_start`` and
    ``on_predict_epoch_start``, in eval mode; also for the sanity check.

    :param model: the model.
    :param stage: ``"validate"`` (during ``fit`` or ``Trainer.validate``), ``"test"`` or
        ``"predict"``.

    May change: the weights, if :func:`on_evaluation_end` restores them (swapping in averaged
    weights, for example).
    """


@hookspec
def on_evaluation_end(model: SequenceModel, stage: EvaluationStage) -> None:
    """Undo :func:`on_evaluation_start`, after the last evaluation batch.

    Fires from ``on_validation_epoch_end``, ``on_test_epoch_end`` and ``on_predict_epoch_end``,
    after the epoch's metrics are computed and before Lightning's checkpoint and early-stopping
    callbacks run (so checkpoints hold the training weights).

    :param model: the model.
    :param stage: as for :func:`on_evaluation_start`.

    Also fires when evaluation stops with an exception (from the Trainer's ``on_exception``), and
    every implementation runs even if one raises, so swapped weights are restored whatever happens.

    May change: restore what :func:`on_evaluation_start` changed.
    """


# --- Checkpoint (low level) -------------------------------------------------------------------


@hookspec
def on_save_checkpoint(model: SequenceModel, checkpoint: dict[str, Any]) -> None:
    """Read or add to a Lightning checkpoint that is being written (low level).

    Prefer ``Technique.state_dict()``, which the core stores and validates. Fires after the core
    has written every technique's state under ``checkpoint["lstm_plugins"]``.

    :param model: the model.
    :param checkpoint: the checkpoint dict; store plain data so it loads with ``weights_only=True``.
    """


@hookspec
def on_load_checkpoint(model: SequenceModel, checkpoint: dict[str, Any]) -> None:
    """Read a Lightning checkpoint that is being loaded (low level).

    Fires after the core has restored every technique's ``load_state_dict`` and before the
    weights are restored.

    :param model: the model.
    :param checkpoint: the checkpoint dict.
    """
