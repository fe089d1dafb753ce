"""Per-step labels as padded tensors: validated label arrays, a dataset whose targets are
``(batch, time)`` (``-100`` on padded steps) and its ``collate_fn``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lstm_plugins.data._arrays import as_sequence_arrays, concatenate
from lstm_plugins.data._batch import PaddedSequenceDataset, SequenceBatch, _pad_concatenated
from lstm_plugins.data._batch import IGNORE_INDEX

__all__ = ["StepLabelledDataset", "as_step_labels", "check_class_names", "collate_step_batch"]


def as_step_labels(name: str, labels: Any, lengths: np.ndarray, sequences_name: str) -> np.ndarray:
    """Validate one 1-D integer label array per sequence, each as long as its sequence, and
    return them concatenated as int64 ``(sum(lengths),)``.

    Example:
        >>> as_step_labels("labels", [[0, 1], [2]], np.array([2, 1]), "sequences").tolist()
        [0, 1, 2]
        >>> as_step_labels("labels", [[0, 1], [2]], np.array([2, 2]), "sequences")
        Traceback (most recent call last):
        ...
        ValueError: Expected `labels[1]` to have one label per step of `sequences[1]` (2), but got 1.
    """
    if isinstance(labels, (str, bytes)) or not isinstance(labels, (Sequence, np.ndarray)):
        raise TypeError(
            f"Expected `{name}` to be a sequence of 1-D integer arrays (one label per step), "
            f"but got {type(labels).__name__}."
        )
    if len(labels) != len(lengths):
        raise ValueError(
            f"Expected `{name}` to have one label array per sequence in `{sequences_name}` "
            f"({len(lengths)}), but got {len(labels)}."
        )
    arrays = []
    for index, (item, length) in enumerate(zip(labels, lengths)):
        where = f"{name}[{index}]"
        try:
            array = np.asarray(item)
        except (TypeError, ValueError) as error:
            raise TypeError(f"Expected `{where}` to be a 1-D integer array, but got {error}") from None
        if array.dtype.kind not in "iu":
            raise TypeError(
                f"Expected `{where}` to hold integer class indices, but got dtype {array.dtype}."
            )
        if array.ndim != 1:
            raise ValueError(
                f"Expected `{where}` to be a 1-D array (one label per step), but got shape {array.shape}."
            )
        if array.shape[0] != length:
            raise ValueError(
                f"Expected `{where}` to have one label per step of `{sequences_name}[{index}]` "
                f"({int(length)}), but got {array.shape[0]}."
            )
        if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"Expected `{where}` to fit in int64, but got {int(array.max())}.")
        arrays.append(array.astype(np.int64))
    return np.concatenate(arrays)


def check_class_names(class_names: Any) -> tuple[str, ...]:
    """``class_names`` as a tuple of str (``TypeError`` naming the first bad entry)."""
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, (Sequence, np.ndarray)):
        raise TypeError(f"Expected `class_names` to be a sequence of str, but got {type(class_names).__name__}.")
    for index, name in enumerate(class_names):
        if not isinstance(name, str):
            raise TypeError(f"Expected `class_names[{index}]` to be a str, but got {type(name).__name__}.")
    return tuple(class_names)


def _pad_labels(steps: np.ndarray, lengths: np.ndarray) -> Tensor:
    """Scatter concatenated step labels into an ``(N, max(lengths))`` int64 tensor of -100."""
    max_length = int(lengths.max()) if lengths.size else 0
    padded = np.full((lengths.shape[0], max_length), IGNORE_INDEX, dtype=np.int64)
    padded[np.arange(max_length)[None, :] < lengths[:, None]] = steps
    return torch.from_numpy(padded)


class StepLabelledDataset(PaddedSequenceDataset):
    """:class:`PaddedSequenceDataset` with one label per step: ``targets`` is ``(N, T_max)``
    int64, :data:`IGNORE_INDEX` (``-100``) on padded steps, trimmed with the features to each
    batch's longest sequence. Use :func:`collate_step_batch` as the ``collate_fn``.

    Args:
        sequences: float arrays of shape ``(length, num_features)``; lengths may differ.
        labels: one 1-D integer array per sequence, as long as the sequence.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> dataset = StepLabelledDataset([np.ones((3, 2)), np.ones((1, 2))], [[0, 0, 1], [2]])
        >>> batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_step_batch)))
        >>> tuple(batch.features.shape), batch.targets.tolist()
        ((2, 3, 2), [[0, 0, 1], [2, -100, -100]])
    """

    def __init__(self, sequences: Sequence[np.ndarray | Tensor], labels: Sequence[Any]) -> None:
        arrays = as_sequence_arrays("sequences", sequences)
        values, lengths = concatenate(arrays, arrays[0].shape[1])
        steps = as_step_labels("labels", labels, lengths, "sequences")
        self._set(_pad_concatenated(values, lengths), torch.from_numpy(lengths), _pad_labels(steps, lengths))

    @classmethod
    def from_concatenated(  # type: ignore[override]
        cls, values: np.ndarray, lengths: np.ndarray, labels: np.ndarray
    ) -> StepLabelledDataset:
        """Build from validated ``(sum(lengths), F)`` values, int lengths and the concatenated
        ``(sum(lengths),)`` step labels. Nothing is checked; the inputs are copied, never kept."""
        self = cls.__new__(cls)
        lengths = np.asarray(lengths, dtype=np.int64)
        self._set(
            _pad_concatenated(np.asarray(values, dtype=np.float32), lengths),
            torch.from_numpy(lengths.copy()),
            _pad_labels(np.asarray(labels, dtype=np.int64), lengths),
        )
        return self

    def __getitem__(self, index: int) -> SequenceBatch:
        """One sample as a batch of size 1, trimmed to its own length."""
        batch = super().__getitem__(index)
        return batch._replace(targets=batch.targets[:, : batch.features.shape[1]].clone())

    def __getitems__(self, indices: Sequence[int]) -> SequenceBatch:
        """Gather ``indices`` with one tensor index; features and targets trimmed to the batch's
        longest length."""
        batch = super().__getitems__(indices)
        return batch._replace(targets=batch.targets[:, : batch.features.shape[1]].contiguous())


def collate_step_batch(batch: SequenceBatch | Sequence[SequenceBatch]) -> SequenceBatch:
    """``collate_fn`` for :class:`StepLabelledDataset`: passes its :class:`SequenceBatch`
    through; a list of batches is concatenated, features padded with zeros and targets with
    :data:`IGNORE_INDEX`.

    Example:
        >>> parts = [StepLabelledDataset([np.ones((n, 1))], [[1] * n])[0] for n in (2, 1)]
        >>> collate_step_batch(parts).targets.tolist()
        [[1, 1], [1, -100]]
    """
    if isinstance(batch, SequenceBatch):
        return batch
    if not (isinstance(batch, Sequence) and batch and all(isinstance(b, SequenceBatch) for b in batch)):
        raise TypeError(
            f"Expected a SequenceBatch or a non-empty list of SequenceBatch, but got {type(batch).__name__}."
        )
    steps = max(int(b.features.shape[1]) for b in batch)
    pad = torch.nn.functional.pad
    return SequenceBatch(
        torch.cat([pad(b.features, (0, 0, 0, steps - b.features.shape[1])) for b in batch]),
        torch.cat([b.lengths for b in batch]),
        torch.cat([pad(b.targets, (0, steps - b.targets.shape[1]), value=IGNORE_INDEX) for b in batch]),
    )
