"""Bad-input catalogue, data and model-input side: batches given to ``model(x, lengths)``, data
modules, and the files the readers open.

``ROWS`` uses the main catalogue's :class:`Row` (``tests/test_bad_inputs_data.py`` runs them the
way ``tests/test_bad_inputs.py`` runs the main catalogue). ``WARNING_ROWS`` are inputs that are
accepted with a named warning rather than refused. File rows work in a fresh temporary folder
with relative names, so messages (and the README table) never show a random path.
``python tests/bad_input_catalogue_data.py`` prints both tables.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch
from bad_input_catalogue import Row

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import (
    ClassCoverageWarning,
    ConstantFeatureWarning,
    ForecastingDataModule,
    SequenceDataModule,
    SequenceLabellingDataModule,
    prediction_loader,
    read_series_csv,
    read_text_file,
    read_ts,
)
from lstm_plugins.model import LSTMSequenceLabeller, run_lstm
from lstm_plugins.model._forward import run_lstm_from_state

TS_HEADER = "@problemName tiny\n@classLabel true a b\n@data\n"
TS_ROWS = "1,2,3:a\n4,5,6:b\n7,8,9:a\n1,1,1:b\n"


class WarningRow(NamedTuple):
    """An input accepted with a named warning (the row checks the warning's class and start)."""

    area: str
    given: str
    run: Callable[[], object]
    warning: type[Warning]
    message: str


@contextlib.contextmanager
def _in_temporary_folder() -> Iterator[None]:
    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(previous)


def _with_files(files: dict[str, bytes | None], action: Callable[[], object]) -> Callable[[], object]:
    """``action`` run in a temporary folder holding ``files`` (``None``: a folder of that name)."""

    def run() -> object:
        with _in_temporary_folder():
            for name, content in files.items():
                if content is None:
                    os.mkdir(name)
                else:
                    with open(name, "wb") as handle:
                        handle.write(content)
            return action()

    return run


def _model(bidirectional: bool = False) -> LSTMClassifier:
    torch.manual_seed(0)
    return LSTMClassifier(3, 2, hidden_size=4, bidirectional=bidirectional)


def _call(lengths: object, features: torch.Tensor | None = None, bidirectional: bool = False) -> object:
    return _model(bidirectional)(torch.zeros(2, 5, 3) if features is None else features, lengths)


def _sequences(count: int = 4, features: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(5, features)).astype(np.float32) for _ in range(count)]


def _labelled(labels: list[list[int]], **options: object) -> SequenceLabellingDataModule:
    sequences = [np.random.default_rng(i).normal(size=(len(row), 2)) for i, row in enumerate(labels)]
    return SequenceLabellingDataModule(sequences, [np.array(row) for row in labels], val_fraction=0.0, **options)


def _series(values: list[float]) -> ForecastingDataModule:
    return ForecastingDataModule(np.array(values), lookback=2, horizon=1, seasonality=1, val_size=0, test_size=0)


def _csv(name: str, content: bytes) -> Callable[[], object]:
    return _with_files({name: content}, lambda: read_series_csv(name))


def _ts(name: str, content: bytes | None) -> Callable[[], object]:
    return _with_files({name: content}, lambda: read_ts(name))


_TS = (TS_HEADER + TS_ROWS).encode()
_UTF16 = (TS_HEADER + TS_ROWS).encode("utf-16")
_CSV = b"Date,Value\n2001,1.5\n2002,2.5\n2003,3.0\n"

