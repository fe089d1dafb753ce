"""Checks that keep a data set from giving a silently wrong result (private): constant features,
classes with no training sample, and text files read so that every error names file and line."""

from __future__ import annotations

import codecs
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping

import numpy as np

__all__ = [
    "ClassCoverageWarning", "ConstantFeatureWarning", "check_class_coverage", "feature_statistics", "read_text_file",
    "text_lines",
]

_FLOAT32_EPS = float(np.finfo(np.float32).eps)
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")


class ConstantFeatureWarning(UserWarning):
    """A feature (or series) is constant over the training split and is left unscaled.

    Dividing it by its standard deviation (~0) would turn a tiny drift at test time into a huge
    input; it keeps standard deviation 1 instead, so the drift stays as small as it is. Turn it
    into an error to refuse such data instead.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error", ConstantFeatureWarning)
        ...     feature_statistics(np.ones((4, 1), np.float32))
        Traceback (most recent call last):
        ...
        lstm_plugins.data._checks.ConstantFeatureWarning: Feature(s) 0 (value 1) are constant over the training split; ...
    """


class ClassCoverageWarning(UserWarning):
    """A declared class has no sample in the training labels: the model cannot learn it.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     check_class_coverage(3, ("a", "b", "c"), {"train_labels": np.array([0, 1])}, declared=True)
        >>> str(caught[0].message)
        "Class(es) 2 ('c', in no split) have no sample in `train_labels`, so the model can never learn to predict them."
    """


def _listed(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def feature_statistics(values: np.ndarray, *, what: str = "feature") -> tuple[np.ndarray, np.ndarray]:
    """Per-column float64 mean and standard deviation of training ``values`` ``(steps, columns)``
    for standardisation; a constant column keeps standard deviation 1 (with a
    :class:`ConstantFeatureWarning` naming it).

    Constant means a spread below float32's resolution at the column's mean (``std <= eps *
    |mean|``, ``std == 0`` included): such a spread is rounding, not signal. Any real spread,
    however small its units, is standardised as usual.

    Example:
        >>> import warnings
        >>> values = np.array([[1.0, 5.0], [3.0, 5.0]], np.float32)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     mean, std = feature_statistics(values)
        >>> mean.tolist(), std.tolist(), caught[0].category.__name__
        ([2.0, 5.0], [1.0, 1.0], 'ConstantFeatureWarning')
    """
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64)
    constant = ~(std > _FLOAT32_EPS * np.abs(mean))
    if constant.any():
        columns = [f"{index} (value {mean[index]:.6g})" for index in np.flatnonzero(constant)]
        warnings.warn(
            f"{what.capitalize()}(s) {_listed(columns)} are constant over the training split; they are "
            "left unscaled (std 1) rather than divided by ~0, so a small drift at test time stays small. "
            f"A constant {what} carries no information: consider dropping it.",
            ConstantFeatureWarning,
            stacklevel=3,
        )
        std = np.where(constant, 1.0, std)
    return mean, std


def check_class_coverage(
    count: int,
    class_names: tuple[str, ...],
    labels: Mapping[str, np.ndarray | None],
    *,
    declared: bool,
    locate: Callable[[str, int], str] | None = None,
) -> None:
    """Refuse or name classes with no training sample.

    ``labels`` maps argument names to label arrays, the training labels first. When the class
    count was inferred from the labels (``declared`` false), a class index no split uses (labels
    {3, 7} would make 8 classes, 6 of them phantoms) or one found only outside the training labels
    raises a ``ValueError``; when the user declared the classes (``num_classes``, ``class_names``,
    a ``.ts`` header), a :class:`ClassCoverageWarning` names them. ``locate(name, flat_index)``
    words where a label sits (default: ``name[index]``).

    Example:
        >>> check_class_coverage(8, tuple("01234567"), {"train_labels": np.array([3, 7, 3])}, declared=False)
        Traceback (most recent call last):
        ...
        ValueError: Expected every class index in [0, 8) to have a sample, but `train_labels` holds only 3, 7: classes 0, 1, 2, 4, 5, 6 would be phantom classes. ...
    """
    locate = locate or (lambda name, index: f"`{name}[{index}]`")
    names = list(labels)
    train = labels[names[0]]
    assert train is not None
    missing = np.flatnonzero(np.bincount(train, minlength=count)[:count] == 0)
    if not missing.size:
        return
    found: dict[int, str] = {}
    for name in names[1:]:
        split = labels[name]
        if split is None:
            continue
        for cls in missing:
            hits = np.flatnonzero(split == cls)
            if hits.size and int(cls) not in found:
                found[int(cls)] = locate(name, int(hits[0]))
    nowhere = [int(cls) for cls in missing if int(cls) not in found]
    if not declared and nowhere:
        used = np.flatnonzero(np.bincount(np.concatenate([a for a in labels.values() if a is not None]), minlength=count))
        raise ValueError(
            f"Expected every class index in [0, {count}) to have a sample, but `{names[0]}` holds only "
            f"{_listed([str(c) for c in used])}: classes {_listed([str(c) for c in nowhere])} would be phantom "
            f"classes. Map the labels to 0..{len(used) - 1} (`np.unique(labels, return_inverse=True)`) and "
            f"pass the original labels as `class_names`, or pass `num_classes={count}` to keep empty classes."
        )
    described = [
        f"{cls} ({class_names[cls]!r}" + (f", first at {found[cls]})" if cls in found else ", in no split)")
        for cls in (int(c) for c in missing)
    ]
    message = (
        f"Class(es) {_listed(described)} have no sample in `{names[0]}`, so the model can never learn "
        "to predict them"
    )
    if not declared:
        raise ValueError(f"{message}. Pass `num_classes={count}` (or `class_names`) to train anyway.")
    warnings.warn(message + ".", ClassCoverageWarning, stacklevel=4)


