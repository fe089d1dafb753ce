"""Embedding dropout: drop whole words (rows of the embedding matrix) for token inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check
from lstm_plugins.techniques import FloatRange, SearchValue


def embedding_dropout(weight: Tensor, probability: float, training: bool = True) -> Tensor:
    """Zero whole rows of a ``(vocabulary, dim)`` embedding matrix, scaling kept rows by
    ``1 / (1 - p)``: every occurrence of a dropped word in the batch becomes a zero vector.

    Example:
        >>> import torch
        >>> dropped = embedding_dropout(torch.ones(1000, 4), 0.5)
        >>> bool(((dropped == 0).all(1) | (dropped == 2).all(1)).all())  # whole rows only
        True
    """
    if not training or probability == 0.0:
        return weight
    keep = 1.0 - probability
    mask = weight.new_empty(weight.size(0), 1).bernoulli_(keep).div_(keep)
    return weight * mask


class WholeWordDropout(nn.Module):
    """A transform for ``model.embedding.weight_transform``: :func:`embedding_dropout`."""

    def __init__(self, probability: float) -> None:
        super().__init__()
        self.probability = check.probability("probability", probability)

    def forward(self, weight: Tensor) -> Tensor:
        return embedding_dropout(weight, self.probability, self.training)

    def extra_repr(self) -> str:
        return f"p={self.probability}"


class EmbeddingDropout(Technique):
    """Drops whole words for token inputs: rows of the embedding matrix, a new mask per step.

    Gal & Ghahramani 2016, as used in AWD-LSTM (Merity et al. 2017). Needs a model built with
    ``num_embeddings`` (token inputs). Off in ``eval()`` mode.

    Suggested values: ``probability=0.1`` (AWD-LSTM).

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(16, 2, num_embeddings=100, techniques=[EmbeddingDropout(0.1)])
        >>> model.embedding.weight_transform
        Sequential(
          (0): WholeWordDropout(p=0.1)
        )
    """

    name = "embedding_dropout"

    # Merity et al. (2018) use 0.1 on word embeddings.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"probability": FloatRange(0.0, 0.3)}

    def __init__(self, probability: float = 0.1) -> None:
        self.probability = check.probability("probability", probability)

    @hookimpl
    def configure_network(self, model: Any) -> None:
        if model.embedding is None:
            raise ValueError(
                f"Technique `{self.name}` needs token inputs: build the model with `num_embeddings`."
            )
        model.embedding.weight_transform.append(WholeWordDropout(self.probability))
