"""`end_process_group`: the end of a distributed run, with 2 real gloo processes."""

import os
import socket
from datetime import timedelta

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from lstm_plugins.training import end_process_group

pytestmark = pytest.mark.distributed


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank, port, results, rank_one_leaves):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    if rank == 1 and rank_one_leaves:
        results[rank] = None  # a process that failed: it never reaches the end
        return
    ended = end_process_group(timeout=timedelta(seconds=3))
    results[rank] = (ended, dist.is_initialized())


@pytest.mark.parametrize("rank_one_leaves", [False, True], ids=["both end", "one process failed"])
def test_both_processes_meet_then_the_group_is_gone(rank_one_leaves):
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), results, rank_one_leaves), nprocs=2, join=True)
    if rank_one_leaves:
        assert results[0] == (False, True)  # no 30-minute wait: the group is left as it was
    else:
        assert dict(results) == {0: (True, False), 1: (True, False)}


def test_without_a_process_group_nothing_happens():
    assert not dist.is_initialized()
    assert end_process_group() is False
