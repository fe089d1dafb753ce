"""Learning-rate schedules: cosine decay, one-cycle, reduce-on-plateau and step decay, with a
linear warm-up, configured as Lightning's own scheduler (kept in Lightning's checkpoints and
restored by ``fit(ckpt_path=...)``).

:func:`lr_schedule` is the function face of :class:`LRSchedule`: both build the same scheduler
configuration (one implementation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from pytorch_lightning import Callback

from lstm_plugins import Technique, hookimpl, toolkit
from lstm_plugins import validation as check
from lstm_plugins.plugins._lr_schedules import (
    TOTAL_KINDS,
    PlateauStepper,
    ScheduleFactor,
    ValidationPlateau,
    check_arguments,
    check_warmup_fits,
)
from lstm_plugins.techniques import Choice, FloatRange, SearchValue

ScheduleKind = Literal["cosine", "one_cycle", "plateau", "step"]
PlateauMode = Literal["min", "max"]


def lr_schedule(
    optimizer: torch.optim.Optimizer,
    kind: ScheduleKind,
    *,
    total_steps: int | None = None,
    warmup_steps: int = 0,
    warmup_start_ratio: float = 0.0,
    min_lr_ratio: float = 0.0,
    max_lr: float | None = None,
    pct_start: float = 0.3,
    factor: float = 0.1,
    patience: int = 10,
    monitor: str = "val/loss",
    mode: PlateauMode = "min",
    step_size: int = 10,
    gamma: float = 0.1,
    steps_per_epoch: int | None = None,
    validation_stepped: bool = False,
    technique: str = "lr_schedule",
) -> dict[str, Any]:
    """A learning-rate scheduler on ``optimizer``, as Lightning's scheduler configuration.

    Return it from ``configure_optimizers`` as ``{"optimizer": optimizer, "lr_scheduler":
    lr_schedule(optimizer, ...)}``; in your own loop call ``config["scheduler"].step()`` after
    every optimizer step when ``config["interval"] == "step"``, and at the end of every epoch
    otherwise (``.step(value)`` of ``config["monitor"]`` for ``"plateau"``).

    Args:
        optimizer: the optimizer; each parameter group's ``lr`` is its base learning rate.
        kind: ``"cosine"``: decay from the base rate to ``min_lr_ratio`` times it over
            ``total_steps`` optimizer steps (stepped per optimizer step). ``"one_cycle"``:
            ``torch.optim.lr_scheduler.OneCycleLR`` up to ``max_lr`` and down over
            ``total_steps`` (per step). ``"plateau"``: ``ReduceLROnPlateau``, multiplying the rate
            by ``factor`` after ``patience`` epochs in which ``monitor`` did not improve (per
            epoch). ``"step"``: ``StepLR``, multiplying by ``gamma`` every ``step_size`` epochs.
        total_steps: the number of optimizer steps of the run; needed by ``"cosine"`` and
            ``"one_cycle"``.
        warmup_steps: optimizer steps of linear warm-up from ``warmup_start_ratio`` times the
            base rate to the base rate, before the cosine decay (``"cosine"``), or on top of the
            epoch decay (``"step"``, then stepped per optimizer step and needing
            ``steps_per_epoch``). ``"one_cycle"`` has its own warm-up and refuses it, as does
            ``"plateau"``.
        warmup_start_ratio: where the warm-up starts, as a fraction of the base rate, in [0, 1).
        min_lr_ratio: where the cosine ends, as a fraction of the base rate, in [0, 1).
        max_lr: the peak of ``"one_cycle"``; ``None`` uses each group's ``lr``.
        pct_start: the fraction of ``"one_cycle"`` spent increasing the rate.
        factor: ``"plateau"``'s multiplier, in (0, 1).
        patience: ``"plateau"``'s number of epochs without improvement that are tolerated.
        monitor: the value ``"plateau"`` watches (logged by validation).
        mode: ``"min"`` when a smaller ``monitor`` is better, ``"max"`` otherwise.
        step_size: ``"step"``'s period in epochs.
        gamma: ``"step"``'s multiplier, in (0, 1).
        steps_per_epoch: optimizer steps per epoch, for ``"step"`` with a warm-up.
        validation_stepped: for ``"plateau"``, a :class:`ValidationPlateau` that the caller steps
            with the monitored value after each validation, and that Lightning does not step
            (what :class:`LRSchedule` does, so that resumed fits continue exactly); ``False``
            leaves the stepping to Lightning, at each epoch's end.
        technique: the name errors are reported under.

    Returns:
        ``{"scheduler": ..., "interval": "step" | "epoch", "frequency": 1}``, with
        ``"monitor"`` and ``"strict"`` for ``"plateau"`` (``"reduce_on_plateau": False`` when
        ``validation_stepped``).

    Example:
        >>> layer = torch.nn.Linear(2, 1)
        >>> optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
        >>> config = lr_schedule(optimizer, "cosine", total_steps=4, warmup_steps=1)
        >>> config["interval"]
        'step'
        >>> rates = []
        >>> for _ in range(5):
        ...     rates.append(round(optimizer.param_groups[0]["lr"], 4))
        ...     optimizer.step(); config["scheduler"].step()
        >>> rates
        [0.0, 0.1, 0.075, 0.025, 0.0]
        >>> lr_schedule(optimizer, "one_cycle", total_steps=10, warmup_steps=2)
        Traceback (most recent call last):
        ...
        ValueError: Technique `lr_schedule`: `warmup_steps` works with kind 'cosine' or 'step', not 'one_cycle': it has its own warm-up (`pct_start`). Leave warmup_steps=0.
    """
    a = check_arguments(kind, total_steps, warmup_steps, warmup_start_ratio, min_lr_ratio, max_lr, pct_start,
                         factor, patience, monitor, mode, step_size, gamma, technique)
    kind, total_steps, warmup_steps = a["kind"], a["total_steps"], a["warmup_steps"]
    if kind in TOTAL_KINDS and total_steps is None:
        raise ValueError(
            f"Technique `{technique}`: kind {kind!r} needs `total_steps`, the number of optimizer steps of the run."
        )
    per_step: dict[str, Any] = {"interval": "step", "frequency": 1}
    per_epoch: dict[str, Any] = {"interval": "epoch", "frequency": 1}
    if kind == "cosine":
        shape = ScheduleFactor("cosine", total_steps=total_steps, warmup_steps=warmup_steps,
                               warmup_start_ratio=a["warmup_start_ratio"], min_lr_ratio=a["min_lr_ratio"])
        return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, shape), **per_step}
    if kind == "one_cycle":
        peak = a["max_lr"] if a["max_lr"] is not None else [group["lr"] for group in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps,
                                                        pct_start=a["pct_start"])
        return {"scheduler": scheduler, **per_step}
    if kind == "plateau":
        if check.boolean("validation_stepped", validation_stepped):
            plateau = ValidationPlateau(optimizer, mode=a["mode"], factor=a["factor"], patience=a["patience"])
            return {"scheduler": plateau, **per_epoch, "reduce_on_plateau": False}
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=a["mode"], factor=a["factor"],
                                                               patience=a["patience"])
        return {"scheduler": scheduler, **per_epoch, "monitor": a["monitor"], "strict": True}
    if not warmup_steps:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=a["step_size"], gamma=a["gamma"])
        return {"scheduler": scheduler, **per_epoch}
    if steps_per_epoch is None:
        raise ValueError(
            f"Technique `{technique}`: kind 'step' with a warm-up is stepped per optimizer step and needs "
            "`steps_per_epoch`, the number of optimizer steps in an epoch."
        )
    steps_per_epoch = check.positive_int("steps_per_epoch", steps_per_epoch)
    shape = ScheduleFactor("step", warmup_steps=warmup_steps, warmup_start_ratio=a["warmup_start_ratio"],
                           steps_per_epoch=steps_per_epoch, step_size=a["step_size"], gamma=a["gamma"])
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, shape), **per_step}


class LRSchedule(Technique):
    """Schedules the learning rate: cosine decay, one-cycle, reduce-on-plateau or step decay, with a linear warm-up.

    The schedule is Lightning's own learning-rate scheduler (it takes the ``lr_scheduler``
    slot: a second technique that schedules the rate is refused when the model is built, naming
    both). Lightning steps it and keeps its state in the checkpoint, so a fit resumed with
    ``fit(ckpt_path=...)`` continues the same sequence of rates. The schedule starts from the
    model's ``learning_rate`` (each parameter group's ``lr``).

    * ``"cosine"``: from the learning rate down to ``min_lr_ratio`` times it, along half a
      cosine, over the run's optimizer steps (per step).
    * ``"one_cycle"``: ``torch.optim.lr_scheduler.OneCycleLR`` (per step), up to ``max_lr``
      (default: the learning rate) and down, with its own warm-up (``pct_start``).
    * ``"plateau"``: ``ReduceLROnPlateau`` on ``monitor`` (default ``val/loss``), multiplying
      the rate by ``factor`` once more than ``patience`` validations in a row have not improved
      it. It is stepped right after each validation of the fit (by a callback the technique
      adds), so checkpoints hold its state after that validation and a resumed fit continues
      exactly (Lightning's own plateau stepping skips the epoch a fit resumes in). A fit without
      validation is refused before it starts.
    * ``"step"``: ``StepLR``, multiplying the rate by ``gamma`` every ``step_size`` epochs.

    ``warmup_steps`` adds a linear warm-up from ``warmup_start_ratio`` times the rate, over
    that many optimizer steps, to ``"cosine"`` (the decay starts after it) and ``"step"``
    (multiplying the epoch decay; the schedule is then stepped per optimizer step, epochs counted
    as ``ceil(batches / accumulate_grad_batches)`` steps).

    The run's number of optimizer steps is ``trainer.estimated_stepping_batches`` (which honours
    ``max_epochs``, ``max_steps``, ``limit_train_batches`` and gradient accumulation) unless
    ``total_steps`` is given. Without a Trainer (``model.configure_optimizers()`` called in your
    own loop) no schedule is configured and the optimizer keeps its learning rate: there, build
    the scheduler with the function face :func:`lr_schedule` and step it yourself.

    The learning rate of parameter group 0 used by a step is logged as ``lr_schedule/lr`` on the
    logging steps (a Python number read from the optimizer: no device synchronisation).

    Args:
        kind: ``"cosine"``, ``"one_cycle"``, ``"plateau"`` or ``"step"``.
        warmup_steps: optimizer steps of linear warm-up (``"cosine"`` and ``"step"`` only).
        warmup_start_ratio: the warm-up's first rate, as a fraction of the learning rate.
        min_lr_ratio: the cosine's final rate, as a fraction of the learning rate.
        max_lr: ``"one_cycle"``'s peak; ``None`` uses the learning rate.
        pct_start: the fraction of ``"one_cycle"`` spent increasing the rate.
        factor: ``"plateau"``'s multiplier, in (0, 1).
        patience: ``"plateau"``'s tolerated number of validations without improvement.
        monitor: the value ``"plateau"`` watches.
        mode: ``"min"`` when a smaller ``monitor`` is better, ``"max"`` otherwise.
        step_size: ``"step"``'s period in epochs.
        gamma: ``"step"``'s multiplier, in (0, 1).
        total_steps: the optimizer steps the schedule spans (``"cosine"``, ``"one_cycle"``);
            ``None`` uses ``trainer.estimated_stepping_batches``.
        log_every_n_steps: how often to log the rate; ``None`` uses the Trainer's
            ``log_every_n_steps``.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> LRSchedule("cosine", warmup_steps=100, min_lr_ratio=0.1)
        LRSchedule(kind='cosine', warmup_steps=100, warmup_start_ratio=0.0, min_lr_ratio=0.1, max_lr=None, pct_start=0.3, factor=0.1, patience=10, monitor='val/loss', mode='min', step_size=10, gamma=0.1, total_steps=None, log_every_n_steps=None)
        >>> model = LSTMClassifier(12, 9, techniques=[LRSchedule("one_cycle")])
        >>> type(model.configure_optimizers()).__name__  # no Trainer: no schedule
        'Adam'
        >>> LRSchedule("plateau", warmup_steps=-1)
        Traceback (most recent call last):
        ...
        ValueError: Expected `warmup_steps` to be a non-negative int, but got -1.
    """

    name = "lr_schedule"
    exclusive = "lr_scheduler"

    # Cosine decay (Loshchilov & Hutter 2017) to 0-20 % of the rate, one-cycle (Smith 2018), or step decay.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"kind": Choice("cosine", "one_cycle", "step"),
                                                         "min_lr_ratio": FloatRange(0.0, 0.2)}

    def __init__(
        self,
        kind: ScheduleKind = "cosine",
        *,
        warmup_steps: int = 0,
        warmup_start_ratio: float = 0.0,
        min_lr_ratio: float = 0.0,
        max_lr: float | None = None,
        pct_start: float = 0.3,
        factor: float = 0.1,
        patience: int = 10,
        monitor: str = "val/loss",
        mode: PlateauMode = "min",
        step_size: int = 10,
        gamma: float = 0.1,
        total_steps: int | None = None,
        log_every_n_steps: int | None = None,
    ) -> None:
        checked = check_arguments(kind, total_steps, warmup_steps, warmup_start_ratio, min_lr_ratio, max_lr,
                                   pct_start, factor, patience, monitor, mode, step_size, gamma, self.name)
        self.kind: ScheduleKind = checked["kind"]
        self.warmup_steps: int = checked["warmup_steps"]
        self.warmup_start_ratio: float = checked["warmup_start_ratio"]
        self.min_lr_ratio: float = checked["min_lr_ratio"]
        self.max_lr: float | None = checked["max_lr"]
        self.pct_start: float = checked["pct_start"]
        self.factor: float = checked["factor"]
        self.patience: int = checked["patience"]
        self.monitor: str = checked["monitor"]
        self.mode: PlateauMode = checked["mode"]
        self.step_size: int = checked["step_size"]
        self.gamma: float = checked["gamma"]
        self.total_steps: int | None = checked["total_steps"]
        self.log_every_n_steps = check.optional_positive_int("log_every_n_steps", log_every_n_steps)

    # --- the Trainer ------------------------------------------------------------------------------

    @hookimpl
    def on_fit_setup(self, trainer: Any) -> None:
        if self.kind == "plateau" and not _validates(trainer):
            raise ValueError(
                f"Technique `{self.name}` with kind 'plateau' reduces the learning rate when `{self.monitor}` "
                "stops improving, but this fit runs no validation (limit_val_batches=0 or no validation "
                "data). Give the fit validation data, or use kind 'cosine' or 'step'."
            )

    def _run_steps(self, trainer: Any) -> int:
        """The optimizer steps the schedule spans: ``total_steps``, else the Trainer's estimate."""
        if self.total_steps is not None:
            return self.total_steps
        estimated = trainer.estimated_stepping_batches
        if not isinstance(estimated, (int, float)) or not (0 < estimated < math.inf):
            raise ValueError(
                f"Technique `{self.name}` with kind {self.kind!r} needs the number of optimizer steps of the run, "
                f"but the Trainer cannot tell it (estimated_stepping_batches={estimated}: an endless run or a "
                "training set without a length). Set Trainer(max_steps=...) or give total_steps."
            )
        return int(estimated)

    def _steps_per_epoch(self, trainer: Any) -> int:
        if trainer.train_dataloader is None:
            trainer.fit_loop.setup_data()  # what estimated_stepping_batches does to count batches
        batches = trainer.num_training_batches
        if not (0 < batches < math.inf):
            raise ValueError(
                f"Technique `{self.name}` with kind 'step' and a warm-up counts epochs in optimizer steps, but "
                f"the training data has no length (num_training_batches={batches}). Leave warmup_steps=0."
            )
        return math.ceil(batches / max(int(trainer.accumulate_grad_batches), 1))

    @hookimpl
    def configure_lr_scheduler(self, model: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        trainer = model._trainer
        if trainer is None:
            return None  # no one steps a scheduler outside a Trainer: see the class docstring
        total_steps = None
        if self.kind in TOTAL_KINDS:
            total_steps = self._run_steps(trainer)
            check_warmup_fits(self.warmup_steps, total_steps, self.kind, self.name)
        steps_per_epoch = None
        if self.kind == "step" and self.warmup_steps:
            steps_per_epoch = self._steps_per_epoch(trainer)
        return lr_schedule(
            optimizer, self.kind, total_steps=total_steps, warmup_steps=self.warmup_steps,
            warmup_start_ratio=self.warmup_start_ratio, min_lr_ratio=self.min_lr_ratio, max_lr=self.max_lr,
            pct_start=self.pct_start, factor=self.factor, patience=self.patience, monitor=self.monitor,
            mode=self.mode, step_size=self.step_size, gamma=self.gamma, steps_per_epoch=steps_per_epoch,
            validation_stepped=True, technique=self.name,
        )

    @hookimpl
    def configure_callbacks(self) -> Callback | None:
        return PlateauStepper(self) if self.kind == "plateau" else None

    # --- every step -------------------------------------------------------------------------------

    @hookimpl
    def on_train_step_end(self, model: Any) -> None:
        trainer = model._trainer
        if not toolkit.log_due(trainer, self.log_every_n_steps) or not trainer.optimizers:
            return
        # The step's rate (the scheduler steps after this hook): a Python float, no device sync.
        model.log_step_values({f"{self.name}/lr": trainer.optimizers[0].param_groups[0]["lr"]})


def _validates(trainer: Any) -> bool:
    """Whether a fit with ``trainer`` runs validation (Lightning skips it when
    ``limit_val_batches=0`` or when there is no validation data)."""
    if not getattr(trainer, "limit_val_batches", 1):
        return False
    fit_loop = getattr(trainer, "fit_loop", None)
    source = getattr(getattr(getattr(fit_loop, "epoch_loop", None), "val_loop", None), "_data_source", None)
    is_defined = getattr(source, "is_defined", None)
    return bool(is_defined()) if callable(is_defined) else True
