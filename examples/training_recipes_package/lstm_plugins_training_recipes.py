"""Three training recipes as a third-party lstm-plugins package: label smoothing, mixup and an
exponential moving average of the weights.

Each recipe is a function (the computation, usable on its own) and a :class:`lstm_plugins.Technique`
that calls the function at its moment of training:

* ``label_smoothing``: :class:`LabelSmoothing` / :func:`label_smoothing_loss`, in the exclusive
  ``compute_task_loss`` slot;
* ``mixup``: :class:`Mixup` / :func:`mixup_batch`, in ``transform_batch``;
* ``ema``: :class:`WeightAverage` / :func:`ema_update`, in ``on_train_step_end`` and
  ``on_evaluation_start`` / ``on_evaluation_end``, with its average in ``state_dict()``.

The package registers the classes under the entry-point group ``lstm_plugins`` (see its
``pyproject.toml``), so installing it makes the three names *available*; each is active only in a
model or config that names it. Label smoothing and mixup are for classifiers and refuse any other
model when it is built.

Example:
    >>> from lstm_plugins import LSTMClassifier
    >>> model = LSTMClassifier(12, 9, techniques=[Mixup(0.4), LabelSmoothing(0.1), WeightAverage(0.99)])
    >>> [t.name for t in model.techniques]
    ['mixup', 'label_smoothing', 'ema']
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from lstm_plugins import ClassificationTask, Technique, hookimpl
from lstm_plugins import validation as check

__all__ = [
    "LabelSmoothing",
    "Mixup",
    "WeightAverage",
    "ema_update",
    "label_smoothing_loss",
    "mixup_batch",
    "sample_mixup",
]


# --- shared checks ------------------------------------------------------------------------------


def _open_unit_interval(name: str, value: Any) -> float:
    """A float in (0, 1), checked in the message form of :mod:`lstm_plugins.validation`."""
    expectation = "a float in (0, 1)"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"Expected `{name}` to be {expectation}, but got {check.describe(value)}.")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"Expected `{name}` to be {expectation}, but got {check.describe(value)}.")
    return value


def _require_classifier(model: Any, technique: str) -> None:
    """Refuse a model whose task is not classification, naming the technique and the task."""
    task = getattr(model, "task", None)
    if not isinstance(task, ClassificationTask):
        raise ValueError(
            f"Technique `{technique}` needs a classifier (class scores and class targets), but the "
            f"model's task is {type(task).__name__}; use it with LSTMClassifier or "
            "SequenceModel(..., ClassificationTask(num_classes))."
        )


# --- label smoothing ----------------------------------------------------------------------------


def label_smoothing_loss(predictions: Tensor, targets: Tensor, smoothing: float = 0.1) -> Tensor:
    """Cross-entropy against targets mixed with the uniform distribution (Szegedy et al. 2016).

    With ``C`` classes and ``eps = smoothing``, a sample of class ``y`` costs
    ``-(1 - eps) * log p_y - eps / C * sum_c log p_c``. ``targets`` are class indices ``(batch,)``
    or class probabilities ``(batch, C)`` (from :func:`mixup_batch`, for example), which are
    smoothed the same way: ``(1 - eps) * targets + eps / C``. One fused
    ``torch.nn.functional.cross_entropy`` call; the mean over the batch.

    Example:
        >>> scores = torch.tensor([[2.0, 0.0, 0.0]])
        >>> round(label_smoothing_loss(scores, torch.tensor([0]), 0.0).item(), 4)  # plain cross-entropy
        0.2395
        >>> round(label_smoothing_loss(scores, torch.tensor([0]), 0.3).item(), 4)
        0.6395
        >>> round(label_smoothing_loss(scores, torch.tensor([[1.0, 0.0, 0.0]]), 0.3).item(), 4)
        0.6395
    """
    return F.cross_entropy(predictions, targets, label_smoothing=smoothing)


class LabelSmoothing(Technique):
    """Label smoothing: cross-entropy against (1 - eps) * targets + eps / num_classes.

    Takes the exclusive ``task_loss`` slot (:func:`~lstm_plugins.techniques.hookspecs.compute_task_loss`):
    a second technique that replaces the task loss is refused when the model is built. Works for
    class-index targets and for the class probabilities :class:`Mixup` produces. The logged
    ``train/task_loss`` is the smoothed loss; the validation loss stays the plain cross-entropy,
    so runs with and without smoothing compare.

    Args:
        smoothing: the mass ``eps`` moved to the uniform distribution, in [0, 1).

    Raises:
        ValueError: the model is not a classifier.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> LSTMClassifier(12, 9, techniques=[LabelSmoothing(0.2)]).techniques
        (LabelSmoothing(smoothing=0.2),)
    """

    name = "label_smoothing"

    def __init__(self, smoothing: float = 0.1) -> None:
        self.smoothing = check.probability("smoothing", smoothing)

    @hookimpl
    def configure_network(self, model: Any) -> None:
        _require_classifier(model, self.name)

    @hookimpl
    def compute_task_loss(self, batch: Any, predictions: Tensor) -> Tensor:
        return label_smoothing_loss(predictions, batch.targets, self.smoothing)


# --- mixup --------------------------------------------------------------------------------------


def sample_mixup(alpha: float, batch_size: int) -> tuple[float, Tensor]:
    """Draw a mixing weight ``lam ~ Beta(alpha, alpha)`` and a random permutation of the batch.

    Both come from torch's global CPU random stream (which lstm-plugins checkpoints and restores,
    so a resumed run draws what an uninterrupted one would); nothing touches an accelerator, so
    reading ``lam`` as a Python float costs no device synchronisation.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> lam, permutation = sample_mixup(0.2, 4)
        >>> 0.0 <= lam <= 1.0, sorted(permutation.tolist())
        (True, [0, 1, 2, 3])
    """
    concentration = torch.tensor(float(alpha))
    lam = torch.distributions.Beta(concentration, concentration, validate_args=False).sample()
    return float(lam), torch.randperm(batch_size)


def mixup_batch(
    features: Tensor,
    lengths: Tensor,
    targets: Tensor,
    num_classes: int,
    lam: float | Tensor,
    permutation: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mix every sequence with the one ``permutation`` pairs it with (Zhang et al. 2018).

    Returns ``(features, lengths, targets)``:

    * features ``lam * x + (1 - lam) * x[permutation]``: zero-padded batches stay zero-padded,
      so a step one sequence of the pair lacks contributes zero for it;
    * lengths, the longer of the pair (the mixed sequence has content up to there);
    * targets as class probabilities ``(batch, num_classes)``, mixed with the same weight.
      Class-index targets are one-hot encoded first; probability targets are mixed as they are.

    ``permutation`` may live on any device: it is moved to the features' and to the lengths'
    device (lengths stay on the CPU, as packing expects).

    Example:
        >>> features = torch.tensor([[[1.0], [1.0]], [[3.0], [0.0]]])
        >>> mixed, lengths, targets = mixup_batch(
        ...     features, torch.tensor([2, 1]), torch.tensor([0, 1]), 2, 0.75, torch.tensor([1, 0]))
        >>> mixed.squeeze(-1).tolist(), lengths.tolist(), targets.tolist()
        ([[1.5, 0.75], [2.5, 0.25]], [2, 2], [[0.75, 0.25], [0.25, 0.75]])
    """
    index = permutation.to(features.device, non_blocking=True)
    mixed = features * lam + features.index_select(0, index) * (1 - lam)
    mixed_lengths = torch.maximum(lengths, lengths.index_select(0, permutation.to(lengths.device)))
    if targets.is_floating_point():
        if targets.dim() != 2 or targets.shape[1] != num_classes:
            raise ValueError(
                f"Expected probability targets of shape (batch, {num_classes}), but got {tuple(targets.shape)}."
            )
        probabilities = targets
    else:
        probabilities = F.one_hot(targets, num_classes).to(features.dtype)
    mixed_targets = probabilities * lam + probabilities.index_select(0, index.to(targets.device)) * (1 - lam)
    return mixed, mixed_lengths, mixed_targets


