"""A run killed with SIGKILL in the middle of an epoch resumes from its last checkpoint.

The run (``sigkill_script.py``) checkpoints every 4 optimizer steps (8 steps per epoch) and is
killed after step 14, in the middle of its second epoch; its last checkpoint is from step 12,
also mid-epoch, and an earlier one from step 8 ends the first epoch. Each is resumed here with
``Trainer.fit(ckpt_path=...)`` to the same 3 epochs and compared with an uninterrupted run.

What Lightning 2.6 does with a mid-epoch checkpoint: it restores the weights, the optimizer, the
loop counters, and (through this package) the random stream and every technique's state, but a
plain ``DataLoader`` is not resumable, so the interrupted epoch restarts at its *first* batch
(same permutation: the sampler's order depends only on the seed and the epoch) and stops when
the epoch's batch count is reached. Batches 0-3 of that epoch are trained twice and batches
4-7 not at all. Resuming is then exact only from an epoch boundary; from the middle of an epoch
the test metrics agree within a tolerance.
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from conftest import sigkill_when_marked
from sigkill_script import MAX_EPOCHS, build

# No validation split: Lightning notes the empty validation loader list.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Total length of `list` across ranks is zero")]

SCRIPT = Path(__file__).with_name("sigkill_script.py")
STEPS_PER_EPOCH = 8
KILL_AFTER_STEP = 14  # mid-epoch 1; the last checkpoint is step 12, also mid-epoch
METRICS = ("test/accuracy", "test/recall", "test/f1")


def _fit_and_test(checkpoint=None):
    model, datamodule, trainer = build(None)
    with warnings.catch_warnings():
        # Lightning's notes that the loader restarts the epoch and that the checkpointing
        # callback is not passed again: both expected here.
        warnings.filterwarnings("ignore", ".*dataloader is not resumable.*")
        warnings.filterwarnings("ignore", ".*callbacks used to create the checkpoint.*")
        trainer.fit(model, datamodule=datamodule, ckpt_path=checkpoint)
    trainer.test(model, datamodule=datamodule, verbose=False)
    return model, trainer


@pytest.fixture(scope="module")
def uninterrupted():
    return _fit_and_test()


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """The checkpoint directory of a run killed with SIGKILL after step ``KILL_AFTER_STEP``."""
    output = tmp_path_factory.mktemp("killed")
    log = output / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(output), str(KILL_AFTER_STEP)],
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    marker = output / "stopped"
    sigkill_when_marked(process, marker, 300, "the step to be killed at", log.read_text)
    assert marker.read_text() == f"1 {KILL_AFTER_STEP - STEPS_PER_EPOCH}"  # epoch 1, mid-epoch
    return output / "checkpoints"


def test_the_kill_leaves_mid_epoch_and_epoch_boundary_checkpoints(killed_run):
    names = sorted(path.name for path in killed_run.iterdir())
    assert names == ["epoch=0-step=4.ckpt", "epoch=0-step=8.ckpt", "epoch=1-step=12.ckpt", "last.ckpt"]
    last = torch.load(killed_run / "last.ckpt", weights_only=True)
    assert last["global_step"] == 12 and last["global_step"] % STEPS_PER_EPOCH != 0
    # Technique state travels with it: the clipper's history, the spike statistics, the counters.
    assert {"auto_clipping", "exploding_gradients", "nonfinite_guard"} <= set(last["lstm_plugins"]["state"])
    assert last["lstm_plugins"]["state"]["auto_clipping"]["history"]["filled"] == 12


def test_a_run_killed_mid_epoch_resumes_from_its_last_checkpoint(killed_run, uninterrupted):
    expected_model, expected_trainer = uninterrupted
    model, trainer = _fit_and_test(killed_run / "last.ckpt")
    assert trainer.current_epoch == expected_trainer.current_epoch == MAX_EPOCHS
    assert trainer.global_step == expected_trainer.global_step == MAX_EPOCHS * STEPS_PER_EPOCH
    # Technique state was restored, not restarted: every step of the whole run is counted.
    clipper, expected_clipper = model.techniques[-1], expected_model.techniques[-1]
    assert clipper.steps == expected_clipper.steps == MAX_EPOCHS * STEPS_PER_EPOCH
    assert len(clipper.history) == len(expected_clipper.history) == 16
    detector = next(t for t in model.techniques if t.name == "exploding_gradients")
    assert detector.statistics.observed_steps == MAX_EPOCHS * STEPS_PER_EPOCH
    for name in METRICS:
        # Exact: the training loader resumes at the batch the killed run would have trained next.
        assert float(model.test_results[name]) == float(expected_model.test_results[name]), name
    assert float(expected_model.test_results["test/accuracy"]) > 0.6  # trained: chance is 1/3


def test_resuming_a_killed_run_from_an_epoch_boundary_is_exact(killed_run, uninterrupted):
    expected_model, _ = uninterrupted
    model, trainer = _fit_and_test(killed_run / f"epoch=0-step={STEPS_PER_EPOCH}.ckpt")
    assert trainer.global_step == MAX_EPOCHS * STEPS_PER_EPOCH
    for (name, expected), actual in zip(expected_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(expected, actual), name
    for name, expected in expected_model.test_results.items():
        assert torch.equal(model.test_results[name], expected), name
    assert torch.equal(model.techniques[-1].history.values(), expected_model.techniques[-1].history.values())


def test_resuming_a_killed_run_from_the_middle_of_an_epoch_is_exact(killed_run, uninterrupted):
    expected_model, _ = uninterrupted
    model, _ = _fit_and_test(killed_run / "last.ckpt")
    for (name, expected), actual in zip(expected_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(expected, actual), name
