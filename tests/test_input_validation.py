"""Inputs that used to give a silently wrong result: what they give now, with numbers.

The refusals themselves are catalogued in ``bad_input_catalogue_data.py``; here the accepted side
of each fix is checked against a reference computation, plus properties over random inputs.
"""

from __future__ import annotations

import codecs
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import (
    ClassCoverageWarning,
    ConstantFeatureWarning,
    SequenceDataModule,
    read_series_csv,
    read_text_file,
    read_ts,
)
from lstm_plugins.data._checks import check_class_coverage, feature_statistics
from lstm_plugins.model import last_step_summary, run_lstm
from lstm_plugins.model._checks import check_lengths, check_token_ids

TS = "@problemName tiny\n@classLabel true a b\n@data\n1,2,3:4,5,6:a\n7,8:9,10:b\n"


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantFeatureWarning)
        return function(*args, **kwargs)


# ---------------------------------------------------------------- constant features
def test_a_constant_feature_keeps_its_drift_small_at_test_time():
    """The issue's case: a feature constant in training (3.0) drifts 0.1 % at test time (3.003).
    Divided by the old 1e-8 floor it became 3e5; left unscaled it is 0.003."""
    rng = np.random.default_rng(0)
    train = [np.column_stack([np.full(6, 3.0), rng.normal(size=6)]) for _ in range(8)]
    test = [np.column_stack([np.full(6, 3.003), rng.normal(size=6)]) for _ in range(2)]
    with pytest.warns(ConstantFeatureWarning, match=r"Feature\(s\) 0 \(value 3\)"):
        dm = SequenceDataModule(train, np.arange(8) % 2, test, [0, 1], val_fraction=0.0)
    assert dm.feature_std[0] == 1.0 and dm.feature_mean[0] == 3.0
    drifted = dm.test_dataset.features[:, :, 0]
    assert torch.allclose(drifted, torch.full_like(drifted, 0.003), atol=1e-6)
    other = np.concatenate([s[:, 1] for s in train])
    assert dm.feature_std[1] == pytest.approx(other.std())  # a varying feature is standardised as before


def test_tiny_units_are_standardised_not_mistaken_for_constant():
    values = (np.random.default_rng(1).normal(size=(50, 1)) * 1e-9 + 2e-9).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantFeatureWarning)
        mean, std = feature_statistics(values)
    assert std[0] == pytest.approx(values.astype(np.float64).std())
    assert 1e-10 < std[0] < 1e-8


def test_a_spread_below_float32_resolution_is_constant():
    """One sample in 1000 one float32 step above 1000: a spread of ~2e-6, rounding, not signal."""
    values = np.full((1000, 1), 1000.0, np.float32)
    values[0, 0] = np.nextafter(np.float32(1000.0), np.float32(2000.0))
    with pytest.warns(ConstantFeatureWarning):
        _, std = feature_statistics(values)
    assert std[0] == 1.0


def test_a_constant_series_in_a_labelling_module_is_left_unscaled():
    from lstm_plugins.data import SequenceLabellingDataModule

    sequences = [np.column_stack([np.arange(4.0), np.full(4, -2.0)]) for _ in range(3)]
    with pytest.warns(ConstantFeatureWarning, match=r"Feature\(s\) 1 \(value -2\)"):
        dm = SequenceLabellingDataModule(sequences, [np.array([0, 1, 0, 1])] * 3, val_fraction=0.0)
    assert dm.feature_std.tolist()[1] == 1.0
    assert dm.train_dataset.features[:, :, 1].unique().tolist() == [0.0]


# ---------------------------------------------------------------- classes
def test_declared_classes_missing_from_training_are_named_not_refused():
    sequences = [np.random.default_rng(i).normal(size=(4, 2)) for i in range(4)]
    with pytest.warns(ClassCoverageWarning, match=r"Class\(es\) 2 \('c', in no split\)"):
        dm = _quiet(SequenceDataModule, sequences, [0, 1, 0, 1], class_names=["a", "b", "c"], val_fraction=0.0)
    assert dm.num_classes == 3


