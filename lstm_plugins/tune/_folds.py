"""Cross-validation folds of the training split: the data a study reads (never the test split).

Classification folds are stratified (each class spread over the folds in turn, after a seeded
shuffle), regression folds are a seeded shuffle cut in ``k`` parts. Each fold is a
:class:`~lstm_plugins.data.SequenceDataModule` of the other folds' sequences, standardised with
their own statistics, with the fold as its validation split and no test split at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_plugins import validation as check
from lstm_plugins.data import SequenceDataModule, length_batching_pays
from lstm_plugins.data._arrays import Split

__all__ = ["FoldDataModule", "fold_datamodules", "kfold_indices", "stratified_kfold_indices"]


def stratified_kfold_indices(labels: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Validation indices of ``folds`` stratified folds: every class is shuffled (seeded) and
    dealt over the folds in turn, continuing where the previous class stopped, so fold sizes
    differ by at most one and each class's count per fold by at most one.

    Example:
        >>> labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
        >>> parts = stratified_kfold_indices(labels, 2)
        >>> [np.bincount(labels[part]).tolist() for part in parts]
        [[2, 3], [2, 3]]
        >>> sorted(np.concatenate(parts).tolist()) == list(range(10))
        True
    """
    folds = check.int_at_least("folds", folds, 2)
    labels = np.asarray(labels)
    if len(labels) < folds:
        raise ValueError(f"Expected at least `folds` ({folds}) training sequences, but got {len(labels)}.")
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    start = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        assignment[members] = (start + np.arange(len(members))) % folds
        start = (start + len(members)) % folds
    return [np.sort(np.flatnonzero(assignment == fold)) for fold in range(folds)]


def kfold_indices(count: int, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Validation indices of ``folds`` folds of a seeded shuffle of ``range(count)``.

    Example:
        >>> [len(part) for part in kfold_indices(10, 3)]
        [4, 3, 3]
    """
    folds = check.int_at_least("folds", folds, 2)
    if count < folds:
        raise ValueError(f"Expected at least `folds` ({folds}) training sequences, but got {count}.")
    order = np.random.default_rng(seed).permutation(count)
    return [np.sort(part) for part in np.array_split(order, folds)]


def _sequences(split: Split) -> list[np.ndarray]:
    return list(np.split(split.values, np.cumsum(split.lengths)[:-1]))


class FoldDataModule(SequenceDataModule):
    """A :class:`SequenceDataModule` training on ``train`` and validating on ``val`` (raw
    :class:`~lstm_plugins.data._arrays.Split` s of one training split), with no test data.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> split = Split(rng.normal(size=(40, 2)).astype(np.float32), np.full(10, 4), np.arange(10) % 2)
        >>> fold = FoldDataModule(split.take(np.arange(6)), split.take(np.arange(6, 10)), num_classes=2, batch_size=4)
        >>> len(fold.train_dataset), len(fold.val_dataset), fold.has_test
        (6, 4, False)
    """

    def __init__(self, train: Split, val: Split, **options: Any) -> None:
        super().__init__(_sequences(train), train.labels, val_fraction=0.0, **options)
        # The fold's validation sequences, standardised (in `_dataset`) with the fold's training statistics.
        self._val = val
        self._val_indices = np.arange(len(val))


def fold_datamodules(datamodule: SequenceDataModule, folds: int, seed: int, batch_size: int,
                     **options: Any) -> list[FoldDataModule]:
    """One :class:`FoldDataModule` per fold of ``datamodule``'s training sequences (its
    training and validation splits together; its test split is not touched). ``options``
    (``standardize``, ``length_batching``) override the data module's. Automatic
    ``length_batching`` (``None``) is decided once, on all those sequences at ``batch_size``,
    so every fold batches the same way.

    Example:
        >>> from lstm_plugins.data import ArchiveDataModule
        >>> parts = fold_datamodules(ArchiveDataModule("arrow_head", val_fraction=0.0), 3, 0, 8)
        >>> [(len(p.train_dataset), len(p.val_dataset)) for p in parts]
        [(24, 12), (24, 12), (24, 12)]
    """
    training = datamodule._train
    if datamodule._val is not None:  # a config's validation split is training data too
        training = Split(np.concatenate([training.values, datamodule._val.values]),
                         np.concatenate([training.lengths, datamodule._val.lengths]),
                         np.concatenate([training.labels, datamodule._val.labels]))
    options = {**dict(task=datamodule.task, batch_size=batch_size, standardize=datamodule.standardize, seed=seed,
                      num_workers=datamodule.num_workers, length_batching=datamodule.length_batching), **options}
    if options["length_batching"] is None:
        # Decided once, on all the training sequences: every fold batches the same way.
        options["length_batching"] = bool(length_batching_pays(training.lengths, options["batch_size"]))
    if datamodule.task == "classification":
        parts = stratified_kfold_indices(training.labels, folds, seed)
        options.update(num_classes=datamodule.num_classes, class_names=datamodule.class_names)
    else:
        parts = kfold_indices(len(training), folds, seed)
    modules = []
    for part in parts:
        rest = np.setdiff1d(np.arange(len(training)), part)
        modules.append(FoldDataModule(training.take(rest), training.take(part), **options))
    return modules
