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
transfer when asked (the plugin asks on its interval).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check
from lstm_plugins.plugins.grad_norm import gradient_norms

__all__ = [
    "ExplodingGradientDetector",
    "GradientSpikeStatistics",
    "GradientSpikeWarning",
    "SpikeSummary",
    "is_gradient_spike",
]

_TINY = 1e-30  # floor before the log: an all-zero gradient has a finite (very low) log norm


class GradientSpikeWarning(UserWarning):
    """Issued once per fit when the total gradient norm spikes."""


def is_gradient_spike(
    log_norm: Tensor, mean: Tensor, variance: Tensor, threshold: float, min_ratio: float
) -> Tensor:
    """Whether ``log_norm`` is a spike against a running ``mean``/``variance`` of log norms.

    A spike lies more than ``threshold`` standard deviations above the mean *and* more than
    ``log(min_ratio)`` above it (the norm is at least ``min_ratio`` times the geometric mean);
    a non-finite norm is always one. Returns a bool tensor on the inputs' device (no sync).

    Example:
        >>> mean, variance = torch.tensor(0.0), torch.tensor(0.25)   # std 0.5 in log space
        >>> is_gradient_spike(torch.tensor([1.0, 3.5, math.inf]).log(), mean, variance, 4.0, 3.0)
        tensor([False, False,  True])
        >>> is_gradient_spike(torch.tensor(10.0).log(), mean, variance, 4.0, 3.0)
        tensor(True)
    """
    excess = log_norm - mean
    bound = torch.maximum(threshold * variance.clamp_min(0).sqrt(), torch.full_like(mean, math.log(min_ratio)))
    return (excess > bound) | ~torch.isfinite(log_norm)


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

    The plain face of :class:`ExplodingGradientDetector`, for your own training loop: call
    :meth:`update` with :func:`lstm_plugins.plugins.gradient_norms` of every step (before
    clipping) and :meth:`summary` now and then.

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
        """Steps fed to :meth:`update` (a host-side count: no sync)."""
        self.layer_names: list[str] = []
        self._tensors: dict[str, Tensor] = {}

    # --- state on the device ------------------------------------------------------------------

    def _initialise(self, norms: Mapping[str, Tensor]) -> None:
        self.layer_names = [name for name in norms if name != "total"]
        device = norms["total"].device
        self._tensors = {
            "mean": torch.zeros((), device=device),
            "variance": torch.zeros((), device=device),
            "layer_mean": torch.zeros(len(self.layer_names), device=device),
            "spikes": torch.zeros((), dtype=torch.int64, device=device),
            "first_step": torch.full((), -1, dtype=torch.int64, device=device),
            "first_layer": torch.full((), -1, dtype=torch.int64, device=device),
            "first_ratio": torch.zeros((), device=device),
            "first_layer_ratio": torch.zeros((), device=device),
        }

    @property
    def spikes(self) -> Tensor:
        """Spikes so far, an int64 tensor on the device."""
        return self._tensors["spikes"] if self._tensors else torch.zeros((), dtype=torch.int64)

    def update(self, norms: Mapping[str, Tensor], step: int) -> Tensor:
        """Feed one step's gradient norms; returns whether it was a spike (a device bool tensor).

        ``norms`` maps ``"total"`` to the total norm and each layer name to that layer's norm, as
        :func:`lstm_plugins.plugins.gradient_norms` returns them; layers missing at a step count
        as a zero norm. Nothing is read on the host.
        """
        if not self._tensors:
            self._initialise(norms)
        elif self._tensors["mean"].device != norms["total"].device:
            self.to(norms["total"].device)  # restored from a checkpoint onto another device
        state = self._tensors
        total = norms["total"].detach().to(state["mean"].device, torch.float32)
        zero = torch.zeros((), device=total.device)
        layers = torch.stack([norms.get(name, zero).detach().to(total.device, torch.float32) for name in self.layer_names]) \
            if self.layer_names else total.new_zeros(0)
        log_norm = total.clamp_min(_TINY).log()
        log_layers = layers.clamp_min(_TINY).log()

        warm = self.observed_steps >= self.warmup_steps
        spike = is_gradient_spike(log_norm, state["mean"], state["variance"], self.threshold, self.min_ratio)
        if not warm:
            spike = torch.zeros_like(spike)
        layer_rise = (log_layers - state["layer_mean"]).nan_to_num(nan=math.inf)

        # The first spike's step, layer and ratios, recorded on the device.
        first = spike & (state["first_step"] < 0)
        state["first_step"].masked_fill_(first, step)
        if self.layer_names:
            top_rise, top_layer = layer_rise.max(0)
            state["first_layer"].copy_(torch.where(first, top_layer, state["first_layer"]))
            state["first_layer_ratio"].copy_(torch.where(first, top_rise.exp(), state["first_layer_ratio"]))
        state["first_ratio"].copy_(torch.where(first, (log_norm - state["mean"]).exp(), state["first_ratio"]))
        state["spikes"].add_(spike.to(torch.int64))

        # Exact running mean/variance at first, then an exponential moving average (West's
        # update). A spike (an infinite norm included) enters clamped to the spike bound, so the
        # statistics still follow a lasting rise; a NaN norm does not enter at all.
        alpha = max(1.0 / (self.observed_steps + 1), 1.0 - self.decay)
        if warm:
            bound = torch.maximum(
                self.threshold * state["variance"].sqrt(), torch.full_like(log_norm, math.log(self.min_ratio))
            )
        else:
            bound = torch.full_like(log_norm, math.inf)
        delta = torch.minimum(log_norm - state["mean"], bound)
        finite = torch.isfinite(delta)
        delta = torch.where(finite, delta, zero)
        state["mean"].add_(alpha * delta)
        state["variance"].copy_(
            torch.where(finite, (1 - alpha) * (state["variance"] + alpha * delta.square()), state["variance"])
        )
        layer_delta = torch.minimum(log_layers - state["layer_mean"], bound)
        layer_delta = torch.where(torch.isfinite(layer_delta), layer_delta, zero)
        state["layer_mean"].add_(alpha * layer_delta)
        self.observed_steps += 1
        return spike

    def summary(self) -> SpikeSummary:
        """Read the spike count and the first spike's details: one device-to-host transfer."""
        if not self._tensors:
            return SpikeSummary(0, None, None, None, None)
        state = self._tensors
        spikes, first_step, first_layer, ratio, layer_ratio = torch.stack(
            [
                state["spikes"].double(),
                state["first_step"].double(),
                state["first_layer"].double(),
                state["first_ratio"].double(),
                state["first_layer_ratio"].double(),
            ]
        ).tolist()
        if first_step < 0:
            return SpikeSummary(int(spikes), None, None, None, None)
        layer = self.layer_names[int(first_layer)] if first_layer >= 0 else None
        return SpikeSummary(
            int(spikes), int(first_step), layer, float(ratio), float(layer_ratio) if layer is not None else None
        )

    # --- checkpoint ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain data (CPU tensors, numbers, strings) for a checkpoint."""
        return {
            "observed_steps": self.observed_steps,
            "layer_names": list(self.layer_names),
            "tensors": {key: value.detach().cpu() for key, value in self._tensors.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; tensors move to the gradients' device on use."""
        self.observed_steps = int(state["observed_steps"])
        self.layer_names = list(state["layer_names"])
        self._tensors = {key: value.clone() for key, value in state["tensors"].items()}

    def to(self, device: torch.device) -> GradientSpikeStatistics:
        """Move the statistics to ``device`` (in place); returns ``self``."""
        self._tensors = {key: value.to(device) for key, value in self._tensors.items()}
        return self


class ExplodingGradientDetector(Technique):
    """Warns once when the total gradient norm spikes, naming the step and the layer.

    Observes every step in the gradients-ready phase (after DDP's reduction and AMP's unscaling,
    before clipping) and keeps, on the device, running statistics of the log total norm and of
    each layer's log norm (see :class:`GradientSpikeStatistics`). After ``warmup_steps`` a step
    whose norm lies more than ``threshold`` standard deviations (in log space) above the running
    mean, and is at least ``min_ratio`` times the running geometric mean, is a spike; so is a
    non-finite norm. The spike flag is read on the host only every ``check_every_n_steps``
    optimizer steps and at the end of each training epoch; the first time a spike is found a
    :class:`GradientSpikeWarning` is issued (on rank 0) with the step, the ratio and the layer
    whose norm rose most relative to its own running mean. ``exploding_gradients/spikes`` (the
    count so far) is logged on the same interval. The statistics are saved in checkpoints.

    Args:
        threshold: standard deviations of the log norm above its running mean for a spike.
        min_ratio: a spike's norm is also at least this times the running geometric mean.
        warmup_steps: steps that only feed the statistics (norms fall fast early in training).
        check_every_n_steps: how often the spike flag is read and the count logged.
        decay: decay of the moving averages (a window of about ``1 / (1 - decay)`` steps).

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(12, 9, plugins=[ExplodingGradientDetector(warmup_steps=100)])
    """

    name = "exploding_gradients"

    def __init__(
        self,
        threshold: float = 6.0,
        min_ratio: float = 4.0,
        warmup_steps: int = 50,
        check_every_n_steps: int = 50,
        decay: float = 0.98,
    ) -> None:
        self.threshold = check.positive_float("threshold", threshold)
        self.min_ratio = check.positive_float("min_ratio", min_ratio)
        if self.min_ratio <= 1.0:
            raise ValueError(f"Expected `min_ratio` to be a float above 1, but got {self.min_ratio!r}.")
        self.warmup_steps = check.positive_int("warmup_steps", warmup_steps)
        self.check_every_n_steps = check.positive_int("check_every_n_steps", check_every_n_steps)
        self.decay = check.probability("decay", decay)
        self.statistics = GradientSpikeStatistics(self.threshold, self.min_ratio, self.warmup_steps, self.decay)
        self.reported = False
        """Whether the warning was issued (it is issued once)."""

    @hookimpl
    def on_gradients_ready(self, model: Any) -> None:
        norms = gradient_norms(model.named_parameters())
        if not norms:
            return
        step = model.trainer.global_step
        self.statistics.update(norms, step)
        if step % self.check_every_n_steps == 0:
            model.log_dict(
                {"exploding_gradients/spikes": self.statistics.spikes.float()}, on_step=True, on_epoch=False
            )
            self._report()

    @hookimpl
    def on_train_epoch_end(self) -> None:
        self._report()

    def _report(self) -> None:
        """The one host read (on the interval and at epoch ends), until the spike is reported."""
        if self.reported:
            return
        summary = self.statistics.summary()
        if summary.first_step is None:
            return
        self.reported = True
        rank_zero_warn(spike_message(summary), category=GradientSpikeWarning)

    # --- checkpoint ---------------------------------------------------------------------------

    @hookimpl
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = self.statistics.state_dict()
        state["reported"] = self.reported
        checkpoint["lstm_plugins"]["state"][self.name] = state

    @hookimpl
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("lstm_plugins", {}).get("state", {}).get(self.name)
        if state is None:
            return
        self.statistics.load_state_dict(state)
        self.reported = bool(state.get("reported", False))


def spike_message(summary: SpikeSummary) -> str:
    """The warning's text for a summary that has a first spike."""
    layer = (
        f"; the largest rise was in `{summary.first_layer}` ({summary.first_layer_ratio:.3g}x its running mean)"
        if summary.first_layer is not None
        else ""
    )
    return (
        f"Exploding gradients: at step {summary.first_step} the total gradient norm was "
        f"{summary.first_ratio:.3g}x its running geometric mean{layer}. {summary.spikes} spike(s) "
        "so far; later spikes are counted in `exploding_gradients/spikes` without further warnings."
    )
