"""Series input: CSV files (every cell checked; errors name the file, line and column) and arrays."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from torch import Tensor

from lstm_plugins import validation as check
from lstm_plugins.data._checks import text_lines

__all__ = [
    "EMBEDDED_SERIES", "EmbeddedSeries", "SeriesTable", "as_series", "names_of_series", "read_series_csv", "span_steps",
]

_HERE = Path(__file__).resolve().parent


class EmbeddedSeries(NamedTuple):
    """A series file shipped with the package: its CSV, time column and seasonality."""

    file: str
    time_column: str
    seasonality: int


EMBEDDED_SERIES: dict[str, EmbeddedSeries] = {
    "airline": EmbeddedSeries("forecasting_airline.csv", "Date", 12),
    "solar": EmbeddedSeries("forecasting_solar.csv", "datetime_gmt", 48),
}
"""The embedded series by name (sources and licence in :mod:`lstm_plugins.data._forecasting`)."""


class SeriesTable(NamedTuple):
    """Series read from a CSV file: ``values`` ``(time, series)`` float64, one name per column,
    and the time column's labels (``None`` without one)."""

    values: np.ndarray
    names: tuple[str, ...]
    time_labels: tuple[str, ...] | None


def read_series_csv(
    path: str | os.PathLike[str], *, columns: Sequence[str] | None = None, time_column: str | None = None
) -> SeriesTable:
    """Read numeric series from a CSV file with a header line; every cell is checked.

    Args:
        path: the file.
        columns: the value columns, by header name; ``None``: every column but ``time_column``.
        time_column: a column of time labels, kept as text (never parsed).

    Raises:
        ValueError: a missing or non-numeric value, a row of the wrong width, an unknown or
            repeated column; the message names the file, the line and the column.

    Example:
        >>> table = read_series_csv(_HERE / "forecasting_airline.csv", time_column="Date")
        >>> table.values.shape, table.names, table.time_labels[0], table.values[:3, 0].tolist()
        ((144, 1), ('Passengers',), '1949-01', [112.0, 118.0, 132.0])
    """
    where = repr(os.fspath(path))
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ValueError(f"Expected {where} to start with a header line naming its columns, but it is empty.")
    lines = text_lines(path, what="series file")  # names file and line: missing, binary, not UTF-8
    reader = csv.reader(lines, strict=True)  # an unclosed quote is an error, not a field running to the end
    rows_of = _csv_rows(reader, where)
    header = next(rows_of, None)
    if not header:
        raise ValueError(f"Expected {where} to start with a header line naming its columns, but it is empty.")
    header = [name.strip() for name in header]
    if isinstance(columns, str):
        raise TypeError(f"Expected `columns` to be a list of column names, but got {columns!r}.")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(f"Expected distinct column names in {where}, but `{repeated[0]}` is repeated.")
    for name in [*(columns or ()), *([time_column] if time_column is not None else [])]:
        if name not in header:
            raise ValueError(f"Expected a column `{name}` in {where}, but its columns are {', '.join(header)}.")
    names = list(columns) if columns is not None else [name for name in header if name != time_column]
    if not names:
        raise ValueError(f"Expected at least one value column in {where}, but got none.")
    positions = [header.index(name) for name in names]
    rows: list[list[float]] = []
    labels: list[str] = []
    for row in rows_of:
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines (a trailing newline, for example)
        line = reader.line_num
        if len(row) != len(header):
            raise ValueError(
                f"{where}, line {line}: expected {len(header)} cells like the header, but got {len(row)}."
            )
        rows.append([_number(row[p], where, line, name, first=not rows) for p, name in zip(positions, names)])
        if time_column is not None:
            labels.append(row[header.index(time_column)].strip())
    if len(rows) < 2:
        raise ValueError(f"Expected at least two rows of values in {where}, but got {len(rows)}.")
    return SeriesTable(np.asarray(rows, dtype=np.float64), tuple(names), tuple(labels) if time_column else None)


def _csv_rows(reader: Any, where: str) -> Iterator[list[str]]:
    """The reader's rows, a CSV syntax error named with its file and line."""
    try:
        yield from reader
    except csv.Error as error:
        raise ValueError(f"{where}, line {reader.line_num}: {error}.") from None


_GAP = "fill or cut the gap before forecasting."
_NOT_NUMERIC = (
    " (the column is not numeric: name the value columns with `columns=`, or a time column with `time_column=`)"
)


def _number(cell: str, where: str, line: int, column: str, first: bool) -> float:
    text = cell.strip()
    place = f"{where}, line {line}, column `{column}`"
    try:
        value = float(text)
    except ValueError:
        if not text:
            raise ValueError(f"{place}: the value is missing; {_GAP}") from None
        hint = _NOT_NUMERIC if first else ""
        raise ValueError(f"{place}: expected a number, but got {text!r}{hint}.") from None
    if not np.isfinite(value):
        raise ValueError(f"{place}: the value is {'missing (NaN)' if np.isnan(value) else 'infinite'}; {_GAP}")
    return value


def as_series(series: Any) -> np.ndarray:
    """``series`` as a finite float64 ``(time, num_series)`` array; the first bad value is named.

    Example:
        >>> as_series([1, 2, 3]).shape
        (3, 1)
    """
    shape = "a real array of shape (time,) or (time, num_series)"
    if isinstance(series, Tensor):
        series = series.detach().cpu().numpy()
    try:
        array = np.asarray(series)
    except (TypeError, ValueError) as error:
        raise TypeError(f"Expected `series` to be {shape}: {error}") from None
    if array.dtype.kind not in "iuf" or array.ndim not in (1, 2):
        raise TypeError(f"Expected `series` to be {shape}, but got {check.describe(array)}.")
    array = array.astype(np.float64).reshape(array.shape[0], -1)
    if array.shape[1] == 0 or array.shape[0] < 2:
        raise ValueError(f"Expected `series` to have two steps or more and a series, but got shape {array.shape}.")
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        step, column = bad[0]
        value = array[step, column]
        raise ValueError(f"Expected finite values in `series`, but step {step} of series {column} is {value}.")
    return array


def names_of_series(names: Sequence[str] | None, count: int) -> tuple[str, ...]:
    """One name per series (``"0"``, ``"1"``, ... by default).

    Example:
        >>> names_of_series(None, 2)
        ('0', '1')
    """
    if names is None:
        return tuple(str(i) for i in range(count))
    if isinstance(names, str) or len(names) != count or not all(isinstance(n, str) for n in names):
        raise ValueError(f"Expected `series_names` to be {count} names, one per series, but got {names!r}.")
    return tuple(names)


def span_steps(name: str, value: Any, length: int) -> int:
    """A span's steps from a share in (0, 1) or a number of steps.

    Example:
        >>> span_steps("test_size", 0.25, 144), span_steps("test_size", 24, 144)
        (36, 24)
    """
    if isinstance(value, float) and value != 0:
        return round(check.open_fraction(name, value) * length)
    if isinstance(value, float):
        return 0
    steps = check.int_at_least(name, value, 0, "a float in (0, 1) or a non-negative int")
    if steps >= length:
        raise ValueError(f"Expected `{name}` to leave a training span, but got {steps} of the series' {length} steps.")
    return steps
