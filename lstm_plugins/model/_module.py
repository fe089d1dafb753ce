"""``SequenceModel``: the Lightning module that runs the network, the task and the technique stack.

This module only wires the parts together and fires the hooks at their moments; each job lives
in its own module: the network (:mod:`._network`), the task (:mod:`._tasks`), evaluation
(:mod:`._evaluation`), per-step logging, checkpoint state, optimizers and spawn pickling
(:mod:`lstm_plugins.training`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor, nn

from lstm_plugins import validation as check
from lstm_plugins.model._evaluation import EvaluationGuard, EvaluationSteps
from lstm_plugins.model._network import SequenceNetwork
from lstm_plugins.model._tasks import Task
from lstm_plugins.techniques._manager import build_technique_manager
from lstm_plugins.techniques._registry import TechniqueSpec, resolve_technique, technique_specs
from lstm_plugins.toolkit import log_due
from lstm_plugins.training._checkpoint_check import check_local_checkpoint
from lstm_plugins.training._denormals import FlushDenormals
from lstm_plugins.training._nonfinite import skips_nonfinite_steps
from lstm_plugins.training._optimizers import OPTIMIZERS, OptimizerName, configure_optimization
from lstm_plugins.training._pickling import PER_PROCESS_ATTRIBUTES, unshare_tensors
from lstm_plugins.training._state import load_state, restore_rng, save_state
from lstm_plugins.training._step_log import StepLogger, as_scalar


class SequenceModel(EvaluationSteps, SequenceNetwork, pl.LightningModule):
    """What every task shares: the network (:class:`SequenceNetwork`), a :class:`Task`, and the
    technique stack with its hooks.

    :class:`LSTMClassifier` and :class:`LSTMRegressor` are this model with a task. Variable-length
    batches (:class:`lstm_plugins.data.SequenceBatch`) are exact and stay on the fused kernel on
    CPU (oneDNN) and CUDA (cuDNN). Each sequence is summarised by the forward direction's output at
    its last valid step (and, when bidirectional, the backward direction's output at step 0).

    Args:
        input_size: features per time step (the embedding size for token inputs).
        task: what the model learns (:class:`ClassificationTask`, :class:`RegressionTask`, ...).
        hidden_size: LSTM hidden units per direction.
        num_layers: stacked LSTM layers.
        bidirectional: add a backward direction.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"rmsprop"``; the fused implementation
            is used where the device has one.
        learning_rate: the optimizer's learning rate.
        techniques: the technique stack: technique objects, registered names, or
            ``{"name": ..., **arguments}`` mappings; called in this order within each hook.
        num_embeddings: for token inputs: the vocabulary size. Batches then carry
            ``(batch, time)`` integer ids, embedded into ``input_size`` features by
            ``model.embedding`` (a :class:`TokenEmbedding`).
        stop_on_nonfinite_loss: stop training with ``NonFiniteLossError`` when the training
            loss is NaN or infinite (read on the logging steps, no per-step sync; see
            :class:`lstm_plugins.training.NonFiniteLossStop`). Ignored when a technique skips
            such steps itself (``nonfinite_guard``). Also an attribute, settable before ``fit``.

    A core callback attaches to every Trainer that runs the model (with
    :class:`lstm_plugins.training.Safeguards`): checkpoints written atomically beside their
    target (unless the Trainer has a ``CheckpointIO`` of the user's), SIGTERM saving a resumable
    checkpoint, and the non-finite loss stop.

    Example:
        >>> from lstm_plugins import ClassificationTask, SequenceModel
        >>> model = SequenceModel(12, ClassificationTask(9), techniques=["gradient_clipping"])
        >>> model.head
        Linear(in_features=64, out_features=9, bias=True)
    """

    def __init__(
        self,
        input_size: int,
        task: Task,
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
        super().__init__()
        if not isinstance(task, Task):
            raise TypeError(f"Expected `task` to be a lstm_plugins.Task, but got {task!r}.")
        self.task = task
        self.optimizer_name = check.choice("optimizer", optimizer, tuple(OPTIMIZERS))
        self.learning_rate = check.positive_float("learning_rate", learning_rate)
        if isinstance(techniques, (str, Mapping)) or not isinstance(techniques, Sequence):
            raise TypeError(
                f"Expected `techniques` to be a list of techniques, names or mappings, but got {techniques!r}."
            )
        self.techniques: tuple[object, ...] = tuple(resolve_technique(spec) for spec in techniques)
        self._build_technique_manager()
        self.save_hyperparameters(ignore=["techniques", "task"])
        specs = technique_specs(self.techniques)
        if specs is not None:
            # Named techniques are saved as specs, so load_from_checkpoint can rebuild the stack;
            # a stack with unnamed techniques must be passed again to load_from_checkpoint.
            self.hparams["techniques"] = specs

        self.build_network(input_size, task.output_size, hidden_size, num_layers, bidirectional, num_embeddings)
        self._hook.configure_network(model=self)
        self._check_task_network()
        self.build_evaluation(self._contributed_metrics())
        self.step_logger = StepLogger()
        self._named_parameters: tuple[tuple[str, nn.Parameter], ...] | None = None
        self._resumed_rng: Mapping[str, Any] | None = None
        self._train_batch: Any = None  # the last training micro-batch, for on_train_step_end
        self.carried_state: dict[str, tuple[Tensor, Tensor]] = {}
        """Per stage (``train``, ``validate``, ...), the LSTM state carried to the next chunk when
        the task carries state; the training one is kept in checkpoints."""
        self._steps_ended = 0  # optimizer steps whose on_train_step_end has fired
        self._callbacks: list[Callback] | None = None
        self.stop_on_nonfinite_loss = check.boolean("stop_on_nonfinite_loss", stop_on_nonfinite_loss)
        self.flush_denormals = True
        """Flush denormal floats to zero while a Trainer runs this model (fit, validate, test,
        predict), restoring the setting afterwards; set it to ``False`` before the Trainer first
        attaches the model to keep denormals (see :class:`lstm_plugins.training.FlushDenormals`)."""

    def _check_task_network(self) -> None:
        if self.task.carries_state and self.recurrence is not None:
            raise ValueError(
                f"The `{self.task.name}` task carries the LSTM's state from chunk to chunk, which the "
                f"`recurrence` slot ({self.recurrence!r}) does not support; remove the technique that "
                "fills it."
            )
        self.task.check_network(self)

    def _contributed_metrics(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for contributed in self._hook.configure_metrics(model=self):
            for name, metric in (contributed or {}).items():
                if name in extra:
                    raise ValueError(f"Two techniques contribute a metric named `{name}`.")
                extra[name] = metric
        return extra

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Lightning's ``load_from_checkpoint``, but ``weights_only=True`` by default.

        The checkpoint is read with ``torch.load(weights_only=True)``, which refuses arbitrary
        pickled objects, so a crafted file cannot run code. The technique stack is rebuilt by
        name from the saved hyper-parameters; a technique that is not installed is named in the
        error. Pass ``techniques=[...]`` to supply a stack that was not saved by name.
        """
        try:
            return super().load_from_checkpoint(  # type: ignore[return-value]
                checkpoint_path, map_location=map_location, hparams_file=hparams_file, strict=strict,
                weights_only=weights_only, **kwargs,
            )
        except Exception:  # read again only on failure: a refusal that names the file, if it is the file
            check_local_checkpoint(checkpoint_path, weights_only=weights_only)
            raise

    # --- techniques and processes ---------------------------------------------------------------

    def _build_technique_manager(self) -> None:
        self.plugin_manager = build_technique_manager(self.techniques)
        # The hooks as the core calls them: direct calls in pluggy's order (see HookCalls).
        self._hook = self.plugin_manager.hook_calls

    def __getstate__(self) -> dict[str, Any]:
        # The plugin manager holds modules and is rebuilt on unpickling (spawn-based strategies).
        state = self.__dict__.copy()
        for name in PER_PROCESS_ATTRIBUTES:
            state.pop(name, None)
        state["step_logger"] = StepLogger()  # queued values belong to the process that queued them
        state["_named_parameters"] = None
        state["_train_batch"] = None
        state["_callbacks"] = None
        state["carried_state"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        unshare_tensors(self.techniques)
        self._build_technique_manager()

    def cached_named_parameters(self) -> tuple[tuple[str, nn.Parameter], ...]:
        """``tuple(self.named_parameters())``, computed once per fit: what per-step hooks should
        iterate.

        ``named_parameters()`` walks every submodule, and torchmetrics metrics hash their state
        tensors when visited: about 50 µs per call at small sizes, every step. The tuple is
        rebuilt at the start of each ``fit`` (``setup("fit")``) and on first use after it.
        Moving the model between devices keeps it valid (parameters are updated in place).
        """
        cached = self._named_parameters
        if cached is None:
            cached = self._named_parameters = tuple(self.named_parameters())
        return cached

    def encode_carrying_state(self, batch: Any, batch_index: int, stage: str) -> Any:
        """:meth:`encode` a batch; for a task that carries state, from the state the previous
        chunk of this stage left (none at a loader's first batch, so every epoch starts afresh;
        a fit resumed mid-epoch continues from the checkpoint's), detached at the boundary."""
        if not self.task.carries_state:
            return self.encode(batch.features, batch.lengths)
        state = None if batch_index == 0 else self.carried_state.get(stage)
        if state is not None and state[0].device != batch.features.device:
            state = (state[0].to(batch.features.device), state[1].to(batch.features.device))
        output = self.encode(batch.features, batch.lengths, state)
        # Detached: gradients never cross a chunk boundary (truncated backpropagation).
        self.carried_state[stage] = (output.state[0].detach(), output.state[1].detach())
        return output

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """Predictions for a zero-padded ``(batch, time, features)`` batch with ``(batch,)``
        valid lengths: class scores for a classifier, values for a regressor."""
        return self.task.predictions(self.encode(features, lengths).logits)

    # --- per-step values: queued on the device, one host copy per step ----------------------

    def log_step_values(self, values: Mapping[str, Tensor | float]) -> None:
        """Log scalar training values of the current step, the cheap way.

        Lightning's ``self.log`` costs about half a millisecond of host time per value. Here the
        values are only queued (detached, still on their device: no host synchronisation). After
        the optimizer step, and again after ``on_train_batch_end`` if something was queued there,
        the queue is copied to the host in one transfer per device and handed to every logger at
        Lightning's step, and to ``trainer.callback_metrics`` / ``trainer.logged_metrics`` (so
        ``ModelCheckpoint(monitor=...)`` and ``EarlyStopping`` can use them).

        Call it on the steps :func:`lstm_plugins.toolkit.log_due` names, so the values land on
        the rows of Lightning's ``self.log``. A name logged twice in one step keeps the last
        value. In validation and test the values go through ``self.log_dict`` with Lightning's
        defaults (averaged over the epoch); without a Trainer nothing is logged.

        Example:
            >>> import torch
            >>> from lstm_plugins import LSTMClassifier, Technique, hookimpl, toolkit
            >>> class HeadGradientNorm(Technique):
            ...     name = "head_gradient_norm"
            ...     @hookimpl
            ...     def on_gradients_ready(self, model):
            ...         if toolkit.log_due(model.trainer):
            ...             norm = torch.linalg.vector_norm(model.head.weight.grad)
            ...             model.log_step_values({"head_gradient_norm/weight": norm})
            >>> model = LSTMClassifier(12, 9, techniques=[HeadGradientNorm()])
        """
        checked = {name: as_scalar(name, value) for name, value in values.items()}
        trainer = self._trainer
        if trainer is None or not trainer.training:
            if trainer is not None:
                self.log_dict(checked)  # Lightning's defaults: averaged over the epoch
            return
        self.step_logger.queue(trainer, checked)

    # --- training -----------------------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        hook = self._hook
        batch = hook.transform_batch(model=self, batch=batch, batch_index=batch_idx)
        self._train_batch = batch
        output = self.encode_carrying_state(batch, batch_idx, "train")
        predictions = self.task.predictions(output.logits)
        targets = self.task.step_targets(batch.targets, batch.lengths)
        if targets is not batch.targets:  # a per-step task masked padded steps
            batch = batch._replace(targets=targets)
        task_loss = hook.compute_task_loss(model=self, batch=batch, output=output, predictions=predictions)
        if task_loss is None:
            task_loss = self.task.loss(predictions, batch.targets)
        loss = task_loss
        terms: dict[str, Tensor] = {}
        for contributed in hook.loss_terms(model=self, batch=batch, output=output, task_loss=task_loss):
            for name, value in contributed.items():
                if name in terms:
                    raise ValueError(f"Two techniques return a loss term named `{name}`.")
                terms[name] = value
                loss = loss + value
        hook.on_loss_computed(
            model=self, batch=batch, output=output, predictions=predictions, loss=loss, task_loss=task_loss, terms=terms
        )
        if log_due(self._trainer):
            logged = {"train/loss": loss, "train/task_loss": task_loss}
            logged.update({f"train/{name}": value for name, value in terms.items()})
            self.log_step_values(logged)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._hook.on_gradients_ready(model=self, optimizer=optimizer)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        if self._hook.implemented("transform_gradients"):
            self._hook.transform_gradients(model=self, optimizer=optimizer)
        else:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # global_step counts this step once the hook returns: here it is this step's index.
        self._end_train_step(self.trainer.global_step)
        # Before the callbacks' on_train_batch_end, so ModelCheckpoint and EarlyStopping see them.
        self.step_logger.flush(self._trainer)

    def _end_train_step(self, step: int) -> None:
        self._steps_ended = step + 1
        self._hook.on_train_step_end(model=self, batch=self._train_batch, step=step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.trainer.global_step > self._steps_ended:
            # The optimizer stepped outside optimizer_step: manual optimization, or an
            # optimizer_step override that does not call super().
            self._end_train_step(self.trainer.global_step - 1)
        # While gradients accumulate, values wait for the stepping batch; the last, partial
        # accumulation of an epoch is flushed at the epoch's end, at its own step.
        accumulating = (
            self.automatic_optimization
            and (batch_idx + 1) % max(int(self.trainer.accumulate_grad_batches), 1) != 0
        )
        if not accumulating:
            self.step_logger.flush(self._trainer)

    def on_train_epoch_end(self) -> None:
        self.step_logger.flush(self._trainer)  # the last batch's, at its own step
        self.step_logger.in_epoch_end = True
        try:
            self._hook.on_train_epoch_end(model=self)
            self.step_logger.flush(self._trainer)
        finally:
            self.step_logger.in_epoch_end = False

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._named_parameters = None  # techniques may add modules up to here
            self.step_logger = StepLogger()  # nothing left over from an interrupted fit
            self._check_datamodule()
            self._hook.on_fit_setup(model=self, trainer=self.trainer)

    def on_train_start(self) -> None:
        self._steps_ended = self.trainer.global_step  # a resumed fit starts counting here
        # Restored here rather than in on_load_checkpoint, which also fires for inference loads.
        if self._resumed_rng is not None:
            restore_rng(self._resumed_rng)
            self._resumed_rng = None

    def _check_datamodule(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        # Token models read ids from a vocabulary; feature models read `input_size` features.
        inputs = (
            ("num_embeddings", "vocab_size", self.embedding.num_embeddings)
            if self.embedding is not None
            else ("input_size", "num_features", self.input_size)
        )
        checks = (inputs, *self.task.data_checks())
        for name, attribute, expected in checks:
            found = getattr(datamodule, attribute, None)
            if isinstance(found, int) and not isinstance(found, bool) and found != expected:
                raise ValueError(
                    f"The model has `{name}`={expected} but the data module has "
                    f"`{attribute}`={found}; build the model with {name}={found}."
                )

    def configure_optimizers(self) -> Any:
        return configure_optimization(self, self.optimizer_name, self.learning_rate)

    def configure_callbacks(self) -> list[Callback]:
        # Built once, so every fit, validate and test attaches the same objects; those the Trainer
        # already holds (from an earlier fit) are not returned again, which would make Lightning
        # replace them and announce it.
        if self._callbacks is None:
            stop = self.stop_on_nonfinite_loss and not skips_nonfinite_steps(self.techniques)
            guard = EvaluationGuard(stop_on_nonfinite_loss=stop)  # with the Safeguards: one callback
            self._callbacks = [guard, *([FlushDenormals()] if self.flush_denormals else [])]
            for contributed in self._hook.configure_callbacks(model=self):
                self._callbacks.extend([contributed] if isinstance(contributed, Callback) else contributed)
        attached = {id(callback) for callback in getattr(self._trainer, "callbacks", ())}
        return [callback for callback in self._callbacks if id(callback) not in attached]

    # --- checkpoint ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_state(self, checkpoint)
        self._hook.on_save_checkpoint(model=self, checkpoint=checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_rng = load_state(self, checkpoint)
        self._hook.on_load_checkpoint(model=self, checkpoint=checkpoint)