def test_remapped_labels_train_the_two_class_model_the_error_asks_for():
    sequences = [np.random.default_rng(i).normal(size=(4, 2)) for i in range(4)]
    raw = np.array([3, 7, 3, 7])
    with pytest.raises(ValueError, match="phantom classes"):
        SequenceDataModule(sequences, raw, val_fraction=0.0)
    names, indices = np.unique(raw, return_inverse=True)
    dm = SequenceDataModule(sequences, indices, class_names=[str(n) for n in names], val_fraction=0.0)
    assert dm.num_classes == 2 and dm.class_names == ("3", "7")
    assert dm.train_dataset.targets.tolist() == [0, 1, 0, 1]


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(0, 6), min_size=1, max_size=20))
def test_inferred_classes_are_refused_exactly_when_one_has_no_sample(labels):
    array = np.array(labels)
    count = int(array.max()) + 1
    gaps = set(range(count)) - set(labels)
    names = tuple(str(i) for i in range(count))
    if gaps:
        with pytest.raises(ValueError, match="phantom classes"):
            check_class_coverage(count, names, {"train_labels": array}, declared=False)
    else:
        check_class_coverage(count, names, {"train_labels": array}, declared=False)


# ---------------------------------------------------------------- forward: lengths and dtypes
def test_valid_lengths_are_unchanged_and_int32_lengths_match_int64():
    torch.manual_seed(0)
    model = LSTMClassifier(3, 2, hidden_size=4, bidirectional=True).eval()
    features = torch.randn(3, 6, 3)
    lengths = torch.tensor([6, 1, 4])
    with torch.no_grad():
        expected = model(features, lengths)
        assert torch.equal(model(features, lengths.to(torch.int32)), expected)
        # each sample alone, trimmed to its length: exact variable length survives the checks
        for index, length in enumerate(lengths.tolist()):
            alone = model(features[index : index + 1, :length], torch.tensor([length]))
            assert torch.allclose(alone, expected[index : index + 1], atol=1e-6)


def test_a_length_of_zero_used_to_read_the_last_padded_step():
    """The silent result the check prevents: index ``lengths - 1 = -1`` is the last (padded) step."""
    lstm = torch.nn.LSTM(2, 3, batch_first=True)
    features = torch.randn(2, 4, 2)
    output = run_lstm(lstm, features, torch.tensor([4, 4]))
    assert torch.equal(last_step_summary(output, torch.tensor([4, 0]), False)[1], output[1, 3])
    with pytest.raises(ValueError, match=r"`lengths\[1\]` is 0"):
        run_lstm(lstm, features, torch.tensor([4, 0]))


@settings(max_examples=80, deadline=None)
@given(lengths=st.lists(st.integers(-3, 12), min_size=1, max_size=16), time=st.integers(1, 10))
def test_lengths_are_refused_exactly_when_one_is_outside_the_batch(lengths, time):
    bad = [index for index, length in enumerate(lengths) if not 1 <= length <= time]
    tensor = torch.tensor(lengths)
    if bad:
        with pytest.raises(ValueError, match=rf"`lengths\[{bad[0]}\]` is {lengths[bad[0]]}\.$"):
            check_lengths(tensor, len(lengths), time)
    else:
        check_lengths(tensor, len(lengths), time)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.lists(st.integers(-2, 9), min_size=3, max_size=3), min_size=1, max_size=5))