ROWS: list[Row] = [
    # model(x, lengths): the batch given to the forward pass
    Row("forward", "`model(x, lengths)` with a length of 0", lambda: _call(torch.tensor([5, 0])), ValueError,
        "Expected every entry of `lengths` in [1, 5] (the batch's time steps), but `lengths[1]` is 0."),
    Row("forward", "a negative length (-1 read step T-2)", lambda: _call(torch.tensor([-1, 5])), ValueError,
        "Expected every entry of `lengths` in [1, 5] (the batch's time steps), but `lengths[0]` is -1."),
    Row("forward", "a length longer than the batch's time dimension", lambda: _call(torch.tensor([5, 7])), ValueError,
        "Expected every entry of `lengths` in [1, 5] (the batch's time steps), but `lengths[1]` is 7."),
    Row("forward", "a length of 0, bidirectional model", lambda: _call(torch.tensor([0, 5]), bidirectional=True),
        ValueError, "Expected every entry of `lengths` in [1, 5] (the batch's time steps), but `lengths[0]` is 0."),
    Row("forward", "a batch with no time step", lambda: _call(torch.tensor([1, 1]), torch.zeros(2, 0, 3)), ValueError,
        "Expected `features` with at least one time step, but got shape (2, 0, 3)."),
    Row("forward", "int16 lengths", lambda: _call(torch.tensor([5, 3], dtype=torch.int16)), TypeError,
        "Expected `lengths` to be an int64 (or int32) tensor, but got dtype torch.int16."),
    Row("forward", "float lengths", lambda: _call(torch.tensor([5.0, 3.0])), TypeError,
        "Expected `lengths` to be an int64 (or int32) tensor, but got dtype torch.float32."),
    Row("forward", "boolean lengths (a mask instead of lengths)", lambda: _call(torch.tensor([True, True])), TypeError,
        "Expected `lengths` to be an int64 (or int32) tensor, but got dtype torch.bool."),
    Row("forward", "lengths as a Python list", lambda: _call([5, 3]), TypeError,
        "Expected `lengths` to be a (batch,) int64 tensor, but got list; build it with torch.tensor(lengths)."),
    Row("forward", "one length for a batch of two", lambda: _call(torch.tensor([5])), ValueError,
        "Expected `lengths` of shape (2,), one per sequence of `features`, but got (1,)."),
    Row("forward", "lengths of shape (batch, 1)", lambda: _call(torch.tensor([[5], [3]])), ValueError,
        "Expected `lengths` of shape (2,), one per sequence of `features`, but got (2, 1)."),
    Row("forward", "float64 features", lambda: _call(torch.tensor([5, 3]), torch.zeros(2, 5, 3, dtype=torch.float64)),
        TypeError, "Expected `features` of dtype torch.float32 like the LSTM's weights, but got torch.float64; "
        "convert them with `features.to(torch.float32)` (the data modules hand out float32)."),
    Row("forward", "integer features for a model without `num_embeddings`",
        lambda: _call(torch.tensor([5, 3]), torch.zeros(2, 5, 3, dtype=torch.int64)), TypeError,
        "Expected `features` of dtype torch.float32 like the LSTM's weights, but got torch.int64;"),
    Row("forward", "`run_lstm` (own training loop) with a length past the batch",
        lambda: run_lstm(torch.nn.LSTM(3, 4, batch_first=True), torch.zeros(2, 5, 3), torch.tensor([6, 2])), ValueError,
        "Expected every entry of `lengths` in [1, 5] (the batch's time steps), but `lengths[0]` is 6."),
    Row("forward", "`run_lstm` with features of the wrong size",
        lambda: run_lstm(torch.nn.LSTM(3, 4, batch_first=True), torch.zeros(2, 5, 4), torch.tensor([5, 2])), ValueError,
        "Expected `features` of shape (batch, time, 3), but got (2, 5, 4)."),
    Row("forward", "`run_lstm_from_state` (streams) with float64 chunks",
        lambda: run_lstm_from_state(torch.nn.LSTM(3, 4, batch_first=True), torch.zeros(2, 5, 3, dtype=torch.float64), None),
        TypeError, "Expected `features` of dtype torch.float32 like the LSTM's weights, but got torch.float64;"),
    Row("forward", "a sequence labeller given a length of 0",
        lambda: LSTMSequenceLabeller(3, 2, hidden_size=4)(torch.zeros(2, 5, 3), torch.tensor([5, 0])), ValueError,
        "Expected every entry of `lengths` in [1, 5] (the batch's time steps), but `lengths[1]` is 0."),
    # Data modules: labels and classes
    Row("data", "labels {3, 7} (8 classes inferred, 6 of them phantoms)",
        lambda: SequenceDataModule(_sequences(), [3, 7, 3, 7], val_fraction=0.0), ValueError,
        "Expected every class index in [0, 8) to have a sample, but `train_labels` holds only 3, 7: classes 0, 1, 2, "
        "4, 5, 6 would be phantom classes."),
    Row("data", "a class present only in the test labels",
        lambda: SequenceDataModule(_sequences(), [0, 1, 0, 1], _sequences(2), [1, 2], val_fraction=0.0), ValueError,
        "Class(es) 2 ('2', first at `test_labels[1]`) have no sample in `train_labels`, so the model can never "
        "learn to predict them. Pass `num_classes=3` (or `class_names`) to train anyway."),
    Row("data", "text labels (`[\"cat\", \"dog\", ...]`)",
        lambda: SequenceDataModule(_sequences(), ["cat", "dog", "cat", "dog"], val_fraction=0.0), TypeError,
        "Expected `train_labels` to be a 1-D array of integers, but got dtype <U3; map text labels to class indices "
        "with `np.unique(labels, return_inverse=True)` and pass the unique labels as `class_names`."),
    Row("data", "a class name given twice",
        lambda: SequenceDataModule(_sequences(), [0, 1, 0, 1], class_names=["a", "a"], val_fraction=0.0), ValueError,
        "Expected distinct `class_names`, but `class_names[1]` repeats 'a'."),
    Row("data", "negative labels", lambda: SequenceDataModule(_sequences(), [0, 1, -1, 1], val_fraction=0.0), ValueError,
        "Expected `train_labels` in [0, 2), but `train_labels[2]` is -1."),
    Row("data", "per-step labels {0, 2} (phantom class 1)", lambda: _labelled([[0, 2, 2], [2, 0]]), ValueError,
        "Expected every class index in [0, 3) to have a sample, but `train_labels` holds only 0, 2: classes 1 "
        "would be phantom classes."),
    Row("data", "a per-step class found only in `val_labels`",
        lambda: SequenceLabellingDataModule([np.ones((3, 2)), np.zeros((2, 2))], [np.array([0, 1, 1]), np.array([1, 0])],
                                            val_sequences=[np.ones((2, 2))], val_labels=[np.array([0, 2])]), ValueError,
        "Class(es) 2 ('2', first at `val_labels[0]` at step 1) have no sample in `train_labels`"),
    # Data modules: feature values
    Row("data", "float64 values beyond float32's range",
        lambda: SequenceDataModule(_sequences(3) + [np.full((5, 3), 1e300)], [0, 1, 0, 1]), ValueError,
        "Expected `train_sequences[3]` to contain only finite float32 values, but it contains NaN or infinity."),
    Row("data", "boolean features", lambda: SequenceDataModule([np.ones((5, 3), bool)] * 4, [0, 1, 0, 1]), TypeError,
        "Expected `train_sequences[0]` to hold real numbers, but got an array of dtype bool."),
    Row("data", "complex features", lambda: SequenceDataModule([np.ones((5, 3), complex)] * 4, [0, 1, 0, 1]), TypeError,
        "Expected `train_sequences[0]` to hold real numbers, but got an array of dtype complex128."),
    Row("data", "test sequences with another feature count",
        lambda: SequenceDataModule(_sequences(), [0, 1, 0, 1], _sequences(2, features=4), [0, 1]), ValueError,
        "Expected `test_sequences` to have 3 features like `train_sequences`, but `test_sequences[0]` has 4."),
    Row("data", "`test_labels` without `test_sequences`",
        lambda: SequenceDataModule(_sequences(), [0, 1, 0, 1], test_labels=[0, 1]), ValueError,
        "Expected `test_sequences` and `test_labels` to be given together, but got only `test_labels`."),
    Row("data", "NaN in sequences to predict", lambda: prediction_loader(_sequences(1) + [np.full((4, 3), np.nan)]),
        ValueError, "Expected `sequences[1]` to contain only finite float32 values, but it contains NaN or infinity."),
    Row("data", "sequences to predict with another feature count",
        lambda: SequenceDataModule(_sequences(), [0, 1, 0, 1], val_fraction=0.0).predict_dataloader(_sequences(2, 4)),
        ValueError, "Expected sequences with 3 features, as the standardisation statistics have, but got 4."),
    Row("data", "restored statistics with a zero standard deviation",
        lambda: SequenceDataModule(_sequences(), [0, 1, 0, 1], val_fraction=0.0).load_state_dict(
            {"standardize": True, "feature_mean": [0.0] * 3, "feature_std": [1.0, 0.0, 1.0]}), ValueError,
        "Expected `state_dict['feature_std']` to be positive."),
    Row("data", "a forecasting series with a gap (NaN)", lambda: _series([1.0, 2.0, np.nan, 4.0, 5.0, 6.0]), ValueError,
        "Expected finite values in `series`, but step 2 of series 0 is nan."),
    # Files: .ts, CSV series, text
    Row("file", "a `.ts` file that does not exist", _with_files({}, lambda: read_ts("missing.ts")),
        FileNotFoundError, "No .ts file at 'missing.ts'."),
    Row("file", "a folder given as a `.ts` file", _ts("folder.ts", None), IsADirectoryError,
        "Expected 'folder.ts' to be a .ts file, but it is a directory."),
    Row("file", "an empty `.ts` file", _ts("empty.ts", b""), ValueError,
        "Expected 'empty.ts' to be a .ts file, but the file is empty."),
    Row("file", "a binary file given as a `.ts` file", _ts("binary.ts", b"PK\x03\x04\x00\x00\x14"), ValueError,
        "Line 1 of 'binary.ts': expected a .ts file, but the file holds NUL bytes (is it binary?)."),
    Row("file", "a Latin-1 `.ts` file", _ts("latin1.ts", b"@problemName caf\xe9\n" + _TS), ValueError,
        "Line 1 of 'latin1.ts': expected UTF-8 text, but byte 0xe9 at column 17 is not UTF-8; save the file as UTF-8."),
    Row("file", "a UTF-16 `.ts` file", _ts("utf16.ts", _UTF16), ValueError,
        "Line 1 of 'utf16.ts': the file is UTF-16 encoded; save it as UTF-8."),
    Row("file", "a test `.ts` file whose class labels differ from the training file's",
        _with_files({"train.ts": _TS, "test.ts": _TS.replace(b"true a b", b"true a c").replace(b":b", b":c")},
                    lambda: SequenceDataModule.from_ts_files("train.ts", "test.ts")), ValueError,
        "Expected 'test.ts' to declare the class labels of 'train.ts' ('a', 'b') (its line 2) in the same order, "
        "but line 2 declares ('a', 'c')."),
    Row("file", "a test `.ts` row with a label its header lacks",
        _with_files({"train.ts": _TS, "test.ts": _TS + b"1,2,3:c\n"},
                    lambda: SequenceDataModule.from_ts_files("train.ts", "test.ts")), ValueError,
        "Line 8 of 'test.ts': expected a class label in ('a', 'b'), but got 'c'."),
    Row("file", "a `.ts` file with headers but no series", _ts("headers.ts", TS_HEADER.encode()), ValueError,
        "Expected 'headers.ts' to have at least one series after @data, but got 0."),
    Row("file", "a CSV series file that does not exist", _with_files({}, lambda: read_series_csv("missing.csv")),
        FileNotFoundError, "No series file at 'missing.csv'."),
    Row("file", "a binary file given as a CSV series", _csv("binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00"), ValueError,
        "Line 3 of 'binary.csv': expected a series file, but the file holds NUL bytes (is it binary?)."),
    Row("file", "a CSV series with a Latin-1 byte on line 3", _csv("latin1.csv", _CSV.replace(b"2002", b"2002\xb0")),
        ValueError, "Line 3 of 'latin1.csv': expected UTF-8 text, but byte 0xb0 at column 5 is not UTF-8;"),
    Row("file", "a CSV series with an unclosed quote", _csv("quote.csv", b'Date,Value\n2001,1\n2002,"2\n'), ValueError,
        "'quote.csv', line 3: unexpected end of data."),
    Row("file", "a CSV series with a header and no rows", _csv("header.csv", b"Date,Value\n"), ValueError,
        "Expected at least two rows of values in 'header.csv', but got 0."),
    Row("file", "a `.ts` row cut short by a trailing comma", _ts("cut.ts", _TS + b"1,2,:a\n"), ValueError,
        "Line 8 of 'cut.ts': expected finite numbers, but got '' in dimension 1."),
    Row("file", "a text file that is not UTF-8",
        _with_files({"corpus.txt": b"to be\nor n\xf6t\n"}, lambda: read_text_file("corpus.txt")), ValueError,
        "Line 2 of 'corpus.txt': expected UTF-8 text, but byte 0xf6 at column 5 is not UTF-8;"),
    Row("file", "an empty text file", _with_files({"corpus.txt": b""}, lambda: read_text_file("corpus.txt")), ValueError,
        "Expected 'corpus.txt' to be a text file, but the file is empty."),
]

