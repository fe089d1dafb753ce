"""Under 2-process DDP (gloo, CPU) every evaluation sequence is scored exactly once.

Lightning pads each process's share of an evaluation split with duplicates (3 test sequences on
2 processes were scored as 4); the data modules give evaluation loaders an unpadded shard
instead (:class:`lstm_plugins.data._loaders.UnpaddedShard`), and torchmetrics reduces exact sums
over the uneven shards. ``ddp_exact_eval.py`` runs the processes; here the metrics are compared
with a single-process evaluation of the same weights.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import quiet_trainer

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("ddp_exact_eval.py")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("ddp-exact")
    completed = subprocess.run([sys.executable, str(SCRIPT), str(output)], capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    ranks = [json.loads((output / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    return output, ranks


def test_the_shards_are_uneven_and_the_ranks_agree(ddp_run):
    _, (rank0, rank1) = ddp_run
    assert rank0["world_size"] == 2
    assert sorted([rank0["test_batches"], rank1["test_batches"]]) == [[1], [2]]  # 3 = 2 + 1, batch size 1
    assert sorted([rank0["val_batches"], rank1["val_batches"]]) == [[1], [2]]
    for key in ("test", "validate"):
        assert rank0[key] == rank1[key], key


def test_ddp_test_metrics_count_each_of_the_three_sequences_once(ddp_run):
    from ddp_exact_eval import build

    _, (rank0, _) = ddp_run
    model, datamodule = build()
    quiet_trainer().test(model, datamodule=datamodule, verbose=False)
    assert float(model.test_results["test/accuracy"]) == pytest.approx(2 / 3)  # a duplicate: 1/2 or 3/4
    for name, value in model.test_results.items():
        assert value.tolist() == pytest.approx(rank0["test"][name], abs=1e-6), name


def test_ddp_validation_equals_one_process_on_the_same_weights(ddp_run):
    from ddp_exact_eval import build

    output, (rank0, _) = ddp_run
    model, datamodule = build()
    model.load_state_dict(torch.load(output / "weights.pt", weights_only=True))
    (single,) = quiet_trainer().validate(model, datamodule=datamodule, verbose=False)
    assert set(single) == set(rank0["validate"])
    for name, value in single.items():  # val/loss: the mean over the 3 sequences, weighted by count
        assert value == pytest.approx(rank0["validate"][name], abs=1e-6), name


def test_checkpoints_under_ddp_go_through_the_atomic_io_on_rank_zero(ddp_run):
    output, (rank0, rank1) = ddp_run
    assert rank0["checkpoint_io"] == rank1["checkpoint_io"] == "AtomicCheckpointIO"
    names = sorted(path.name for path in (output / "checkpoints").iterdir())
    assert "last.ckpt" in names and not [name for name in names if ".partial" in name]
    last = torch.load(output / "checkpoints" / "last.ckpt", weights_only=True)
    weights = torch.load(output / "weights.pt", weights_only=True)
    for name, value in weights.items():
        assert torch.equal(last["state_dict"][name], value), name


def test_ddp_prediction_returns_each_test_sequence_once(ddp_run):
    from ddp_exact_eval import build

    output, ranks = ddp_run
    model, datamodule = build()
    model.load_state_dict(torch.load(output / "weights.pt", weights_only=True))
    single = torch.cat(quiet_trainer().predict(model, datamodule=datamodule))
    rows = [row for rank in ranks for row in rank["predictions"]]
    assert sorted(len(rank["predictions"]) for rank in ranks) == [1, 2] and len(single) == 3
    # Each process predicts its share (every second sequence of the length-sorted order).
    torch.testing.assert_close(torch.tensor(sorted(rows)), torch.tensor(sorted(single.tolist())), atol=1e-6, rtol=0)