def test_token_ids_are_refused_exactly_when_one_is_outside_the_vocabulary(ids):
    flat = [(row, column, value) for row, values in enumerate(ids) for column, value in enumerate(values)]
    bad = [(row, column, value) for row, column, value in flat if not 0 <= value < 7]
    if bad:
        row, column, value = bad[0]
        with pytest.raises(ValueError, match=rf"`features\[{row}, {column}\]` is {value}\.$"):
            check_token_ids(torch.tensor(ids), 7)
    else:
        check_token_ids(torch.tensor(ids), 7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: lengths on an accelerator")
def test_lengths_on_an_accelerator_are_checked_without_a_host_sync():
    lengths = torch.tensor([3, 9], device="cuda")
    check_lengths(lengths, 2, 9)  # valid: no error, no synchronisation
    torch.cuda.synchronize()


# ---------------------------------------------------------------- files
def test_a_byte_order_mark_and_windows_line_ends_read_like_plain_utf8(tmp_path: Path):
    plain = tmp_path / "plain.ts"
    plain.write_text(TS)
    marked = tmp_path / "marked.ts"
    marked.write_bytes(codecs.BOM_UTF8 + TS.replace("\n", "\r\n").encode())
    a, b = read_ts(plain), read_ts(marked)
    assert a.class_names == b.class_names == ("a", "b") and a.labels.tolist() == b.labels.tolist() == [0, 1]
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    assert b.sequences[1].tolist() == [[7.0, 9.0], [8.0, 10.0]]


def test_old_mac_line_ends_read_like_newlines(tmp_path: Path):
    path = tmp_path / "mac.ts"
    path.write_bytes(TS.replace("\n", "\r").encode())
    data = read_ts(path)
    assert data.class_names == ("a", "b") and data.class_label_line == 2
    assert [s.tolist() for s in data.sequences] == [[[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]], [[7.0, 9.0], [8.0, 10.0]]]
    path.write_bytes(TS.replace("\n", "\r").encode() + b"1,\xff:a\r")
    with pytest.raises(ValueError, match=r"^Line 6 of "):
        read_ts(path)


def test_a_csv_with_a_byte_order_mark_finds_its_first_column(tmp_path: Path):
    path = tmp_path / "series.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"Date,Value\r\n2001,1.5\r\n2002,2.5\r\n")
    table = read_series_csv(path, time_column="Date")
    assert table.names == ("Value",) and table.time_labels == ("2001", "2002")
    assert table.values[:, 0].tolist() == [1.5, 2.5]


def test_a_not_utf8_byte_deep_in_a_file_names_its_line(tmp_path: Path):
    path = tmp_path / "long.ts"
    rows = "".join(f"{i},{i}:a\n" for i in range(500))
    path.write_bytes((TS.split("@data")[0] + "@data\n" + rows).encode() + b"1,\xff:a\n")
    with pytest.raises(ValueError, match=r"^Line 504 of .*long\.ts': expected UTF-8 text, but byte 0xff at column 3"):
        read_ts(path)


def test_text_files_read_crlf_as_lf(tmp_path: Path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(codecs.BOM_UTF8 + "caf\u00e9\r\nbar\n".encode())
    assert read_text_file(path) == "caf\u00e9\nbar\n"


@settings(max_examples=50, deadline=None)
@given(text=st.text(min_size=1).filter(lambda t: "\0" not in t and not t.startswith("\ufeff")),
       bom=st.booleans())
def test_any_utf8_text_reads_back(tmp_path_factory, text, bom):
    path = tmp_path_factory.mktemp("text") / "t.txt"
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8", "surrogatepass"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates are not UTF-8: refused, naming a line
        with pytest.raises(ValueError, match=r"^Line \d+ of "):
            read_text_file(path)
        return
    assert read_text_file(path) == text.replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_named(tmp_path: Path):
    path = tmp_path / "locked.ts"
    path.write_text(TS)
    path.chmod(0)
    with pytest.raises(PermissionError, match=r"Cannot read the \.ts file .*locked\.ts': permission denied\."):
        read_ts(path)


def test_lengths_are_checked_on_every_forward_path() -> None:
    """Zoneout's own recurrence and the FCN branch read `lengths` without run_lstm: refused too."""
    from lstm_plugins import LSTMClassifier
    from lstm_plugins.plugins import FCNBranch, Zoneout

    features = torch.zeros(2, 5, 3)
    for technique in (Zoneout(cell=0.1), FCNBranch()):
        model = LSTMClassifier(3, 2, hidden_size=4, techniques=[technique])
        for bad in ([5, 0], [6, 5], [-1, 5]):
            with pytest.raises(ValueError, match="lengths"):
                model(features, torch.tensor(bad))
