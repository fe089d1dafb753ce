"""Training curves as a PNG: :class:`MetricHistory` records a run, :func:`plot_run` draws it.

``MetricHistory`` is a Lightning callback. On logging steps only (optimizer steps ``0, N, 2N,
...`` with ``N`` the Trainer's ``log_every_n_steps``) it records what the model and its
techniques logged, and the total gradient norm before and after the gradient transforms
(clipping); at the end of each validation it records the validation metrics; after
``Trainer.test`` the test metrics. Values become Python floats only there, so the steps in
between cost one integer comparison and no host synchronisation.

``plot_run`` draws three panels: training and validation loss against the optimizer step; the
gradient norm before and after clipping against the step; the validation metrics against the
epoch (test results, when recorded, in the legend). It needs matplotlib, an optional
dependency: ``pip install 'lstm-plugins[plot]'``.

``plot_from_log`` draws the same figure from what Lightning's ``CSVLogger`` wrote
(``metrics.csv``), so a finished run can be redrawn from its log folder.

Example:
    >>> history = MetricHistory()
    >>> history.as_dict()
    {'train': [], 'validation': [], 'test': {}, 'clipping_threshold': None}
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from lstm_plugins._files import replaced_atomically
from lstm_plugins.toolkit import log_due, log_step, parameters_with_gradients, total_gradient_norm

__all__ = ["MetricHistory", "plot_from_log", "plot_run", "require_matplotlib"]

_INSTALL_HINT = "pip install 'lstm-plugins[plot]'"


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or an ``ImportError`` saying how
    to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            f"Plotting needs matplotlib, which is not installed; install it with: {_INSTALL_HINT}"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _total_norm(module: torch.nn.Module) -> Tensor | None:
    """The global L2 norm of all gradients, as a device tensor (no synchronisation)."""
    parameters = parameters_with_gradients(module)
    return total_gradient_norm(parameters) if parameters else None


def _scalars(metrics: Mapping[str, Any], keep: Any) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, value in metrics.items():
        if not keep(name):
            continue
        if isinstance(value, Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)):
            values[name] = float(value)
    return values


def _is_evaluation(name: str) -> bool:
    return name.startswith(("val/", "test/"))


class MetricHistory(Callback):
    """Records a run for :func:`plot_run`: step metrics on logging steps, validation and test
    metrics, and the gradient norm before and after clipping.

    On each optimizer step ``s`` with ``s % trainer.log_every_n_steps == 0`` it computes the
    total gradient norm in ``on_before_optimizer_step`` (after backward, DDP's reduction and AMP's
    unscaling; before clipping) and again in ``on_train_batch_end`` (after the clipper and the
    optimizer step; gradients are zeroed only at the start of the next step, so these are the
    clipped gradients the optimizer used), and copies the scalars logged at that step
    (``train/loss``, ``gradient_clipping/pre_clip_norm``, ``grad_norm/total``, ...). A technique
    logging at another interval shows its most recent value.

    Attributes:
        train: one dict per logging step: ``step``, ``epoch``, ``grad_norm_before_clipping``,
            ``grad_norm_after_clipping`` and every scalar logged for training.
        validation: one dict per validation run (sanity check excluded): ``step``, ``epoch``
            and the ``val/...`` scalars.
        test: the ``test/...`` scalars of the last ``Trainer.test``.
        clipping_threshold: the fixed norm threshold of the model's clipper, when it has one.
    """

    def __init__(self) -> None:
        self.train: list[dict[str, float]] = []
        self.validation: list[dict[str, float]] = []
        self.test: dict[str, float] = {}
        self.clipping_threshold: float | None = None
        self._pending: tuple[int, Tensor | None] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The recorded history as plain data (what :func:`plot_run` also accepts)."""
        return {
            "train": [dict(row) for row in self.train],
            "validation": [dict(row) for row in self.validation],
            "test": dict(self.test),
            "clipping_threshold": self.clipping_threshold,
        }

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.clipping_threshold = None
        for technique in getattr(pl_module, "techniques", ()):
            threshold = getattr(technique, "threshold", None)
            if (
                getattr(technique, "exclusive", None) == "gradient_clipping"
                and getattr(technique, "mode", "norm") == "norm"
                and isinstance(threshold, (int, float))
            ):
                self.clipping_threshold = float(threshold)
        clip_val = getattr(trainer, "gradient_clip_val", None)
        if clip_val and getattr(trainer, "gradient_clip_algorithm", "norm") == "norm":
            self.clipping_threshold = float(clip_val)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if not log_due(trainer):  # the rows of Lightning's own logging
            self._pending = None
            return
        self._pending = (log_step(trainer), _total_norm(pl_module))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._pending is None:
            return
        step, before = self._pending
        self._pending = None
        row: dict[str, float] = {"step": float(step), "epoch": float(trainer.current_epoch)}
        after = _total_norm(pl_module)
        if before is not None:
            row["grad_norm_before_clipping"] = before.item()
        if after is not None:
            row["grad_norm_after_clipping"] = after.item()
        row.update(_scalars(trainer.callback_metrics, lambda name: not _is_evaluation(name)))
        self.train.append(row)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        row = {"step": float(trainer.global_step), "epoch": float(trainer.current_epoch)}
        row.update(_scalars(trainer.callback_metrics, lambda name: name.startswith("val/")))
        self.validation.append(row)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self.test = _scalars(trainer.callback_metrics, lambda name: name.startswith("test/"))

    def state_dict(self) -> dict[str, Any]:
        return self.as_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train = [dict(row) for row in state_dict.get("train", [])]
        self.validation = [dict(row) for row in state_dict.get("validation", [])]
        self.test = dict(state_dict.get("test", {}))
        self.clipping_threshold = state_dict.get("clipping_threshold")


