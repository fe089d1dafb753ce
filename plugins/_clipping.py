"""What every clipper shares: one slot, the Trainer check, clipping statistics, checkpoint state.

:class:`ClippingTechnique` is the base of the built-in clippers (``gradient_clipping``,
``adaptive_clipping``, ``auto_clipping``). It

* takes the ``gradient_clipping`` exclusive slot, so two clippers in one stack are refused when
  the model is built, naming both;
* refuses ``Trainer(gradient_clip_val=...)`` in ``on_fit_setup``, before training starts, naming
  both;
* counts, on the device and without host synchronisation, the optimizer steps in which clipping
  changed the gradients, and logs ``<name>/pre_clip_norm`` and ``<name>/clipped_fraction`` on the
  steps :func:`lstm_plugins.toolkit.log_due` names (every ``log_every_n_steps`` optimizer steps,
  by default the Trainer's, on Lightning's rows ``N - 1, 2N - 1, ...``);
* keeps the step counts (and whatever a subclass adds) in checkpoints through
  :meth:`~ClippingTechnique.state_dict` / :meth:`~ClippingTechnique.load_state_dict`, so a
  resumed run's ``clipped_fraction`` continues where it stopped.

A subclass calls :meth:`ClippingTechnique._init_clipping` in its ``__init__`` and, from its
``transform_gradients`` hook, :meth:`~ClippingTechnique._record` once per optimizer step.

Example:
    >>> import torch
    >>> clipper = ClippingTechnique()
    >>> clipper._init_clipping(log_every_n_steps=None)
    >>> for clipped in (True, False, True, True):
    ...     clipper._count_step(torch.tensor(clipped))
    >>> clipper.state_dict(), clipper.clipped_fraction
    ({'steps': 4, 'clipped_steps': 3}, tensor(0.7500))
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lstm_plugins import Technique, hookimpl, toolkit
from lstm_plugins import validation as check


def refuse_trainer_clipping(technique: Technique, trainer: Any) -> None:
    """Raise ``ValueError`` naming both when the Trainer clips gradients as well.

    Example:
        >>> from types import SimpleNamespace
        >>> from lstm_plugins.plugins.gradient_clipping import GradientClipping
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


class ClippingTechnique(Technique):
    """Base of the clippers: exclusive slot, Trainer check, clipped-step counting, checkpoints."""

    exclusive: ClassVar[str | None] = "gradient_clipping"

    log_every_n_steps: int | None
    _steps: int
    _clipped_steps: Tensor

    def _init_clipping(self, log_every_n_steps: int | None) -> None:
        """Check ``log_every_n_steps`` and start the counters at zero."""
        self.log_every_n_steps = check.optional_positive_int("log_every_n_steps", log_every_n_steps)
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
        """Whether this optimizer step logs (Lightning's rows, the technique's own interval)."""
        return toolkit.log_due(model.trainer, self.log_every_n_steps)

    def _record(self, model: Any, pre_clip_norm: Tensor, clipped: Tensor, **extra: Tensor) -> None:
        """Count the step and, when it logs, queue ``<name>/pre_clip_norm``,
        ``<name>/clipped_fraction`` and ``<name>/<key>`` for each of ``extra`` (no host copy)."""
        self._count_step(clipped)
        if self._log_due(model):
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

    # --- checkpoint state ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"steps": int, "clipped_steps": int}``, the same keys before and after training;
        subclasses extend it."""
        return {"steps": self._steps, "clipped_steps": int(self._clipped_steps.item())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; counts that cannot be right are a ``ValueError``."""
        steps = self._stored_count(state, "steps")
        clipped_steps = self._stored_count(state, "clipped_steps", at_most=steps)
        self._steps = steps
        device = self._clipped_steps.device
        self._clipped_steps = torch.tensor(clipped_steps, dtype=torch.int64, device=device)

    def _stored_count(self, state: dict[str, Any], key: str, at_most: int | None = None) -> int:
        value = state[key]
        valid = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if not valid or (at_most is not None and value > at_most):
            bound = "a non-negative int" if at_most is None else f"an int in [0, {at_most}]"
            raise ValueError(
                f"Technique `{self.name}`: expected checkpoint state `{key}` to be {bound}, but got {value!r}."
            )
        return value

    # --- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def on_fit_setup(self, model: Any, trainer: Any) -> None:
        refuse_trainer_clipping(self, trainer)
