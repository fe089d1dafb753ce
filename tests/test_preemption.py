"""SIGTERM saves a resumable checkpoint, says how to resume, and ends the CLI with status 143;
resuming from the checkpoint ends with the weights of an uninterrupted run, bit for bit.

The signal is real (``os.kill`` of the process itself, handled by Lightning's SIGTERM handler)
and sent at a known step from two places: inside a batch (the model's ``Preemption`` callback
sees it at the batch's end and saves there) and after the callbacks have seen the batch's end
(Lightning raises at the end of the batch; the checkpoint is saved when the exception arrives).
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import quiet_trainer

from lstm_plugins import LSTMClassifier, Technique, hookimpl
from lstm_plugins import cli
from lstm_plugins.data import SequenceDataModule
from lstm_plugins.training import PREEMPTED_EXIT_STATUS, Preemption, Safeguards

SCRIPT = Path(__file__).with_name("sigterm_cli.py")
CLI_RUN = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--model.hidden_size", "8",
           "--data.batch_size", "96", "--trainer.logger=false", "--trainer.max_epochs", "2"]  # 3 steps per epoch


class TermAt(Technique):
    """Test technique: the process sends itself SIGTERM at ``step``, from ``where``."""

    name = "term_at"

    def __init__(self, step, where):
        self.step, self.where = step, where

    def _send(self, model, where):
        if where == self.where and model.trainer.global_step == self.step and not getattr(self, "sent", False):
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    @hookimpl
    def transform_batch(self, model):
        self._send(model, "batch")



class SendsAfterTheCallbacks(LSTMClassifier):
    """The model's own ``on_train_batch_end`` runs after every callback's: a SIGTERM sent there is
    noticed only when Lightning raises at the end of the batch."""

    def on_train_batch_end(self, outputs, batch, batch_idx):
        super().on_train_batch_end(outputs, batch, batch_idx)
        for technique in self.techniques:
            if isinstance(technique, TermAt):
                technique._send(self, "after_callbacks")


def _data():
    from parity_script import _sequences

    return SequenceDataModule(*_sequences(64, seed=1), *_sequences(8, seed=2), num_classes=3,
                              val_fraction=0.25, batch_size=8, seed=0)  # 6 steps per epoch


def _fit(root, *techniques, ckpt_path=None, **trainer_options):
    torch.manual_seed(0)
    model = SendsAfterTheCallbacks(3, 3, hidden_size=8, bidirectional=True, techniques=["dropout", *techniques])
    trainer = quiet_trainer(max_epochs=3, default_root_dir=root, log_every_n_steps=2, **trainer_options)
    trainer.fit(model, datamodule=_data(), ckpt_path=ckpt_path)
    return model, trainer


@pytest.mark.parametrize("where", ["batch", "after_callbacks"])
def test_sigterm_saves_a_checkpoint_that_resumes_exactly(where, tmp_path, capsys):
    expected, _ = _fit(tmp_path / "straight")
    with pytest.raises(SystemExit) as raised:  # Lightning's SIGTERMException
        _fit(tmp_path / "stopped", TermAt(8, where))
    assert type(raised.value).__name__ == "SIGTERMException"
    saved = tmp_path / "stopped" / "preempted.ckpt"
    message = capsys.readouterr().err
    step = 9 if where == "batch" else 8  # "batch": sent in step 8, saved at its end
    assert f"stopped by SIGTERM at step {step} (epoch 1)" in message
    assert f"--ckpt_path {saved.resolve()}" in message
    checkpoint = torch.load(saved, weights_only=True)
    assert checkpoint["global_step"] == step  # mid-epoch: the epoch has 6 steps
    model, trainer = _fit(tmp_path / "resumed", TermAt(-1, where), ckpt_path=saved)
    assert trainer.global_step == 18
    for (name, value), resumed in zip(expected.state_dict().items(), model.state_dict().values()):
        assert torch.equal(value, resumed), name


def test_sigterm_between_accumulated_batches_stops_at_the_optimizer_step(tmp_path, capsys):
    """With 2 batches per optimizer step, a SIGTERM in the first batch of a pair is held back to
    the pair's end: the checkpoint keeps no half-accumulated gradient and the resume is exact."""
    expected, _ = _fit(tmp_path / "straight", accumulate_grad_batches=2)
    with pytest.raises(SystemExit):
        _fit(tmp_path / "stopped", TermAt(4, "batch"), accumulate_grad_batches=2)
    saved = tmp_path / "stopped" / "preempted.ckpt"
    checkpoint = torch.load(saved, weights_only=True)
    # Sent in the first batch of step 4's pair (batch 8 of 18); saved after the pair's step.
    assert checkpoint["global_step"] == 5  # not 4 with half a pair's gradients dropped
    assert "stopped by SIGTERM at step 5" in capsys.readouterr().err
    model, trainer = _fit(tmp_path / "resumed", TermAt(-1, "batch"), ckpt_path=saved, accumulate_grad_batches=2)
    assert trainer.global_step == 9
    for (name, value), resumed in zip(expected.state_dict().items(), model.state_dict().values()):
        assert torch.equal(value, resumed), name


def test_no_sigterm_leaves_no_checkpoint(tmp_path):
    _, trainer = _fit(tmp_path)
    preemption = next(callback for callback in trainer.callbacks if isinstance(callback, Safeguards)).preemption
    assert isinstance(preemption, Preemption) and preemption.saved is None and not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_sigterm_through_the_cli_exits_143_and_the_resume_is_exact(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    completed = subprocess.run([sys.executable, str(SCRIPT), "4", "step", "fit", *CLI_RUN,
                                "--trainer.default_root_dir", "stopped"],
                               env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == PREEMPTED_EXIT_STATUS == 143, completed.stderr[-3000:]
    saved = (tmp_path / "stopped" / "checkpoints" / "preempted.ckpt").resolve()
    assert f"stopped by SIGTERM at step 5 (epoch 1); a resumable checkpoint is saved at {saved}" in completed.stderr
    assert f"Resume with the same command plus `--ckpt_path {saved}`" in completed.stderr
    assert "test/accuracy" not in completed.stdout  # no results table for a stopped run
    assert cli.main(["fit", *CLI_RUN, "--trainer.default_root_dir", "resumed", "--ckpt_path", str(saved)]) == 0
    assert cli.main(["fit", *CLI_RUN, "--trainer.default_root_dir", "straight"]) == 0
    resumed = torch.load("resumed/checkpoints/last.ckpt", weights_only=True)
    straight = torch.load("straight/checkpoints/last.ckpt", weights_only=True)
    assert resumed["global_step"] == straight["global_step"] == 6
    for name, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name
