"""Exploding-gradient detection: a spike of the total gradient norm against its running statistics.

Every step, the log of the total gradient norm is compared with a running mean and variance of
past log norms, on the device. A step is a *spike* when its log norm lies more than ``threshold``
running standard deviations above the running mean **and** the norm is at least ``min_ratio``
times the running geometric mean (the second condition keeps a very steady norm from turning
small wobbles into spikes). A non-finite norm is always a spike. Statistics start as the exact
mean and variance of the steps seen so far and become an exponential moving average with
``decay`` once more than ``1 / (1 - decay)`` steps are seen, so they follow the slow drift of the
norm during training; a spike enters them clamped to the spike bound, so one explosion does not
hide the next. Each layer's log norm has a running mean too, so a spike is attributed to the
layer whose norm rose most relative to its own mean.

Nothing here reads a tensor on the host: the statistics, the spike count and the first spike's
step and layer stay on the device, and :meth:`GradientSpikeStatistics.summary` reads them in one
transfer when asked (the technique asks on its logging steps and at epoch ends).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from lstm_plugins import Technique, hookimpl, toolkit
from lstm_plugins import validation as check

__all__ = [
    "ExplodingGradients",
    "GradientSpikeStatistics",
    "GradientSpikeWarning",
    "SpikeSummary",
    "exploding_gradients",
]

# Floor of a norm before the log, so an all-zero gradient has a finite (very low) log norm; its
# square (1e-30) is still a normal float32.
_TINY = 1e-15


class GradientSpikeWarning(UserWarning):
    """Issued once per fit when the total gradient norm spikes."""


def _spike_test(excess: Tensor, variance: Tensor, threshold: float, min_ratio: float) -> tuple[Tensor, Tensor]:
    """The spike flag of a log norm ``excess`` over the running mean, and the bound it is held to."""
    bound = (threshold * variance.clamp_min(0).sqrt()).clamp_min(math.log(min_ratio))
    return ~(excess <= bound), bound  # NaN and +inf included


def exploding_gradients(
    log_norm: Tensor, mean: Tensor, variance: Tensor, threshold: float, min_ratio: float
) -> Tensor:
    """Whether ``log_norm`` is a spike against a running ``mean``/``variance`` of log norms.

    A spike lies more than ``threshold`` standard deviations above the mean *and* more than
    ``log(min_ratio)`` above it (the norm is at least ``min_ratio`` times the geometric mean);
    a non-finite norm is always one. Returns a bool tensor on the inputs' device (no sync).
    :class:`GradientSpikeStatistics` applies this rule every step.

    Example:
        >>> mean, variance = torch.tensor(0.0), torch.tensor(0.25)   # std 0.5 in log space
        >>> exploding_gradients(torch.tensor([1.0, 3.5, math.inf]).log(), mean, variance, 4.0, 3.0)
        tensor([False, False,  True])
        >>> exploding_gradients(torch.tensor(10.0).log(), mean, variance, 4.0, 3.0)
        tensor(True)
    """
    return _spike_test(log_norm - mean, variance, threshold, min_ratio)[0]


class SpikeSummary(NamedTuple):
    """What :meth:`GradientSpikeStatistics.summary` reads back to the host."""

    spikes: int
    """Spikes so far."""
    first_step: int | None
    """The step of the first spike, ``None`` when there was none."""
    first_layer: str | None
    """The layer whose norm rose most, relative to its own running mean, at the first spike."""
    first_ratio: float | None
    """The first spike's total norm over the running geometric mean before it."""
    first_layer_ratio: float | None
    """The same ratio for ``first_layer``."""


