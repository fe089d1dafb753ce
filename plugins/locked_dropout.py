"""Locked (variational) dropout: one mask per sequence, shared across time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check
from lstm_plugins.techniques import FloatRange, SearchValue


def locked_dropout(values: Tensor, probability: float, training: bool = True) -> Tensor:
    """Zero the same features at every time step of a sequence; a new mask per sequence.

    ``values`` is ``(batch, time, features)``; kept values are scaled by ``1 / (1 - p)``.
    Identity when not training or ``probability == 0``.

    Example:
        >>> import torch
        >>> dropped = locked_dropout(torch.ones(2, 5, 4), 0.5)
        >>> bool((dropped == dropped[:, :1]).all())  # constant across time
        True
    """
    if not training or probability == 0.0:
        return values
    keep = 1.0 - probability
    mask = values.new_empty(values.size(0), 1, values.size(2)).bernoulli_(keep).div_(keep)
    return values * mask


class LockedDropoutLayer(nn.Module):
    """Module face of :func:`locked_dropout`, following ``train()``/``eval()``."""

    def __init__(self, probability: float) -> None:
        super().__init__()
        self.probability = check.probability("probability", probability)

    def forward(self, values: Tensor) -> Tensor:
        return locked_dropout(values, self.probability, self.training)

    def extra_repr(self) -> str:
        return f"p={self.probability}"


class LockedDropout(Technique):
    """Variational dropout: one mask per sequence shared across time, on LSTM inputs and outputs.

    Gal & Ghahramani 2016; used on inputs and outputs by AWD-LSTM (Merity et al. 2017).
    Sharing the mask across time drops whole input features or hidden units of a sequence,
    which regularises recurrent models better than a fresh mask at every step. The input mask
    acts on ``(batch, time, features)`` before the LSTM; the output mask on the LSTM's
    ``(batch, time, hidden)`` outputs (``model.sequence_layers``), so the summary fed to the head
    and activation regularisation (AR) see the dropped outputs. The LSTM stays fused.

    Suggested values: ``input=0.1``-``0.4``, ``output=0.2``-``0.4`` (AWD-LSTM: 0.4 / 0.4).

    Args:
        input: probability of dropping an input feature for a whole sequence.
        output: probability of dropping an output unit for a whole sequence.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> LockedDropout(input=0.2, output=0.3)
        LockedDropout(input=0.2, output=0.3)
        >>> LSTMClassifier(12, 9, techniques=[LockedDropout(output=0.3)]).sequence_layers
        Sequential(
          (0): LockedDropoutLayer(p=0.3)
        )
    """

    name = "locked_dropout"

    # Gal & Ghahramani (2016), Merity et al. (2018): 0.1-0.5 on inputs and outputs.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"input": FloatRange(0.0, 0.5), "output": FloatRange(0.0, 0.5)}

    def __init__(self, input: float = 0.0, output: float = 0.0) -> None:
        self.input = check.probability("input", input)
        self.output = check.probability("output", output)

    @hookimpl
    def configure_network(self, model: Any) -> None:
        if self.input > 0:
            model.input_layers.append(LockedDropoutLayer(self.input))
        if self.output > 0:
            model.sequence_layers.append(LockedDropoutLayer(self.output))
