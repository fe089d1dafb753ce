"""Weight drop: DropConnect on the LSTM's hidden-to-hidden weights, on the fused kernel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check
from lstm_plugins.techniques import FloatRange, SearchValue
from lstm_plugins.toolkit import fast_dropout


def weight_drop(weight: Tensor, probability: float, training: bool = True) -> Tensor:
    """DropConnect on a weight matrix: zero each weight with ``probability`` (kept ones scaled by
    ``1 / (1 - p)``), a new mask per call; identity when not training. The stored weight is not
    changed: the result is the weight to use in this forward pass.

    Example:
        >>> import torch
        >>> torch.equal(weight_drop(torch.ones(3, 3), 0.5, training=False), torch.ones(3, 3))
        True
        >>> sorted(weight_drop(torch.ones(100, 100), 0.5).unique().tolist())  # dropped or scaled
        [0.0, 2.0]
    """
    return fast_dropout(weight, probability, training)


class DropConnect(nn.Module):
    """A weight transform for ``model.weight_transforms``: :func:`weight_drop` in training."""

    def __init__(self, probability: float, owner: str = "weight_drop") -> None:
        super().__init__()
        self.probability = check.probability("probability", probability)
        self.owner = owner

    def forward(self, weight: Tensor) -> Tensor:
        return weight_drop(weight, self.probability, self.training)

    def extra_repr(self) -> str:
        return f"p={self.probability}, owner={self.owner!r}"


def hidden_to_hidden_names(lstm: nn.LSTM, layers: Sequence[int] | None = None) -> list[str]:
    """The names of ``lstm``'s hidden-to-hidden weights (``weight_hh_l0``, ``weight_hh_l0_reverse``, ...)."""
    names = [name for name in lstm._flat_weights_names if name.startswith("weight_hh_l")]
    if layers is None:
        return names
    return [name for name in names if int(name[len("weight_hh_l"):].split("_")[0]) in set(layers)]


class WeightDrop(Technique):
    """DropConnect on the hidden-to-hidden weights (AWD-LSTM), keeping the LSTM fused.

    Merity et al. 2017 (AWD-LSTM): a new mask on the recurrent weight matrices for every
    training step (shared by all time steps and samples of the batch), which regularises the
    recurrence itself without touching the fused kernel, unlike per-step recurrent dropout. The
    mask is drawn once per forward pass and the fused kernel runs with the dropped matrices; the
    stored weights are never modified, so ``state_dict`` is that of a plain LSTM and loads into
    a fresh model with or without this technique. Off in ``eval()`` mode.

    Suggested values: ``probability=0.2``-``0.5`` (AWD-LSTM: 0.5 for word-level language models).

    Args:
        probability: chance of dropping each recurrent weight.
        layers: which layers' recurrent weights to drop (both directions); ``None`` for all.
            An index beyond the LSTM's layers is refused when the model is built.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(12, 9, num_layers=2, techniques=[WeightDrop(0.5, layers=[1])])
        >>> list(model.weight_transforms)
        ['weight_hh_l1']
    """

    name = "weight_drop"

    # Merity et al. (2018) drop 0.5 of the hidden-to-hidden weights; smaller models need less.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"probability": FloatRange(0.1, 0.6)}

    def __init__(self, probability: float = 0.5, layers: Sequence[int] | None = None) -> None:
        self.probability = check.probability("probability", probability)
        if layers is not None:
            if isinstance(layers, (str, bytes)) or not all(
                isinstance(layer, int) and not isinstance(layer, bool) and layer >= 0 for layer in layers
            ):
                raise TypeError(f"Expected `layers` to be a list of layer indices, but got {layers!r}.")
            layers = list(layers)
        self.layers = layers

    @hookimpl
    def configure_network(self, model: Any) -> None:
        names = hidden_to_hidden_names(model.lstm, self.layers)
        # Every index must name a layer: one that names none is a typo, not a no-op.
        if not names or any(layer >= model.lstm.num_layers for layer in self.layers or ()):
            raise ValueError(
                f"Expected `layers` to name layers of the {model.lstm.num_layers}-layer LSTM, "
                f"but got {self.layers!r}."
            )
        for weight_name in names:
            existing = model.weight_transforms[weight_name] if weight_name in model.weight_transforms else None
            if existing is not None:
                other = getattr(existing, "owner", type(existing).__name__)
                raise ValueError(
                    f"Techniques `{other}` and `{self.name}` both transform the LSTM weight "
                    f"`{weight_name}`; keep one of them."
                )
            model.weight_transforms[weight_name] = DropConnect(self.probability, owner=self.name)
