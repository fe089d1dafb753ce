"""Real 2-process DDP on CPU (gloo): training runs and test metrics reduce across processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import quiet_trainer

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import JapaneseVowelsDataModule

pytestmark = [pytest.mark.distributed]

SCRIPT = Path(__file__).with_name("ddp_fit.py")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("ddp")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(output)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return output


def test_both_processes_report_the_same_global_metrics(ddp_run):
    rank0 = json.loads((ddp_run / "metrics_rank0.json").read_text())
    rank1 = json.loads((ddp_run / "metrics_rank1.json").read_text())
    assert rank0["world_size"] == 2
    assert rank0 == rank1


def test_ddp_test_metrics_equal_a_single_process_evaluation_of_the_same_weights(ddp_run):
    from ddp_fit import STACK

    distributed = json.loads((ddp_run / "metrics_rank0.json").read_text())
    model = LSTMClassifier(12, 9, hidden_size=32, bidirectional=True, learning_rate=0.005, techniques=STACK)
    model.load_state_dict(torch.load(ddp_run / "weights.pt", weights_only=True))
    quiet_trainer().test(model, datamodule=JapaneseVowelsDataModule(batch_size=32, seed=0), verbose=False)
    for name in ("test/accuracy", "test/recall", "test/f1", "test/recall_per_class", "test/f1_per_class"):
        assert model.test_results[name].tolist() == pytest.approx(distributed[name], abs=1e-6), name
    # Trained (well above the 1/9 chance level), so the comparison is not between two trivial models.
    assert distributed["test/accuracy"] > 0.5
