"""`end_process_group`: the end of a distributed run, with 2 real gloo processes."""

import os
from datetime import timedelta

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from lstm_plugins.training import end_process_group

pytestmark = pytest.mark.distributed


def _worker(rank, rendezvous, results, rank_one_leaves):
    # A file rendezvous: no port to pick and release before the processes bind it.
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    if rank == 1 and rank_one_leaves:
        results[rank] = None  # a process that failed: it never reaches the end...
        os._exit(0)  # ...and leaves at once, as a killed one would (no interpreter shutdown)
    # Both ranks end together: a long limit costs nothing. The one left alone waits 3 s.
    ended = end_process_group(timeout=timedelta(seconds=3 if rank_one_leaves else 120))
    results[rank] = (ended, dist.is_initialized())
    if dist.is_initialized():
        dist.destroy_process_group()  # what the caller does when the group could not be ended


@pytest.mark.parametrize("rank_one_leaves", [False, True], ids=["both end", "one process failed"])
def test_both_processes_meet_then_the_group_is_gone(rank_one_leaves, tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), results, rank_one_leaves), nprocs=2, join=True)
    if rank_one_leaves:
        assert results[0] == (False, True)  # no 30-minute wait: the group is left as it was
    else:
        assert dict(results) == {0: (True, False), 1: (True, False)}


def test_without_a_process_group_nothing_happens():
    assert not dist.is_initialized()
    assert end_process_group() is False
