"""The state a model is explained in: evaluation mode, the evaluation hooks, flushed denormals,
and (on CUDA only) the LSTM module in training mode so cuDNN can run its backward pass."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from lstm_plugins.training._denormals import flushed_denormals

__all__ = ["as_lengths", "explained", "model_device", "require_captum", "sequence_task"]

INSTALL_HINT = "pip install 'lstm-plugins[explain]'"


def require_captum() -> Any:
    """Import Captum's attribution module, or raise an ``ImportError`` that names the extra.

    Example:
        >>> require_captum().IntegratedGradients.__name__
        'IntegratedGradients'
    """
    try:
        import captum.attr as attr
    except ImportError as error:  # the extra is optional: say how to get it
        raise ImportError(
            f"Attributions need Captum, which is not installed; install the extra: {INSTALL_HINT}"
        ) from error
    return attr


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters).

    Example:
        >>> model_device(torch.nn.Linear(2, 2))
        device(type='cpu')
    """
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def sequence_task(model: Any, what: str) -> None:
    """Refuse models that do not give one prediction per sequence from float features.

    Example:
        >>> from lstm_plugins.model import LSTMSequenceLabeller
        >>> sequence_task(LSTMSequenceLabeller(2, 3), "`attribute`")
        Traceback (most recent call last):
        ...
        ValueError: `attribute` explains one prediction per sequence, but the `sequence_labelling` task ...
    """
    task = getattr(model, "task", None)
    if task is None or not hasattr(model, "encode"):
        raise TypeError(f"Expected `model` to be a lstm_plugins.SequenceModel, but got {type(model).__name__}.")
    if task.per_step or task.carries_state:
        raise ValueError(
            f"{what} explains one prediction per sequence, but the `{task.name}` task predicts one per "
            "step; explain a classifier or a regressor."
        )
    if getattr(model, "embedding", None) is not None:
        raise ValueError(
            f"{what} attributes float input features, but the model reads token ids (`num_embeddings`)."
        )


@contextlib.contextmanager
def explained(model: Any) -> Iterator[None]:
    """Run the block with the model as ``predict_sequences`` runs it (``eval()``, between the
    ``on_evaluation_start``/``on_evaluation_end`` hooks of stage ``"predict"``), restoring every
    module's mode afterwards.

    cuDNN refuses the RNN backward pass in evaluation mode, so on CUDA the ``lstm`` module alone
    is put in training mode with its inter-layer dropout set to 0 for the block: the arithmetic is
    that of evaluation (dropout modules, weight transforms and the rest of the model stay in
    ``eval()``), and the backward pass stays on the fused kernel.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(2, 3).train()
        >>> with explained(model):
        ...     model.training, model.lstm.training
        (False, False)
        >>> model.training
        True
    """
    modes = [(module, module.training) for module in model.modules()]
    lstm = model.lstm
    dropout = lstm.dropout
    model.eval()
    if model_device(model).type == "cuda":
        lstm.dropout = 0.0
        lstm.train()
    start = getattr(model, "start_evaluation", None)
    if callable(start):
        start("predict")
    try:
        with flushed_denormals(bool(getattr(model, "flush_denormals", True))):
            yield
    finally:
        end = getattr(model, "end_evaluation", None)
        if callable(end):
            end()
        lstm.dropout = dropout
        for module, training in modes:
            module.training = training


def as_lengths(lengths: Any, batch: int, max_length: int) -> Tensor:
    """Validate ``(batch,)`` lengths in ``[1, max_length]``; return them as int64 on the CPU.

    Example:
        >>> as_lengths([3, 1], 2, 4)
        tensor([3, 1])
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.numel() != batch or lengths.is_floating_point():
        raise ValueError(
            f"Expected `lengths` to be {batch} integer lengths (one per sequence), but got shape "
            f"{tuple(lengths.shape)} of dtype {lengths.dtype}."
        )
    lengths = lengths.to("cpu", torch.int64)
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > max_length):
        raise ValueError(f"Expected every length in [1, {max_length}] (the padded time), but got {lengths.tolist()}.")
    return lengths