def _series(rows: Sequence[Mapping[str, float]], x: str, y: str, positive: bool = False) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(y)
        if value is None or not math.isfinite(value) or (positive and value <= 0):
            continue
        xs.append(row[x])
        ys.append(value)
    return xs, ys


_LOSS_TERMS_SKIPPED = {"train/loss", "train/task_loss"}


def plot_run(
    history: MetricHistory | Mapping[str, Any] | str | os.PathLike[str],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Write a PNG of a recorded run: losses, gradient norms around clipping, validation metrics.

    Args:
        history: a :class:`MetricHistory` after ``Trainer.fit`` (and optionally ``Trainer.test``),
            or its :meth:`MetricHistory.as_dict`, or a ``CSVLogger`` log folder or ``metrics.csv``
            (see :func:`plot_from_log`).
        path: where to write the PNG; parent folders are created.
        title: a title over the three panels.

    Returns:
        The path written.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'lstm-plugins[plot]'``).
    """
    plt = require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    if isinstance(history, (str, os.PathLike)):
        from lstm_plugins.cli._metrics_log import read_metrics_log

        history = read_metrics_log(history)
    data = history.as_dict() if isinstance(history, MetricHistory) else dict(history)
    train: list[dict[str, float]] = list(data.get("train", []))
    validation: list[dict[str, float]] = list(data.get("validation", []))
    test: dict[str, float] = dict(data.get("test", {}) or {})
    threshold = data.get("clipping_threshold")

    figure, (losses, norms, metrics) = plt.subplots(1, 3, figsize=(16, 4.6))

    # 1. losses against the optimizer step
    xs, ys = _series(train, "step", "train/loss", positive=True)
    if xs:
        losses.plot(xs, ys, lw=1.0, color="tab:blue", label="training loss (optimized)")
    xs_task, ys_task = _series(train, "step", "train/task_loss", positive=True)
    if xs_task and ys_task != ys:
        losses.plot(xs_task, ys_task, lw=1.0, color="tab:cyan", alpha=0.8, label="training task loss")
    terms = sorted({name for row in train for name in row if name.startswith("train/")} - _LOSS_TERMS_SKIPPED)
    for name in terms:
        xs_term, ys_term = _series(train, "step", name, positive=True)
        if xs_term:
            losses.plot(xs_term, ys_term, lw=0.8, alpha=0.7, label=f"term {name[len('train/'):]}")
    xs, ys = _series(validation, "step", "val/loss", positive=True)
    if xs:
        losses.plot(xs, ys, "o-", ms=3, lw=1.2, color="tab:orange", label="validation loss (each epoch)")
    losses.set_yscale("log")
    losses.set_xlabel("optimizer step")
    losses.set_ylabel("loss")
    losses.set_title("Loss")

    # 2. gradient norms before and after clipping
    xs, ys = _series(train, "step", "grad_norm_before_clipping", positive=True)
    if xs:
        norms.plot(xs, ys, lw=1.0, color="tab:red", label="before clipping")
    xs, ys = _series(train, "step", "grad_norm_after_clipping", positive=True)
    if xs:
        norms.plot(xs, ys, lw=1.0, color="tab:green", alpha=0.85, label="after clipping (used by the optimizer)")
    for name in sorted({name for row in train for name in row if name.endswith("/threshold")}):
        xs, ys = _series(train, "step", name, positive=True)
        if xs:
            norms.plot(xs, ys, "--", lw=1.0, color="black", label=name)
    if isinstance(threshold, (int, float)):
        norms.axhline(threshold, ls="--", lw=1.0, color="black", label=f"clipping threshold {threshold:g}")
    norms.set_yscale("log")
    norms.set_xlabel("optimizer step")
    norms.set_ylabel("global L2 norm of the gradients")
    norms.set_title("Gradient norm")

    # 3. validation metrics against the epoch
    names = sorted({name for row in validation for name in row if name.startswith("val/")} - {"val/loss"})
    for name in names:
        xs, ys = _series(validation, "epoch", name)
        if xs:
            short = name[len("val/"):]
            label = f"{short} (test {test['test/' + short]:.4f})" if f"test/{short}" in test else short
            metrics.plot([x + 1 for x in xs], ys, "o-", ms=3, lw=1.2, label=label)
    metrics.set_xlabel("epoch")
    metrics.xaxis.set_major_locator(MaxNLocator(integer=True))
    metrics.set_title("Validation metrics")

    for axes in (losses, norms, metrics):
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
        else:
            axes.text(0.5, 0.5, "nothing recorded", ha="center", va="center", transform=axes.transAxes)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    try:
        with replaced_atomically(path) as temporary:
            figure.savefig(temporary, dpi=110, format="png")
    finally:
        plt.close(figure)
    return path


def plot_from_log(
    log: str | os.PathLike[str], output_png: str | os.PathLike[str], title: str | None = None
) -> Path:
    """Draw a run from what Lightning's ``CSVLogger`` recorded, during the run or long after it.

    The figure is :func:`plot_run`'s: losses, the gradient norm before clipping (the clipper's
    ``<clipper>/pre_clip_norm``, or ``grad_norm/total``) and after it where the threshold is known,
    and the validation metrics (test results in the legend). See
    :func:`lstm_plugins.cli._metrics_log.read_metrics_log` for what is read.

    Args:
        log: the ``metrics.csv``, its log folder (``lightning_logs/version_0``), or a folder of
            runs (the newest ``metrics.csv`` below it is drawn).
        output_png: where to write the PNG; parent folders are created.
        title: a title over the three panels.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: no ``metrics.csv`` there.
        ImportError: matplotlib is not installed (``pip install 'lstm-plugins[plot]'``).
    """
    require_matplotlib()
    from lstm_plugins.cli._metrics_log import read_metrics_log

    return plot_run(read_metrics_log(log), output_png, title=title)