WARNING_ROWS: list[WarningRow] = [
    WarningRow("data", "a feature constant over the training split (was divided by 1e-8)",
               lambda: SequenceDataModule([np.column_stack([np.full(5, 3.0), s[:, 0]]) for s in _sequences()],
                                          [0, 1, 0, 1], val_fraction=0.0), ConstantFeatureWarning,
               "Feature(s) 0 (value 3) are constant over the training split; they are left unscaled (std 1) rather "
               "than divided by ~0, so a small drift at test time stays small."),
    WarningRow("data", "a per-step feature constant over the training split",
               lambda: SequenceLabellingDataModule(
                   [np.column_stack([np.arange(3.0), np.zeros(3)]), np.column_stack([np.arange(2.0), np.zeros(2)])],
                   [np.array([0, 1, 0]), np.array([1, 0])], val_fraction=0.0), ConstantFeatureWarning,
               "Feature(s) 1 (value 0) are constant over the training split;"),
    WarningRow("data", "`num_classes=3` with no sample of class 2",
               lambda: SequenceDataModule(_sequences(), [0, 1, 0, 1], num_classes=3, val_fraction=0.0),
               ClassCoverageWarning, "Class(es) 2 ('2', in no split) have no sample in `train_labels`, so the model "
               "can never learn to predict them."),
    WarningRow("data", "a class the `.ts` header declares but only the test file uses",
               _with_files({"train.ts": (TS_HEADER.replace("a b", "a b c") + TS_ROWS).encode(),
                            "test.ts": (TS_HEADER.replace("a b", "a b c") + "1,2,3:c\n").encode()},
                           lambda: SequenceDataModule.from_ts_files("train.ts", "test.ts", val_fraction=0.0)),
               ClassCoverageWarning, "Class(es) 2 ('c', first at `test_labels[0]`) have no sample in `train_labels`"),
]


def markdown_table() -> str:
    """The rows as the README's "Bad inputs" table rows (errors, then warnings)."""
    lines = ["| area | input | error |", "| --- | --- | --- |"]
    for area, given, _, kind, message in [*ROWS, *WARNING_ROWS]:
        message = message.rstrip()
        shown = message if message.endswith((".", ";", ")")) else message + " ..."
        escaped = shown.replace("|", "\\|")
        lines.append(f"| {area} | {given} | `{kind.__name__}`: {escaped} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