class Mixup(Technique):
    """Mixup: trains on convex combinations of pairs of sequences and of their labels.

    Every training batch is mixed with a permutation of itself, with one weight
    ``lam ~ Beta(alpha, alpha)`` per batch (:func:`mixup_batch`); targets become class
    probabilities, which the classifier's cross-entropy (and :class:`LabelSmoothing`) accept.
    Validation, test and prediction batches are left as they are. ``lam`` and the permutation
    come from torch's global CPU random stream, so a run resumed from a checkpoint continues
    exactly.

    Variable lengths: the mixed sequence is as long as the longer of the pair. Padding is zero,
    so beyond the shorter sequence's end its contribution is zero.

    Args:
        alpha: the Beta distribution's concentration, a positive float; small values (0.1-0.4)
            keep most mixed samples close to one of the pair.

    Raises:
        ValueError: the model is not a classifier.

    Example:
        >>> from lstm_plugins import LSTMRegressor
        >>> LSTMRegressor(2, techniques=[Mixup()])
        Traceback (most recent call last):
        ...
        ValueError: Technique `mixup` needs a classifier (...), but the model's task is RegressionTask; ...
        (raised by technique `mixup` in hook `configure_network`)
    """

    name = "mixup"

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = check.positive_float("alpha", alpha)

    @hookimpl
    def configure_network(self, model: Any) -> None:
        _require_classifier(model, self.name)

    @hookimpl
    def transform_batch(self, model: Any, batch: Any) -> Any:
        lam, permutation = sample_mixup(self.alpha, batch.features.shape[0])
        features, lengths, targets = mixup_batch(
            batch.features, batch.lengths, batch.targets, model.task.num_classes, lam, permutation
        )
        return batch._replace(features=features, lengths=lengths, targets=targets)


