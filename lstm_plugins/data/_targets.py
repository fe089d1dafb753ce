"""What a data module's targets are, per task (private): class labels or regression values,
their validation, the validation split and, for regression, the targets' statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from lstm_plugins import validation as check
from lstm_plugins.data._arrays import as_label_array, as_target_array
from lstm_plugins.data._batch import PaddedSequenceDataset
from lstm_plugins.data._checks import check_class_coverage

__all__ = [
    "TASKS", "DataTask", "check_classes", "check_model_task", "dataset", "random_split", "stratified_split", "target_statistics",
    "task_targets",
]

DataTask = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")

_STD_FLOOR = 1e-8


def task_targets(task: str, name: str, labels: Any, *, count: int, sequences_name: str) -> np.ndarray:
    """``labels`` as int64 class indices (classification) or float32 targets (regression),
    refusing the other task's kind of target with a message that names the ``task`` argument.

    Example:
        >>> task_targets("regression", "y", [0.5, 2.0], count=2, sequences_name="x").tolist()
        [0.5, 2.0]
        >>> task_targets("classification", "y", [0.5, 2.0], count=2, sequences_name="x")
        Traceback (most recent call last):
        ...
        TypeError: Expected `y` to be a 1-D array of integers, but got dtype float64. For float \
(regression) targets, build the data module with task='regression'.
    """
    if task == "regression":
        return as_target_array(name, labels, count=count, sequences_name=sequences_name)
    if not isinstance(labels, (str, bytes)):
        try:
            dtype = np.asarray(labels).dtype
        except (TypeError, ValueError):
            dtype = None
        if dtype is not None and dtype.kind == "f":
            raise TypeError(
                f"Expected `{name}` to be a 1-D array of integers, but got dtype {dtype}. For "
                "float (regression) targets, build the data module with task='regression'."
            )
    return as_label_array(name, labels, count=count, sequences_name=sequences_name)


def check_model_task(model: Any, task: str) -> None:
    """Refuse a model whose task is the other of classification and regression (other tasks
    and objects without a task pass).

    Example:
        >>> from lstm_plugins import LSTMRegressor
        >>> check_model_task(LSTMRegressor(2), "classification")
        Traceback (most recent call last):
        ...
        ValueError: The model's task is regression, but the data module holds classification targets ...
    """
    found = getattr(getattr(model, "task", None), "name", None)
    if found in TASKS and found != task:
        wanted = "a classifier" if task == "classification" else "a regressor (LSTMRegressor)"
        raise ValueError(
            f"The model's task is {found}, but the data module holds {task} targets "
            f"(task={task!r}); use {wanted}, or build the data module with task={found!r}."
        )


def check_classes(
    num_classes: Any, class_names: Any, train_labels: np.ndarray, test_labels: np.ndarray | None
) -> tuple[int, tuple[str, ...]]:
    """The class count and names, checked against the labels of both splits.

    A class with no training sample is refused when the count is inferred from the labels
    (labels {3, 7} would otherwise make 8 classes, 6 of them phantoms), and named in a
    :class:`~lstm_plugins.data.ClassCoverageWarning` when ``num_classes`` or ``class_names``
    declares it.

    Example:
        >>> check_classes(None, None, np.array([0, 2, 1]), None)
        (3, ('0', '1', '2'))
        >>> check_classes(None, None, np.array([0, 1]), np.array([1, 2]))
        Traceback (most recent call last):
        ...
        ValueError: Class(es) 2 ('2', first at `test_labels[1]`) have no sample in `train_labels`, ...
    """
    names: tuple[str, ...] | None = None
    if class_names is not None:
        is_sequence = isinstance(class_names, (Sequence, np.ndarray))
        if isinstance(class_names, (str, bytes)) or not is_sequence:
            raise TypeError(
                f"Expected `class_names` to be a sequence of str, but got {type(class_names).__name__}."
            )
        names = tuple(class_names)
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise TypeError(f"Expected `class_names[{i}]` to be a str, but got {type(name).__name__}.")
            if name in names[:i]:
                raise ValueError(f"Expected distinct `class_names`, but `class_names[{i}]` repeats {name!r}.")
    if num_classes is not None:
        count = check.int_at_least("num_classes", num_classes, 2)
    else:
        highest = int(train_labels.max())
        if test_labels is not None:
            highest = max(highest, int(test_labels.max()))
        count = highest + 1
        if names is not None and len(names) > count:
            count = len(names)  # classes absent from the labels are named explicitly
    if count < 2:
        raise ValueError(f"Expected `num_classes` to be an int >= 2, but got {count}.")
    if names is not None and len(names) != count:
        raise ValueError(f"Expected `class_names` to have one name per class ({count}), but got {len(names)}.")
    for label_name, labels in (("train_labels", train_labels), ("test_labels", test_labels)):
        if labels is None:
            continue
        bad = np.flatnonzero((labels < 0) | (labels >= count))
        if bad.size:
            raise ValueError(
                f"Expected `{label_name}` in [0, {count}), but `{label_name}[{bad[0]}]` is {labels[bad[0]]}."
            )
    names = names if names is not None else tuple(str(i) for i in range(count))
    check_class_coverage(
        count, names, {"train_labels": train_labels, "test_labels": test_labels},
        declared=num_classes is not None or class_names is not None,
    )
    return count, names


def _no_validation_left(val_fraction: float, count: int) -> ValueError:
    return ValueError(
        f"Expected `val_fraction` to leave at least one validation sequence, but {val_fraction} of "
        f"{count} training sequences leaves none; use val_fraction=0 to train without validation."
    )


def stratified_split(
    labels: np.ndarray, num_classes: int, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train, validation)`` positions: ``val_fraction`` of every class (rounded) moves
    to validation, every class keeping at least one training sample.

    Example:
        >>> train, val = stratified_split(np.array([0, 0, 0, 0, 1, 1]), 2, 0.5, seed=0)
        >>> len(train), len(val)
        (3, 3)
    """
    all_indices = np.arange(labels.shape[0], dtype=np.int64)
    if val_fraction == 0.0:
        return all_indices, np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    val_parts: list[np.ndarray] = []
    for cls in range(num_classes):
        members = np.flatnonzero(labels == cls)
        if members.size == 0:
            continue
        count = min(int(np.floor(val_fraction * members.size + 0.5)), members.size - 1)
        val_parts.append(rng.permutation(members)[:count])
    val = np.sort(np.concatenate(val_parts)).astype(np.int64)
    if val.size == 0:
        raise _no_validation_left(val_fraction, labels.shape[0])
    return np.setdiff1d(all_indices, val, assume_unique=True), val


