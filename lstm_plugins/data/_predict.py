"""Batches for prediction: sequences sorted by length (little padding), results back in input order.

Sorting a prediction set by length before cutting it into batches puts sequences of similar
length together, so a batch pads little; the results are then put back in the order the
sequences were given. :func:`prediction_loader` builds such a loader for ``Trainer.predict``
(the data modules' ``predict_dataloader`` uses it) and :func:`restore_input_order` reorders what
``Trainer.predict`` returns; :func:`lstm_plugins.model.predict_sequences` batches the same way
without a Trainer.

Example:
    >>> import numpy as np
    >>> lengths = np.array([2, 5, 3, 5, 1])
    >>> [batch.tolist() for batch in length_batches(lengths, 2)]
    [[1, 3], [2, 0], [4]]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from lstm_plugins import validation as check
from lstm_plugins.data._arrays import as_sequence_arrays, concatenate
from lstm_plugins.data._batch import PaddedSequenceDataset, collate_sequence_batch

__all__ = [
    "LengthSortedSampler",
    "PredictionLoaders",
    "length_batches",
    "length_sorted_order",
    "prediction_loader",
    "resolve_standardization",
    "restore_input_order",
    "standardize_values",
]


def length_sorted_order(lengths: Sequence[int] | np.ndarray | Tensor) -> np.ndarray:
    """Positions sorted by length, longest first; equal lengths keep their input order.

    Example:
        >>> length_sorted_order([2, 5, 3, 5]).tolist()
        [1, 3, 2, 0]
    """
    values = np.asarray(lengths.cpu() if isinstance(lengths, Tensor) else lengths, dtype=np.int64)
    return np.argsort(-values, kind="stable")


def length_batches(
    lengths: Sequence[int] | np.ndarray | Tensor, batch_size: int, *, equal_lengths: bool = False
) -> list[np.ndarray]:
    """Positions grouped into batches of at most ``batch_size``, in :func:`length_sorted_order`.

    With ``equal_lengths=True`` a batch only holds sequences of one length (no padding at all:
    what a task that carries the LSTM's state from chunk to chunk needs).
    """
    check.positive_int("batch_size", batch_size)
    values = np.asarray(lengths.cpu() if isinstance(lengths, Tensor) else lengths, dtype=np.int64)
    order = length_sorted_order(values)
    groups = [order]
    if equal_lengths and order.size:
        changes = np.flatnonzero(np.diff(values[order])) + 1
        groups = np.split(order, changes)
    return [group[start : start + batch_size] for group in groups for start in range(0, len(group), batch_size)]


def resolve_standardization(standardize_with: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean, std)`` float64 per-feature statistics, or ``None`` for no standardisation.

    Args:
        standardize_with: ``None``; a data module (or anything with ``feature_mean`` and
            ``feature_std``, and ``standardize`` false to mean none); or a ``(mean, std)`` pair.
    """
    if standardize_with is None:
        return None
    if hasattr(standardize_with, "feature_mean") and hasattr(standardize_with, "feature_std"):
        if not getattr(standardize_with, "standardize", True):
            return None
        mean, std = standardize_with.feature_mean, standardize_with.feature_std
    elif isinstance(standardize_with, (tuple, list)) and len(standardize_with) == 2:
        mean, std = standardize_with
    else:
        raise TypeError(
            "Expected `standardize` to be None, a data module or a (mean, std) pair, but got "
            f"{type(standardize_with).__name__}."
        )
    mean = np.asarray(mean.cpu() if isinstance(mean, Tensor) else mean, dtype=np.float64)
    std = np.asarray(std.cpu() if isinstance(std, Tensor) else std, dtype=np.float64)
    if mean.ndim != 1 or mean.shape != std.shape:
        raise ValueError(
            f"Expected a per-feature mean and std of one shape (num_features,), but got {mean.shape} and {std.shape}."
        )
    if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std <= 0).any():
        raise ValueError("Expected a finite mean and a finite, positive std.")
    return mean, std


