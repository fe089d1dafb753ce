"""A run as its logger recorded it: Lightning's ``CSVLogger`` ``metrics.csv`` read back into the
history :func:`lstm_plugins.cli._plotting.plot_run` draws.

``metrics.csv`` has one row per ``log_metrics`` call: training values on Lightning's rows
(optimizer steps ``N - 1, 2N - 1, ...``), validation values once per validation, test values
after ``Trainer.test``; ``step`` and ``epoch`` columns. Rows of one step are merged. The gradient
norm before clipping is the clipper's ``<clipper>/pre_clip_norm`` (or ``grad_norm/total`` from the
``grad_norm`` technique); after clipping it is ``min(before, threshold)`` where the threshold is
known: a ``<clipper>/threshold`` column (``auto_clipping``) or a norm-mode ``gradient_clipping``
in the run's ``hparams.yaml``.

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "metrics.csv").write_text(
    ...     "epoch,gradient_clipping/pre_clip_norm,step,train/loss,val/loss\\n"
    ...     "0,2.5,1,0.9,\\n0,,1,,0.8\\n")
    >>> _ = (folder / "hparams.yaml").write_text("techniques:\\n- name: gradient_clipping\\n  threshold: 1.0\\n")
    >>> history = read_metrics_log(folder)
    >>> history["train"][0]["grad_norm_after_clipping"], history["validation"][0]["val/loss"]
    (1.0, 0.8)
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["find_metrics_csv", "read_metrics_log"]

_PRE_CLIP_SUFFIX = "/pre_clip_norm"


def find_metrics_csv(location: str | os.PathLike[str]) -> Path:
    """The ``metrics.csv`` a path names: the file itself, the one in a log folder, or, in a
    folder of runs (``lightning_logs/``), the most recently written one."""
    path = Path(location)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"Expected a CSVLogger log folder or its metrics.csv, but {os.fspath(path)!r} does not exist."
        )
    direct = path / "metrics.csv"
    if direct.is_file():
        return direct
    found = sorted(path.rglob("metrics.csv"), key=lambda candidate: candidate.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"Expected a metrics.csv (written by Lightning's CSVLogger) in {os.fspath(path)!r}, but found none."
        )
    return found[-1]


def _float(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _clipping_threshold(folder: Path) -> float | None:
    """The fixed norm threshold of a ``gradient_clipping`` technique in ``hparams.yaml``."""
    hparams = folder / "hparams.yaml"
    if not hparams.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(hparams.read_text())
    except yaml.YAMLError:
        return None
    techniques = data.get("techniques") if isinstance(data, dict) else None
    for spec in techniques if isinstance(techniques, list) else ():
        if isinstance(spec, dict) and spec.get("name") == "gradient_clipping" and spec.get("mode", "norm") == "norm":
            threshold = spec.get("threshold", 1.0)  # GradientClipping's default
            if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
                return float(threshold)
    return None


def read_metrics_log(location: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``CSVLogger`` run into the history :func:`plot_run` accepts.

    Args:
        location: the ``metrics.csv``, its log folder, or a folder of runs (the newest is read).

    Returns:
        ``{"train": [...], "validation": [...], "test": {...}, "clipping_threshold": ...}``: one
        training row per logged step (``step``, ``epoch``, every training value, and
        ``grad_norm_before_clipping`` / ``grad_norm_after_clipping`` where known), one
        validation row per epoch, the last test values.
    """
    path = find_metrics_csv(location)
    train: dict[float, dict[str, float]] = {}
    validation: dict[float, dict[str, float]] = {}
    test: dict[str, float] = {}
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            values = {name: value for name, text in record.items() if name and (value := _float(text)) is not None}
            step, epoch = values.pop("step", None), values.pop("epoch", None)
            if any(name.startswith("test/") for name in values):
                test.update({name: value for name, value in values.items() if name.startswith("test/")})
                continue
            evaluation = {name: value for name, value in values.items() if name.startswith("val/")}
            if evaluation and epoch is not None:
                row = validation.setdefault(epoch, {"step": step if step is not None else math.nan, "epoch": epoch})
                row.update(evaluation)
            training = {name: value for name, value in values.items() if not name.startswith("val/")}
            if training and step is not None:
                row = train.setdefault(step, {"step": step, "epoch": epoch if epoch is not None else math.nan})
                row.update(training)
    threshold = _clipping_threshold(path.parent)
    for row in train.values():
        clippers = sorted(name for name in row if name.endswith(_PRE_CLIP_SUFFIX))
        before = row[clippers[0]] if clippers else row.get("grad_norm/total")
        if before is None:
            continue
        row["grad_norm_before_clipping"] = before
        limit = row.get(clippers[0][: -len(_PRE_CLIP_SUFFIX)] + "/threshold") if clippers else None
        if limit is None and clippers and clippers[0] == "gradient_clipping" + _PRE_CLIP_SUFFIX:
            limit = threshold
        if limit is not None:
            row["grad_norm_after_clipping"] = min(before, limit)
    return {
        "train": [train[step] for step in sorted(train)],
        "validation": [validation[epoch] for epoch in sorted(validation)],
        "test": test,
        "clipping_threshold": threshold,
    }
