"""``LSTMClassifier``: the Lightning module that hosts the fused LSTM and the technique stack."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric, MetricCollection

from lstm_plugins import validation as check
from lstm_plugins._forward import ForwardOutput, last_step_summary, run_lstm
from lstm_plugins._layers import TokenEmbedding
from lstm_plugins._manager import build_plugin_manager
from lstm_plugins._metrics import PER_CLASS_SUFFIX, classification_metrics, regression_metrics
from lstm_plugins._registry import TechniqueSpec, resolve_technique, technique_specs
from lstm_plugins._technique import technique_name

OptimizerName = Literal["adam", "adamw", "sgd", "rmsprop"]
_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}
CHECKPOINT_KEY = "lstm_plugins"


def _as_scalar(name: str, value: Any) -> Any:
    """``value`` if it is one number (a one-element tensor becomes 0-d); ``ValueError`` for a
    tensor of several elements, ``TypeError`` for anything else."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"Expected `{name}` to be a single value, but got a tensor of shape {tuple(value.shape)}."
            )
        return value.reshape(())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Expected `{name}` to be a number or a one-element tensor, but got {value!r}.")
    return value


class _StepLog:
    """Values queued by ``log_step_values`` until the step's flush, and where the step stands."""

    __slots__ = ("tensors", "numbers", "step", "in_epoch_end")

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.numbers: dict[str, float] = {}
        self.step = 0  # the optimizer step the queued values belong to
        self.in_epoch_end = False  # values queued by on_train_epoch_end hooks


def _logging_step(trainer: Any) -> int:
    """The step Lightning gives the loggers for values logged now in a training batch: the
    count of batches that stepped the optimizer before this one."""
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    return int(getattr(epoch_loop, "_batches_that_stepped", trainer.global_step))


def _to_host(values: Mapping[str, Tensor]) -> dict[str, float]:
    """Scalar tensors as Python floats: one stack and one host copy per device."""
    by_device: dict[torch.device, list[str]] = {}
    for name, value in values.items():
        by_device.setdefault(value.device, []).append(name)
    host: dict[str, float] = {}
    for device, names in by_device.items():
        tensors = [values[name] for name in names]  # 0-d (log_step_values made them so)
        if any(tensor.dtype != tensors[0].dtype for tensor in tensors):
            # Mixed dtypes (a counter among float values): float64 keeps both exact; MPS has none.
            wide = torch.float32 if device.type == "mps" else torch.float64
            tensors = [tensor.to(wide) for tensor in tensors]
        host.update(zip(names, torch.stack(tensors).cpu().tolist()))
    return host


def _unshare_tensors(value: Any, seen: set[int]) -> Any:
    """``value`` with every shared-memory tensor in it (not parameters, not inside modules)
    replaced by a private copy; containers and plain objects are updated in place."""
    if isinstance(value, (nn.Module, nn.Parameter)):
        return value
    if isinstance(value, Tensor):
        return value.clone() if value.is_shared() else value
    if id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _unshare_tensors(item, seen)
    elif isinstance(value, list):
        value[:] = [_unshare_tensors(item, seen) for item in value]
    elif isinstance(value, tuple):
        items = [_unshare_tensors(item, seen) for item in value]
        if any(a is not b for a, b in zip(items, value)):
            return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        for key, item in vars(value).items():
            replaced = _unshare_tensors(item, seen)
            if replaced is not item:
                setattr(value, key, replaced)
    return value


