"""Inference without a Trainer: :func:`predict_sequences` labels a list of variable-length arrays,
:func:`write_predictions_csv` writes what it returns.

Sequences are sorted by length and cut into batches (so a batch pads little), run in ``eval()``
mode under ``torch.no_grad()`` on the model's device through ``model(features, lengths)`` (the
fused kernel, exact for variable lengths), and returned in the order they were given.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lstm_plugins import validation as check
from lstm_plugins._files import replaced_atomically
from lstm_plugins.data._arrays import as_sequence_arrays
from lstm_plugins.data._predict import length_batches, resolve_standardization, standardize_values
from lstm_plugins.training._denormals import flushed_denormals

__all__ = ["predict_sequences", "write_predictions_csv"]


def is_classifying(task: Any) -> bool:
    """Whether a task's predictions are class scores (a softmax turns them into probabilities):
    one class per sequence or per step, or the next token of a language model."""
    return getattr(task, "num_classes", None) is not None or getattr(task, "vocab_size", None) is not None


def _token_arrays(sequences: Any, num_embeddings: int) -> list[np.ndarray]:
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, (Sequence, np.ndarray)):
        raise TypeError(
            f"Expected `sequences` to be a sequence of 1-D token id arrays, but got {type(sequences).__name__}."
        )
    if len(sequences) == 0:
        raise ValueError("Expected `sequences` to contain at least one sequence, but got 0.")
    arrays = []
    for index, sequence in enumerate(sequences):
        array = np.asarray(sequence.cpu() if isinstance(sequence, Tensor) else sequence)
        if array.dtype.kind not in "iu" or array.ndim != 1 or array.size == 0:
            raise ValueError(
                f"Expected `sequences[{index}]` to be a non-empty 1-D array of integer token ids, "
                f"but got shape {array.shape} of dtype {array.dtype}."
            )
        if int(array.min()) < 0 or int(array.max()) >= num_embeddings:
            raise ValueError(
                f"Expected token ids in [0, {num_embeddings}), but `sequences[{index}]` holds "
                f"{int(array.min()) if int(array.min()) < 0 else int(array.max())}."
            )
        arrays.append(array.astype(np.int64))
    return arrays


def _pad(arrays: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
    padded = np.zeros((len(arrays), int(lengths.max()), *arrays[0].shape[1:]), dtype=arrays[0].dtype)
    for row, array in enumerate(arrays):
        padded[row, : array.shape[0]] = array
    return torch.from_numpy(padded), torch.from_numpy(lengths)


def _device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def predict_sequences(
    model: Any,
    sequences: Sequence[np.ndarray | Tensor],
    *,
    batch_size: int = 64,
    standardize: Any = None,
    probabilities: bool = True,
) -> np.ndarray | list[np.ndarray]:
    """Predict each of a list of variable-length sequences; the results come in input order.

    The sequences are sorted by length and cut into batches of ``batch_size`` (little padding;
    for a task that carries the LSTM's state, a batch holds one length only), then run through
    ``model(features, lengths)`` on the model's device, in ``eval()`` mode, under
    ``torch.no_grad()``, between the ``on_evaluation_start`` / ``on_evaluation_end`` hooks of
    stage ``"predict"`` (as ``Trainer.predict`` runs them). The model's mode is restored after.

    Args:
        model: a :class:`lstm_plugins.SequenceModel` (any task).
        sequences: ``(length, input_size)`` float arrays or tensors; for a token model
            (``num_embeddings``), 1-D integer token ids.
        batch_size: sequences per batch.
        standardize: standardise the features as the model was trained: a data module (its
            training statistics), a ``(mean, std)`` pair, or ``None`` (features used as given).
        probabilities: for a classifying task (a classifier, a sequence labeller, a language
            model), return class probabilities (softmax) rather than the raw scores.

    Returns:
        For one prediction per sequence, a float32 array ``(N, ...)``: class probabilities
        ``(N, num_classes)`` for a classifier, values ``(N,)`` or ``(N, num_outputs)`` for a
        regressor (forecasts for a forecaster). For a per-step task, a list of ``N`` arrays
        ``(length, ...)``, each cut to its sequence's length.

    Example:
        >>> import numpy as np
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(3, 4, hidden_size=8)
        >>> sequences = [np.random.rand(n, 3) for n in (5, 2, 9)]
        >>> probabilities = predict_sequences(model, sequences)
        >>> probabilities.shape, bool(np.allclose(probabilities.sum(1), 1.0))
        ((3, 4), True)
    """
    check.positive_int("batch_size", batch_size)
    check.boolean("probabilities", probabilities)
    task = model.task
    embedding = getattr(model, "embedding", None)
    if embedding is not None:
        if standardize is not None:
            raise ValueError("Expected `standardize=None` for a token model: token ids are not standardised.")
        arrays = _token_arrays(sequences, embedding.num_embeddings)
    else:
        arrays = as_sequence_arrays("sequences", sequences)
        if arrays[0].shape[1] != model.input_size:
            raise ValueError(
                f"Expected sequences with {model.input_size} features (the model's `input_size`), "
                f"but `sequences[0]` has {arrays[0].shape[1]}."
            )
        statistics = resolve_standardization(standardize)
        arrays = [standardize_values(array, statistics) for array in arrays]
    lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
    batches = length_batches(lengths, batch_size, equal_lengths=bool(task.carries_state))
    softmax = probabilities and is_classifying(task)
    device = _device(model)
    results: list[np.ndarray] = [np.empty(0)] * len(arrays)
    was_training = model.training
    model.eval()
    start = getattr(model, "start_evaluation", None)
    if callable(start):
        start("predict")
    try:
        # Denormals flushed while the kernels run, as in Trainer.predict (model.flush_denormals).
        with torch.no_grad(), flushed_denormals(getattr(model, "flush_denormals", True)):
            for positions in batches:
                features, batch_lengths = _pad([arrays[p] for p in positions])
                predictions = model(features.to(device), batch_lengths)
                if softmax:
                    predictions = predictions.softmax(-1)
                host = predictions.float().cpu().numpy()  # one copy per batch
                for row, position in enumerate(positions.tolist()):
                    results[position] = host[row, : lengths[position]] if task.per_step else host[row]
    finally:
        end = getattr(model, "end_evaluation", None)
        if callable(end):
            end()
        model.train(was_training)
    return results if task.per_step else np.stack(results)


def _number(value: Any) -> str:
    return format(float(value), ".9g")  # round-trips float32


def write_predictions_csv(
    path: str | os.PathLike[str],
    ids: Sequence[Any],
    predictions: np.ndarray | Tensor | Sequence[np.ndarray | Tensor],
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write predictions as CSV: one row per sequence (per step for per-step predictions).

    With ``class_names`` the predictions are class probabilities (or scores): the columns are
    ``id``, ``class`` (the predicted index), ``class_name`` and one ``probability_<name>`` per
    class. Without, they are values: ``id`` and ``value`` (one output) or ``value_0``,
    ``value_1``, ... (flattened, for several). Per-step predictions (a list of ``(length, ...)``
    arrays, as :func:`predict_sequences` returns them for a per-step task) add a ``step``
    column after ``id``: one row per valid step.

    Args:
        path: the CSV file; parent folders are created.
        ids: one id per sequence (written as ``str(id)``).
        predictions: an array ``(N, ...)`` (one prediction per sequence) or a list of ``N``
            per-step arrays.
        class_names: names of the classes, for class probabilities; ``None`` for values.

    Returns:
        The path written.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> probabilities = np.array([[0.9, 0.1], [0.2, 0.8]])
        >>> path = write_predictions_csv(folder / "p.csv", ["a", "b"], probabilities, ["no", "yes"])
        >>> print(path.read_text().strip())
        id,class,class_name,probability_no,probability_yes
        a,0,no,0.899999976,0.100000001
        b,1,yes,0.200000003,0.800000012
    """
    per_step = isinstance(predictions, (list, tuple))
    rows: list[np.ndarray] = [
        np.asarray(p.detach().cpu() if isinstance(p, Tensor) else p, dtype=np.float32)
        for p in (predictions if per_step else [predictions])
    ]
    if not per_step:
        rows = list(rows[0]) if rows[0].ndim else []
    ids = list(ids)
    if len(ids) != len(rows):
        raise ValueError(f"Expected one id per sequence ({len(rows)}), but got {len(ids)}.")
    names = None if class_names is None else [str(name) for name in class_names]
    width = 1
    if rows:
        shapes = {row.shape[1:] if per_step else row.shape for row in rows}
        if len(shapes) != 1:
            unit = "step" if per_step else "sequence"
            raise ValueError(f"Expected predictions of one shape per {unit}, but got {sorted(shapes)}.")
        width = int(np.prod(shapes.pop(), dtype=np.int64))
    if names is not None and width != len(names):
        raise ValueError(
            f"Expected {len(names)} class probabilities per prediction (one per class name), but got {width}."
        )
    header = ["id", *(["step"] if per_step else [])]
    if names is not None:
        header += ["class", "class_name", *(f"probability_{name}" for name in names)]
    else:
        header += ["value"] if width == 1 else [f"value_{i}" for i in range(width)]
    path = Path(path)
    # Written beside the target and moved into place: an interrupted write keeps the old file.
    with replaced_atomically(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for identifier, row in zip(ids, rows):
            steps = row.reshape(row.shape[0], -1) if per_step else row.reshape(1, -1)
            for step, values in enumerate(steps):
                prefix = [str(identifier), *([step] if per_step else [])]
                if names is not None:
                    best = int(values.argmax())
                    writer.writerow([*prefix, best, names[best], *map(_number, values)])
                else:
                    writer.writerow([*prefix, *map(_number, values)])
    return path