def text_lines(path: str | os.PathLike[str], *, what: str = "text file") -> Iterator[str]:
    """The lines of a UTF-8 text file (line endings kept: ``\\n``, ``\\r\\n`` or ``\\r``), decoded one
    at a time.

    A byte-order mark is skipped. A missing file, a directory, an unreadable, empty, binary
    (NUL bytes) or UTF-16 file, and bytes that are not UTF-8 are refused with a message naming
    the file (and the line, for content).

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = path.write_bytes(codecs.BOM_UTF8 + b"x,y\\n1,2\\n")
        >>> list(text_lines(path))
        ['x,y\\n', '1,2\\n']
        >>> _ = path.write_bytes(b"x,y\\n1,\\xff\\n")
        >>> list(text_lines(path))
        Traceback (most recent call last):
        ...
        ValueError: Line 2 of '...a.txt': expected UTF-8 text, but byte 0xff at column 3 is not UTF-8; ...
    """
    name = os.fspath(path)
    where = repr(name)
    if os.path.isdir(name):
        raise IsADirectoryError(f"Expected {where} to be a {what}, but it is a directory.")
    try:
        handle = open(name, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"No {what} at {where}.") from None
    except PermissionError:
        raise PermissionError(f"Cannot read the {what} {where}: permission denied.") from None
    with handle:
        head = handle.read(8192)  # a binary file is named as such even if its first line is not UTF-8
        if b"\0" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            line = head.count(b"\n", 0, head.index(b"\0")) + 1
            raise ValueError(f"Line {line} of {where}: expected a {what}, but the file holds NUL bytes (is it binary?).")
        handle.seek(0)
        number = 0
        for piece in handle:
            # Old Mac line ends (a lone CR) end a line too, as in Python's text mode; a CR byte
            # never occurs inside a multi-byte UTF-8 character, so splitting bytes is safe.
            for raw in _LONE_CR.split(piece) if b"\r" in piece else (piece,):
                if raw:
                    number += 1
                    yield _decoded(raw, number, where, what)
        if number == 0:
            raise ValueError(f"Expected {where} to be a {what}, but the file is empty.")


def _decoded(raw: bytes, number: int, where: str, what: str) -> str:
    if number == 1:
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise ValueError(f"Line 1 of {where}: the file is UTF-16 encoded; save it as UTF-8.")
        raw = raw.removeprefix(codecs.BOM_UTF8)
    if b"\0" in raw:
        raise ValueError(f"Line {number} of {where}: expected a {what}, but the file holds NUL bytes (is it binary?).")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Line {number} of {where}: expected UTF-8 text, but byte 0x{raw[error.start]:02x} at column "
            f"{error.start + 1} is not UTF-8; save the file as UTF-8."
        ) from None


def read_text_file(path: str | os.PathLike[str], *, what: str = "text file") -> str:
    """A whole UTF-8 text file as one string, ``\\r\\n`` and ``\\r`` read as ``\\n`` (see
    :func:`text_lines`).

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "empty.txt"
        >>> _ = path.write_bytes(b"")
        >>> read_text_file(path)
        Traceback (most recent call last):
        ...
        ValueError: Expected '...empty.txt' to be a text file, but the file is empty.
    """
    return "".join(text_lines(path, what=what)).replace("\r\n", "\n").replace("\r", "\n")
