"""Hook specifications: every point at which a technique can act on training.

A technique is any object whose methods are decorated with :data:`lstm_plugins.hookimpl` and
named after a hook below. It implements only the hooks it needs, and each implementation may
accept any *subset* of the hook's arguments (pluggy passes them by name). A method named like a
hook but unknown to this module, or asking for an argument the hook does not have, is refused
when the model is built, with the technique's name in the message.

Hooks are grouped by the phase of training in which they fire. Within one phase, implementations
run **in the order the techniques were given to the model** (first listed, first called), unless a
technique declares ``@hookimpl(tryfirst=True)`` or ``@hookimpl(trylast=True)``. Unless a hook says
otherwise it is *not* ``firstresult``: every implementation runs and return values are collected
in a list, in call order.

Hooks that fire every step (:func:`loss_terms`, :func:`on_gradients_ready`,
:func:`transform_gradients`, :func:`on_train_batch_end`) are on the hot path: keep them cheap,
keep tensors on the device and never call ``.item()`` or ``.cpu()`` on every step. Log per-step
values with ``model.log_step_values({...})``, on an interval: the values stay on the device and
reach the loggers in one host copy per step, where ``model.log`` costs about 0.5 ms per value.
Iterate ``model.cached_named_parameters()`` rather than ``model.named_parameters()``, which
walks every submodule (metrics included) on each call.
Changes to the
forward computation are made once in :func:`configure_model` (insert modules, wrap weights), never
by a hook called inside ``forward``.

Example:
    >>> import torch
    >>> from lstm_plugins import hookimpl
    >>> class HiddenActivityPenalty:
    ...     '''Adds alpha * mean(h^2) of the LSTM outputs to the loss.'''
    ...     def __init__(self, alpha: float = 1e-3) -> None:
    ...         self.alpha = alpha
    ...     @hookimpl
    ...     def loss_terms(self, output):
    ...         return {"activity": self.alpha * output.final_features.pow(2).mean()}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lstm_plugins._markers import hookspec

if TYPE_CHECKING:
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import Callback
    from torchmetrics import Metric

    from lstm_plugins._forward import ForwardOutput
    from lstm_plugins._module import SequenceModel

__all__ = [
    "configure_callbacks",
    "configure_metrics",
    "configure_model",
    "configure_parameter_groups",
    "loss_terms",
    "on_fit_setup",
    "on_gradients_ready",
    "on_load_checkpoint",
    "on_save_checkpoint",
    "on_train_batch_end",
    "on_train_epoch_end",
    "transform_gradients",
]


# --- Model construction ---------------------------------------------------------------------


@hookspec
def configure_model(model: SequenceModel) -> None:
    """Change the network, once, while the model is being constructed.

    Fires inside the model's ``__init__``, after every part of the network exists and before
    any optimizer is built. The forward pass is, in order:

    ``model.embedding`` (token models only; its ``weight_transform`` Sequential acts on the
    embedding matrix) → ``model.input_layers`` (Sequential on the padded ``(batch, time,
    features)`` input) → ``model.lstm`` (a ``torch.nn.LSTM``, ``batch_first=True``) run with
    ``model.weight_transforms`` (ModuleDict: LSTM weight name such as ``"weight_hh_l0"`` → module
    mapping that weight to the one used in this pass) → ``model.sequence_layers`` (Sequential on
    the ``(batch, time, hidden * directions)`` outputs) → the last-step summary →
    ``model.output_layers`` (Sequential on ``(batch, hidden * directions)``) → ``model.head``.

    May change: append to those Sequentials, add weight transforms, set attributes of
    ``model.lstm`` (such as its inter-layer ``dropout``), re-initialise weights. A technique that
    cannot run on the fused kernel may set ``model.recurrence`` to a module called as
    ``recurrence(lstm_input, lengths, lstm, weights)`` returning the sequence outputs (it must
    claim the ``exclusive = "recurrence"`` slot, and say so in its docs). Raise ``ValueError`` to
    refuse a model the technique cannot work with (it surfaces from the model's constructor).

    Return value: ignored.
    """


@hookspec
def on_fit_setup(model: SequenceModel, trainer: pl.Trainer) -> None:
    """Check the technique against the Trainer, once, before the first training step.

    Fires from ``LightningModule.setup("fit")`` on every process, before the optimizer is built.
    Raise ``ValueError`` to refuse an incompatible Trainer (for example a clipping technique when
    ``Trainer(gradient_clip_val=...)`` is set), naming both sides.

    May change: the technique's own state (for example read ``trainer.log_every_n_steps``).
    Return value: ignored.
    """


# --- Optimizer construction -------------------------------------------------------------------


@hookspec
def configure_parameter_groups(model: SequenceModel, parameter_groups: list[dict[str, Any]]) -> None:
    """Shape the optimizer's parameter groups, once, before the optimizer is built.

    Fires from ``configure_optimizers``. ``parameter_groups`` starts as one group,
    ``[{"params": [...all trainable parameters...], "names": [...their qualified names...]}]``.

    May change: the list in place: split groups, set per-group options such as
    ``weight_decay`` or ``lr``. Every parameter must stay in exactly one group and each group must
    keep its ``"names"`` aligned with its ``"params"`` (the core removes ``"names"`` before
    building the optimizer). Return value: ignored.
    """


# --- Loss -------------------------------------------------------------------------------------


@hookspec
def loss_terms(
    model: SequenceModel, batch: Any, output: ForwardOutput, task_loss: torch.Tensor
) -> Mapping[str, torch.Tensor] | None:
    """Contribute named terms to the optimized loss, every training step.

    Fires in ``training_step`` after the task loss (cross-entropy) is computed from
    ``output`` (a :class:`lstm_plugins.ForwardOutput` with ``logits``, ``sequence_output``,
    ``final_features`` and ``lengths``) for ``batch`` (a :class:`lstm_plugins.data.SequenceBatch`).

    Return a mapping from a term name to a scalar tensor on the model's device, or ``None``.
    The core sums every term into the loss that is back-propagated and logs each one separately
    as ``train/<name>``. Two techniques returning the same name is an error.

    May change: nothing else; do not call ``backward``.
    """


# --- Gradients ready (observe) ----------------------------------------------------------------


@hookspec
def on_gradients_ready(model: SequenceModel, optimizer: torch.optim.Optimizer) -> None:
    """Look at the gradients of a step, after they are complete and before they are transformed.

    Fires from Lightning's ``on_before_optimizer_step``: after ``backward`` and gradient
    accumulation, after DDP has averaged gradients across processes, after AMP has unscaled them,
    and before :func:`transform_gradients` (clipping). Use it for gradient-norm logging and
    diagnostics; ``model.trainer.global_step`` is the index of the optimizer step about to happen.

    May change: nothing; observe only (log through ``model.log_step_values``, on an interval).
    Return value: ignored.
    """


# --- Gradients transform ----------------------------------------------------------------------


@hookspec
def transform_gradients(model: SequenceModel, optimizer: torch.optim.Optimizer) -> None:
    """Transform the gradients in place, just before the optimizer step.

    Fires from Lightning's ``configure_gradient_clipping`` slot, after every
    :func:`on_gradients_ready` implementation. When no technique implements this hook, the
    Trainer's own ``gradient_clip_val`` applies as usual.

    May change: ``param.grad`` of the optimizer's parameters, in place. When two techniques
    transform gradients, the order is declared with ``tryfirst``/``trylast``. Return value: ignored.
    """


# --- Step end and epoch end -------------------------------------------------------------------


@hookspec
def on_train_batch_end(model: SequenceModel, batch: Any, batch_index: int) -> None:
    """React after the optimizer step of a training batch.

    Fires from Lightning's ``on_train_batch_end``. May change: the technique's own state and
    schedules, model attributes (for example a dropout probability). Return value: ignored.
    """


@hookspec
def on_train_epoch_end(model: SequenceModel) -> None:
    """React at the end of a training epoch (before validation metrics of that epoch are final).

    May change: the technique's own state and schedules. Return value: ignored.
    """


# --- Metrics and callbacks --------------------------------------------------------------------


@hookspec
def configure_metrics(model: SequenceModel) -> Mapping[str, Metric] | None:
    """Contribute extra ``torchmetrics`` metrics, once, at model construction.

    Return a mapping from a metric name to a fresh ``torchmetrics.Metric`` taking
    ``(logits, targets)``; it is cloned for validation and test, updated every evaluation step,
    computed (synchronised across processes) at epoch end and logged as ``val/<name>`` and
    ``test/<name>``. A name that is already used is an error.
    """


@hookspec
def configure_callbacks(model: SequenceModel) -> Sequence[pl.Callback] | Callback | None:
    """Contribute Lightning callbacks, once, when the Trainer attaches the model.

    Return a callback, a sequence of callbacks, or ``None``. They are added to the Trainer's
    callbacks through ``LightningModule.configure_callbacks`` (a returned callback replaces a
    Trainer callback of the same type, as Lightning documents).
    """


# --- Checkpoint -------------------------------------------------------------------------------


@hookspec
def on_save_checkpoint(model: SequenceModel, checkpoint: dict[str, Any]) -> None:
    """Store technique state in a Lightning checkpoint that is being written.

    Store plain data (tensors, numbers, strings, lists, dicts) under
    ``checkpoint["lstm_plugins"]["state"][<technique name>]``, a dict the core creates, so that
    the checkpoint loads with ``torch.load(weights_only=True)``. Return value: ignored.
    """


@hookspec
def on_load_checkpoint(model: SequenceModel, checkpoint: dict[str, Any]) -> None:
    """Restore technique state from a Lightning checkpoint that is being read.

    Fires before the weights are restored. Read what :func:`on_save_checkpoint` stored; a missing
    key means the checkpoint was written without the technique. Return value: ignored.
    """
