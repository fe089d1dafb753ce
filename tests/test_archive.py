"""The embedded UCR archive problems: shapes, classes and splits match the archive's .ts files."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_plugins.data import ARCHIVE_DATASETS, ArchiveDataModule, load_archive

EXPECTED = {  # name: (classes, train, test, min length, max length)
    "gun_point": (2, 50, 150, 150, 150),
    "arrow_head": (3, 36, 175, 251, 251),
    "plaid": (11, 537, 537, 100, 1344),
}


@pytest.mark.parametrize("name", ARCHIVE_DATASETS)
def test_archive_shapes(name: str) -> None:
    classes, n_train, n_test, shortest, longest = EXPECTED[name]
    train, test = load_archive(name)
    assert (len(train), len(test), len(train.class_names)) == (n_train, n_test, classes)
    lengths = np.concatenate([train.lengths, test.lengths])
    assert (lengths.min(), lengths.max()) == (shortest, longest)
    assert train.num_features == 1 and all(s.dtype == np.float32 for s in train.sequences)
    # Every class is in both splits, and the labels index class_names.
    assert set(train.labels.tolist()) == set(test.labels.tolist()) == set(range(classes))
    assert np.isfinite(np.concatenate(train.sequences)).all()


def test_archive_datamodule_stratified_split() -> None:
    dm = ArchiveDataModule("arrow_head", val_fraction=0.25, seed=3)
    assert dm.num_classes == 3 and len(dm.train_dataset) + len(dm.val_dataset) == 36
    assert len(dm.test_dataset) == 175


def test_unknown_archive_name_is_refused() -> None:
    with pytest.raises(ValueError, match="Expected `name` to be one of 'gun_point'"):
        load_archive("gunpoint")  # type: ignore[arg-type]
