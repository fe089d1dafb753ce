"""Length-aware batching: training batches of sequences of similar length ("sortish" buckets).

A batch is padded to its longest member, so a batch of one long and many short sequences is
mostly padding, and padding is computed. :class:`LengthBucketBatchSampler` shuffles the samples,
sorts them by length within windows of ``bucket_size * batch_size``, cuts the windows into
batches and shuffles the batch order: batches hold sequences of similar length, while which
sequences meet in a batch and the order of the batches still change every epoch.
:func:`length_batching_pays` is the rule by which the data modules turn it on by default.

Example:
    >>> lengths = [3, 9, 4, 8, 2, 9, 3, 7]
    >>> sampler = LengthBucketBatchSampler(lengths, batch_size=2, seed=0)
    >>> batches = list(sampler)
    >>> sorted(i for batch in batches for i in batch) == list(range(8))
    True
    >>> padding_fraction(lengths, batches) < padding_fraction(lengths, [[0, 1], [2, 3], [4, 5], [6, 7]])
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DistributedSampler

from lstm_plugins import validation as check

__all__ = ["LengthBucketBatchSampler", "length_batching_pays", "padding_fraction"]

PAYS_ABOVE = 0.10
"""Padding fraction of random batches above which :func:`length_batching_pays`..."""
PAYS_ABOVE_STEPS = 16
"""... when they also hold more than this many padded steps per sequence on average."""


def _as_lengths(lengths: Any) -> np.ndarray:
    values = np.asarray(lengths.cpu() if isinstance(lengths, Tensor) else lengths, dtype=np.int64)
    if values.ndim != 1:
        raise ValueError(f"Expected `lengths` to be 1-D, but got shape {values.shape}.")
    return values


def padding_fraction(lengths: Sequence[int] | np.ndarray | Tensor, batches: Iterable[Sequence[int]]) -> float:
    """Share of the padded steps of ``batches`` (each padded to its longest member) that are padding.

    Example:
        >>> round(padding_fraction([1, 3, 2, 2], [[0, 1], [2, 3]]), 3)  # 2 padded steps of 10
        0.2
    """
    values = _as_lengths(lengths)
    padded = valid = 0
    for batch in batches:
        members = values[np.asarray(batch, dtype=np.int64)]
        padded += int(members.max()) * members.size
        valid += int(members.sum())
    return 0.0 if padded == 0 else 1.0 - valid / padded


def length_batching_pays(lengths: Sequence[int] | np.ndarray | Tensor, batch_size: int) -> bool:
    """Whether random batches of ``batch_size`` would be more than 10% padding *and* more than
    16 padded steps per sequence on average (and there is more than one batch): the data
    modules' rule for ``length_batching=None``.

    Both conditions, because what length-aware batching saves is padded steps, against the
    per-batch costs it cannot save: on JapaneseVowels (7-29 steps, 30% padding but 6.7 padded
    steps per sequence) epochs were only 1.12-1.15x faster and accuracy over 5 seeds 0.65 points
    lower, so it stays off; on speaker turns (21-81 steps, 26 padded steps) 1.64x, and on PLAID
    (100-1344 steps, 297 padded steps) 1.70x faster, with test accuracy not shown worse than
    with random batches (paired over seeds, every 95 % interval contains zero). The estimate is one random permutation (a fixed seed, so the
    answer is deterministic). Equal lengths never pay.

    Example:
        >>> length_batching_pays([7] * 100, 16), length_batching_pays(list(range(7, 30)) * 10, 16)
        (False, False)
        >>> length_batching_pays(list(range(20, 200)) * 4, 16)
        True
    """
    check.positive_int("batch_size", batch_size)
    values = _as_lengths(lengths)
    if values.size <= batch_size or values.min(initial=0) == values.max(initial=0):
        return False
    order = np.random.default_rng(0).permutation(values.size)
    batches = [order[start : start + batch_size] for start in range(0, values.size, batch_size)]
    padded_steps = sum(int(values[batch].max()) * batch.size for batch in batches) - int(values.sum())
    return padding_fraction(values, batches) > PAYS_ABOVE and padded_steps / values.size > PAYS_ABOVE_STEPS


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class _EpochHandle:
    """The batch sampler's ``sampler``: Lightning calls ``set_epoch`` on ``batch_sampler.sampler``."""

    def __init__(self, owner: LengthBucketBatchSampler) -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)


