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
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

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
    features: Tensor, lengths: Tensor, targets: Tensor, num_classes: int, lam: float | Tensor, permutation: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Mix every sequence with the one ``permutation`` pairs it with (Zhang et al. 2018).

    Returns ``(features, lengths, targets)``:

    * features ``lam * x + (1 - lam) * x[permutation]``: zero-padded batches stay zero-padded,
      so a step one sequence of the pair lacks contributes zero for it;
    * lengths, the longer of the pair (the mixed sequence has content up to there);
    * targets as class probabilities ``(batch, num_classes)``, mixed with the same weight.
      Class-index targets are one-hot encoded first; probability targets are mixed as they are.

    ``permutation`` may be on any device (lengths stay on the CPU, as packing expects).

    Example:
        >>> features = torch.tensor([[[1.0], [1.0]], [[3.0], [0.0]]])
        >>> mixed, lengths, targets = mixup_batch(
        ...     features, torch.tensor([2, 1]), torch.tensor([0, 1]), 2, 0.75, torch.tensor([1, 0]))
        >>> mixed.squeeze(-1).tolist(), lengths.tolist(), targets.tolist()
        ([[1.5, 0.75], [2.5, 0.25]], [2, 2], [[0.75, 0.25], [0.25, 0.75]])
    """
    if not targets.is_floating_point():
        targets = F.one_hot(targets, num_classes).to(features.dtype)
    elif targets.dim() != 2 or targets.shape[1] != num_classes:
        raise ValueError(
            f"Expected probability targets of shape (batch, {num_classes}), but got {tuple(targets.shape)}."
        )
    index = permutation.to(features.device, non_blocking=True)
    return (
        features * lam + features[index] * (1 - lam),
        torch.maximum(lengths, lengths[permutation.to(lengths.device)]),
        targets * lam + targets[index.to(targets.device)] * (1 - lam),
    )


class Mixup(Technique):
    """Mixup: trains on convex combinations of pairs of sequences and of their labels.

    Every training batch is mixed with a permutation of itself, with one weight
    ``lam ~ Beta(alpha, alpha)`` per batch (:func:`mixup_batch`); targets become class
    probabilities, which the classifier's cross-entropy (and :class:`LabelSmoothing`) accept.
    Validation, test and prediction batches are left as they are. ``lam`` and the permutation
    come from torch's global CPU random stream (:func:`sample_mixup`), so a run resumed from a
    checkpoint continues exactly.

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


def ema_update(shadow: Iterable[Tensor], parameters: Iterable[Tensor], decay: float) -> None:
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


class WeightAverage(Technique):
    """Exponential moving average of the weights (Polyak averaging), used for evaluation.

    Keeps a shadow copy of every trainable parameter, started at the weights after the first
    optimizer step and then, after each step (not each micro-batch), updated in one fused call
    on the device: ``shadow <- decay * shadow + (1 - decay) * weights`` (:func:`ema_update`).
    Validation, test and prediction run with the average swapped in; the training weights come
    back, bit for bit, when the evaluation ends (also when it raises: the core then fires
    ``on_evaluation_end`` too), before checkpoints are written. The average and the number of
    updates are in :meth:`state_dict`, so a resumed run continues exactly. Use
    :meth:`averaged_weights` to export or run the averaged model outside a Trainer.

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
        self.decay = check.open_fraction("decay", decay)
        self.updates = 0  # optimizer steps averaged so far
        self._shadow: dict[str, Tensor] = {}  # parameter name -> average, in the model's order
        self._loaded = False  # set by load_state_dict until the shadow is matched to a model
        self._backup: list[Tensor] | None = None  # the training weights while evaluating

    def _parameters(self, model: Any) -> dict[str, Tensor]:
        """The model's trainable parameters by name, with the shadow matched to them first when
        it was loaded or no longer fits (other names, another device)."""
        named = {n: p for n, p in model.cached_named_parameters() if p.requires_grad}
        first = next(iter(self._shadow.values()), None)
        if first is not None and (
            self._loaded or list(self._shadow) != list(named) or first.device != next(iter(named.values())).device
        ):
            self._shadow, self._loaded = self._match(named), False
        return named

    def _match(self, named: dict[str, Tensor]) -> dict[str, Tensor]:
        """The shadow in the order of ``named``, checked by name and shape, on their device and dtype."""
        shadow = self._shadow
        missing, unexpected = sorted(named.keys() - shadow.keys()), sorted(shadow.keys() - named.keys())
        if missing or unexpected:
            raise ValueError(
                f"Technique `{self.name}`: the average does not fit the model's trainable parameters "
                f"(missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'})."
            )
        for name, parameter in named.items():
            if shadow[name].shape != parameter.shape:
                raise ValueError(
                    f"Technique `{self.name}`: the average of `{name}` has shape "
                    f"{tuple(shadow[name].shape)}, but the parameter has {tuple(parameter.shape)}."
                )
        return {n: shadow[n].detach().to(device=p.device, dtype=p.dtype, copy=True) for n, p in named.items()}

    # --- hooks ----------------------------------------------------------------------------------

    @hookimpl
    def on_train_step_end(self, model: Any) -> None:
        named = self._parameters(model)
        if self._shadow:
            ema_update(self._shadow.values(), named.values(), self.decay)
        else:
            self._shadow = {n: p.detach().clone() for n, p in named.items()}
        self.updates += 1

    @hookimpl
    def on_evaluation_start(self, model: Any) -> None:
        """Swap the average in, keeping the training weights (nothing to do before the first
        step, or when it is in already)."""
        if self._backup is not None or not self._shadow:
            return
        parameters = self._parameters(model).values()
        with torch.no_grad():
            self._backup = [p.detach().clone() for p in parameters]
            for parameter, average in zip(parameters, self._shadow.values()):
                parameter.copy_(average)

    @hookimpl
    def on_evaluation_end(self, model: Any) -> None:
        """Put the training weights back (nothing to do unless the average is in)."""
        backup, self._backup = self._backup, None
        if backup is not None:
            with torch.no_grad():
                for parameter, weights in zip(self._parameters(model).values(), backup):
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
        already_in = self._backup is not None  # inside an evaluation: leave the swap to it
        self.on_evaluation_start(model)
        try:
            yield model
        finally:
            if not already_in:
                self.on_evaluation_end(model)

    # --- checkpoint state -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"updates": int, "shadow": {parameter name: averaged tensor}}``; the shadow is empty
        before the first step. The tensors are the live averages (as ``Module.state_dict``)."""
        return {"updates": self.updates, "shadow": dict(self._shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the shadow is matched to the model's
        parameters by name (and moved to their device) when it is next used."""
        updates, shadow = check.int_at_least("updates", state["updates"], 0), state["shadow"]
        if not isinstance(shadow, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in shadow.items()
        ):
            raise ValueError("Expected `shadow` to map parameter names to tensors.")
        if (updates == 0) != (len(shadow) == 0):
            raise ValueError(
                f"Expected an average of {len(shadow)} tensors to come with a positive number of "
                f"updates and no tensor with none, but got {updates} updates."
            )
        self.updates, self._shadow, self._loaded = updates, dict(shadow), bool(shadow)