class GradientSpikeStatistics:
    """Running statistics of the log total and per-layer gradient norms, with spike detection.

    The plain face of :class:`ExplodingGradients` for your own training loop: call :meth:`update`
    with :func:`lstm_plugins.toolkit.gradient_norms` of every step (before clipping), or
    :meth:`update_from_parameters` with the named parameters, and :meth:`summary` now and then.
    Every update is a fixed handful of device operations and never reads a value on the host.

    Args:
        threshold: standard deviations of the log norm above its running mean for a spike.
        min_ratio: a spike's norm is also at least this times the running geometric mean.
        warmup_steps: steps that only feed the statistics; none of them is a spike.
        decay: the moving average's decay once more than ``1 / (1 - decay)`` steps are seen.

    Example:
        >>> statistics = GradientSpikeStatistics(warmup_steps=5)
        >>> for step in range(20):
        ...     norm = 1e4 if step == 12 else 1.0 + 0.1 * (step % 3)
        ...     spike = statistics.update({"total": torch.tensor(norm), "lstm.layer0": torch.tensor(norm)}, step)
        >>> summary = statistics.summary()
        >>> summary.spikes, summary.first_step, summary.first_layer, summary.first_ratio > 1000
        (1, 12, 'lstm.layer0', True)
    """

    def __init__(
        self, threshold: float = 6.0, min_ratio: float = 4.0, warmup_steps: int = 50, decay: float = 0.98
    ) -> None:
        self.threshold = threshold
        self.min_ratio = min_ratio
        self.warmup_steps = warmup_steps
        self.decay = decay
        self.observed_steps = 0
        """Steps fed so far (a host-side count: no sync)."""
        self.non_finite_is_spike = True
        """Whether an infinite or NaN norm counts as a spike; set it to ``False`` under an AMP loss
        scaler, whose overflow steps are expected (and skipped by the scaler)."""
        self.layer_names: list[str] = []
        self._tensors: dict[str, Tensor] = {}
        self._layouts: dict[tuple[str, ...], tuple[list[str], Tensor]] = {}

    def _initialise(self, layer_names: list[str], device: torch.device) -> None:
        self.layer_names = list(layer_names)
        self._tensors = {
            "mean": torch.zeros((), device=device),
            "variance": torch.zeros((), device=device),
            "layer_mean": torch.zeros(len(self.layer_names), device=device),
            "spikes": torch.zeros((), dtype=torch.int64, device=device),
            "first_step": torch.full((), -1, dtype=torch.int64, device=device),
            # The first spike's layer index, total-norm ratio and layer-norm ratio (both logs).
            "first": torch.zeros(3, device=device),
        }

    @property
    def spikes(self) -> Tensor:
        """Spikes so far, an int64 tensor on the device."""
        return self._tensors["spikes"] if self._tensors else torch.zeros((), dtype=torch.int64)

    def update(self, norms: Mapping[str, Tensor], step: int) -> Tensor:
        """Feed one step's gradient norms; returns whether it was a spike (a device bool tensor).

        ``norms`` maps ``"total"`` to the total norm and each layer name to that layer's norm, as
        :func:`lstm_plugins.toolkit.gradient_norms` returns them; the layers are those of the
        first call, and a layer missing at a later step counts as a zero norm.
        """
        total = norms["total"].detach().float()
        if not self._tensors:
            self._initialise([name for name in norms if name != "total"], total.device)
        zero = total.new_zeros(())
        layers = [norms.get(name, zero).detach().float() for name in self.layer_names]
        log_layers = torch.stack(layers).clamp_min(_TINY).log() if layers else total.new_zeros(0)
        return self._update(total.clamp_min(_TINY).log(), log_layers, step)

    def update_from_parameters(self, named_parameters: Any, step: int) -> Tensor:
        """:meth:`update` from ``model.named_parameters()``: one fused norm over the gradients
        and one ``index_add`` per step (layers as :func:`lstm_plugins.toolkit.layer_of` groups
        them). Returns the spike flag."""
        named = [(name, p) for name, p in named_parameters if p.requires_grad]
        present = [(name, p.grad) for name, p in named if p.grad is not None]
        if not present:
            return torch.zeros((), dtype=torch.bool)
        device = present[0][1].device
        if not self._tensors:
            self._initialise(list(dict.fromkeys(toolkit.layer_of(name) for name, _ in named)), device)
        key = tuple(name for name, _ in present)
        layout = self._layouts.get(key)
        if layout is None or layout[1].device != device:
            # Built once per set of parameters with gradients: a host-to-device copy, not a read.
            known = {layer: index for index, layer in enumerate(self.layer_names)}
            kept = [name for name in key if toolkit.layer_of(name) in known]
            index = torch.tensor([known[toolkit.layer_of(name)] for name in kept], device=device)
            layout = self._layouts[key] = (kept, index)
        kept, index = layout
        gradients = dict(present)
        squares = torch.stack(torch._foreach_norm([gradients[name] for name in kept])).float().square()
        layer_squares = squares.new_zeros(len(self.layer_names)).index_add_(0, index, squares)
        log_layers = 0.5 * layer_squares.clamp_min(_TINY**2).log()
        log_total = 0.5 * layer_squares.sum().clamp_min(_TINY**2).log()
        return self._update(log_total, log_layers, step)

    def _update(self, log_norm: Tensor, log_layers: Tensor, step: int) -> Tensor:
        state = self._tensors
        if state["mean"].device != log_norm.device:
            self.to(log_norm.device)  # restored from a checkpoint onto another device
        mean, variance, layer_mean = state["mean"], state["variance"], state["layer_mean"]
        excess = log_norm - mean
        layer_rise = log_layers - layer_mean
        if self.observed_steps >= self.warmup_steps:
            spike, bound = _spike_test(excess, variance, self.threshold, self.min_ratio)
            if not self.non_finite_is_spike:
                spike = spike & torch.isfinite(excess)
            # The first spike's step, layer and ratios, recorded on the device.
            first = spike & (state["first_step"] < 0)
            state["first_step"].masked_fill_(first, step)
            if self.layer_names:
                top_rise, top_layer = layer_rise.nan_to_num(nan=math.inf).max(0)
                details = torch.stack((top_layer.to(excess.dtype), excess, top_rise))
            else:
                details = torch.stack((excess.new_full((), -1.0), excess, excess))
            state["first"].copy_(torch.where(first, details, state["first"]))
            state["spikes"].add_(spike)
            # A spike (an infinite norm included) enters the statistics clamped to the bound,
            # so they still follow a lasting rise.
            excess, layer_rise = torch.minimum(excess, bound), torch.minimum(layer_rise, bound)
        else:
            spike = torch.zeros((), dtype=torch.bool, device=log_norm.device)

        # Exact running mean/variance at first, then an exponential moving average (West's
        # update); a NaN norm does not enter.
        alpha = max(1.0 / (self.observed_steps + 1), 1.0 - self.decay)
        delta = excess.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
        mean.add_(delta, alpha=alpha)
        variance.add_(delta.square(), alpha=alpha).mul_(1.0 - alpha)
        layer_mean.add_(layer_rise.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0), alpha=alpha)
        self.observed_steps += 1
        return spike

    def summary(self) -> SpikeSummary:
        """Read the spike count and the first spike's details: one device-to-host transfer."""
        if not self._tensors:
            return SpikeSummary(0, None, None, None, None)
        state = self._tensors
        values = torch.cat(
            (state["spikes"].double().reshape(1), state["first_step"].double().reshape(1), state["first"].double())
        ).tolist()
        spikes, first_step, first_layer, log_ratio, log_layer_ratio = values
        if first_step < 0:
            return SpikeSummary(int(spikes), None, None, None, None)
        layer = self.layer_names[int(first_layer)] if first_layer >= 0 else None
        return SpikeSummary(
            int(spikes), int(first_step), layer, _exp(log_ratio), _exp(log_layer_ratio) if layer is not None else None,
        )

    def state_dict(self) -> dict[str, Any]:
        """Plain data (CPU tensors, numbers, strings) for a checkpoint; the same keys before
        and after the first update (``tensors`` is empty until then)."""
        return {
            "observed_steps": self.observed_steps,
            "layer_names": list(self.layer_names),
            "tensors": {key: value.detach().cpu() for key, value in self._tensors.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; tensors move to the gradients' device on use."""
        tensors = dict(state["tensors"])
        layer_names = list(state["layer_names"])
        expected = {"mean", "variance", "layer_mean", "spikes", "first_step", "first"}
        if tensors and (set(tensors) != expected or not all(isinstance(v, Tensor) for v in tensors.values())
                        or tensors["layer_mean"].shape != (len(layer_names),)):
            raise ValueError("The stored gradient-spike statistics do not match their layer names.")
        self.observed_steps = check.int_at_least("observed_steps", state["observed_steps"], 0)
        self.layer_names = layer_names
        self._tensors = {key: value.clone() for key, value in tensors.items()}
        self._layouts = {}

    def to(self, device: torch.device) -> GradientSpikeStatistics:
        """Move the statistics to ``device`` (in place); returns ``self``."""
        self._tensors = {key: value.to(device) for key, value in self._tensors.items()}
        self._layouts = {}
        return self


class ExplodingGradients(Technique):
    """Warns once when the total gradient norm spikes, naming the step and the layer.

    Observes every step in the gradients-ready phase (after DDP's reduction and AMP's unscaling,
    before clipping) and feeds :class:`GradientSpikeStatistics` on the device; after
    ``warmup_steps``, :func:`exploding_gradients` decides spikes (a non-finite norm is not one
    under an AMP loss scaler, whose overflow steps are routine). The spike flag is read on the
    host only on the logging steps (:func:`lstm_plugins.toolkit.log_due`) and at epoch ends; the
    first spike found issues one :class:`GradientSpikeWarning` (on rank 0) with the step, the
    ratio and the layer whose norm rose most against its own running mean.
    ``exploding_gradients/spikes`` (the count so far) is logged on the same steps. The
    statistics and whether the warning was issued are kept in checkpoints (:meth:`state_dict`).

    Args:
        threshold: standard deviations of the log norm above its running mean for a spike.
        min_ratio: a spike's norm is also at least this times the running geometric mean.
        warmup_steps: steps that only feed the statistics (norms fall fast early in training).
        log_every_n_steps: read the spike flag and log the count on optimizer steps
            ``N - 1, 2N - 1, ...``; ``None`` uses the Trainer's ``log_every_n_steps``.
        decay: decay of the moving averages (a window of about ``1 / (1 - decay)`` steps).

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> detector = ExplodingGradients(warmup_steps=100)
        >>> model = LSTMClassifier(12, 9, techniques=[detector])
        >>> sorted(detector.state_dict())
        ['layer_names', 'observed_steps', 'reported', 'tensors']
    """

    name = "exploding_gradients"

    def __init__(
        self,
        threshold: float = 6.0,
        min_ratio: float = 4.0,
        warmup_steps: int = 50,
        log_every_n_steps: int | None = None,
        decay: float = 0.98,
    ) -> None:
        self.threshold = check.positive_float("threshold", threshold)
        self.min_ratio = check.positive_float("min_ratio", min_ratio)
        if self.min_ratio <= 1.0:
            raise ValueError(f"Expected `min_ratio` to be a float above 1, but got {self.min_ratio!r}.")
        self.warmup_steps = check.positive_int("warmup_steps", warmup_steps)
        self.log_every_n_steps = check.optional_positive_int("log_every_n_steps", log_every_n_steps)
        self.decay = check.probability("decay", decay)
        self.statistics = GradientSpikeStatistics(self.threshold, self.min_ratio, self.warmup_steps, self.decay)
        self.reported = False
        """Whether the warning was issued (it is issued once)."""

    @hookimpl
    def on_fit_setup(self, trainer: Any) -> None:
        # Under an AMP loss scaler, overflowing (non-finite) steps are routine and skipped by the
        # scaler: they are not spikes.
        scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
        self.statistics.non_finite_is_spike = scaler is None

    @hookimpl
    def on_gradients_ready(self, model: Any) -> None:
        self.statistics.update_from_parameters(model.cached_named_parameters(), model.trainer.global_step)
        if toolkit.log_due(model.trainer, self.log_every_n_steps):
            model.log_step_values({"exploding_gradients/spikes": self.statistics.spikes})
            self._report()

    @hookimpl
    def on_train_epoch_end(self) -> None:
        self._report()

    def _report(self) -> None:
        """The one host read (on the logging steps and at epoch ends), until the spike is reported."""
        if self.reported:
            return
        summary = self.statistics.summary()
        if summary.first_step is None:
            return
        self.reported = True
        rank_zero_warn(spike_message(summary), category=GradientSpikeWarning)

    def state_dict(self) -> dict[str, Any]:
        return {**self.statistics.state_dict(), "reported": self.reported}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.statistics.load_state_dict(state)
        self.reported = bool(state["reported"])


def _exp(value: float) -> float:
    return math.inf if value > 700 else math.exp(value)  # NaN stays NaN


def _ratio(value: float | None, what: str) -> str:
    return f"{value:.3g}x {what}" if value is not None and math.isfinite(value) else "not finite"


def spike_message(summary: SpikeSummary) -> str:
    """The warning's text for a summary that has a first spike."""
    layer = ""
    if summary.first_layer is not None:
        rise = _ratio(summary.first_layer_ratio, "its running mean")
        layer = f"; the largest rise was in `{summary.first_layer}` ({rise})"
    return (
        f"Exploding gradients: at step {summary.first_step} the total gradient norm was "
        f"{_ratio(summary.first_ratio, 'its running geometric mean')}{layer}. {summary.spikes} spike(s) "
        "so far; later spikes are counted in `exploding_gradients/spikes` without further warnings."
    )