class SequenceModel(pl.LightningModule):
    """What every task shares: optional embedding and input layers, a fused ``torch.nn.LSTM``,
    a summary of each sequence, a linear head, and the technique stack with its hooks.

    Subclasses define the task: :class:`LSTMClassifier` and :class:`LSTMRegressor`. Variable-length
    batches (:class:`lstm_plugins.data.SequenceBatch`) are exact and stay on the fused kernel on
    CPU (oneDNN) and CUDA (cuDNN). Each sequence is summarised by the forward direction's output at
    its last valid step (and, when bidirectional, the backward direction's output at step 0).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        optimizer: OptimizerName = "adam",
        learning_rate: float = 1e-3,
        plugins: Sequence[TechniqueSpec] = (),
        num_embeddings: int | None = None,
    ) -> None:
        super().__init__()
        self.input_size = check.positive_int("input_size", input_size)
        if num_embeddings is not None:
            check.positive_int("num_embeddings", num_embeddings)
        check.positive_int("hidden_size", hidden_size)
        check.positive_int("num_layers", num_layers)
        check.boolean("bidirectional", bidirectional)
        self.optimizer_name = check.choice("optimizer", optimizer, tuple(_OPTIMIZERS))
        self.learning_rate = check.positive_float("learning_rate", learning_rate)
        if isinstance(plugins, (str, Mapping)) or not isinstance(plugins, Sequence):
            raise TypeError(
                f"Expected `plugins` to be a list of techniques, names or mappings, but got {plugins!r}."
            )

        self.techniques: tuple[object, ...] = tuple(resolve_technique(spec) for spec in plugins)
        self._build_plugin_manager()
        self.save_hyperparameters(ignore=["plugins", "output_size"])
        specs = technique_specs(self.techniques)
        if specs is not None:
            # Named techniques are saved as specs, so load_from_checkpoint can rebuild the stack;
            # a stack with unnamed techniques must be passed again to load_from_checkpoint.
            self.hparams["plugins"] = specs

        # The slots techniques fill at construction (configure_model); empty ones cost nothing.
        self.embedding = None if num_embeddings is None else TokenEmbedding(num_embeddings, input_size)
        self.input_layers = nn.Sequential()
        self.lstm = nn.LSTM(
            input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional
        )
        self.weight_transforms = nn.ModuleDict()
        self.recurrence: nn.Module | None = None
        self.sequence_layers = nn.Sequential()
        self.output_layers = nn.Sequential()
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), output_size)
        self._hook.configure_model(model=self)

        extra_metrics: dict[str, Any] = {}
        for contributed in self._hook.configure_metrics(model=self):
            for name, metric in (contributed or {}).items():
                if name in extra_metrics:
                    raise ValueError(f"Two techniques contribute a metric named `{name}`.")
                extra_metrics[name] = metric
        metrics = self.task_metrics(extra_metrics)
        self.val_metrics = metrics.clone(prefix="val/")
        self.val_loss = MeanMetric()
        self.test_metrics = metrics.clone(prefix="test/")
        self._resumed_rng: dict[str, Any] | None = None
        # A plain object: nn.Module.__setattr__ costs microseconds on every step.
        self._step_log = _StepLog()
        self._named_parameters: tuple[tuple[str, nn.Parameter], ...] | None = None
        self.test_results: dict[str, Tensor] = {}
        """Test metrics of the last ``Trainer.test`` (vectors included), on the CPU."""

    # --- the task: what subclasses define ---------------------------------------------------

    def task_loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        """The loss of the task, before technique terms."""
        raise NotImplementedError

    def task_metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        """Fresh validation/test metrics, updated with ``(predictions, targets)``."""
        raise NotImplementedError

    def predictions(self, head_output: Tensor) -> Tensor:
        """The head's output as the task's predictions (what the loss and metrics receive)."""
        return head_output

    def _data_checks(self) -> tuple[tuple[str, str, int], ...]:
        """``(model argument, data module attribute, model value)`` that must agree."""
        return (("input_size", "num_features", self.input_size),)

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
        error. Pass ``plugins=[...]`` to supply a stack that was not saved by name.
        """
        return super().load_from_checkpoint(  # type: ignore[return-value]
            checkpoint_path,
            map_location=map_location,
            hparams_file=hparams_file,
            strict=strict,
            weights_only=weights_only,
            **kwargs,
        )

    # --- plugin manager ---------------------------------------------------------------------

    def _build_plugin_manager(self) -> None:
        self.plugin_manager = build_plugin_manager(self.techniques)
        # The hooks as the core calls them: direct calls in pluggy's order (see HookCalls).
        self._hook = self.plugin_manager.hook_calls
        # Cached once: whether any technique transforms gradients (decides who clips).

    def __getstate__(self) -> dict[str, Any]:
        # The plugin manager holds modules and is rebuilt on unpickling (spawn-based strategies).
        state = self.__dict__.copy()
        state.pop("plugin_manager", None)
        state.pop("_hook", None)
        state["_step_log"] = _StepLog()  # queued values belong to the process that queued them
        state["_named_parameters"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # Spawn-based strategies pickle the model with torch's shared-memory reducers: every
        # tensor arrives in shared memory, and Lightning gives back private copies only of module
        # parameters and buffers. A technique's own tensors (counters, histories, statistics)
        # would otherwise be updated in place by every process at once.
        _unshare_tensors(self.techniques, set())
        self._build_plugin_manager()

    # --- forward ------------------------------------------------------------------------------

    def encode(self, features: Tensor, lengths: Tensor) -> ForwardOutput:
        """Run the network on a padded batch; see :class:`lstm_plugins.ForwardOutput`."""
        if self.embedding is not None:
            if features.dim() != 2 or features.is_floating_point():
                raise ValueError(
                    "Expected `features` to be (batch, time) integer token ids for a model with "
                    f"`num_embeddings`, but got {tuple(features.shape)} of dtype {features.dtype}."
                )
            features = self.embedding(features)
        elif features.dim() != 3 or features.size(-1) != self.input_size:
            raise ValueError(
                f"Expected `features` of shape (batch, time, {self.input_size}), "
                f"but got {tuple(features.shape)}."
            )
        lstm_input = self.input_layers(features)
        if self.recurrence is None:
            raw_output = run_lstm(self.lstm, lstm_input, lengths, self.lstm_weights())
        else:
            raw_output = self.recurrence(lstm_input, lengths, self.lstm, self.lstm_weights())
        sequence_output = self.sequence_layers(raw_output)
        final = self.output_layers(last_step_summary(sequence_output, lengths, self.lstm.bidirectional))
        return ForwardOutput(self.head(final), final, sequence_output, raw_output, lengths)

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

    def lstm_weights(self) -> list[Tensor] | None:
        """The LSTM's weights with ``weight_transforms`` applied, or ``None`` when there are none.

        ``weight_transforms`` maps a weight's name (``"weight_hh_l0"``) to a module that takes the
        weight and returns the one to use in this forward pass (DropConnect, for example); the
        stored parameter is unchanged, so ``state_dict`` keys stay those of a plain LSTM.
        """
        if not self.weight_transforms:
            return None
        transforms = self.weight_transforms
        return [
            transforms[name](weight) if name in transforms else weight
            for name, weight in zip(self.lstm._flat_weights_names, self.lstm._flat_weights)
        ]

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """Predictions for a zero-padded ``(batch, time, features)`` batch with ``(batch,)``
        valid lengths: class scores for a classifier, values for a regressor."""
        return self.predictions(self.encode(features, lengths).logits)

    # --- training -----------------------------------------------------------------------------

    def _log_interval_due(self) -> bool:
        trainer = self._trainer
        return (
            trainer is not None
            and bool(trainer.log_every_n_steps)
            and trainer.global_step % trainer.log_every_n_steps == 0
        )

    # --- per-step values: queued on the device, one host copy per step ----------------------

    def log_step_values(self, values: Mapping[str, Tensor | float]) -> None:
        """Log scalar training values of the current step, the cheap way.

        Lightning's ``self.log`` costs about half a millisecond of host time per value; a stack
        logging ten values would pay that on every logging step. Here the values are only
        queued (detached, still on their device: no host synchronisation). After the optimizer
        step, and again after ``on_train_batch_end`` if something was queued there, the queue
        is copied to the host in one transfer per device and handed to every logger at the
        current step, and to ``trainer.callback_metrics`` / ``trainer.logged_metrics`` (so
        ``ModelCheckpoint(monitor=...)`` and ``EarlyStopping`` can use them).

        Call it on the steps you want logged (techniques log every ``log_every_n_steps``). A
        name logged twice in one step keeps the last value. In validation and test the values go
        through ``self.log_dict`` with Lightning's defaults (averaged over the epoch); without a
        Trainer nothing is logged.

        Example:
            >>> import torch
            >>> from lstm_plugins import LSTMClassifier, Technique, hookimpl
            >>> class HeadGradientNorm(Technique):
            ...     name = "head_gradient_norm"
            ...     @hookimpl
            ...     def on_gradients_ready(self, model):
            ...         if model.trainer.global_step % model.trainer.log_every_n_steps == 0:
            ...             norm = torch.linalg.vector_norm(model.head.weight.grad)
            ...             model.log_step_values({"head_gradient_norm/weight": norm})
            >>> model = LSTMClassifier(12, 9, plugins=[HeadGradientNorm()])
        """
        checked = {name: _as_scalar(name, value) for name, value in values.items()}
        trainer = self._trainer
        if trainer is None or not trainer.training:
            if trainer is not None:
                self.log_dict(checked)  # Lightning's defaults: averaged over the epoch
            return
        if not trainer.log_every_n_steps:
            return  # log_every_n_steps=0: no step logging, as in Lightning
        log = self._step_log
        if not log.tensors and not log.numbers:
            # Lightning's step for these values; at epoch end it has already counted the batch.
            log.step = _logging_step(trainer) - (1 if log.in_epoch_end else 0)
        for name, value in checked.items():
            if isinstance(value, Tensor):
                log.numbers.pop(name, None)
                # A copy (one device kernel, no synchronisation), as self.log makes: a value
                # changed in place later in the step is logged as it was when queued.
                log.tensors[name] = value.detach().clone()
            else:
                log.tensors.pop(name, None)
                log.numbers[name] = float(value)

    def _flush_step_values(self) -> None:
        """Hand the queued values to the loggers: one stack and one host copy per device."""
        log = self._step_log
        if not log.tensors and not log.numbers:
            return
        tensors, numbers = log.tensors, log.numbers
        log.tensors, log.numbers = {}, {}
        host = _to_host(tensors)
        host.update(numbers)
        self._publish(host, log.step)

    def _publish(self, values: Mapping[str, float], step: int) -> None:
        """Host values to ``trainer.callback_metrics``, ``trainer.logged_metrics`` and every
        logger (which log on rank 0 only), as Lightning's own logging would hand them over."""
        trainer = self._trainer
        if trainer is None:
            return
        # Lightning keeps callback and logged metrics as tensors: one tensor, unbound into views.
        as_tensors = dict(zip(values, torch.tensor(list(values.values()), dtype=torch.float64).unbind()))
        trainer.callback_metrics.update(as_tensors)
        trainer.logged_metrics.update(as_tensors)
        if trainer.loggers:
            # What Lightning adds too: the epoch, and the step the values belong to.
            scalars: dict[str, float] = {**values, "epoch": trainer.current_epoch}
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step=step)
                logger.save()

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # Before the callbacks' on_train_batch_end, so ModelCheckpoint and EarlyStopping see them.
        self._flush_step_values()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        output = self.encode(batch.features, batch.lengths)
        task_loss = self.task_loss(self.predictions(output.logits), batch.targets)
        loss = task_loss
        terms: dict[str, Tensor] = {}
        for contributed in self._hook.loss_terms(
            model=self, batch=batch, output=output, task_loss=task_loss
        ):
            if not contributed:
                continue
            for name, value in contributed.items():
                if name in terms:
                    raise ValueError(f"Two techniques return a loss term named `{name}`.")
                terms[name] = value
                loss = loss + value
        if self._log_interval_due():
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
        if self.plugin_manager.hook_calls.implemented("transform_gradients"):
            self._hook.transform_gradients(model=self, optimizer=optimizer)
        else:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._hook.on_train_batch_end(model=self, batch=batch, batch_index=batch_idx)
        # What the hook queued (and everything, when optimizer_step is overridden or optimization
        # is manual). While gradients accumulate, values wait for the stepping batch; the last,
        # partial accumulation of an epoch is flushed at the epoch's end, at its own step.
        accumulating = (
            self.automatic_optimization
            and (batch_idx + 1) % max(int(self.trainer.accumulate_grad_batches), 1) != 0
        )
        if not accumulating:
            self._flush_step_values()

    def on_train_epoch_end(self) -> None:
        self._flush_step_values()  # the last batch's, at its own step
        self._step_log.in_epoch_end = True
        try:
            self._hook.on_train_epoch_end(model=self)
            self._flush_step_values()
        finally:
            self._step_log.in_epoch_end = False

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._named_parameters = None  # techniques may add modules up to here
            self._step_log = _StepLog()  # nothing left over from an interrupted fit
            self._check_datamodule()
            self._hook.on_fit_setup(model=self, trainer=self.trainer)

    def _check_datamodule(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        for name, attribute, expected in self._data_checks():
            found = getattr(datamodule, attribute, None)
            if isinstance(found, int) and not isinstance(found, bool) and found != expected:
                raise ValueError(
                    f"The model has `{name}`={expected} but the data module has "
                    f"`{attribute}`={found}; build the model with {name}={found}."
                )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        named = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [
            {"params": [p for _, p in named], "names": [name for name, _ in named]}
        ]
        self._hook.configure_parameter_groups(model=self, parameter_groups=groups)
        for group in groups:
            group.pop("names", None)
        optimizer_class = _OPTIMIZERS[self.optimizer_name]
        # A fused optimizer unscales AMP gradients inside step(), so Lightning then skips
        # unscaling before on_before_optimizer_step: observers and clippers would see gradients
        # multiplied by the loss scale. With a loss scaler, the fused variant is not used.
        precision = getattr(self._trainer, "precision_plugin", None)
        loss_scaler = getattr(precision, "scaler", None)
        if self.device.type in ("cpu", "cuda") and loss_scaler is None:
            try:
                return optimizer_class(groups, lr=self.learning_rate, fused=True)
            except (RuntimeError, TypeError, ValueError):
                pass  # no fused implementation for this optimizer, dtype or torch version
        return optimizer_class(groups, lr=self.learning_rate)

    def configure_callbacks(self) -> list[Callback]:
        callbacks: list[Callback] = []
        for contributed in self._hook.configure_callbacks(model=self):
            if contributed is None:
                continue
            callbacks.extend([contributed] if isinstance(contributed, Callback) else contributed)
        return callbacks

    # --- evaluation ---------------------------------------------------------------------------

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        predictions = self(batch.features, batch.lengths)
        loss = self.task_loss(predictions, batch.targets)
        self.val_loss.update(loss, weight=batch.targets.size(0))
        self.val_metrics.update(predictions, batch.targets)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, per_class=False, extra={"val/loss": self.val_loss})

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.test_metrics.update(self(batch.features, batch.lengths), batch.targets)

    def on_test_epoch_end(self) -> None:
        results = self._log_metrics(self.test_metrics, per_class=True)
        self.test_results = {name: value.detach().cpu() for name, value in results.items()}

    def _log_metrics(
        self, metrics: MetricCollection, per_class: bool, extra: Mapping[str, Metric] | None = None
    ) -> dict[str, Tensor]:
        # compute() synchronises the states across processes, so every rank holds global values.
        results = metrics.compute()
        metrics.reset()
        for name, metric in (extra or {}).items():
            results[name] = metric.compute()
            metric.reset()
        scalars = {name: value for name, value in results.items() if value.dim() == 0}
        if per_class:
            for name, value in results.items():
                if name.endswith(PER_CLASS_SUFFIX):
                    base = name[: -len(PER_CLASS_SUFFIX)]
                    scalars.update({f"{base}/class_{i}": v for i, v in enumerate(value)})
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "fit":
            # Validation during fit: one host copy, handed over directly (self.log costs ~1 ms
            # per value). Lightning discards what the sanity check logs; so does this.
            if not trainer.sanity_checking and scalars:
                self._publish(_to_host(scalars), _logging_step(trainer))
            return results
        # validate() and test() return what was logged through Lightning. The values are already
        # global; sync_dist averages identical copies (exact) and tells Lightning they are synced.
        self.log_dict(scalars, sync_dist=True)
        return results

    # --- checkpoint ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "techniques": [technique_name(t) for t in self.techniques],
            "state": {},
            # The random stream, so dropout masks after a resume are those of an uninterrupted run.
            "rng": {"cpu": torch.get_rng_state()},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint[CHECKPOINT_KEY]["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        self._hook.on_save_checkpoint(model=self, checkpoint=checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.setdefault(CHECKPOINT_KEY, {"techniques": [], "state": {}})
        stored.setdefault("state", {})
        self._resumed_rng = stored.get("rng")
        self._hook.on_load_checkpoint(model=self, checkpoint=checkpoint)

    def on_train_start(self) -> None:
        # Restored here rather than in on_load_checkpoint, which also fires for inference loads.
        rng = self._resumed_rng
        if rng is not None:
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            self._resumed_rng = None


class LSTMClassifier(SequenceModel):
    """Sequence classifier: a fused ``torch.nn.LSTM`` with a technique stack and cross-entropy.

    ``num_classes=2`` is binary classification with a two-way softmax. Validation and test
    report accuracy, macro recall and macro F1 (per-class vectors in :attr:`test_results`)
    through torchmetrics, synchronised across processes.

    Args:
        input_size: features per time step (the embedding size for token inputs).
        num_classes: number of classes, at least 2.
        hidden_size: LSTM hidden units per direction.
        num_layers: stacked LSTM layers.
        bidirectional: add a backward direction.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"rmsprop"``; the fused implementation
            is used where the device has one.
        learning_rate: the optimizer's learning rate.
        plugins: the technique stack: technique objects, registered names, or
            ``{"name": ..., **arguments}`` mappings; called in this order within each hook.
        num_embeddings: for token inputs: the vocabulary size. Batches then carry
            ``(batch, time)`` integer ids, embedded into ``input_size`` features by
            ``model.embedding`` (a :class:`TokenEmbedding`).

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> from lstm_plugins.plugins import Dropout, GradientClipping
        >>> model = LSTMClassifier(12, 9, bidirectional=True,
        ...                        plugins=[GradientClipping(1.0), Dropout(output=0.3), "grad_norm"])
        >>> [type(t).__name__ for t in model.techniques]
        ['GradientClipping', 'Dropout', 'GradientNormMonitor']
    """

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        optimizer: OptimizerName = "adam",
        learning_rate: float = 1e-3,
        plugins: Sequence[TechniqueSpec] = (),
        num_embeddings: int | None = None,
    ) -> None:
        self.num_classes = check.positive_int("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"Expected `num_classes` to be at least 2, but got {num_classes}.")
        super().__init__(
            input_size, num_classes, hidden_size, num_layers, bidirectional, optimizer,
            learning_rate, plugins, num_embeddings,
        )

    def task_loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(predictions, targets)

    def task_metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        return classification_metrics(self.num_classes, extra)

    def _data_checks(self) -> tuple[tuple[str, str, int], ...]:
        return (*super()._data_checks(), ("num_classes", "num_classes", self.num_classes))


RegressionLoss = Literal["mse", "mae"]


class LSTMRegressor(SequenceModel):
    """Sequence regressor (forecasting, scoring): the same LSTM, techniques and data path as
    :class:`LSTMClassifier`, with a mean-squared or mean-absolute error loss.

    Validation and test report MAE, RMSE and R² through torchmetrics, synchronised across
    processes. Targets are ``(batch,)`` floats for ``num_outputs=1``, else
    ``(batch, num_outputs)``.

    Args:
        input_size: features per time step.
        num_outputs: values predicted per sequence.
        loss: ``"mse"`` (mean squared error) or ``"mae"`` (mean absolute error).
        hidden_size, num_layers, bidirectional, optimizer, learning_rate, plugins,
            num_embeddings: as for :class:`LSTMClassifier`.

    Example:
        >>> import torch
        >>> from lstm_plugins import LSTMRegressor
        >>> model = LSTMRegressor(2, plugins=["gradient_clipping"])
        >>> model(torch.randn(4, 10, 2), torch.tensor([10, 3, 7, 1])).shape
        torch.Size([4])
    """

    def __init__(
        self,
        input_size: int,
        num_outputs: int = 1,
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        optimizer: OptimizerName = "adam",
        learning_rate: float = 1e-3,
        loss: RegressionLoss = "mse",
        plugins: Sequence[TechniqueSpec] = (),
        num_embeddings: int | None = None,
    ) -> None:
        self.num_outputs = check.positive_int("num_outputs", num_outputs)
        self.loss_name: RegressionLoss = check.choice("loss", loss, ("mse", "mae"))
        super().__init__(
            input_size, num_outputs, hidden_size, num_layers, bidirectional, optimizer,
            learning_rate, plugins, num_embeddings,
        )

    def predictions(self, head_output: Tensor) -> Tensor:
        return head_output.squeeze(-1) if self.num_outputs == 1 else head_output

    def task_loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        if self.loss_name == "mse":
            return F.mse_loss(predictions, targets)
        return F.l1_loss(predictions, targets)

    def task_metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        return regression_metrics(self.num_outputs, extra)

    def _data_checks(self) -> tuple[tuple[str, str, int], ...]:
        return (*super()._data_checks(), ("num_outputs", "num_outputs", self.num_outputs))
