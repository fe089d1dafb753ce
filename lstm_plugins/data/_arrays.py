"""Sequences and labels as validated arrays (private): the data modules' input door."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["Split", "as_label_array", "as_sequence_arrays", "as_target_array", "concatenate"]


def as_sequence_arrays(name: str, sequences: Any) -> list[np.ndarray]:
    """Validate ``sequences`` and return them as C-contiguous float32 ``(length, features)`` arrays.

    Float64 and integer arrays are converted; tensors are detached and copied to the CPU.
    Rejects: a non-sequence, an empty collection, an element that is not a 2-D real array, a
    sequence with no time step or no feature, feature counts that differ between sequences,
    and NaN or infinite values (including float64 values too large for float32).
    """
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, (Sequence, np.ndarray)):
        raise TypeError(
            f"Expected `{name}` to be a sequence of 2-D arrays of shape (length, num_features), "
            f"but got {type(sequences).__name__}."
        )
    if len(sequences) == 0:
        raise ValueError(f"Expected `{name}` to contain at least one sequence, but got 0.")
    arrays: list[np.ndarray] = []
    num_features: int | None = None
    for index, sequence in enumerate(sequences):
        item = f"{name}[{index}]"
        if isinstance(sequence, Tensor):  # on any device, with or without autograd history
            sequence = sequence.detach().cpu()
        try:
            array = np.asarray(sequence)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"Expected `{item}` to be a 2-D array of shape (length, num_features), "
                f"but it could not be converted to an array: {error}"
            ) from None
        if array.dtype.kind not in "iuf":
            raise TypeError(
                f"Expected `{item}` to hold real numbers, but got an array of dtype {array.dtype}."
            )
        if array.ndim != 2:
            raise ValueError(
                f"Expected `{item}` to be a 2-D array of shape (length, num_features), "
                f"but got shape {array.shape}."
            )
        length, features = array.shape
        if length == 0:
            raise ValueError(
                f"Expected `{item}` to have at least one time step, but got shape {array.shape}."
            )
        if features == 0:
            raise ValueError(
                f"Expected `{item}` to have at least one feature, but got shape {array.shape}."
            )
        if num_features is None:
            num_features = features
        elif features != num_features:
            raise ValueError(
                f"Expected every sequence in `{name}` to have {num_features} features like "
                f"`{name}[0]`, but `{item}` has {features}."
            )
        with np.errstate(over="ignore"):
            array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ValueError(
                f"Expected `{item}` to contain only finite float32 values, "
                "but it contains NaN or infinity."
            )
        arrays.append(array)
    return arrays


def as_label_array(name: str, labels: Any, *, count: int, sequences_name: str) -> np.ndarray:
    """Validate ``labels`` (1-D, integer dtype, ``count`` entries) and return them as int64."""
    if isinstance(labels, (str, bytes)):
        raise TypeError(f"Expected `{name}` to be a 1-D array of integers, but got a string.")
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"Expected `{name}` to be a 1-D array of integers, but it could not be converted "
            f"to an array: {error}"
        ) from None
    if array.dtype.kind not in "iu":
        hint = (
            "; map text labels to class indices with `np.unique(labels, return_inverse=True)` and pass "
            "the unique labels as `class_names`" if array.dtype.kind in "USO" else ""
        )
        raise TypeError(
            f"Expected `{name}` to be a 1-D array of integers, but got dtype {array.dtype}{hint}."
        )
    if array.ndim != 1:
        raise ValueError(f"Expected `{name}` to be a 1-D array, but got shape {array.shape}.")
    if array.shape[0] != count:
        raise ValueError(
            f"Expected `{name}` to have one label per sequence in `{sequences_name}` ({count}), "
            f"but got {array.shape[0]}."
        )
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"Expected `{name}` to fit in int64, but got {int(array.max())}.")
    return array.astype(np.int64, copy=True)


def as_target_array(name: str, targets: Any, *, count: int, sequences_name: str) -> np.ndarray:
    """Validate regression ``targets`` and return them as float32: ``(count,)`` for one output,
    ``(count, num_outputs)`` for several (a ``(count, 1)`` array becomes ``(count,)``).

    Rejects integer or boolean dtypes (class indices belong to a classification task), other
    shapes, and NaN or infinite values (including float64 values too large for float32).

    Example:
        >>> as_target_array("y", [[0.5], [2.0]], count=2, sequences_name="x")
        array([0.5, 2. ], dtype=float32)
        >>> as_target_array("y", [1, 2], count=2, sequences_name="x")
        Traceback (most recent call last):
        ...
        TypeError: Expected `y` to be regression targets of a float dtype, but got dtype int64 (class indices?); ...
    """
    expected = f"a float array of shape ({count},) or ({count}, num_outputs)"
    if isinstance(targets, (str, bytes)):
        raise TypeError(f"Expected `{name}` to be {expected}, but got a string.")
    try:
        array = np.asarray(targets)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"Expected `{name}` to be {expected}, but it could not be converted to an array: {error}"
        ) from None
    if array.dtype.kind != "f":
        hint = (" (class indices?); use task='classification' for class labels, or convert "
                "numeric targets with .astype(float)") if array.dtype.kind in "iub" else ""
        raise TypeError(
            f"Expected `{name}` to be regression targets of a float dtype, but got dtype "
            f"{array.dtype}{hint}."
        )
    if array.ndim not in (1, 2) or array.shape[0] != count or (array.ndim == 2 and array.shape[1] == 0):
        raise ValueError(
            f"Expected `{name}` to be {expected} (one row per sequence in `{sequences_name}`), "
            f"but got shape {array.shape}."
        )
    with np.errstate(over="ignore"):
        array = np.array(array, dtype=np.float32)  # a copy
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).reshape(count, -1).all(axis=1))[0])
        raise ValueError(
            f"Expected `{name}` to contain only finite float32 values, but `{name}[{bad}]` is "
            f"{np.asarray(targets)[bad].tolist()}."
        )
    return array.reshape(count) if array.ndim == 2 and array.shape[1] == 1 else array


def concatenate(arrays: Sequence[np.ndarray], num_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``(length, F)`` arrays into one ``(sum(length), F)`` float32 array plus int64 lengths."""
    lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=len(arrays))
    if not arrays:
        return np.zeros((0, num_features), dtype=np.float32), lengths
    return np.concatenate(arrays, axis=0).astype(np.float32, copy=False), lengths


class Split:
    """Concatenated raw values of one split: ``values[offsets[i]:offsets[i + 1]]`` is sequence ``i``."""

    def __init__(self, values: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> None:
        self.values = values
        self.lengths = lengths
        self.labels = labels

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def take(self, indices: np.ndarray) -> Split:
        """Sub-split of the sequences at sorted, unique ``indices`` (order preserved)."""
        keep = np.zeros(len(self), dtype=bool)
        keep[indices] = True
        rows = np.repeat(keep, self.lengths)
        return Split(self.values[rows], self.lengths[keep], self.labels[keep])
