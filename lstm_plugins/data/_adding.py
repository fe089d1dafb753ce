"""The adding problem (Hochreiter & Schmidhuber 1997): a long-memory regression benchmark."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lstm_plugins import validation as check
from lstm_plugins.data._batch import SequenceBatch, collate_sequence_batch
from lstm_plugins.data._loaders import EpochShuffleSampler

__all__ = ["AddingProblemDataModule", "adding_problem"]

MEAN_PREDICTOR_MSE = 1.0 / 6.0
"""The MSE of always predicting the mean target (1.0): the variance of the sum of two U(0, 1)."""


def adding_problem(num_sequences: int, length: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Sequences of the adding problem, in the two-channel form of Le et al. 2015.

    Channel 0 holds values drawn uniformly from [0, 1]; channel 1 marks one step in the first
    half and one in the second half with a 1. The target is the sum of the two marked values, so
    a model must carry information across up to ``length`` steps. Predicting the mean (1.0)
    gives an MSE of 1/6 ≈ 0.167: the plateau a model sits on until it learns to remember.

    Returns:
        ``(features, targets)``: float32 ``(num_sequences, length, 2)`` and ``(num_sequences,)``.

    Example:
        >>> features, targets = adding_problem(3, 10, seed=0)
        >>> features.shape, features[..., 1].sum(1).tolist()
        (torch.Size([3, 10, 2]), [2.0, 2.0, 2.0])
        >>> torch.allclose((features[..., 0] * features[..., 1]).sum(1), targets)
        True
    """
    check.positive_int("num_sequences", num_sequences)
    check.positive_int("length", length)
    if length < 2:
        raise ValueError(f"Expected `length` to be at least 2, but got {length}.")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(num_sequences, length)).astype(np.float32)
    half = length // 2
    first = rng.integers(0, half, size=num_sequences)
    second = rng.integers(half, length, size=num_sequences)
    markers = np.zeros((num_sequences, length), dtype=np.float32)
    rows = np.arange(num_sequences)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return torch.from_numpy(np.stack([values, markers], axis=-1)), torch.from_numpy(targets)


class _FixedLengthDataset(Dataset[SequenceBatch]):
    """Equal-length sequences in one tensor; batches gathered with one index (``__getitems__``)."""

    def __init__(self, features: Tensor, targets: Tensor) -> None:
        self.features = features
        self.targets = targets
        self.lengths = torch.full((features.size(0),), features.size(1), dtype=torch.int64)

    def __len__(self) -> int:
        return self.features.size(0)

    def __getitem__(self, index: int) -> SequenceBatch:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> SequenceBatch:
        index = torch.as_tensor(indices, dtype=torch.int64)
        return SequenceBatch(self.features[index], self.lengths[index], self.targets[index])


class AddingProblemDataModule(pl.LightningDataModule):
    """Train, validation and test splits of the adding problem, reproducible by ``seed``.

    Use it with :class:`lstm_plugins.LSTMRegressor` (``input_size=2``). ``num_features`` is 2 and
    ``num_outputs`` 1, so the model is checked against the data before training.

    Example:
        >>> datamodule = AddingProblemDataModule(length=20, train_size=64, batch_size=16)
        >>> batch = next(iter(datamodule.train_dataloader()))
        >>> tuple(batch.features.shape), batch.targets.dtype
        ((16, 20, 2), torch.float32)
    """

    num_features = 2
    num_outputs = 1

    def __init__(
        self,
        length: int = 100,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        batch_size: int = 50,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.length = check.positive_int("length", length)
        self.batch_size = check.positive_int("batch_size", batch_size)
        self.seed = seed
        sizes = {
            "train": check.positive_int("train_size", train_size),
            "val": val_size if val_size == 0 else check.positive_int("val_size", val_size),
            "test": test_size if test_size == 0 else check.positive_int("test_size", test_size),
        }
        # Each split has its own stream, so changing one size never changes the others.
        self.datasets = {
            split: _FixedLengthDataset(*adding_problem(size, length, seed=seed * 3 + offset))
            for offset, (split, size) in enumerate(sizes.items())
            if size > 0
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader[Any]:
        dataset = self.datasets[split]
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(dataset, self.seed) if shuffle else None,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=collate_sequence_batch,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Any] | list[DataLoader[Any]]:
        return self._loader("val", shuffle=False) if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader[Any]:
        if "test" not in self.datasets:
            raise ValueError("Expected a test split, but the data module was built with test_size=0.")
        return self._loader("test", shuffle=False)
