"""Attributions over time: which steps and features of each sequence drove its prediction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args, overload

import warnings

import numpy as np
import torch
from torch import Tensor

from lstm_plugins import validation as check
from lstm_plugins.explain._mode import as_lengths, explained, require_captum, sequence_task
from lstm_plugins.model._forward import valid_step_mask
from lstm_plugins.model._inference import is_classifying

__all__ = ["METHODS", "ConvergenceWarning", "Method", "attribute", "model_outputs"]

Method = Literal["integrated_gradients", "saliency", "input_x_gradient"]
METHODS: tuple[str, ...] = get_args(Method)
"""The attribution methods, by the name :func:`attribute` takes."""

RELATIVE_TOLERANCE = 0.01
"""Integrated gradients warn when a sequence's convergence delta exceeds this fraction of
``|f(x) - f(baseline)|`` (plus 1e-4, for gaps near zero)."""


class ConvergenceWarning(UserWarning):
    """Integrated gradients did not converge: the attributions of some sequence do not sum to
    ``f(x) - f(baseline)`` within :data:`RELATIVE_TOLERANCE`; raise ``n_steps``."""


def _check_convergence(attributions: Tensor, delta: Tensor, n_steps: int) -> None:
    gap = attributions.sum(dim=(1, 2)) - delta  # f(x) - f(baseline), as Captum computed it
    failed = delta.abs() > RELATIVE_TOLERANCE * gap.abs() + 1e-4
    if bool(failed.any()):
        worst = int((delta.abs() / (gap.abs() + 1e-4)).argmax())
        warnings.warn(
            f"Integrated gradients did not converge for {int(failed.sum())} of {len(delta)} sequences at "
            f"`n_steps`={n_steps}: sequence {worst}'s attributions sum to {float(gap[worst] + delta[worst]):.4g}, "
            f"but f(x) - f(baseline) = {float(gap[worst]):.4g}; raise `n_steps` (the cost grows with it).",
            ConvergenceWarning, stacklevel=3,
        )


def _features(model: Any, features: Any) -> Tensor:
    features = torch.as_tensor(features)
    if not features.is_floating_point() or features.dim() != 3 or features.size(-1) != model.input_size:
        raise ValueError(
            f"Expected `features` to be a zero-padded float batch of shape (batch, time, {model.input_size}), "
            f"but got shape {tuple(features.shape)} of dtype {features.dtype}."
        )
    parameter = next(model.parameters())
    return features.to(parameter.device, parameter.dtype)


def model_outputs(model: Any, features: Tensor, lengths: Tensor) -> Tensor:
    """The model's predictions flattened to ``(batch, outputs)``: what a ``target`` indexes
    (class scores for a classifier, values for a regressor).

    Example:
        >>> from lstm_plugins import LSTMRegressor
        >>> model_outputs(LSTMRegressor(2), torch.randn(3, 4, 2), torch.tensor([4, 2, 1])).shape
        torch.Size([3, 1])
    """
    output = model(features, lengths)
    return output.reshape(output.size(0), -1)


def _targets(model: Any, outputs: Tensor, target: Any) -> Tensor:
    batch, width = outputs.shape
    if target is None:
        if is_classifying(model.task):
            return outputs.argmax(-1)  # the predicted class
        if width != 1:
            raise ValueError(
                f"Expected `target` (an output index in [0, {width})) for a model with {width} outputs, but got None."
            )
        return outputs.new_zeros(batch, dtype=torch.int64)
    values = torch.as_tensor(target)
    if values.is_floating_point() or values.dim() > 1 or (values.dim() == 1 and values.numel() != batch):
        raise ValueError(
            f"Expected `target` to be an output index or one per sequence ({batch}), but got {check.describe(target)}."
        )
    values = values.to(outputs.device, torch.int64).expand(batch)
    if batch and (int(values.min()) < 0 or int(values.max()) >= width):
        raise ValueError(f"Expected `target` in [0, {width}) (the model's outputs), but got {values.tolist()}.")
    return values.clone()


@overload
def attribute(
    model: Any, features: Tensor | np.ndarray, lengths: Tensor | Sequence[int], *, method: Method = ...,
    target: int | Sequence[int] | Tensor | None = ..., baseline: float | Tensor | None = ..., n_steps: int = ...,
    internal_batch_size: int | None = ..., return_convergence_delta: Literal[False] = ...,
) -> Tensor: ...
@overload
def attribute(
    model: Any, features: Tensor | np.ndarray, lengths: Tensor | Sequence[int], *, method: Method = ...,
    target: int | Sequence[int] | Tensor | None = ..., baseline: float | Tensor | None = ..., n_steps: int = ...,
    internal_batch_size: int | None = ..., return_convergence_delta: Literal[True],
) -> tuple[Tensor, Tensor]: ...


def attribute(
    model: Any,
    features: Tensor | np.ndarray,
    lengths: Tensor | Sequence[int],
    *,
    method: Method = "integrated_gradients",
    target: int | Sequence[int] | Tensor | None = None,
    baseline: float | Tensor | None = None,
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    return_convergence_delta: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attribute each sequence's prediction to its time steps and features, with Captum.

    The model runs as in inference (``eval()``, the ``predict`` evaluation hooks) through its own
    forward pass, so the LSTM stays on the fused kernel forwards and backwards (oneDNN's
    ``mkldnn_rnn_layer`` / ``mkldnn_rnn_layer_backward`` on CPU; on CUDA the ``lstm`` module is
    put in training mode with no dropout, which cuDNN's backward pass needs). Padding is exact:
    padded steps get exactly zero, and a sequence's attributions do not depend on its batch-mates.

    Methods (cost: forward and backward passes per sequence):

    * ``"integrated_gradients"``: the path integral of gradients from ``baseline`` to the input
      (``n_steps`` passes). Complete: a sequence's attributions sum to ``f(x) - f(baseline)``,
      up to the convergence delta Captum returns (``return_convergence_delta=True``); a
      :class:`ConvergenceWarning` names a delta above 1 % of the gap (a trained model's sharp
      gates can need 200-800 steps where 50 serve an untrained one).
    * ``"input_x_gradient"``: input times gradient (one pass); the first-order term of the above
      for a zero baseline, not complete.
    * ``"saliency"``: the gradient's absolute value (one pass): where the output is sensitive,
      unsigned.

    Args:
        model: a :class:`lstm_plugins.SequenceModel` that predicts once per sequence (a
            classifier or a regressor; per-step and token models are refused).
        features: ``(batch, time, input_size)`` zero-padded features, as the model reads them
            (standardised as in training).
        lengths: ``(batch,)`` valid lengths.
        method: one of :data:`METHODS`.
        target: the output explained: a class (or output) index, or one per sequence; ``None``:
            the predicted class of a classifier, the only output of a regressor.
        baseline: integrated gradients' reference input: a number or a tensor broadcastable to
            ``features``; ``None`` is zeros (the training mean of standardised features).
        n_steps: integrated gradients' integration steps.
        internal_batch_size: integrated gradients' sequences per forward pass (``None``: all
            ``batch * n_steps`` at once); lower it to bound memory.
        return_convergence_delta: also return integrated gradients' ``(batch,)`` convergence
            delta: ``attributions.sum() - (f(x) - f(baseline))`` per sequence.

    Returns:
        ``(batch, time, input_size)`` attributions (and the delta when asked for).

    Example:
        >>> import torch
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(2, 3, hidden_size=4)
        >>> features, lengths = torch.randn(2, 5, 2), torch.tensor([5, 3])
        >>> attributions, delta = attribute(model, features, lengths, return_convergence_delta=True)
        >>> tuple(attributions.shape), bool(attributions[1, 3:].eq(0).all()), bool(delta.abs().max() < 1e-3)
        ((2, 5, 2), True, True)
    """
    sequence_task(model, "`attribute`")
    method = check.choice("method", method, METHODS)
    check.positive_int("n_steps", n_steps)
    check.optional_positive_int("internal_batch_size", internal_batch_size)
    check.boolean("return_convergence_delta", return_convergence_delta)
    if method != "integrated_gradients" and (baseline is not None or return_convergence_delta):
        given = "baseline" if baseline is not None else "return_convergence_delta"
        raise ValueError(f"`{given}` belongs to integrated gradients; method `{method}` has none.")
    captum = require_captum()
    features = _features(model, features)
    lengths = as_lengths(lengths, features.size(0), features.size(1))
    mask = valid_step_mask(lengths, features.size(1), features.device).unsqueeze(-1)
    features = torch.where(mask, features, 0.0)

    def forward(inputs: Tensor, batch_lengths: Tensor) -> Tensor:
        return model_outputs(model, inputs, batch_lengths)

    extra = (lengths,)
    with explained(model):
        with torch.no_grad():
            targets = _targets(model, forward(features, lengths), target)
        if method == "integrated_gradients":
            reference = torch.zeros((), device=features.device) if baseline is None else baseline
            reference = torch.as_tensor(reference, dtype=features.dtype, device=features.device)
            try:
                reference = reference.expand_as(features)
            except RuntimeError:
                raise ValueError(
                    f"Expected `baseline` broadcastable to the features' shape {tuple(features.shape)}, "
                    f"but got shape {tuple(reference.shape)}."
                ) from None
            # Padded steps start where they end: no path, so no attribution, whatever the model.
            reference = torch.where(mask, reference, features)
            result = captum.IntegratedGradients(forward).attribute(
                features, baselines=reference, target=targets, additional_forward_args=extra,
                n_steps=n_steps, internal_batch_size=internal_batch_size, return_convergence_delta=True,
            )
            _check_convergence(result[0].detach(), result[1].detach(), n_steps)
        elif method == "saliency":
            features = features.detach().requires_grad_()  # Captum warns when it must set this
            result = captum.Saliency(forward).attribute(features, target=targets, additional_forward_args=extra)
        else:
            features = features.detach().requires_grad_()
            result = captum.InputXGradient(forward).attribute(features, target=targets, additional_forward_args=extra)
    attributions, delta = result if isinstance(result, tuple) else (result, None)
    attributions = torch.where(mask, attributions.detach(), 0.0)
    return (attributions, delta.detach()) if return_convergence_delta else attributions
