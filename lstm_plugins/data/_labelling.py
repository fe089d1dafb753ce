"""A Lightning data module for sequence labelling: one class per valid step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl

from lstm_plugins import validation as check
from lstm_plugins.data._arrays import as_sequence_arrays, concatenate
from lstm_plugins.data._checks import check_class_coverage, feature_statistics
from lstm_plugins.data._datamodule import SequenceDataModule
from lstm_plugins.data._loaders import SplitLoaders
from lstm_plugins.data._step_labels import StepLabelledDataset, as_step_labels, check_class_names, collate_step_batch

__all__ = ["SequenceLabellingDataModule"]


class _Steps:
    """Concatenated values and step labels of one split."""

    def __init__(self, values: np.ndarray, lengths: np.ndarray, labels: np.ndarray) -> None:
        self.values, self.lengths, self.labels = values, lengths, labels

    def take(self, indices: np.ndarray) -> _Steps:
        keep = np.zeros(self.lengths.shape[0], dtype=bool)
        keep[indices] = True
        rows = np.repeat(keep, self.lengths)
        return _Steps(self.values[rows], self.lengths[keep], self.labels[rows])


def _locate(split: _Steps | None, name: str, index: int) -> str:
    """Where the ``index``-th concatenated step label sits: ``name[sequence]`` at ``step``."""
    assert split is not None
    offsets = np.cumsum(split.lengths)
    sequence = int(np.searchsorted(offsets, index, side="right"))
    step = int(index - (offsets[sequence - 1] if sequence else 0))
    return f"`{name}[{sequence}]` at step {step}"


class SequenceLabellingDataModule(SplitLoaders, pl.LightningDataModule):
    """Data module for labelling every step of variable-length multivariate sequences.

    Everything is validated when the module is built: one label array per sequence, as long as
    it, of integers in ``[0, num_classes)``. The validation split is either given
    (``val_sequences``/``val_labels``) or a random ``val_fraction`` of the training sequences
    (``numpy.random.default_rng(seed)``). Per-feature standardisation statistics are fitted on
    the training split only (valid steps, never padding) and applied to every split. Batches are
    :class:`SequenceBatch` objects with ``(batch, time)`` targets, ``-100`` on padded steps.

    Args:
        train_sequences: float arrays of shape ``(length, num_features)``.
        train_labels: one 1-D integer array per training sequence (a class per step).
        test_sequences, test_labels: optional test data, given together.
        val_sequences, val_labels: optional validation data, given together (then
            ``val_fraction`` must be left out).
        num_classes: number of classes; inferred as ``max(label) + 1`` (or ``len(class_names)``).
        class_names: one name per class; defaults to ``"0"``, ``"1"``, ...
        val_fraction: share of the training sequences moved to validation, in ``[0, 1)``
            (default 0.1 without ``val_sequences``); ``0`` disables validation.
        batch_size, standardize, seed, num_workers, length_batching: as for
            :class:`SequenceDataModule`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> sequences = [rng.normal(size=(int(n), 3)) for n in rng.integers(2, 9, size=20)]
        >>> labels = [np.arange(len(s)) % 2 for s in sequences]
        >>> dm = SequenceLabellingDataModule(sequences, labels, batch_size=4, val_fraction=0.25)
        >>> dm.num_classes, len(dm.train_dataset), len(dm.val_dataset)
        (2, 15, 5)
        >>> batch = next(iter(dm.train_dataloader()))
        >>> batch.targets.shape == batch.features.shape[:2]
        True
    """

    collate_fn = staticmethod(collate_step_batch)
    missing_test = (
        "Expected test data for `test_dataloader`, but the data module was built without `test_sequences`."
    )

    def __init__(
        self,
        train_sequences: Sequence[np.ndarray],
        train_labels: Sequence[Any],
        test_sequences: Sequence[np.ndarray] | None = None,
        test_labels: Sequence[Any] | None = None,
        *,
        val_sequences: Sequence[np.ndarray] | None = None,
        val_labels: Sequence[Any] | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        val_fraction: float | None = None,
        batch_size: int = 32,
        standardize: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        length_batching: bool | None = None,
    ) -> None:
        super().__init__()
        self.set_loading(batch_size, seed, num_workers, length_batching)
        self.standardize = check.boolean("standardize", standardize)
        if val_sequences is not None and val_fraction is not None:
            raise ValueError(
                "Expected either `val_sequences` or `val_fraction`, but got both; the validation "
                "split is given, so leave `val_fraction` out."
            )
        default = 0.0 if val_sequences is not None else 0.1
        self.val_fraction = check.probability("val_fraction", default if val_fraction is None else val_fraction)

        full_train = self._split("train", train_sequences, train_labels, None)
        self._num_features = int(full_train.values.shape[1])
        test = self._split("test", test_sequences, test_labels, self._num_features)
        given_val = self._split("val", val_sequences, val_labels, self._num_features)
        splits = {"train": full_train, "val": given_val, "test": test}
        self._num_classes, self._class_names = self._classes(num_classes, class_names, splits)
        for name, split in splits.items():
            if split is not None:
                self._check_range(name, split)

        count = full_train.lengths.shape[0]
        if self.val_fraction == 0.0:
            train_idx, val_idx = np.arange(count), np.zeros(0, dtype=np.int64)
        else:
            moved = int(np.floor(self.val_fraction * count + 0.5))
            if not 0 < moved < count:
                raise ValueError(
                    f"Expected `val_fraction` to leave at least one validation and one training "
                    f"sequence, but {self.val_fraction} of {count} training sequences leaves "
                    f"{moved}; use val_fraction=0 to train without validation."
                )
            val_idx = np.sort(np.random.default_rng(self.seed).permutation(count)[:moved])
            train_idx = np.setdiff1d(np.arange(count), val_idx, assume_unique=True)
        self._train = full_train.take(train_idx)
        self._val = full_train.take(val_idx) if val_idx.size else given_val
        self._test = test
        if self.standardize:
            self.feature_mean, self.feature_std = feature_statistics(self._train.values)
        else:
            self.feature_mean = np.zeros(self._num_features, dtype=np.float64)
            self.feature_std = np.ones(self._num_features, dtype=np.float64)
        self._datasets: dict[str, StepLabelledDataset] = {}

    @staticmethod
    def _split(name: str, sequences: Any, labels: Any, num_features: int | None) -> _Steps | None:
        if name != "train" and (sequences is None) != (labels is None):
            missing = f"{name}_labels" if labels is None else f"{name}_sequences"
            raise ValueError(
                f"Expected `{name}_sequences` and `{name}_labels` to be given together, but "
                f"`{missing}` is missing."
            )
        if sequences is None:
            return None
        arrays = as_sequence_arrays(f"{name}_sequences", sequences)
        if num_features is not None and arrays[0].shape[1] != num_features:
            raise ValueError(
                f"Expected `{name}_sequences` to have {num_features} features like `train_sequences`, "
                f"but `{name}_sequences[0]` has {arrays[0].shape[1]}."
            )
        values, lengths = concatenate(arrays, arrays[0].shape[1])
        steps = as_step_labels(f"{name}_labels", labels, lengths, f"{name}_sequences")
        return _Steps(values, lengths, steps)

    @staticmethod
    def _classes(num_classes: Any, class_names: Any, splits: dict[str, _Steps | None]) -> tuple[int, tuple[str, ...]]:
        names = None if class_names is None else check_class_names(class_names)
        if num_classes is not None:
            count = check.int_at_least("num_classes", num_classes, 2)
        elif names is not None:
            count = len(names)
        else:
            count = max(int(split.labels.max()) for split in splits.values() if split is not None) + 1
            if count < 2:
                raise ValueError(f"Expected at least 2 classes, but the labels hold {count}; pass `num_classes`.")
        if names is not None and len(names) != count:
            raise ValueError(f"Expected `class_names` to have one name per class ({count}), but got {len(names)}.")
        names = names if names is not None else tuple(str(i) for i in range(count))
        labels = {f"{name}_labels": None if split is None else split.labels for name, split in splits.items()}
        if all(split is None or ((split.labels >= 0) & (split.labels < count)).all() for split in splits.values()):
            # out-of-range labels are refused by _check_range, which names them first
            check_class_coverage(count, names, labels, declared=num_classes is not None or class_names is not None,
                                 locate=lambda name, index: _locate(splits[name.removesuffix("_labels")], name, index))
        return count, names

    def _check_range(self, name: str, split: _Steps) -> None:
        bad = np.flatnonzero((split.labels < 0) | (split.labels >= self._num_classes))
        if bad.size:
            offsets = np.cumsum(split.lengths)
            sequence = int(np.searchsorted(offsets, bad[0], side="right"))
            step = int(bad[0] - (offsets[sequence - 1] if sequence else 0))
            raise ValueError(
                f"Expected `{name}_labels` in [0, {self._num_classes}), but `{name}_labels[{sequence}]` "
                f"is {split.labels[bad[0]]} at step {step}."
            )

    # ------------------------------------------------------------------ properties
    @property
    def num_features(self) -> int:
        """Features per time step."""
        return self._num_features

    @property
    def num_classes(self) -> int:
        """Number of step labels."""
        return self._num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per class index."""
        return self._class_names

    @property
    def has_validation(self) -> bool:
        """Whether a validation split exists."""
        return self._val is not None

    @property
    def has_test(self) -> bool:
        """Whether test data were given."""
        return self._test is not None

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Valid steps per class in ``split`` (``"train"``, ``"val"`` or ``"test"``): the
        majority-class baseline predicts ``class_counts("train").argmax()``."""
        check.choice("split", split, ("train", "val", "test"))
        steps = {"train": self._train, "val": self._val, "test": self._test}[split]
        if steps is None:
            raise ValueError(f"Expected a `{split}` split, but the data module has none.")
        return np.bincount(steps.labels, minlength=self._num_classes)

    # ------------------------------------------------------------------ datasets and loaders
    def _dataset(self, name: str) -> StepLabelledDataset | None:
        cached = self._datasets.get(name)
        if cached is None:
            split = {"train": self._train, "val": self._val, "test": self._test}[name]
            if split is None:
                return None
            values = ((split.values - self.feature_mean) / self.feature_std).astype(np.float32)
            cached = StepLabelledDataset.from_concatenated(values, split.lengths, split.labels)
            self._datasets[name] = cached
        return cached

    # The standardisation statistics are saved and restored exactly as SequenceDataModule's.
    state_dict = SequenceDataModule.state_dict
    load_state_dict = SequenceDataModule.load_state_dict
