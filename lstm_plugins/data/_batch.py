"""Padded batches of variable-length sequences and a dataset that pads once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lstm_plugins.data._arrays import as_label_array, as_sequence_arrays, concatenate

__all__ = [
    "PaddedSequenceDataset",
    "SequenceBatch",
    "collate_sequence_batch",
    "pad_sequences",
]


IGNORE_INDEX = -100
"""The target of a step that does not count (padding of per-step targets): ignored by the loss
and the metrics, as PyTorch's ``cross_entropy`` ignores it by default."""


class SequenceBatch(NamedTuple):
    """A zero-padded batch of variable-length sequences.

    Attributes:
        features: float32 ``(batch, max_length_in_batch, num_features)``; steps at or beyond a
            sequence's length are zero.
        lengths: int64 ``(batch,)`` valid steps per sequence; always on the CPU, as
            :func:`torch.nn.utils.rnn.pack_padded_sequence` expects.
        targets: int64 ``(batch,)`` class indices.
    """

    features: Tensor
    lengths: Tensor
    targets: Tensor

    def to(self, device: torch.device | str | int, non_blocking: bool = False) -> SequenceBatch:
        """Move ``features`` and ``targets`` to ``device``; ``lengths`` stays on the CPU.

        Lightning's default batch transfer calls this method, so ``lengths`` remains usable
        for packing on any accelerator.
        """
        def move(value: Any) -> Any:
            return value.to(device, non_blocking=non_blocking) if isinstance(value, Tensor) else value

        lengths = self.lengths.cpu() if isinstance(self.lengths, Tensor) else self.lengths
        return SequenceBatch(move(self.features), lengths, move(self.targets))


def _pad_concatenated(values: np.ndarray, lengths: np.ndarray) -> Tensor:
    """Scatter ``(sum(lengths), F)`` rows into a zero ``(N, max(lengths), F)`` float32 tensor."""
    num_features = values.shape[1]
    max_length = int(lengths.max()) if lengths.size else 0
    padded = np.zeros((lengths.shape[0], max_length, num_features), dtype=np.float32)
    mask = np.arange(max_length)[None, :] < lengths[:, None]
    padded[mask] = values  # row-major mask order matches the concatenation order
    return torch.from_numpy(padded)


def pad_sequences(sequences: Sequence[np.ndarray | Tensor]) -> tuple[Tensor, Tensor]:
    """Zero-pad ``(length, num_features)`` sequences into one tensor.

    Returns:
        ``(features, lengths)``: float32 ``(N, max_length, num_features)`` and int64 ``(N,)``.

    Example:
        >>> import numpy as np
        >>> features, lengths = pad_sequences([np.ones((2, 3)), np.ones((1, 3))])
        >>> tuple(features.shape), lengths.tolist(), features[1, 1].tolist()
        ((2, 2, 3), [2, 1], [0.0, 0.0, 0.0])
    """
    arrays = as_sequence_arrays("sequences", sequences)
    values, lengths = concatenate(arrays, arrays[0].shape[1])
    return _pad_concatenated(values, lengths), torch.from_numpy(lengths)


