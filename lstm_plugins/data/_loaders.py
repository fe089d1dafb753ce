"""Data loaders that resume exactly: a per-epoch shuffle drawn from the seed, and a loader
Lightning can checkpoint in the middle of an epoch; evaluation shards that score each sample once."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from lstm_plugins import validation as check
from lstm_plugins.data._buckets import LengthBucketBatchSampler, length_batching_pays
from lstm_plugins.data._predict import LengthSortedSampler

__all__ = ["EpochShuffleSampler", "ResumableDataLoader", "SplitLoaders", "UnpaddedShard", "evaluation_sampler"]


class EpochShuffleSampler(RandomSampler):
    """A new permutation every epoch, drawn from ``(seed, epoch)`` alone.

    Lightning calls ``set_epoch`` before each training epoch, so the order of epoch ``k`` is the
    same in an uninterrupted run and in one resumed from a checkpoint, and drawing it consumes
    nothing from the global random stream (dropout masks stay reproducible too). Being a
    ``RandomSampler``, it is replaced by a shuffling ``DistributedSampler`` under DDP.

    Example:
        >>> sampler = EpochShuffleSampler(range(5), seed=0)
        >>> first = list(sampler); sampler.set_epoch(1); second = list(sampler)
        >>> sorted(first) == sorted(second) == [0, 1, 2, 3, 4], first != second
        (True, True)
    """

    def __init__(self, data_source: Any, seed: int) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class UnpaddedShard(DistributedSampler):
    """This process's share of an evaluation order, every ``num_replicas``-th index from ``rank``,
    without the duplicates ``DistributedSampler`` pads with (so shards may differ by one sample).

    Being a ``DistributedSampler``, Lightning keeps it instead of putting in its padding one;
    torchmetrics then reduces exact sums and counts over the uneven shards.

    Example:
        >>> [list(UnpaddedShard(range(3), num_replicas=2, rank=rank)) for rank in (0, 1)]
        [[0, 2], [1]]
        >>> list(UnpaddedShard([10, 11, 12], num_replicas=2, rank=0, order=[2, 0, 1]))
        [2, 1]
    """

    def __init__(self, dataset: Any, num_replicas: int, rank: int, order: Any = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.order = order
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        order = list(range(len(self.dataset))) if self.order is None else list(self.order)
        return iter(order[self.rank::self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


def evaluation_sampler(dataset: Any, sampler: Sampler[int] | None = None) -> Sampler[int] | None:
    """The sampler for validation, test or prediction batches: ``sampler`` (``None``: dataset
    order) as is in one process; this process's :class:`UnpaddedShard` of it when a process group
    of several is initialised (DDP), so each sample is scored exactly once.

    With fewer samples than processes a shard would be empty (a process without batches would
    leave the others waiting in the metric reduction): the order is then left to Lightning,
    which pads with duplicates, and a warning says so.

    Example:
        >>> evaluation_sampler(range(3)) is None  # one process: unchanged
        True
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return sampler
    world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
    if world == 1:
        return sampler
    if len(dataset) < world:
        warnings.warn(
            f"An evaluation split has {len(dataset)} samples for {world} processes: some are scored twice "
            "(Lightning pads each process to the same count); evaluate it in one process for exact metrics.",
            stacklevel=2,
        )
        return sampler
    return UnpaddedShard(dataset, world, rank, order=None if sampler is None else list(sampler))


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` that Lightning can checkpoint in the middle of an epoch.

    It counts the batches its current iterator has handed out (``state_dict``); after
    ``load_state_dict`` its next iterator skips that many batches at the index level (no sample is
    loaded), so a run resumed from a mid-epoch checkpoint continues with the batch it would have
    trained on next. Lightning saves and restores the state of every training loader that has
    ``state_dict``/``load_state_dict``; the sampler's order depends only on ``(seed, epoch)``, so
    skipping the consumed batches lands on the same samples as the uninterrupted run.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handed_out = 0
        self._skip_next = 0
        self._skipping = 0

    @property
    def _index_sampler(self) -> Any:  # read by the iterator when it is created or reset
        sampler = super()._index_sampler
        return _SkipFirst(sampler, self._skipping) if self._skipping else sampler

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip_next = self._skip_next, 0
        self._skipping = skip
        try:
            iterator = super().__iter__()
        finally:
            self._skipping = 0
        self._handed_out = skip
        for batch in iterator:
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"batches_handed_out": self._handed_out, "length_aware": self._length_aware}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        handed_out = int(state_dict.get("batches_handed_out", 0))
        # A checkpoint from the epoch's last batch resumes at the next epoch: skip nothing.
        self._skip_next = handed_out if 0 < handed_out < len(self) else 0
        recorded = state_dict.get("length_aware")
        # Unrecorded: the checkpoint predates the record, when random batches were the default.
        mismatch = self._length_aware if recorded is None else recorded != self._length_aware
        if self._skip_next and mismatch:
            # Skipping the consumed batches of another order would repeat some samples and skip
            # others for the rest of the epoch.
            written = "random" if recorded is False else "length-aware" if recorded else "unrecorded"
            warnings.warn(
                f"The checkpoint stopped {handed_out} batches into an epoch with {written} batches, but the "
                f"loader now makes {'length-aware' if self._length_aware else 'random'} ones, so the rest of "
                "this epoch will not be the batches the interrupted run would have trained on. Resume with "
                "the data module's `length_batching` set as in that run (False for random batches) for an "
                "exact resume.",
                stacklevel=2,
            )

    @property
    def _length_aware(self) -> bool:
        return isinstance(self.batch_sampler, LengthBucketBatchSampler)


class _SkipFirst:
    """An index sampler without its first ``count`` items; ``len`` stays the full length."""

    def __init__(self, sampler: Any, count: int) -> None:
        self.sampler = sampler
        self.count = count

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        iterator = iter(self.sampler)
        for _ in range(self.count):
            next(iterator, None)
        yield from iterator


class SplitLoaders:
    """The loaders of a data module with training, validation and test splits, built one way.

    A data module defines ``_dataset(name)`` (``"train"``, ``"val"``, ``"test"``: the split's
    dataset, or ``None`` when it has none), ``batch_size``, ``seed`` and ``num_workers``; it may
    set ``collate_fn``, ``missing_test`` (the message when there is no test split) and
    ``length_batching``. Training batches are shuffled per epoch from ``(seed, epoch)`` and
    resumable mid-epoch; evaluation batches come in order.

    Length-aware batching (``length_batching``: ``True``, ``False`` or ``None``, automatic, the
    data modules' default):
    training batches come from a :class:`LengthBucketBatchSampler` (sequences of similar length
    together) and validation and test batches are sorted by length (longest first), so batches
    pad little. ``None`` turns it on when the training split's lengths vary enough to pay
    (:func:`length_batching_pays`: random batches would be over 10% padding), which never
    happens with equal lengths. Off, training batches are random and evaluation batches in
    dataset order.
    """

    batch_size: int
    seed: int
    num_workers: int
    collate_fn: Any = None
    length_batching: bool | None = None
    missing_test = "Expected test data for `test_dataloader`, but the data module has none."

    def set_loading(
        self, batch_size: int, seed: int, num_workers: int, length_batching: bool | None = None
    ) -> None:
        """Check and keep the loader settings (called from the data module's ``__init__``)."""
        self.batch_size = check.int_at_least("batch_size", batch_size, 1)
        self.seed = check.int_at_least("seed", seed, 0)
        self.num_workers = check.int_at_least("num_workers", num_workers, 0)
        self.length_batching = None if length_batching is None else check.boolean("length_batching", length_batching)

    def _dataset(self, name: str) -> Any:
        raise NotImplementedError

    @property
    def train_dataset(self) -> Any:
        """The training split."""
        dataset = self._dataset("train")
        assert dataset is not None
        return dataset

    @property
    def val_dataset(self) -> Any:
        """The validation split, or ``None``."""
        return self._dataset("val")

    @property
    def test_dataset(self) -> Any:
        """The test split, or ``None``."""
        return self._dataset("test")

    @property
    def uses_length_batching(self) -> bool:
        """Whether the loaders batch by length (``length_batching``, or the automatic rule)."""
        lengths = getattr(self.train_dataset, "lengths", None)
        if self.length_batching is not None:
            if self.length_batching and lengths is None:
                raise ValueError(
                    "Expected a training dataset with `lengths` for `length_batching=True`, but "
                    f"{type(self.train_dataset).__name__} has none."
                )
            return self.length_batching
        return lengths is not None and length_batching_pays(lengths, self.batch_size)

    def _loader(self, dataset: Any, *, shuffle: bool) -> DataLoader[Any]:
        common: dict[str, Any] = {
            # A loader of its own seeds each iterator (worker seeds) from this generator, so
            # creating iterators never draws from the global stream that dropout masks use.
            "generator": torch.Generator().manual_seed(self.seed),
            "collate_fn": type(self).collate_fn,
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
        }
        by_length = self.uses_length_batching and getattr(dataset, "lengths", None) is not None
        if shuffle and by_length:
            batches = LengthBucketBatchSampler(dataset.lengths, self.batch_size, seed=self.seed)
            return ResumableDataLoader(dataset, batch_sampler=batches, **common)
        if shuffle:
            return ResumableDataLoader(
                dataset, batch_size=self.batch_size, sampler=EpochShuffleSampler(dataset, self.seed), **common
            )
        sampler = LengthSortedSampler(dataset.lengths) if by_length else None
        # Under DDP, each process scores its own share once: no padded duplicates in the metrics.
        sampler = evaluation_sampler(dataset, sampler)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, **common)

    def train_dataloader(self) -> DataLoader[Any]:
        """Shuffled training batches; the order is reproducible for a given ``seed``."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any] | list[DataLoader[Any]]:
        """Validation batches (sorted by length with length batching), or ``[]`` without validation."""
        dataset = self.val_dataset
        return [] if dataset is None else self._loader(dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader[Any]:
        """Test batches (sorted by length with length batching; ``ValueError`` without test data)."""
        dataset = self.test_dataset
        if dataset is None:
            raise ValueError(self.missing_test)
        return self._loader(dataset, shuffle=False)