def random_split(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train, validation)`` positions of a seeded random split (regression: no
    strata); ``val_fraction`` of the sequences (rounded) move, at least one stays for training.

    Example:
        >>> train, val = random_split(10, 0.2, seed=0)
        >>> len(train), len(val), sorted(np.concatenate([train, val]).tolist()) == list(range(10))
        (8, 2, True)
    """
    all_indices = np.arange(count, dtype=np.int64)
    if val_fraction == 0.0:
        return all_indices, np.zeros(0, dtype=np.int64)
    size = min(int(np.floor(val_fraction * count + 0.5)), count - 1)
    if size == 0:
        raise _no_validation_left(val_fraction, count)
    val = np.sort(np.random.default_rng(seed).permutation(count)[:size]).astype(np.int64)
    return np.setdiff1d(all_indices, val, assume_unique=True), val


def target_statistics(targets: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-output mean and standard deviation of regression targets (a constant output gets a
    standard deviation of 1, so standardising never divides by zero).

    Example:
        >>> target_statistics(np.array([1.0, 3.0], dtype=np.float32))
        ((2.0,), (1.0,))
        >>> target_statistics(np.array([[1.0, 5.0], [3.0, 5.0]]))
        ((2.0, 5.0), (1.0, 1.0))
    """
    values = targets.reshape(targets.shape[0], -1).astype(np.float64)
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    std = np.where(std > _STD_FLOOR * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def dataset(values: np.ndarray, lengths: np.ndarray, targets: np.ndarray) -> PaddedSequenceDataset:
    """A :class:`PaddedSequenceDataset` keeping the targets' dtype (float32 for regression).

    Example:
        >>> built = dataset(np.ones((5, 2), np.float32), np.array([3, 2]), np.array([0.5, -1.0]))
        >>> built.targets, tuple(built.features.shape)
        (tensor([ 0.5000, -1.0000]), (2, 3, 2))
    """
    if targets.dtype.kind != "f":
        return PaddedSequenceDataset.from_concatenated(values, lengths, targets)
    built = PaddedSequenceDataset.from_concatenated(values, lengths, np.zeros(len(lengths), np.int64))
    built.targets = torch.from_numpy(np.array(targets, dtype=np.float32))
    return built