class PaddedSequenceDataset(Dataset[SequenceBatch]):
    """Variable-length sequences padded once into a single ``(N, T_max, F)`` tensor.

    Batches are gathered with one tensor index in :meth:`__getitems__` (which
    :class:`torch.utils.data.DataLoader` calls when batching automatically) and trimmed to the
    longest sequence in the batch. Use :func:`collate_sequence_batch` as the ``collate_fn``.

    Args:
        sequences: float arrays of shape ``(length, num_features)``; lengths may differ.
        labels: integer class index per sequence.

    Example:
        >>> import numpy as np
        >>> from torch.utils.data import DataLoader
        >>> dataset = PaddedSequenceDataset([np.ones((3, 2)), np.ones((1, 2))], [0, 1])
        >>> loader = DataLoader(dataset, batch_size=2, collate_fn=collate_sequence_batch)
        >>> batch = next(iter(loader))
        >>> tuple(batch.features.shape), batch.lengths.tolist(), batch.targets.tolist()
        ((2, 3, 2), [3, 1], [0, 1])
    """

    features: Tensor
    lengths: Tensor
    targets: Tensor

    def __init__(
        self,
        sequences: Sequence[np.ndarray | Tensor],
        labels: Sequence[int] | np.ndarray | Tensor,
    ) -> None:
        arrays = as_sequence_arrays("sequences", sequences)
        targets = as_label_array("labels", labels, count=len(arrays), sequences_name="sequences")
        values, lengths = concatenate(arrays, arrays[0].shape[1])
        padded = _pad_concatenated(values, lengths)
        self._set(padded, torch.from_numpy(lengths), torch.from_numpy(targets))

    @classmethod
    def from_concatenated(
        cls, values: np.ndarray, lengths: np.ndarray, labels: np.ndarray
    ) -> PaddedSequenceDataset:
        """Build from validated ``(sum(lengths), F)`` values, int lengths and int labels.

        Nothing is checked; the inputs are copied, never kept.
        """
        self = cls.__new__(cls)
        lengths = np.asarray(lengths, dtype=np.int64)
        self._set(
            _pad_concatenated(np.asarray(values, dtype=np.float32), lengths),
            torch.from_numpy(lengths.copy()),
            torch.as_tensor(np.asarray(labels, dtype=np.int64).copy()),
        )
        return self

    def _set(self, features: Tensor, lengths: Tensor, targets: Tensor) -> None:
        self.features = features
        self.lengths = lengths
        self.targets = targets

    @property
    def num_features(self) -> int:
        """Features per time step."""
        return int(self.features.shape[2])

    @property
    def max_length(self) -> int:
        """Longest sequence length in the dataset."""
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def __getitem__(self, index: int) -> SequenceBatch:
        """One sample as a batch of size 1, trimmed to its own length."""
        size = len(self)
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"Expected `index` to be an int, but got {type(index).__name__}.")
        position = int(index) + size if index < 0 else int(index)
        if not 0 <= position < size:
            raise IndexError(f"Expected `index` in [-{size}, {size}), but got {index}.")
        length = int(self.lengths[position])
        return SequenceBatch(
            self.features[position : position + 1, :length].clone(),
            self.lengths[position : position + 1].clone(),
            self.targets[position : position + 1].clone(),
        )

    def __getitems__(self, indices: Sequence[int]) -> SequenceBatch:
        """Gather ``indices`` with one tensor index and trim time to the batch's longest length."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        if index.ndim != 1 or index.numel() == 0:
            raise ValueError(f"Expected `indices` to be a non-empty list of ints, but got {indices!r}.")
        size = len(self)
        if bool(((index < -size) | (index >= size)).any()):
            raise IndexError(f"Expected every index in [-{size}, {size}), but got {indices!r}.")
        index = torch.where(index < 0, index + size, index)
        lengths = self.lengths.index_select(0, index)
        steps = int(lengths.max())
        features = self.features.narrow(1, 0, steps).index_select(0, index)
        return SequenceBatch(features, lengths, self.targets.index_select(0, index))


def collate_sequence_batch(batch: SequenceBatch | Sequence[SequenceBatch]) -> SequenceBatch:
    """``collate_fn`` for :class:`PaddedSequenceDataset`.

    Passes through the :class:`SequenceBatch` built by ``__getitems__``; a list of batches
    (e.g. from a dataset wrapper without ``__getitems__``) is concatenated with zero padding.
    """
    if isinstance(batch, SequenceBatch):
        return batch
    if isinstance(batch, Sequence) and batch and all(isinstance(b, SequenceBatch) for b in batch):
        parts: Sequence[SequenceBatch] = batch
        steps = max(int(b.features.shape[1]) for b in parts)
        features = torch.cat(
            [torch.nn.functional.pad(b.features, (0, 0, 0, steps - b.features.shape[1])) for b in parts]
        )
        lengths = torch.cat([b.lengths for b in parts])
        targets = torch.cat([b.targets for b in parts])
        return SequenceBatch(features, lengths, targets)
    raise TypeError(
        "Expected a SequenceBatch or a non-empty list of SequenceBatch, "
        f"but got {_type_name(batch)}."
    )


def _type_name(value: Any) -> str:
    return type(value).__name__
