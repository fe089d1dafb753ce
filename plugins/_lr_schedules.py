"""What the learning-rate schedules are made of: the per-step factor of the cosine and
warmed-up step schedules, the plateau scheduler stepped after each validation and its callback,
and the argument checks :func:`~lstm_plugins.plugins.lr_schedule.lr_schedule` and
:class:`~lstm_plugins.plugins.lr_schedule.LRSchedule` share.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pytorch_lightning import Callback

from lstm_plugins import validation as check

KINDS = ("cosine", "one_cycle", "plateau", "step")
WARMUP_KINDS = ("cosine", "step")
TOTAL_KINDS = ("cosine", "one_cycle")


class ScheduleFactor:
    """The multiplier of the base learning rate at optimizer step ``t`` for the ``"cosine"``
    kind, and for ``"step"`` with a warm-up (then stepped per optimizer step).

    * warm-up (``t < warmup_steps``): ``start + (1 - start) * t / warmup_steps``, linear from
      ``warmup_start_ratio`` to 1;
    * ``"cosine"`` afterwards: ``min + (1 - min) * (1 + cos(pi * p)) / 2`` with
      ``p = (t - warmup_steps) / (total_steps - warmup_steps)``, clipped to ``[0, 1]``;
    * ``"step"``: ``gamma ** (epoch // step_size)`` with ``epoch = t // steps_per_epoch``
      (times the warm-up factor while it lasts).

    A plain object whose attributes are plain numbers: ``LambdaLR`` keeps them in its
    ``state_dict``, so a checkpoint loads with ``weights_only=True`` and a resumed run follows
    the curve it started on.

    Example:
        >>> factor = ScheduleFactor("cosine", total_steps=10, warmup_steps=2, warmup_start_ratio=0.5)
        >>> [round(factor(t), 4) for t in (0, 1, 2, 6, 10, 12)]
        [0.5, 0.75, 1.0, 0.5, 0.0, 0.0]
    """

    def __init__(
        self,
        kind: str,
        *,
        total_steps: int = 0,
        warmup_steps: int = 0,
        warmup_start_ratio: float = 0.0,
        min_lr_ratio: float = 0.0,
        steps_per_epoch: int = 1,
        step_size: int = 1,
        gamma: float = 1.0,
    ) -> None:
        self.kind = kind
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.warmup_start_ratio = warmup_start_ratio
        self.min_lr_ratio = min_lr_ratio
        self.steps_per_epoch = steps_per_epoch
        self.step_size = step_size
        self.gamma = gamma

    def __call__(self, step: int) -> float:
        warmup = 1.0
        if step < self.warmup_steps:
            warmup = self.warmup_start_ratio + (1.0 - self.warmup_start_ratio) * step / self.warmup_steps
        if self.kind == "step":
            epoch = step // self.steps_per_epoch
            return warmup * self.gamma ** (epoch // self.step_size)
        if step < self.warmup_steps:
            return warmup
        progress = min(max((step - self.warmup_steps) / (self.total_steps - self.warmup_steps), 0.0), 1.0)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ValidationPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """``ReduceLROnPlateau`` stepped with a value after each validation; a ``step()`` without a
    value (Lightning's per-epoch call of a scheduler it does not treat as a plateau one) does
    nothing.

    Lightning steps a plateau scheduler itself only at an epoch's end, after
    ``on_train_epoch_end`` (so an epoch-end checkpoint misses that step) and not at all in the
    epoch a fit resumes in; stepped right after the validation, before any checkpoint is written,
    the scheduler's state in every checkpoint is complete and a resumed fit continues exactly.

    Example:
        >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> plateau = ValidationPlateau(optimizer, patience=0, factor=0.5)
        >>> plateau.step(); optimizer.param_groups[0]["lr"]  # Lightning's call: nothing
        1.0
        >>> plateau.step(2.0); plateau.step(3.0); optimizer.param_groups[0]["lr"]
        0.5
    """

    def step(self, metrics: Any = None, epoch: Any = None) -> None:  # type: ignore[override]
        if metrics is not None:
            super().step(metrics)


class PlateauStepper(Callback):
    """Steps the fit's :class:`ValidationPlateau` with the monitored value after each validation
    of a fit (not the sanity check), before checkpoint callbacks run (Lightning calls them last)."""

    def __init__(self, technique: Any) -> None:
        self.technique = technique

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        schedulers = [c.scheduler for c in trainer.lr_scheduler_configs if isinstance(c.scheduler, ValidationPlateau)]
        if not schedulers:
            return
        monitor = self.technique.monitor
        value = trainer.callback_metrics.get(monitor)
        if value is None:
            known = ", ".join(sorted(trainer.callback_metrics)) or "none"
            raise ValueError(
                f"Technique `{self.technique.name}` with kind 'plateau' watches `{monitor}`, but the validation "
                f"did not log it (logged: {known}). Give `monitor` one of those."
            )
        for scheduler in schedulers:
            scheduler.step(float(value))


def monitor_name(value: Any) -> str:
    """A metric name: a non-empty string."""
    if not isinstance(value, str):
        raise TypeError(f"Expected `monitor` to be a metric name, but got {check.describe(value)}.")
    if not value:
        raise ValueError(f"Expected `monitor` to be a metric name, but got {check.describe(value)}.")
    return value


def check_arguments(
    kind: Any,
    total_steps: Any,
    warmup_steps: Any,
    warmup_start_ratio: Any,
    min_lr_ratio: Any,
    max_lr: Any,
    pct_start: Any,
    factor: Any,
    patience: Any,
    monitor: Any,
    mode: Any,
    step_size: Any,
    gamma: Any,
    technique: str,
) -> dict[str, Any]:
    """Every argument checked, and the combinations that cannot work refused, naming ``technique``."""
    checked = {
        "kind": check.choice("kind", kind, KINDS),
        "total_steps": check.optional_positive_int("total_steps", total_steps),
        "warmup_steps": check.int_at_least("warmup_steps", warmup_steps, 0),
        "warmup_start_ratio": check.probability("warmup_start_ratio", warmup_start_ratio),
        "min_lr_ratio": check.probability("min_lr_ratio", min_lr_ratio),
        "max_lr": None if max_lr is None else check.positive_float("max_lr", max_lr),
        "pct_start": check.open_fraction("pct_start", pct_start),
        "factor": check.open_fraction("factor", factor),
        "patience": check.int_at_least("patience", patience, 0),
        "monitor": monitor_name(monitor),
        "mode": check.choice("mode", mode, ("min", "max")),
        "step_size": check.positive_int("step_size", step_size),
        "gamma": check.open_fraction("gamma", gamma),
    }
    kind = checked["kind"]
    if checked["warmup_steps"] and kind not in WARMUP_KINDS:
        reason = "it has its own warm-up (`pct_start`)" if kind == "one_cycle" else "it reacts to a monitored value"
        raise ValueError(
            f"Technique `{technique}`: `warmup_steps` works with kind 'cosine' or 'step', not {kind!r}: "
            f"{reason}. Leave warmup_steps=0."
        )
    if checked["max_lr"] is not None and kind != "one_cycle":
        raise ValueError(
            f"Technique `{technique}`: `max_lr` is for kind 'one_cycle'; kind {kind!r} starts from the "
            "optimizer's learning rate (the model's `learning_rate`)."
        )
    check_warmup_fits(checked["warmup_steps"], checked["total_steps"], kind, technique)
    return checked


def check_warmup_fits(warmup_steps: int, total_steps: int | None, kind: str, technique: str) -> None:
    """Refuse a cosine warm-up that leaves no step of the run to decay in."""
    if kind == "cosine" and total_steps is not None and warmup_steps >= total_steps:
        raise ValueError(
            f"Technique `{technique}`: `warmup_steps`={warmup_steps} leaves no step to decay in: "
            f"the run has {total_steps} optimizer steps. Use fewer warm-up steps."
        )
