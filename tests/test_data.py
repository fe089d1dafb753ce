"""Tests for ``lstm_plugins.data``: .ts parsing, padded batches and the data modules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning_fabric.utilities.apply_func import move_data_to_device
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from lstm_plugins.data import (
    ClassCoverageWarning,
    ConstantFeatureWarning,
    JapaneseVowelsDataModule,
    PaddedSequenceDataset,
    SequenceBatch,
    SequenceDataModule,
    TsData,
    collate_sequence_batch,
    load_japanese_vowels,
    read_ts,
)
from lstm_plugins.data._batch import pad_sequences

# --------------------------------------------------------------------------- helpers

HEADER = "@problemName Tiny\n@dimensions 2\n@equalLength false\n@classLabel true b a c\n@data\n"


def write_ts(tmp_path: Path, text: str, name: str = "x.ts") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def make_sequences(
    n: int = 60, num_features: int = 3, num_classes: int = 3, seed: int = 1
) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 12, size=n)
    scale = np.arange(1, num_features + 1, dtype=np.float64) * 3.0
    shift = np.arange(num_features, dtype=np.float64) * 5.0 - 2.0
    sequences = [(rng.normal(size=(int(m), num_features)) * scale + shift).astype(np.float32) for m in lengths]
    labels = np.arange(n, dtype=np.int64) % num_classes
    return sequences, labels


def valid_steps(dataset: PaddedSequenceDataset) -> np.ndarray:
    mask = torch.arange(dataset.max_length)[None, :] < dataset.lengths[:, None]
    return dataset.features[mask].numpy()


# --------------------------------------------------------------------------- read_ts


def test_read_ts_parses_multivariate_unequal_lengths(tmp_path: Path) -> None:
    text = (
        "# a comment\n\n"
        "@PROBLEMNAME Tiny\n@TimeStamps false\n@missing false\n@univariate false\n"
        "@Dimensions 2\n@equalLength false\n@CLASSLABEL true b a c\n@DATA\n"
        "1.5,2,3:4,5,-6e-1:a\n"
        "# comment inside data\n"
        "  7 :8:c  \n"
        "\n"
        "0.25,0.5:1,2:b\n"
    )
    data = read_ts(write_ts(tmp_path, text))
    assert isinstance(data, TsData)
    assert data.problem_name == "Tiny"
    assert data.class_names == ("b", "a", "c")
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == [1, 2, 0]
    assert len(data) == 3 and data.num_features == 2
    assert data.lengths.tolist() == [3, 1, 2]
    assert all(s.dtype == np.float32 for s in data.sequences)
    np.testing.assert_array_equal(data.sequences[0], np.array([[1.5, 4], [2, 5], [3, -0.6]], np.float32))
    np.testing.assert_array_equal(data.sequences[1], np.array([[7, 8]], np.float32))
    np.testing.assert_array_equal(data.sequences[2], np.array([[0.25, 1], [0.5, 2]], np.float32))


def test_read_ts_infers_dimensions_without_header(tmp_path: Path) -> None:
    data = read_ts(write_ts(tmp_path, "@classLabel true x y\n@data\n1,2:3,4:5,6:y\n"))
    assert data.num_features == 3 and data.problem_name is None
    assert data.sequences[0].tolist() == [[1, 3, 5], [2, 4, 6]]


def test_read_ts_rejects_files_over_max_bytes(tmp_path: Path) -> None:
    path = write_ts(tmp_path, HEADER + "1,2:3,4:a\n")
    size = path.stat().st_size
    message = f"Expected `path` to be a .ts file of at most 10 bytes, but got {size} bytes."
    with pytest.raises(ValueError, match=re.escape(message)):
        read_ts(path, max_bytes=10)
    assert len(read_ts(path, max_bytes=size)) == 1


def test_read_ts_reports_line_of_dimension_mismatch(tmp_path: Path) -> None:
    path = write_ts(tmp_path, HEADER + "1,2:3,4:a\n5,6:b\n")
    message = f"Line 7 of {str(path)!r}: expected 2 dimensions, but got 1."
    with pytest.raises(ValueError, match=re.escape(message)):
        read_ts(path)


ROW_ERRORS = {
    "missing value": ("1,?:3,4:a", r"missing values \('\?'\)"),
    "fewer dimensions": ("1,2:a", "expected 2 dimensions, but got 1"),
    "more dimensions": ("1:2:3:a", "expected 2 dimensions, but got 3"),
    "unequal within row": ("1,2,3:4,5:a", "dimension 1 has 3 values and dimension 2 has 2"),
    "unknown label": ("1,2:3,4:z", r"expected a class label in \('b', 'a', 'c'\), but got 'z'"),
    "non-numeric": ("1,x2:3,4:a", "expected finite numbers, but got 'x2' in dimension 1"),
    "nan": ("1,2:nan,4:a", "expected finite numbers, but got 'nan' in dimension 2"),
    "empty dimension": ("1,2::a", "dimension 2 is empty"),
    "empty values": (":1:a", "dimension 1 is empty"),
    "trailing comma": ("1,2,:3,4,5:a", "expected finite numbers, but got '' in dimension 1"),
    "no label separator": ("1,2,3", "class label after the last ':'"),
    "float32 overflow": ("1e39,2:3,4:a", "float32 range"),
    "header after data": ("@data", "expected a data row after @data"),
}


@pytest.mark.parametrize("row, pattern", ROW_ERRORS.values(), ids=list(ROW_ERRORS))
def test_read_ts_row_errors_name_file_and_line(tmp_path: Path, row: str, pattern: str) -> None:
    path = write_ts(tmp_path, HEADER + "1,2:3,4:a\n" + row + "\n")
    with pytest.raises(ValueError, match=re.escape(f"Line 7 of {str(path)!r}: ") + ".*" + pattern):
        read_ts(path)


def test_read_ts_dimension_count_differs_between_rows_without_header(tmp_path: Path) -> None:
    path = write_ts(tmp_path, "@classLabel true a\n@data\n1:2:a\n1:2:3:a\n")
    with pytest.raises(ValueError, match=r"Line 4 of .*expected 2 dimensions, but got 3\."):
        read_ts(path)


FILE_ERRORS = {
    "no data section": ("@classLabel true a b\n", "to have an @data section"),
    "empty data": ("@classLabel true a b\n@data\n# nothing\n\n", "at least one series after @data, but got 0"),
    "no class labels": ("@dimensions 1\n@data\n1:a\n", "Line 2 of .*`@classLabel true"),
    "class label false": ("@classLabel false\n@data\n", "Line 2 of .*a classification problem"),
    "duplicate class labels": ("@classLabel true a a\n@data\n", "Line 1 of .*distinct class labels"),
    "row before data": ("@classLabel true a\n1:a\n", "Line 2 of .*before @data"),
    "time stamps": ("@timeStamps true\n", "Line 1 of .*not supported"),
    "bad dimensions": ("@dimensions zero\n", "Line 1 of .*positive integer, but got 'zero'"),
    "series length": (
        "@equalLength true\n@seriesLength 2\n@classLabel true a\n@data\n1,2:a\n1:a\n",
        "Line 6 of .*series of length 2",
    ),
}


@pytest.mark.parametrize("text, pattern", FILE_ERRORS.values(), ids=list(FILE_ERRORS))
def test_read_ts_file_errors(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        read_ts(write_ts(tmp_path, text))


def test_read_ts_max_series(tmp_path: Path) -> None:
    path = write_ts(tmp_path, HEADER + "1:2:a\n3:4:b\n5:6:c\n")
    assert len(read_ts(path, max_series=3)) == 3
    with pytest.raises(ValueError, match=r"Line 8 of .*at most 2 series"):
        read_ts(path, max_series=2)
    with pytest.raises(ValueError, match=re.escape("Expected `max_series` to be a positive int, but got 0.")):
        read_ts(path, max_series=0)


# --------------------------------------------------------------------------- embedded data set


def test_embedded_japanese_vowels_counts_lengths_labels() -> None:
    train, test = load_japanese_vowels()
    assert (len(train), len(test)) == (270, 370)
    assert train.num_features == test.num_features == 12
    assert train.class_names == test.class_names == tuple(str(i) for i in range(1, 10))
    assert (int(train.lengths.min()), int(train.lengths.max())) == (7, 26)
    assert (int(test.lengths.min()), int(test.lengths.max())) == (7, 29)
    assert np.bincount(train.labels).tolist() == [30] * 9
    assert np.bincount(test.labels).tolist() == [31, 35, 88, 44, 29, 24, 40, 50, 29]
    assert train.labels.dtype == np.int64 and set(train.labels.tolist()) == set(range(9))
    assert all(s.dtype == np.float32 and s.shape[1] == 12 for s in train.sequences + test.sequences)
    # First values of the first training series in the source file (dimensions 1 and 2).
    assert train.sequences[0][0, 0] == np.float32(1.860936)
    assert train.sequences[0][0, 1] == np.float32(-0.207383)
    assert train.sequences[0].shape == (20, 12) and train.labels[0] == 0


def test_japanese_vowels_datamodule() -> None:
    dm = JapaneseVowelsDataModule(batch_size=50, seed=3)
    assert (dm.num_features, dm.num_classes, dm.max_length) == (12, 9, 29)
    assert dm.class_names == tuple(str(i) for i in range(1, 10))
    assert (len(dm.train_dataset), len(dm.val_dataset or []), len(dm.test_dataset or [])) == (243, 27, 370)
    assert np.bincount(dm.train_dataset.targets.numpy()).tolist() == [27] * 9
    batch = next(iter(dm.test_dataloader()))
    assert batch.features.shape[0] == 50 and batch.features.shape[2] == 12


# --------------------------------------------------------------------------- padding and batches


def test_padded_dataset_pads_once_and_trims_batches() -> None:
    sequences = [np.full((3, 2), 1.0), np.full((1, 2), 2.0), np.arange(10.0).reshape(5, 2)]
    dataset = PaddedSequenceDataset(sequences, [2, 0, 1])
    assert len(dataset) == 3 and dataset.num_features == 2 and dataset.max_length == 5
    assert dataset.features.shape == (3, 5, 2) and dataset.features.dtype == torch.float32
    assert dataset.lengths.tolist() == [3, 1, 5] and dataset.targets.dtype == torch.int64
    assert dataset.features[0, 3:].abs().sum().item() == 0.0
    assert dataset.features[1, 1:].abs().sum().item() == 0.0

    batch = dataset.__getitems__([1, 0])
    assert isinstance(batch, SequenceBatch)
    assert batch.features.shape == (2, 3, 2)  # trimmed to the longest of the batch (3), not 5
    assert batch.lengths.tolist() == [1, 3] and batch.targets.tolist() == [0, 2]
    assert batch.features[0].tolist() == [[2.0, 2.0], [0.0, 0.0], [0.0, 0.0]]
    assert batch.features[1].tolist() == [[1.0, 1.0]] * 3

    one = dataset[-1]
    assert one.features.shape == (1, 5, 2) and one.features[0, 4].tolist() == [8.0, 9.0]
    assert dataset[1].features.shape == (1, 1, 2)
    with pytest.raises(IndexError):
        dataset[3]
    with pytest.raises(IndexError):
        dataset.__getitems__([0, 3])
    assert dataset.__getitems__([-1]).lengths.tolist() == [5]


def test_collate_sequence_batch_merges_single_samples() -> None:
    dataset = PaddedSequenceDataset([np.ones((3, 2)), np.ones((1, 2))], [0, 1])
    assert collate_sequence_batch(dataset.__getitems__([0])) is not None
    merged = collate_sequence_batch([dataset[1], dataset[0]])
    expected = dataset.__getitems__([1, 0])
    for got, want in zip(merged, expected):
        assert torch.equal(got, want)
    with pytest.raises(TypeError):
        collate_sequence_batch([])  # type: ignore[arg-type]


def test_sequence_batch_to_keeps_lengths_on_cpu() -> None:
    batch = PaddedSequenceDataset([np.ones((3, 2)), np.ones((1, 2))], [0, 1]).__getitems__([0, 1])
    moved = move_data_to_device(batch, torch.device("meta"))  # what Lightning does
    assert isinstance(moved, SequenceBatch)
    devices = (moved.features.device.type, moved.lengths.device.type, moved.targets.device.type)
    assert devices == ("meta", "cpu", "meta")


def test_pad_sequences() -> None:
    features, lengths = pad_sequences([np.ones((2, 3)), torch.full((4, 3), 2.0)])
    assert features.shape == (2, 4, 3) and lengths.tolist() == [2, 4]
    assert features[0, 2:].abs().sum().item() == 0.0 and features[1].sum().item() == 24.0


def test_dataloader_with_subset_and_distributed_sampler() -> None:
    sequences, labels = make_sequences(n=10)
    dataset = PaddedSequenceDataset(sequences, labels)
    loader = DataLoader(Subset(dataset, [9, 2, 4]), batch_size=2, collate_fn=collate_sequence_batch)
    assert [b.targets.tolist() for b in loader] == [[labels[9], labels[2]], [labels[4]]]
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=False)
    loader = DataLoader(dataset, batch_size=3, sampler=sampler, collate_fn=collate_sequence_batch)
    seen = torch.cat([b.targets for b in loader]).tolist()
    assert seen == labels[1::2].tolist()


lengths_strategy = st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(
    lengths=lengths_strategy,
    num_features=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
    data=st.data(),
)
def test_padding_and_getitems_round_trip(lengths: list[int], num_features: int, seed: int, data: Any) -> None:
    rng = np.random.default_rng(seed)
    sequences = [rng.normal(size=(n, num_features)).astype(np.float32) for n in lengths]
    labels = rng.integers(0, 5, size=len(lengths))
    dataset = PaddedSequenceDataset(sequences, labels)
    assert dataset.features.shape == (len(lengths), max(lengths), num_features)
    indices = data.draw(st.lists(st.integers(0, len(lengths) - 1), min_size=1, max_size=10))
    batch = dataset.__getitems__(indices)
    assert batch.features.shape == (len(indices), max(lengths[i] for i in indices), num_features)
    assert batch.lengths.tolist() == [lengths[i] for i in indices]
    assert batch.targets.tolist() == [int(labels[i]) for i in indices]
    for row, i in enumerate(indices):
        assert np.array_equal(batch.features[row, : lengths[i]].numpy(), sequences[i])
        assert not batch.features[row, lengths[i] :].any()
        single = dataset[i]
        assert np.array_equal(single.features[0].numpy(), sequences[i])


# --------------------------------------------------------------------------- data module


def test_standardisation_fitted_on_train_split_only() -> None:
    sequences, labels = make_sequences()
    test_sequences, test_labels = make_sequences(n=9, seed=7)
    dm = SequenceDataModule(sequences, labels, test_sequences, test_labels, val_fraction=0.2, seed=5)
    train_steps = valid_steps(dm.train_dataset)
    np.testing.assert_allclose(train_steps.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train_steps.std(axis=0), 1.0, atol=1e-4)

    raw_train = np.concatenate([sequences[i] for i in dm.train_indices]).astype(np.float64)
    np.testing.assert_allclose(dm.feature_mean, raw_train.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(dm.feature_std, raw_train.std(axis=0), rtol=1e-10)
    full_mean = np.concatenate(sequences).astype(np.float64).mean(axis=0)
    assert not np.allclose(dm.feature_mean, full_mean, rtol=1e-6, atol=0)

    val_sequences = [sequences[i] for i in dm.val_indices]
    for dataset, raw in ((dm.val_dataset, val_sequences), (dm.test_dataset, test_sequences)):
        assert dataset is not None
        expected = (np.concatenate(raw) - dm.feature_mean) / dm.feature_std
        np.testing.assert_allclose(valid_steps(dataset), expected, rtol=1e-5, atol=1e-5)
        mask = torch.arange(dataset.max_length)[None, :] >= dataset.lengths[:, None]
        assert dataset.features[mask].abs().sum().item() == 0.0  # padding stays zero


def test_standardisation_floor_and_disabled() -> None:
    sequences = [np.column_stack([np.full(4, 3.0), np.arange(4.0)]) for _ in range(6)]
    labels = np.array([0, 1] * 3)
    with pytest.warns(ConstantFeatureWarning, match=r"Feature\(s\) 0 \(value 3\)"):
        dm = SequenceDataModule(sequences, labels, val_fraction=0.0)
    # A constant feature is centred but left unscaled: a drift at test time stays its own size.
    assert dm.feature_std[0] == 1.0 and dm.feature_mean[0] == 3.0
    assert np.isfinite(dm.train_dataset.features.numpy()).all()
    assert dm.train_dataset.features[:, :, 0].abs().max().item() == 0.0
    raw = SequenceDataModule(sequences, labels, val_fraction=0.0, standardize=False)
    assert raw.feature_mean.tolist() == [0.0, 0.0] and raw.feature_std.tolist() == [1.0, 1.0]
    assert raw.train_dataset.features[2, :, 1].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_stratified_split_is_reproducible_and_disjoint() -> None:
    sequences, labels = make_sequences(n=90)
    first = SequenceDataModule(sequences, labels, val_fraction=0.2, seed=11)
    again = SequenceDataModule(sequences, labels, val_fraction=0.2, seed=11)
    other = SequenceDataModule(sequences, labels, val_fraction=0.2, seed=12)
    assert np.array_equal(first.val_indices, again.val_indices)
    assert not np.array_equal(first.val_indices, other.val_indices)
    assert np.intersect1d(first.train_indices, first.val_indices).size == 0
    assert sorted(first.train_indices.tolist() + first.val_indices.tolist()) == list(range(90))
    assert np.bincount(labels[first.val_indices]).tolist() == [6, 6, 6]
    assert np.bincount(first.train_dataset.targets.numpy()).tolist() == [24, 24, 24]
    assert first.has_validation and not first.has_test


def test_split_keeps_one_training_sample_per_class() -> None:
    sequences, _ = make_sequences(n=12)
    labels = np.array([0] * 10 + [1] * 2)
    dm = SequenceDataModule(sequences, labels, val_fraction=0.9)
    assert np.bincount(dm.train_dataset.targets.numpy()).tolist() == [1, 1]
    assert np.bincount(labels[dm.val_indices]).tolist() == [9, 1]
    with pytest.raises(ValueError, match="leaves none; use val_fraction=0"):
        SequenceDataModule(sequences[:4], [0, 0, 1, 1], val_fraction=0.1)


def test_dataloader_round_trip() -> None:
    sequences, labels = make_sequences(n=50)
    dm = SequenceDataModule(sequences, labels, val_fraction=0.2, batch_size=16, seed=2)
    batches = list(dm.train_dataloader())
    assert len(dm.train_dataset) == 41  # 17, 17, 16 per class minus 3 each for validation
    assert sorted((b.features.shape[0] for b in batches), reverse=True) == [16, 16, 9]  # length batching: any order
    for batch in batches:
        assert isinstance(batch, SequenceBatch)
        assert batch.features.dtype == torch.float32 and batch.features.shape[2] == 3
        assert batch.lengths.dtype == torch.int64 and batch.lengths.device.type == "cpu"
        assert batch.targets.dtype == torch.int64
        assert batch.features.shape[1] == int(batch.lengths.max())
    order = torch.cat([b.targets for b in batches]).tolist()
    assert sorted(order) == sorted(labels[dm.train_indices].tolist())
    assert order != labels[dm.train_indices].tolist()  # shuffled
    again = torch.cat([b.lengths for b in dm.train_dataloader()])
    assert torch.equal(again, torch.cat([b.lengths for b in batches]))  # seeded shuffle
    val = list(dm.val_dataloader())  # type: ignore[arg-type]
    # Length batching sorts evaluation batches by length: the same samples, in another order.
    assert sorted(torch.cat([b.targets for b in val]).tolist()) == sorted(labels[dm.val_indices].tolist())
    with pytest.raises(ValueError, match="without `test_sequences`"):
        dm.test_dataloader()
    assert SequenceDataModule(sequences, labels, val_fraction=0.0).val_dataloader() == []


def test_properties_and_class_names() -> None:
    sequences, labels = make_sequences(n=12, num_classes=2)
    dm = SequenceDataModule(
        sequences, labels, [np.ones((30, 3))], [1], num_classes=4, class_names=["w", "x", "y", "z"]
    )
    assert (dm.num_features, dm.num_classes, dm.max_length) == (3, 4, 30)
    assert dm.class_names == ("w", "x", "y", "z")
    assert SequenceDataModule(sequences, labels).class_names == ("0", "1")
    named = SequenceDataModule(sequences, labels, class_names=("p", "q", "r"))  # class "r" unused
    assert (named.num_classes, named.class_names) == (3, ("p", "q", "r"))


def _error_cases() -> list[Any]:
    seqs, labels = make_sequences(n=12)
    bad_nan = [s.copy() for s in seqs]
    bad_nan[4][1, 2] = np.nan
    bad_inf = [s.copy() for s in seqs]
    bad_inf[7][0, 0] = np.inf
    ragged = list(seqs)
    ragged[5] = np.ones((4, 2), np.float32)
    zero = list(seqs)
    zero[3] = np.ones((0, 3), np.float32)
    flat = list(seqs)
    flat[2] = np.ones(5, np.float32)
    one_test = {"test_sequences": [np.ones((2, 3))], "test_labels": [3], "num_classes": 3}
    cases: list[tuple[str, dict[str, Any], type[Exception], str]] = [
        ("empty", {"train_sequences": [], "train_labels": []}, ValueError,
         "Expected `train_sequences` to contain at least one sequence, but got 0."),
        ("1-D sequence", {"train_sequences": flat}, ValueError,
         "Expected `train_sequences[2]` to be a 2-D array of shape (length, num_features), "
         "but got shape (5,)."),
        ("zero length", {"train_sequences": zero}, ValueError,
         "Expected `train_sequences[3]` to have at least one time step, but got shape (0, 3)."),
        ("ragged", {"train_sequences": ragged}, ValueError,
         "Expected every sequence in `train_sequences` to have 3 features like "
         "`train_sequences[0]`, but `train_sequences[5]` has 2."),
        ("nan", {"train_sequences": bad_nan}, ValueError,
         "Expected `train_sequences[4]` to contain only finite float32 values"),
        ("inf", {"train_sequences": bad_inf}, ValueError,
         "Expected `train_sequences[7]` to contain only finite float32 values"),
        ("string sequences", {"train_sequences": "abc"}, TypeError,
         "Expected `train_sequences` to be a sequence"),
        ("object dtype", {"train_sequences": [np.array([["a"]])] * 12}, TypeError,
         "Expected `train_sequences[0]` to hold real numbers"),
        ("label count", {"train_labels": labels[:-1]}, ValueError,
         "Expected `train_labels` to have one label per sequence in `train_sequences` (12), "
         "but got 11."),
        ("float labels", {"train_labels": labels.astype(np.float64)}, TypeError,
         "Expected `train_labels` to be a 1-D array of integers, but got dtype float64."),
        ("bool labels", {"train_labels": labels > 0}, TypeError,
         "Expected `train_labels` to be a 1-D array of integers, but got dtype bool."),
        ("2-D labels", {"train_labels": labels.reshape(12, 1)}, ValueError,
         "Expected `train_labels` to be a 1-D array, but got shape (12, 1)."),
        ("negative label", {"train_labels": np.r_[labels[:-1], -1]}, ValueError,
         "Expected `train_labels` in [0, 3), but `train_labels[11]` is -1."),
        ("label too large", {"num_classes": 2}, ValueError,
         "Expected `train_labels` in [0, 2), but `train_labels[2]` is 2."),
        ("one class", {"train_labels": np.zeros(12, np.int64)}, ValueError,
         "Expected `num_classes` to be an int >= 2, but got 1."),
        ("num_classes bool", {"num_classes": True}, TypeError,
         "Expected `num_classes` to be an int >= 2, but got True."),
        ("val_fraction one", {"val_fraction": 1.0}, ValueError,
         "Expected `val_fraction` to be a float in [0, 1), but got 1.0."),
        ("val_fraction negative", {"val_fraction": -0.1}, ValueError,
         "Expected `val_fraction` to be a float in [0, 1), but got -0.1."),
        ("val_fraction nan", {"val_fraction": float("nan")}, ValueError,
         "Expected `val_fraction` to be a float in [0, 1), but got nan."),
        ("class_names length", {"class_names": ["a", "b"]}, ValueError,
         "Expected `class_names` to have one name per class (3), but got 2."),
        ("class_names type", {"class_names": ["a", "b", 3]}, TypeError,
         "Expected `class_names[2]` to be a str, but got int."),
        ("batch_size zero", {"batch_size": 0}, ValueError,
         "Expected `batch_size` to be a positive int, but got 0."),
        ("batch_size float", {"batch_size": 2.0}, TypeError,
         "Expected `batch_size` to be a positive int, but got 2.0."),
        ("num_workers", {"num_workers": -1}, ValueError,
         "Expected `num_workers` to be a non-negative int, but got -1."),
        ("seed", {"seed": -3}, ValueError,
         "Expected `seed` to be a non-negative int, but got -3."),
        ("standardize", {"standardize": 1}, TypeError,
         "Expected `standardize` to be a bool, but got 1."),
        ("test without labels", {"test_sequences": seqs}, ValueError,
         "Expected `test_sequences` and `test_labels` to be given together, "
         "but got only `test_sequences`."),
        ("test features", {**one_test, "test_sequences": [np.ones((2, 4))]}, ValueError,
         "Expected `test_sequences` to have 3 features like `train_sequences`, "
         "but `test_sequences[0]` has 4."),
        ("test label range", one_test, ValueError,
         "Expected `test_labels` in [0, 3), but `test_labels[0]` is 3."),
    ]
    base = {"train_sequences": seqs, "train_labels": labels}
    return [pytest.param({**base, **kwargs}, error, message, id=name) for name, kwargs, error, message in cases]


@pytest.mark.parametrize("kwargs, error, message", _error_cases())
def test_construction_errors(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        SequenceDataModule(**kwargs)


def test_num_classes_inferred_from_train_and_test() -> None:
    sequences, labels = make_sequences(n=12, num_classes=2)
    with pytest.raises(ValueError, match=r"Expected every class index in \[0, 5\) to have a sample"):
        SequenceDataModule(sequences, labels, [np.ones((2, 3))], [4])
    with pytest.warns(ClassCoverageWarning, match=r"Class\(es\) 2 \('2', in no split\), 3 \('3', in no split\), "
                      r"4 \('4', first at `test_labels\[0\]`\)"):
        dm = SequenceDataModule(sequences, labels, [np.ones((2, 3))], [4], num_classes=5)
    assert dm.num_classes == 5 and dm.class_names == ("0", "1", "2", "3", "4")


def test_from_ts_files(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i + 1}:{-i},{i * 2}:{'abc'[i % 3]}\n" for i in range(12))
    train = write_ts(tmp_path, HEADER + rows, "train.ts")
    test = write_ts(tmp_path, HEADER + "1:2:c\n", "test.ts")
    dm = SequenceDataModule.from_ts_files(train, test, val_fraction=0.25, batch_size=4)
    assert dm.class_names == ("b", "a", "c") and dm.num_classes == 3 and dm.num_features == 2
    assert len(dm.train_dataset) == 9 and len(dm.val_dataset or []) == 3
    assert dm.test_dataset is not None and dm.test_dataset.targets.tolist() == [2]
    other = write_ts(tmp_path, HEADER.replace("b a c", "a b c") + "1:2:c\n", "other.ts")
    with pytest.raises(ValueError, match="to declare the class labels of"):
        SequenceDataModule.from_ts_files(train, other)
    with pytest.raises(TypeError, match="Expected no `num_classes` argument"):
        SequenceDataModule.from_ts_files(train, num_classes=3)


def test_state_dict_round_trip(tmp_path: Path) -> None:
    sequences, labels = make_sequences()
    source = SequenceDataModule(sequences, labels, seed=1)
    target = SequenceDataModule(sequences, labels, seed=2, val_fraction=0.3)
    path = tmp_path / "state.pt"
    torch.save(source.state_dict(), path)
    target.load_state_dict(torch.load(path, weights_only=True))
    np.testing.assert_array_equal(target.feature_mean, source.feature_mean)
    raw = np.concatenate([sequences[i] for i in target.train_indices])
    expected = (raw - source.feature_mean) / source.feature_std
    np.testing.assert_allclose(valid_steps(target.train_dataset), expected, rtol=1e-5, atol=1e-5)
    message = "Expected `state_dict['feature_mean']` to have shape (3,), but got (2,)."
    with pytest.raises(ValueError, match=re.escape(message)):
        target.load_state_dict({**source.state_dict(), "feature_mean": [0.0, 0.0]})


class _MeanPoolClassifier(pl.LightningModule):
    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(num_features, num_classes)
        self.validated = 0

    def _logits(self, batch: SequenceBatch) -> torch.Tensor:
        assert batch.lengths.device.type == "cpu"
        summed = batch.features.sum(dim=1) / batch.lengths.to(batch.features).unsqueeze(1)
        return self.layer(summed)

    def training_step(self, batch: SequenceBatch, batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self._logits(batch), batch.targets)

    def validation_step(self, batch: SequenceBatch, batch_idx: int) -> None:
        self.validated += int(batch.targets.shape[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:Total length of .list. across ranks is zero")
@pytest.mark.parametrize("val_fraction, validated", [(0.0, 0), (0.25, 15)])
def test_trainer_fit_with_and_without_validation(val_fraction: float, validated: int) -> None:
    sequences, labels = make_sequences(n=60)
    dm = SequenceDataModule(sequences, labels, val_fraction=val_fraction, batch_size=8)
    model = _MeanPoolClassifier(dm.num_features, dm.num_classes)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == -(-len(dm.train_dataset) // 8)
    assert model.validated == validated
