"""Small modules the core builds into the model."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TokenEmbedding(nn.Embedding):
    """``torch.nn.Embedding`` whose weight passes through ``weight_transform`` on every call.

    ``weight_transform`` is an empty ``torch.nn.Sequential`` until a technique fills it (for
    example embedding dropout, which drops whole rows: whole words). The stored weight is never
    changed, so ``state_dict`` keys are those of a plain embedding.

    Example:
        >>> import torch
        >>> embedding = TokenEmbedding(10, 4)
        >>> tuple(embedding(torch.tensor([[1, 2, 3]])).shape)
        (1, 3, 4)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.weight_transform = nn.Sequential()

    def forward(self, tokens: Tensor) -> Tensor:
        return F.embedding(tokens, self.weight_transform(self.weight))