class LengthBucketBatchSampler(BatchSampler):
    """Batches of sequences of similar length, reshuffled every epoch from ``(seed, epoch)`` alone.

    Each epoch: a permutation of all samples is drawn from ``(seed, epoch)`` (a generator of its
    own: nothing is drawn from the global random stream); each window of ``bucket_size *
    batch_size`` consecutive samples of it is sorted by length (ties in permutation order) and
    cut into batches of ``batch_size``; the batch order is shuffled. Every sample is in exactly
    one batch per epoch; only the last window can leave a partial batch, which is kept (dropped
    with ``drop_last=True``). Lightning calls :meth:`set_epoch` (through ``sampler.set_epoch``)
    before every training epoch, so the batches of epoch ``k`` are the same in an uninterrupted
    run and in one resumed from a checkpoint, and :class:`ResumableDataLoader` can resume in the
    middle of an epoch by skipping the batches already trained.

    Distributed: all ranks compute the same global batch order and rank ``r`` takes batches
    ``r, r + num_replicas, ...``, so no sample is in two ranks' batches of an epoch. The batch
    count is padded to a multiple of ``num_replicas`` by repeating the first batches (as
    ``DistributedSampler`` repeats samples), so every rank takes the same number of steps; with
    ``drop_last=True`` the surplus batches are dropped instead. ``num_replicas`` and ``rank``
    default to the initialised process group's (1 and 0 without one). Under DDP Lightning
    rebuilds a batch sampler with a ``DistributedSampler`` as ``sampler``; this class only reads
    ``num_replicas`` and ``rank`` from it (its order is ignored), so the batches stay
    length-aware and the ranks disjoint.

    Args:
        lengths: ``(N,)`` length of each sample (a dataset's ``lengths``).
        batch_size: samples per batch.
        seed: seed of the per-epoch order.
        bucket_size: batches per sorted window: larger pads less, smaller mixes more.
        drop_last: drop the last partial batch and, under DDP, the batches beyond a multiple of
            ``num_replicas``.
        num_replicas, rank: the process's share (default: from ``torch.distributed``).
        sampler: a ``DistributedSampler`` to take ``num_replicas`` and ``rank`` from (what
            Lightning passes); anything else is ignored.

    Example:
        >>> sampler = LengthBucketBatchSampler([5, 1, 5, 1, 5, 1], batch_size=3, seed=0)
        >>> sorted(sorted(batch) for batch in sampler)
        [[0, 2, 4], [1, 3, 5]]
        >>> rank0 = LengthBucketBatchSampler(range(1, 11), 2, num_replicas=2, rank=0)
        >>> rank1 = LengthBucketBatchSampler(range(1, 11), 2, num_replicas=2, rank=1)
        >>> len(rank0), len(rank1), sorted({i for b in [*rank0, *rank1] for i in b}) == list(range(10))
        (3, 3, True)
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray | Tensor,
        batch_size: int,
        *,
        seed: int = 0,
        bucket_size: int = 8,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        sampler: Any = None,
    ) -> None:
        # BatchSampler.__init__ is not called: there is no index sampler to batch.
        self.lengths = _as_lengths(lengths)
        self.batch_size = check.positive_int("batch_size", batch_size)
        self.seed = check.int_at_least("seed", seed, 0)
        self.bucket_size = check.positive_int("bucket_size", bucket_size)
        self.drop_last = check.boolean("drop_last", drop_last)
        if isinstance(sampler, DistributedSampler):
            num_replicas = sampler.num_replicas if num_replicas is None else num_replicas
            rank = sampler.rank if rank is None else rank
        world, own = _distributed()
        self.num_replicas = check.positive_int("num_replicas", world if num_replicas is None else num_replicas)
        self.rank = check.int_at_least("rank", own if rank is None else rank, 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"Expected `rank` in [0, {self.num_replicas}), but got {self.rank}.")
        self.epoch = 0
        self.sampler = _EpochHandle(self)

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from now on."""
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """The batches of the current epoch of all ranks, in order, before the distributed share."""
        count = self.lengths.size
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63))
        order = torch.randperm(count, generator=generator).numpy()
        window = self.bucket_size * self.batch_size
        batches: list[np.ndarray] = []
        for start in range(0, count, window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, chunk.size, self.batch_size))
        if self.drop_last and batches and batches[-1].size < self.batch_size:
            batches.pop()
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i].tolist() for i in shuffled]

    def _share(self, total: int) -> int:
        if self.drop_last:
            return total // self.num_replicas
        return -(-total // self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()
        share = self._share(len(batches))
        if batches and not self.drop_last:
            needed = share * self.num_replicas - len(batches)
            batches += (batches * (needed // len(batches) + 1))[:needed]
        yield from batches[self.rank : share * self.num_replicas : self.num_replicas]

    def __len__(self) -> int:
        count = self.lengths.size
        total = count // self.batch_size if self.drop_last else -(-count // self.batch_size)
        return self._share(total)
