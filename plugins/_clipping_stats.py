"""What every clipper shares: one slot, the Trainer check, clipping statistics, checkpoint state.

:class:`ClippingTechnique` is the base of the built-in clippers (``gradient_clipping``,
``adaptive_clipping``, ``auto_clipping``). It

* takes the ``gradient_clipping`` exclusive slot, so two clippers in one stack are refused when
  the model is built, naming both;
* refuses ``Trainer(gradient_clip_val=...)`` before training starts, naming both;
* counts, on the device and without host synchronisation, the optimizer steps in which clipping
  changed the gradients, and logs ``<name>/pre_clip_norm`` and ``<name>/clipped_fraction`` every
  ``log_every_n_steps`` optimizer steps (default: the Trainer's ``log_every_n_steps``);
* keeps the step counts (and whatever a subclass adds) in Lightning checkpoints under
  ``checkpoint["lstm_plugins"]["state"][<technique name>]``, as plain numbers and tensors, so a
  resumed run's ``clipped_fraction`` continues where it stopped.

A subclass calls :meth:`ClippingTechnique._init_clipping` in its ``__init__``, and from its
``transform_gradients`` hook calls :meth:`~ClippingTechnique._count_step` every step and
:meth:`~ClippingTechnique._log_clipping` when :meth:`~ClippingTechnique._log_due` says so.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lstm_plugins import PROJECT_NAME, Technique, hookimpl
from lstm_plugins import validation as check

_DEFAULT_INTERVAL = 50  # until on_fit_setup reads the Trainer's log_every_n_steps


def refuse_trainer_clipping(technique: Technique, trainer: Any) -> None:
    """Raise ``ValueError`` naming both when the Trainer clips gradients as well.

    Example:
        >>> from types import SimpleNamespace
        >>> from lstm_plugins.plugins import GradientClipping
        >>> refuse_trainer_clipping(GradientClipping(), SimpleNamespace(gradient_clip_val=0.5))
        Traceback (most recent call last):
        ...
        ValueError: Technique `gradient_clipping` (GradientClipping(...)) and `Trainer(gradient_clip_val=0.5)` both clip gradients; keep one of them.
    """
    clip_val = getattr(trainer, "gradient_clip_val", None)
    if clip_val:
        raise ValueError(
            f"Technique `{technique.name}` ({technique!r}) and "
            f"`Trainer(gradient_clip_val={clip_val})` both clip gradients; keep one of them."
        )


def technique_state(checkpoint: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The state stored under ``checkpoint["lstm_plugins"]["state"][name]``, or ``None``."""
    section = checkpoint.get(PROJECT_NAME)
    if not isinstance(section, dict):
        return None
    state = section.get("state")
    if not isinstance(state, dict):
        return None
    return state.get(name)


class ClippingTechnique(Technique):
    """Base of the clippers: exclusive slot, Trainer check, clipped-step counting, checkpoints."""

    exclusive: ClassVar[str | None] = "gradient_clipping"

    log_every_n_steps: int | None
    _interval: int
    _steps: int
    _clipped_steps: Tensor

    def _init_clipping(self, log_every_n_steps: int | None) -> None:
        """Check ``log_every_n_steps`` and start the counters at zero."""
        self.log_every_n_steps = (
            None if log_every_n_steps is None else check.positive_int("log_every_n_steps", log_every_n_steps)
        )
        self._interval = self.log_every_n_steps or _DEFAULT_INTERVAL
        self._steps = 0
        self._clipped_steps = torch.zeros((), dtype=torch.int64)

    # --- every step ----------------------------------------------------------------------------

    def _count_step(self, clipped: Tensor) -> None:
        """Count one optimizer step; ``clipped`` is a boolean tensor (no host synchronisation)."""
        if self._clipped_steps.device != clipped.device:
            self._clipped_steps = self._clipped_steps.to(clipped.device)
        self._clipped_steps.add_(clipped)  # bool into int64: one kernel, no host read
        self._steps += 1

    def _log_due(self, model: Any) -> bool:
        """Whether this optimizer step is a logging step."""
        return model.trainer.global_step % self._interval == 0

    def _log_clipping(self, model: Any, pre_clip_norm: Tensor, **extra: Tensor) -> None:
        """Log the pre-clip norm, the clipped fraction so far and ``extra`` (queued: no host copy)."""
        values = {
            f"{self.name}/pre_clip_norm": pre_clip_norm,
            f"{self.name}/clipped_fraction": self.clipped_fraction,
        }
        values.update({f"{self.name}/{key}": value for key, value in extra.items()})
        model.log_step_values(values)

    @property
    def clipped_steps(self) -> Tensor:
        """How many optimizer steps clipping changed the gradients in, as a device tensor."""
        return self._clipped_steps

    @property
    def steps(self) -> int:
        """How many optimizer steps the technique has seen (checkpointed, so resumes continue)."""
        return self._steps

    @property
    def clipped_fraction(self) -> Tensor:
        """``clipped_steps / steps`` as a float device tensor (0 before the first step)."""
        return self._clipped_steps / max(self._steps, 1)

    # --- state ---------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        """Plain data to checkpoint; subclasses extend it."""
        return {"steps": self._steps, "clipped_steps": int(self._clipped_steps.item())}

    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_state` returned; subclasses extend it."""
        self._steps = int(state.get("steps", 0))
        device = self._clipped_steps.device
        self._clipped_steps = torch.tensor(int(state.get("clipped_steps", 0)), dtype=torch.int64, device=device)

    # --- hooks ---------------------------------------------------------------------------------

    def _setup(self, model: Any, trainer: Any) -> None:
        """Subclass extension point of ``on_fit_setup``."""

    @hookimpl
    def on_fit_setup(self, model: Any, trainer: Any) -> None:
        refuse_trainer_clipping(self, trainer)
        self._interval = self.log_every_n_steps or max(int(trainer.log_every_n_steps), 1)
        self._setup(model, trainer)

    @hookimpl
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[PROJECT_NAME]["state"][self.name] = self._state()

    @hookimpl
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = technique_state(checkpoint, self.name)
        if state is not None:  # None: the checkpoint was written without this technique
            self._load_state(state)