# --- exponential moving average of the weights -------------------------------------------------


def ema_update(shadow: Sequence[Tensor], parameters: Sequence[Tensor], decay: float) -> None:
    """``shadow <- decay * shadow + (1 - decay) * parameters``, in place, for every pair.

    One fused ``torch._foreach_lerp_`` call on the parameters' device: no host synchronisation.

    Example:
        >>> shadow = [torch.zeros(2)]
        >>> ema_update(shadow, [torch.tensor([1.0, 2.0])], decay=0.75)
        >>> shadow
        [tensor([0.2500, 0.5000])]
    """
    with torch.no_grad():
        torch._foreach_lerp_(list(shadow), list(parameters), 1.0 - decay)


class _RestoreTrainingWeights(pl.Callback):
    """Puts the training weights back when a run stops during evaluation (an exception or an
    interrupt after ``on_evaluation_start`` and before ``on_evaluation_end``)."""

    def __init__(self, technique: WeightAverage) -> None:
        self.technique = technique

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.technique._swap_out(pl_module)


class WeightAverage(Technique):
    """Exponential moving average of the weights (Polyak averaging), used for evaluation.

    Keeps a shadow copy of every trainable parameter. After each optimizer step (not each
    micro-batch) ``shadow <- decay * shadow + (1 - decay) * weights``, in one fused call on the
    device (:func:`ema_update`). The shadow starts as a copy of the weights after the first
    step. Validation, test and prediction run with the averaged weights swapped in; the training
    weights are put back, bit for bit, when the evaluation ends (before checkpoints are written,
    so checkpoints hold the training weights, and the averaged ones in this technique's state).

    The shadow and the number of updates go through :meth:`state_dict` / :meth:`load_state_dict`,
    so a run resumed from a checkpoint continues exactly. Use :meth:`averaged_weights` to export
    or run the averaged model outside a Trainer.

    The average spans about ``1 / (1 - decay)`` steps: pick ``decay`` so that this is a fraction
    of the run (0.99 for a few thousand steps, 0.999 for tens of thousands), or the average
    stays close to the early weights.

    Args:
        decay: the weight of the past, a float in (0, 1).

    Example:
        >>> WeightAverage(decay=0.99).state_dict()
        {'updates': 0, 'shadow': {}}
        >>> WeightAverage(decay=1)
        Traceback (most recent call last):
        ...
        ValueError: Expected `decay` to be a float in (0, 1), but got 1.0.
    """

    name = "ema"

    def __init__(self, decay: float = 0.999) -> None:
        self.decay = _open_unit_interval("decay", decay)
        self._updates = 0
        self._names: tuple[str, ...] = ()
        self._shadow: list[Tensor] = []
        self._pending: dict[str, Tensor] | None = None  # loaded, not yet matched to a model
        self._backup: list[Tensor] | None = None  # the training weights while evaluating
        self._bound: tuple[Any, list[Tensor]] | None = None  # (weak model reference, its parameters)

    # --- the parameters being averaged ------------------------------------------------------

    def _parameters(self, model: Any) -> list[Tensor]:
        """The model's trainable parameters (cached per model and fit); a loaded shadow is
        matched to them by name and moved to their device here."""
        bound = self._bound
        if bound is None or bound[0]() is not model:
            named = [(n, p) for n, p in model.cached_named_parameters() if p.requires_grad]
            names = tuple(n for n, _ in named)
            parameters = [p for _, p in named]
            if self._pending is not None:
                self._shadow = self._match(self._pending, names, parameters)
                self._names, self._pending = names, None
            elif self._shadow and names != self._names:
                raise ValueError(
                    f"Technique `{self.name}`: the model's trainable parameters changed since the "
                    f"average was started ({len(self._names)} then, {len(names)} now)."
                )
            self._names = names
            self._bound = bound = (weakref.ref(model), parameters)
        parameters = bound[1]
        if self._shadow and parameters and self._shadow[0].device != parameters[0].device:  # the model was moved
            self._shadow = [s.to(p.device) for s, p in zip(self._shadow, parameters)]
        return parameters

    def _match(self, stored: Mapping[str, Tensor], names: tuple[str, ...], parameters: list[Tensor]) -> list[Tensor]:
        missing = [n for n in names if n not in stored]
        unexpected = [n for n in stored if n not in names]
        if missing or unexpected:
            raise ValueError(
                f"Technique `{self.name}`: the stored average does not fit the model "
                f"(missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'})."
            )
        shadow = []
        for name, parameter in zip(names, parameters):
            value = stored[name]
            if value.shape != parameter.shape:
                raise ValueError(
                    f"Technique `{self.name}`: the stored average of `{name}` has shape "
                    f"{tuple(value.shape)}, but the parameter has {tuple(parameter.shape)}."
                )
            shadow.append(value.detach().to(device=parameter.device, dtype=parameter.dtype, copy=True))
        return shadow

    # --- hooks ----------------------------------------------------------------------------------

    @hookimpl
    def on_fit_setup(self) -> None:
        self._bound = None  # techniques may add parameters up to here; the device may change

    @hookimpl
    def on_train_step_end(self, model: Any) -> None:
        parameters = self._parameters(model)
        if not self._shadow:
            with torch.no_grad():
                self._shadow = [p.detach().clone() for p in parameters]
        else:
            ema_update(self._shadow, parameters, self.decay)
        self._updates += 1

    @hookimpl
    def on_evaluation_start(self, model: Any) -> None:
        self._swap_in(model)

    @hookimpl
    def on_evaluation_end(self, model: Any) -> None:
        self._swap_out(model)

    @hookimpl
    def configure_callbacks(self) -> pl.Callback:
        return _RestoreTrainingWeights(self)

    def _swap_in(self, model: Any) -> bool:
        """Put the averaged weights in the model, keeping the training weights; ``False`` when
        there is nothing to swap (no step yet) or they are already in."""
        if self._backup is not None or not (self._shadow or self._pending):
            return False
        parameters = self._parameters(model)
        with torch.no_grad():
            self._backup = [p.detach().clone() for p in parameters]
            for parameter, average in zip(parameters, self._shadow):
                parameter.copy_(average)
        return True

    def _swap_out(self, model: Any) -> None:
        """Put the training weights back (a no-op unless :meth:`_swap_in` swapped)."""
        backup, self._backup = self._backup, None
        if backup is None:
            return
        with torch.no_grad():
            for parameter, weights in zip(self._parameters(model), backup):
                parameter.copy_(weights)

    @contextlib.contextmanager
    def averaged_weights(self, model: Any) -> Iterator[Any]:
        """Run ``model`` with the averaged weights inside the ``with`` block; the training
        weights come back when it ends (also on an exception).

        Example:
            >>> from lstm_plugins import LSTMClassifier
            >>> average = WeightAverage(0.9)
            >>> model = LSTMClassifier(12, 9, hidden_size=4, techniques=[average])
            >>> average.on_train_step_end(model)           # (a Trainer calls this after each step)
            >>> with torch.no_grad(): _ = model.head.weight.add_(1.0)
            >>> average.on_train_step_end(model)
            >>> trained = model.head.weight.clone()
            >>> with average.averaged_weights(model):
            ...     torch.allclose(model.head.weight, trained - 0.9, atol=1e-6)
            True
            >>> torch.equal(model.head.weight, trained)
            True
        """
        swapped = self._swap_in(model)
        try:
            yield model
        finally:
            if swapped:
                self._swap_out(model)

    # --- checkpoint state -----------------------------------------------------------------------

    @property
    def updates(self) -> int:
        """Optimizer steps averaged so far."""
        return self._updates

    def state_dict(self) -> dict[str, Any]:
        """``{"updates": int, "shadow": {parameter name: averaged tensor}}``; the shadow is empty
        before the first step. The tensors are the live averages (as ``Module.state_dict``)."""
        if self._pending is not None:
            shadow = dict(self._pending)
        else:
            shadow = dict(zip(self._names, self._shadow))
        return {"updates": self._updates, "shadow": shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the shadow is matched to the model's
        parameters by name (and moved to their device) when it is next used."""
        updates, shadow = state["updates"], state["shadow"]
        if isinstance(updates, bool) or not isinstance(updates, Integral) or updates < 0:
            raise ValueError(f"Expected `updates` to be a non-negative int, but got {check.describe(updates)}.")
        if not isinstance(shadow, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in shadow.items()
        ):
            raise ValueError("Expected `shadow` to map parameter names to tensors.")
        if (updates == 0) != (len(shadow) == 0):
            raise ValueError(
                f"Expected an average of {len(shadow)} tensors to come with a positive number of "
                f"updates and no tensor with none, but got {updates} updates."
            )
        self._updates = int(updates)
        self._pending = dict(shadow) if shadow else None
        self._shadow, self._names, self._bound = [], (), None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_bound"] = None  # a weak reference; rebuilt in the receiving process
        return state