def standardize_values(values: np.ndarray, statistics: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """``(values - mean) / std`` as float32, computed as the data modules do (in float64)."""
    if statistics is None:
        return values
    mean, std = statistics
    if values.shape[-1] != mean.shape[0]:
        raise ValueError(
            f"Expected sequences with {mean.shape[0]} features, as the standardisation statistics "
            f"have, but got {values.shape[-1]}."
        )
    return ((values - mean) / std).astype(np.float32)


class LengthSortedSampler(Sampler[int]):
    """Hands out a dataset's positions in :func:`length_sorted_order`.

    Attributes:
        lengths: ``(N,)`` int64 length of each sequence, in input order.
        order: ``(N,)`` the positions in the order they are handed out.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray | Tensor) -> None:
        self.lengths = np.asarray(lengths.cpu() if isinstance(lengths, Tensor) else lengths, dtype=np.int64)
        self.order = length_sorted_order(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order.tolist())

    def __len__(self) -> int:
        return int(self.order.shape[0])


def prediction_loader(
    sequences: Sequence[np.ndarray] | PaddedSequenceDataset,
    batch_size: int = 32,
    *,
    standardize_with: Any = None,
    num_workers: int = 0,
) -> DataLoader[Any]:
    """A loader for ``Trainer.predict``: :class:`SequenceBatch` batches sorted by length.

    Pass what ``Trainer.predict`` returns for it to :func:`restore_input_order` to get the
    predictions in the order of ``sequences``. Under DDP each process predicts a share; use one
    process (or a prediction writer) to collect them in order.

    Args:
        sequences: ``(length, num_features)`` float arrays, or a :class:`PaddedSequenceDataset`
            (used as it is: already standardised, its ``targets`` kept).
        batch_size: sequences per batch.
        standardize_with: a data module whose training statistics standardise the arrays (as
            its own splits are), a ``(mean, std)`` pair, or ``None``.
        num_workers: ``DataLoader`` worker processes.

    Returns:
        A ``DataLoader`` whose ``sampler`` is a :class:`LengthSortedSampler`. For arrays, each
        batch's ``targets`` hold the sequences' positions in ``sequences``.

    Example:
        >>> import numpy as np
        >>> loader = prediction_loader([np.ones((2, 3)), np.ones((5, 3)), np.ones((1, 3))], batch_size=2)
        >>> [(batch.lengths.tolist(), batch.targets.tolist()) for batch in loader]
        [([5, 2], [1, 0]), ([1], [2])]
    """
    check.positive_int("batch_size", batch_size)
    check.int_at_least("num_workers", num_workers, 0)
    if isinstance(sequences, PaddedSequenceDataset):
        if standardize_with is not None:
            raise ValueError(
                "Expected `standardize_with=None` for a PaddedSequenceDataset, which holds "
                "sequences as they are fed to the model (the data modules' are standardised)."
            )
        dataset = sequences
    else:
        arrays = as_sequence_arrays("sequences", sequences)
        values, lengths = concatenate(arrays, arrays[0].shape[1])
        values = standardize_values(values, resolve_standardization(standardize_with))
        dataset = PaddedSequenceDataset.from_concatenated(values, lengths, np.arange(len(arrays), dtype=np.int64))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=LengthSortedSampler(dataset.lengths),
        collate_fn=collate_sequence_batch,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        drop_last=False,
    )


class PredictionLoaders:
    """``predict_dataloader`` for a data module with ``test_dataset``, ``feature_mean`` /
    ``feature_std``, ``batch_size`` and ``num_workers`` (a mixin of :class:`SequenceDataModule`)."""

    def predict_dataloader(self, sequences: Sequence[np.ndarray] | None = None) -> DataLoader[Any]:
        """Batches for ``Trainer.predict``: the test split, or ``sequences`` standardised with this
        module's training statistics; sorted by length (see :func:`prediction_loader`). Put what
        ``Trainer.predict`` returns back in input order with :func:`restore_input_order`.

        Raises:
            ValueError: no ``sequences`` and no test data.
        """
        module: Any = self
        if sequences is None:
            dataset = module.test_dataset
            if dataset is None:
                raise ValueError(
                    "Expected test data for `predict_dataloader`, but the data module was built "
                    "without `test_sequences`; pass the sequences to predict: "
                    "`datamodule.predict_dataloader(sequences)`."
                )
            return prediction_loader(dataset, module.batch_size, num_workers=module.num_workers)
        return prediction_loader(
            sequences, module.batch_size, standardize_with=module, num_workers=module.num_workers
        )


def _sampler_of(loader: Any) -> LengthSortedSampler:
    sampler = getattr(loader, "sampler", loader)
    if not isinstance(sampler, LengthSortedSampler):
        raise TypeError(
            "Expected a loader from `prediction_loader` / `predict_dataloader` (or its "
            f"LengthSortedSampler), but got {type(loader).__name__}."
        )
    return sampler


def restore_input_order(outputs: Sequence[Tensor], loader: Any, *, per_step: bool = False) -> Tensor | list[Tensor]:
    """What ``Trainer.predict`` returned for a :func:`prediction_loader`, in input order.

    Args:
        outputs: the per-batch predictions, in the loader's order.
        loader: the loader (or another loader built the same way: the order depends only on
            the lengths), or its :class:`LengthSortedSampler`.
        per_step: whether the predictions are per step ``(batch, time, ...)``.

    Returns:
        One tensor ``(N, ...)`` (on the CPU) for one prediction per sequence; for per-step
        predictions, a list of ``(length, ...)`` tensors, each cut to its sequence's length.

    Example:
        >>> import numpy as np
        >>> loader = prediction_loader([np.ones((2, 1)), np.ones((5, 1)), np.ones((1, 1))], batch_size=2)
        >>> restore_input_order([batch.lengths.float() for batch in loader], loader).tolist()
        [2.0, 5.0, 1.0]
    """
    sampler = _sampler_of(loader)
    rows = [row for output in outputs for row in output.detach().cpu()]
    if len(rows) != len(sampler):
        raise ValueError(f"Expected {len(sampler)} predictions, one per sequence, but got {len(rows)}.")
    ordered: list[Tensor] = [rows[0]] * len(rows)
    for row, position in zip(rows, sampler.order.tolist()):
        ordered[position] = row[: int(sampler.lengths[position])] if per_step else row
    return ordered if per_step else torch.stack(ordered)
