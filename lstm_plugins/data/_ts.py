"""Bounded reader for the sktime/aeon ``.ts`` format: classification and regression problems."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Union

import numpy as np

from lstm_plugins import validation as check
from lstm_plugins.data._checks import text_lines

__all__ = ["TsData", "read_ts"]

PathLike = Union[str, os.PathLike]

_DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_DEFAULT_MAX_SERIES = 1_000_000
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class TsData:
    """Labelled multivariate sequences read from a ``.ts`` file.

    Attributes:
        sequences: One float32 array of shape ``(length, num_features)`` per series; lengths
            may differ between series.
        labels: For a classification problem, int64 array of shape ``(num_series,)`` whose
            entries index ``class_names``; for a regression problem (``@targetLabel true``),
            float32 array of shape ``(num_series,)`` with the targets.
        class_names: Class labels in the order of the ``@classLabel`` header; ``()`` for a
            regression problem.
        problem_name: Value of the ``@problemName`` header, if any.
        class_label_line: 1-based line of the ``@classLabel`` header, if any (for messages).
    """

    sequences: list[np.ndarray]
    labels: np.ndarray
    class_names: tuple[str, ...]
    problem_name: str | None = None
    class_label_line: int | None = None

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def task(self) -> str:
        """``"regression"`` for float targets (``@targetLabel true``), ``"unlabelled"`` for series to
        predict, else ``"classification"``."""
        if self.sequences and self.labels.size == 0:
            return "unlabelled"
        return "regression" if self.labels.dtype.kind == "f" else "classification"

    @property
    def num_features(self) -> int:
        """Number of dimensions (features) per time step."""
        return int(self.sequences[0].shape[1]) if self.sequences else 0

    @property
    def lengths(self) -> np.ndarray:
        """int64 array with the number of time steps of every series."""
        return np.fromiter((s.shape[0] for s in self.sequences), np.int64, len(self.sequences))


def _preview(names: tuple[str, ...]) -> str:
    if len(names) <= 10:
        return repr(names)
    return "(" + ", ".join(repr(n) for n in names[:10]) + f", ... {len(names) - 10} more)"


class _Parser:
    """Line-by-line state machine; every error names the file and the 1-based line number."""

    def __init__(self, path: str, max_series: int, labels_required: bool = True) -> None:
        self.path = path
        self.max_series = max_series
        self.labels_required = labels_required
        self.unlabelled = False
        self.problem_name: str | None = None
        self.class_names: tuple[str, ...] | None = None
        self.class_index: dict[str, int] = {}
        self.class_label_line: int | None = None
        self.regression = False
        self.dimensions: int | None = None
        self.univariate: bool | None = None
        self.series_length: int | None = None
        self.equal_length: bool | None = None
        self.in_data = False
        self.sequences: list[np.ndarray] = []
        self.labels: list[float] = []
        self.line_number = 0

    def error(self, message: str) -> ValueError:
        return ValueError(f"Line {self.line_number} of {self.path!r}: {message}")

    def feed(self, raw: str) -> None:
        self.line_number += 1
        line = raw.strip()
        if not line or line.startswith("#"):
            return
        if line.startswith("@"):
            if self.in_data:
                header = line.split()[0]
                raise self.error(f"expected a data row after @data, but got header {header!r}.")
            self._header(line)
        elif not self.in_data:
            raise self.error(
                "expected a header starting with '@' or a comment starting with '#' before @data."
            )
        else:
            self._row(line)

    def _flag(self, key: str, value: str) -> bool:
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise self.error(f"expected `@{key}` to be true or false, but got {value!r}.")
        return lowered == "true"

    def _positive(self, key: str, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            raise self.error(f"expected `@{key}` to be a positive integer, but got {value!r}.")
        return number

    def _header(self, line: str) -> None:
        tokens = line[1:].split()
        key = tokens[0].lower() if tokens else ""
        args = tokens[1:]
        value = " ".join(args)
        if key == "problemname":
            self.problem_name = value or None
        elif key == "timestamps":
            if self._flag(key, value):
                raise self.error("time-stamped series (`@timeStamps true`) are not supported.")
        elif key == "univariate":
            self.univariate = self._flag(key, value)
        elif key == "dimensions":
            self.dimensions = self._positive(key, value)
        elif key == "equallength":
            self.equal_length = self._flag(key, value)
        elif key == "serieslength":
            self.series_length = self._positive(key, value)
        elif key == "targetlabel":
            if args and self._flag(key, args[0]):
                if self.class_names is not None:
                    raise self.error("`@targetLabel true` contradicts the `@classLabel` header: a "
                                     "file is a classification or a regression problem, not both.")
                self.regression = True
        elif key == "classlabel":
            if not args:
                raise self.error("expected `@classLabel true <label> ...` (a classification problem).")
            if not self._flag(key, args[0]):
                return  # no class labels: `@targetLabel true` (regression) may declare the task
            if self.regression:
                raise self.error("`@classLabel true` contradicts `@targetLabel true`: a file is a "
                                 "classification or a regression problem, not both.")
            names = tuple(args[1:])
            if not names:
                raise self.error("expected at least one class label after `@classLabel true`.")
            if len(set(names)) != len(names):
                raise self.error(f"expected distinct class labels, but got {_preview(names)}.")
            self.class_names = names
            self.class_label_line = self.line_number
            self.class_index = {name: i for i, name in enumerate(names)}
        elif key == "data":
            self._start_data()
        # Other headers (e.g. `@missing`) carry no information this reader needs.

    def _start_data(self) -> None:
        if self.class_names is None and not self.regression and not self.labels_required:
            self.unlabelled = True  # series to predict: rows hold dimensions only
        elif self.class_names is None and not self.regression:
            raise self.error("expected a `@classLabel true <label> ...` header (a classification "
                             "problem) or `@targetLabel true` (a regression problem) before @data.")
        if self.univariate is True:
            if self.dimensions not in (None, 1):
                raise self.error(f"`@univariate true` contradicts `@dimensions {self.dimensions}`.")
            self.dimensions = 1
        self.in_data = True

    def _row(self, line: str) -> None:
        if len(self.sequences) >= self.max_series:
            raise self.error(f"expected at most {self.max_series} series (`max_series`), but got more.")
        parts = line.split(":")
        kind = "regression target" if self.regression else "class label"
        if len(parts) < 2 and not self.unlabelled:
            raise self.error("expected comma-separated values per dimension, ':' between dimensions, "
                             f"and a {kind} after the last ':'.")
        label = "" if self.unlabelled else parts[-1].strip()
        dims = parts if self.unlabelled else parts[:-1]
        target = self._target(label) if self.regression else 0.0
        expected = self.dimensions
        if expected is not None and len(dims) != expected:
            raise self.error(f"expected {expected} dimensions, but got {len(dims)}.")
        columns = [self._values(d, i + 1) for i, d in enumerate(dims)]
        length = columns[0].shape[0]
        for i, column in enumerate(columns[1:], start=2):
            if column.shape[0] != length:
                raise self.error(
                    f"expected every dimension to have the same length, but dimension 1 has "
                    f"{length} values and dimension {i} has {column.shape[0]}."
                )
        if self.equal_length and self.series_length is not None and length != self.series_length:
            raise self.error(f"expected series of length {self.series_length} (`@seriesLength`), "
                             f"but got {length}.")
        index = self.class_index.get(label) if not (self.regression or self.unlabelled) else 0
        if index is None:
            assert self.class_names is not None
            raise self.error(
                f"expected a class label in {_preview(self.class_names)}, but got {label!r}."
            )
        if self.dimensions is None:
            self.dimensions = len(dims)
        with np.errstate(over="ignore"):
            sequence = np.stack(columns, axis=1).astype(np.float32)
        if not np.isfinite(sequence).all():
            raise self.error("expected values within the float32 range, but got an overflow.")
        self.sequences.append(sequence)
        self.labels.append(target if self.regression else index)

    def _target(self, text: str) -> float:
        if not text:
            raise self.error("missing regression target: expected a number after the last ':'.")
        if text == "?":
            raise self.error("missing regression target ('?'); missing values are not supported.")
        try:
            value = float(text)
        except ValueError:
            hint = " (is the target missing?)" if "," in text else ""
            raise self.error(f"expected a number as the regression target after the last ':', but "
                             f"got {text[:40]!r}{hint}.") from None
        if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
            raise self.error(f"expected a finite regression target within the float32 range, but got {text!r}.")
        return value

    def _values(self, text: str, dimension: int) -> np.ndarray:
        tokens = text.split(",")
        try:
            values = np.array(tokens, dtype=np.float64)
        except ValueError:
            values = None
        bad = None
        if values is None:
            for token in tokens:
                try:
                    float(token)
                except ValueError:
                    bad = token.strip()
                    break
            else:  # pragma: no cover - numpy and float() disagree
                bad = text.strip()
        elif not np.isfinite(values).all():
            bad = tokens[int(np.flatnonzero(~np.isfinite(values))[0])].strip()
        if bad is None:
            assert values is not None
            return values
        if bad == "?":
            raise self.error(f"missing values ('?') are not supported (dimension {dimension}).")
        if not text.strip():
            raise self.error(f"dimension {dimension} is empty.")
        raise self.error(f"expected finite numbers, but got {bad!r} in dimension {dimension}.")

    def finish(self) -> TsData:
        if not self.in_data:
            raise ValueError(f"Expected {self.path!r} to have an @data section, but found none.")
        if not self.sequences:
            raise ValueError(
                f"Expected {self.path!r} to have at least one series after @data, but got 0."
            )
        return TsData(
            sequences=self.sequences,
            labels=np.zeros(0, np.int64) if self.unlabelled else np.asarray(
                self.labels, dtype=np.float32 if self.regression else np.int64),
            class_names=self.class_names or (),
            problem_name=self.problem_name,
            class_label_line=self.class_label_line,
        )


def read_ts(
    path: PathLike,
    *,
    max_bytes: int = _DEFAULT_MAX_BYTES,
    max_series: int = _DEFAULT_MAX_SERIES,
    labels_required: bool = True,
) -> TsData:
    """Read a classification or regression problem in the sktime/aeon ``.ts`` format.

    Supports multivariate, unequal-length series with a ``@classLabel true ...`` header
    (classification) or a ``@targetLabel true`` header (regression: one number per series, as in
    the Monash/UEA/UCR regression archive). Rows look like ``d1_v1,d1_v2,...:d2_v1,...:label``,
    the label being a class label or a number. Lines starting with ``#`` are comments and header
    names are case-insensitive. Missing values (``?``) and time stamps are not supported.

    Args:
        path: The ``.ts`` file.
        max_bytes: Refuse files larger than this (checked before reading).
        max_series: Refuse files with more series than this.
        labels_required: ``False`` also reads series to predict: a file declaring neither
            ``@classLabel true`` nor ``@targetLabel true`` has rows of dimensions only, and the
            result has no labels (``labels`` is empty, ``task`` is ``"unlabelled"``).

    Returns:
        A :class:`TsData` whose labels index its ``class_names`` (classification) or are the
        float32 targets (regression; ``class_names`` is empty).

    Raises:
        ValueError: The file is too large, empty, binary, not UTF-8 or malformed; the message
            names the file and line. A UTF-8 byte-order mark is skipped.
        FileNotFoundError: No file at ``path`` (``IsADirectoryError``, ``PermissionError``: a
            folder, an unreadable file); the message names the path.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.ts"
        >>> _ = path.write_text("@classLabel true a b\\n@data\\n1,2,3:4,5,6:b\\n7:8:a\\n")
        >>> data = read_ts(path)
        >>> [s.shape for s in data.sequences], data.labels.tolist(), data.class_names
        ([(3, 2), (1, 2)], [1, 0], ('a', 'b'))
        >>> _ = path.write_text("@targetLabel true\\n@data\\n1,2,3:4,5,6:0.25\\n7:8:-3\\n")
        >>> data = read_ts(path)
        >>> data.task, data.labels.tolist(), data.class_names
        ('regression', [0.25, -3.0], ())
        >>> _ = path.write_text("@classLabel false\\n@data\\n1,2,3:4,5,6\\n7:8\\n")
        >>> data = read_ts(path, labels_required=False)
        >>> data.task, [s.shape for s in data.sequences]
        ('unlabelled', [(3, 2), (1, 2)])
    """
    max_bytes = check.int_at_least("max_bytes", max_bytes, 1)
    max_series = check.int_at_least("max_series", max_series, 1)
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"No .ts file at {name!r}.")
    size = os.stat(name).st_size
    if size > max_bytes:
        raise ValueError(
            f"Expected `path` to be a .ts file of at most {max_bytes} bytes, but got {size} bytes."
        )
    parser = _Parser(name, max_series, check.boolean("labels_required", labels_required))
    for raw in text_lines(name, what=".ts file"):
        parser.feed(raw)
    return parser.finish()
