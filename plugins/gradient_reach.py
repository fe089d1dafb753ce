"""Vanishing gradients over time: how far back the loss gradient reaches into a sequence.

Every N steps, the gradient of the loss with respect to the LSTM's input is taken at each time
step, its norm is aligned so that index 0 is each sequence's last valid step and index ``k`` is
``k`` steps before it, and the batch mean of these norms (the *profile*) is summarised as the
**gradient reach**: how many steps back the mean norm stays above ``fraction`` times its value at
the last step. An LSTM that has learnt a long dependency keeps its gradient alive back to the
step that matters; an untrained one (forget gates near 0.5) lets it decay within a few steps.
This is the quantity Hochreiter and Schmidhuber (1997) and Bengio et al. (1994) study as
vanishing gradients; see also Pascanu et al., "On the difficulty of training recurrent neural
networks" (ICML 2013).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstm_plugins import Technique, hookimpl, toolkit
from lstm_plugins import validation as check
from lstm_plugins.model import lengths_on, reverse_within_length_index, valid_step_mask

__all__ = [
    "GradientReach",
    "GradientReachResult",
    "InputGradientCapture",
    "gradient_reach",
    "measure_gradient_reach",
    "mean_step_profile",
    "step_gradient_norms",
]


def step_gradient_norms(gradient: Tensor, lengths: Tensor) -> Tensor:
    """Per-step L2 norms of a ``(batch, time, features)`` gradient, aligned at the last valid step.

    Returns ``(batch, time)``: entry ``[b, k]`` is the norm at ``k`` steps before sequence ``b``'s
    last valid step (``k < lengths[b]``); entries at ``k >= lengths[b]`` are padding (zero).

    Example:
        >>> gradient = torch.tensor([[[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]],
        ...                          [[1.0, 0.0], [0.0, 2.0], [0.0, 3.0]]])
        >>> step_gradient_norms(gradient, torch.tensor([2, 3]))
        tensor([[1., 5., 0.],
                [3., 2., 1.]])
    """
    norms = torch.linalg.vector_norm(gradient.detach().float(), dim=-1)
    lengths = lengths_on(lengths, norms.device)
    index = reverse_within_length_index(lengths, norms.size(1))
    aligned = norms.gather(1, index)
    return aligned.masked_fill(~valid_step_mask(lengths, norms.size(1)), 0.0)


def mean_step_profile(step_norms: Tensor, lengths: Tensor) -> Tensor:
    """The batch mean of aligned per-step norms: entry ``k`` averages the sequences longer than ``k``.

    Example:
        >>> mean_step_profile(torch.tensor([[1.0, 5.0, 0.0], [3.0, 2.0, 1.0]]), torch.tensor([2, 3]))
        tensor([2.0000, 3.5000, 1.0000])
    """
    lengths = lengths_on(lengths, step_norms.device)
    valid = valid_step_mask(lengths, step_norms.size(1)).to(step_norms.dtype)
    return (step_norms * valid).sum(0) / valid.sum(0).clamp_min(1.0)


def gradient_reach(step_norms: Tensor, lengths: Tensor, fraction: float = 0.01) -> Tensor:
    """How many steps back the mean gradient norm stays above ``fraction`` of its last-step value.

    Args:
        step_norms: ``(batch, time)`` per-step norms aligned so that index 0 is each sequence's
            last valid step (:func:`step_gradient_norms`), or a ``(time,)`` mean profile.
        lengths: ``(batch,)`` valid lengths (ignored for a profile).
        fraction: the level, relative to the mean norm at the last step.

    Returns:
        An int64 scalar tensor on the norms' device (no host sync): the largest ``k`` such that
        the mean norm at every ``j <= k`` steps back is above ``fraction`` times the mean norm at
        the last step, so ``time - 1`` when it never falls that low (the gradient reaches step 0
        of the longest sequence), and 0 when it falls right away.

    Example:
        >>> profile = torch.tensor([1.0, 0.5, 0.02, 0.005, 0.3])
        >>> gradient_reach(profile, None, 0.01), gradient_reach(profile, None, 0.001)
        (tensor(2), tensor(4))
    """
    profile = step_norms if step_norms.dim() == 1 else mean_step_profile(step_norms, lengths)
    above = profile > fraction * profile[:1]
    # The number of leading steps above the level, minus one; time - 1 when all are above.
    leading = torch.cumprod(above.to(torch.int64), 0).sum()
    return (leading - 1).clamp_min(0)


class GradientReachResult(NamedTuple):
    """What :func:`measure_gradient_reach` returns (tensors on the model's device)."""

    profile: Tensor
    """``(time,)`` mean input-gradient norm at ``k`` steps before the last valid step."""
    reach: Tensor
    """The gradient reach in steps (int64 scalar)."""


def _tracked(tensor: Tensor) -> Tensor:
    """``tensor`` as a tensor whose own gradient autograd computes (a view, or a detached leaf)."""
    return tensor.view_as(tensor) if tensor.requires_grad else tensor.detach().requires_grad_(True)


def measure_gradient_reach(
    model: nn.Module, features: Tensor, lengths: Tensor, targets: Tensor, fraction: float = 0.01
) -> GradientReachResult:
    """The gradient reach of a model (:class:`~lstm_plugins.LSTMClassifier` or alike) on one batch.

    Takes the gradient of the model's task loss (``model.task.loss``; cross-entropy for a model
    without a task) with respect to the LSTM's input (the output of ``model.input_layers``) with
    :func:`torch.autograd.grad`, so no parameter's ``.grad`` changes. Runs in the model's current
    mode (``model.train()`` keeps dropout on).

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(3, 2, hidden_size=8)
        >>> result = measure_gradient_reach(model, torch.randn(4, 10, 3), torch.tensor([10, 7, 4, 9]),
        ...                                 torch.tensor([0, 1, 0, 1]))
        >>> tuple(result.profile.shape), 0 <= int(result.reach) <= 9
        ((10,), True)
    """
    captured: list[Tensor] = []

    def keep_input(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        captured.append(_tracked(output))
        return captured[-1]

    task = getattr(model, "task", None)
    task_loss = F.cross_entropy if task is None else task.loss
    handle = model.input_layers.register_forward_hook(keep_input)
    try:
        with torch.enable_grad():
            predictions = model(features, lengths)
            loss = task_loss(predictions, targets.to(predictions.device))
            (gradient,) = torch.autograd.grad(loss, captured[-1])
    finally:
        handle.remove()
    norms = step_gradient_norms(gradient, lengths)
    profile = mean_step_profile(norms, lengths)
    return GradientReachResult(profile, gradient_reach(profile, lengths, fraction))


class InputGradientCapture(nn.Module):
    """An identity layer that, when armed and training, keeps the gradient of its output.

    Appended last to ``model.input_layers`` by :class:`GradientReach`, so its output is the
    LSTM's input. Unarmed, or in eval mode, or without autograd, it returns its input untouched.
    Armed, it returns a view of the input that requires grad and hands the gradient of that view
    (``(batch, time, features)``, on the device) to :attr:`gradient` during backward.
    """

    def __init__(self) -> None:
        super().__init__()
        self.armed = True
        """Capture on training forward passes while set."""
        self.tracked = False
        """Whether a forward pass was captured since the last :meth:`take`."""
        self.gradient: Tensor | None = None
        """The last captured gradient, until it is taken with :meth:`take`."""

    def forward(self, features: Tensor) -> Tensor:
        if not (self.armed and self.training and torch.is_grad_enabled()):
            return features
        self.tracked = True
        tracked = _tracked(features)
        tracked.register_hook(self._store)
        return tracked

    def _store(self, gradient: Tensor) -> None:
        self.gradient = gradient.detach()

    def take(self) -> Tensor | None:
        """The captured gradient (``None`` when there is none), forgetting it."""
        gradient, self.gradient, self.tracked = self.gradient, None, False
        return gradient

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["gradient"] = None
        return state

    def extra_repr(self) -> str:
        return f"armed={self.armed}"


class GradientReach(Technique):
    """Logs how many steps back the loss gradient reaches into each sequence, on the logging steps.

    At construction an :class:`InputGradientCapture` layer is appended last to
    ``model.input_layers`` (``trylast``, so after every other input layer). On the logging steps
    (:func:`lstm_plugins.toolkit.log_due`: optimizer steps ``N - 1, 2N - 1, ...``, the rows of
    Lightning's ``self.log``) the capture is armed before the forward pass and keeps the gradient
    of the optimized loss with respect to the LSTM's input; in the gradients-ready phase the
    norms per time step are aligned at each sequence's last valid step, averaged over the batch,
    and summarised by :func:`gradient_reach`, logged as ``gradient_reach/steps``. The profile is
    copied to the host on those steps only, as :attr:`last_profile`, for plotting. Other steps
    run the plain forward pass (one boolean test); capture steps compute the same loss and
    parameter gradients, and the LSTM stays on its fused kernel either way.

    The reach is a ratio, so AMP's loss scale does not change it (the profile is in units of the
    scaled loss). With gradient accumulation the first micro-batch of a step is measured; under
    DDP each process measures its own batch and rank 0's value is logged. The reach speaks most
    clearly for a unidirectional LSTM: a bidirectional one's backward direction reads step 0
    last, so the gradient near the start of a sequence is large whatever the forward direction
    keeps.

    Args:
        log_every_n_steps: measure on optimizer steps ``N - 1, 2N - 1, ...``; ``None`` uses the
            Trainer's ``log_every_n_steps``.
        fraction: the reach counts the steps whose mean gradient norm stays above ``fraction``
            times its value at the last step.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(12, 9, techniques=[GradientReach(log_every_n_steps=20)])
        >>> model.input_layers
        Sequential(
          (0): InputGradientCapture(armed=False)
        )
    """

    name = "gradient_reach"

    def __init__(self, log_every_n_steps: int | None = None, fraction: float = 0.01) -> None:
        self.log_every_n_steps = check.optional_positive_int("log_every_n_steps", log_every_n_steps)
        self.fraction = check.probability("fraction", fraction)
        if self.fraction == 0:
            raise ValueError(f"Expected `fraction` to be a float in (0, 1), but got {fraction!r}.")
        self.capture: InputGradientCapture | None = None
        self._lengths: Tensor | None = None
        self.last_profile: Tensor | None = None
        """The last measured ``(time,)`` mean gradient-norm profile, on the CPU."""
        self.last_reach: int | None = None
        """The last measured reach, in steps."""
        self.last_step: int | None = None
        """The optimizer step of the last measurement."""

    @hookimpl(trylast=True)
    def configure_network(self, model: Any) -> None:
        self.capture = InputGradientCapture()
        self.capture.armed = False  # armed by transform_batch on the logging steps
        model.input_layers.append(self.capture)

    @hookimpl
    def on_fit_setup(self) -> None:
        if self.capture is not None:
            self.capture.take()
            self.capture.armed = False
        self._lengths = None

    @hookimpl
    def transform_batch(self, model: Any) -> None:
        capture = self.capture
        # Armed for the first micro-batch of a logging step only: once its lengths are recorded,
        # the other micro-batches of the step run the plain forward pass.
        if capture is not None and self._lengths is None:
            # Outside a Trainer (a training_step called by hand) nothing is due.
            capture.armed = toolkit.log_due(model._trainer, self.log_every_n_steps)
        return None

    @hookimpl
    def on_loss_computed(self, batch: Any) -> None:
        capture = self.capture
        if capture is not None and capture.armed:
            if capture.tracked:  # this forward pass was captured: keep its lengths
                self._lengths = batch.lengths
            capture.armed = False

    @hookimpl
    def on_gradients_ready(self, model: Any) -> None:
        capture = self.capture
        if capture is None:
            return
        gradient, lengths, self._lengths = capture.take(), self._lengths, None
        if gradient is not None and lengths is not None:
            profile = mean_step_profile(step_gradient_norms(gradient, lengths), lengths)
            reach = gradient_reach(profile, lengths, self.fraction)
            model.log_step_values({"gradient_reach/steps": reach})
            self.last_profile = profile.cpu()  # the only host copies, on logging steps
            self.last_reach = int(reach)
            self.last_step = model.trainer.global_step
