"""Denormal floats are flushed while a Trainer runs the model, and the setting is restored."""

import pytest
import pytorch_lightning as pl
import torch
from conftest import quiet_trainer

from lstm_plugins import LSTMClassifier, cli
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.training import denormals_are_flushed
from lstm_plugins.training._denormals import flushed_denormals, set_flush_denormal


class Seen(pl.Callback):
    def __init__(self):
        self.flushed = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.flushed.append(("train", denormals_are_flushed()))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.flushed.append(("validate", denormals_are_flushed()))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.flushed.append(("test", denormals_are_flushed()))

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.flushed.append(("predict", denormals_are_flushed()))


@pytest.fixture(autouse=True)
def denormals_kept():
    previous = denormals_are_flushed()
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(previous)


def test_flushing_is_on_while_the_trainer_runs_and_restored_after():
    seen = Seen()
    model = LSTMClassifier(12, 9, hidden_size=8)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, callbacks=[seen],
                            num_sanity_val_steps=0)
    datamodule = JapaneseVowelsDataModule(batch_size=32)
    trainer.fit(model, datamodule=datamodule)
    assert not denormals_are_flushed()  # restored after fit
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert not denormals_are_flushed()  # and after test
    trainer.predict(model, datamodule=datamodule)
    assert not denormals_are_flushed()  # and after predict
    assert {stage for stage, _ in seen.flushed} == {"train", "validate", "test", "predict"}
    assert all(flushed for _, flushed in seen.flushed)


def test_a_model_can_keep_denormals_and_a_failed_run_restores_the_setting():
    seen = Seen()
    model = LSTMClassifier(12, 9, hidden_size=8)
    model.flush_denormals = False
    quiet_trainer(max_steps=1, limit_val_batches=0, callbacks=[seen]).fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    assert seen.flushed and not any(flushed for _, flushed in seen.flushed)

    class Failing(pl.Callback):
        def on_train_batch_start(self, *args):
            assert denormals_are_flushed()
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        quiet_trainer(max_steps=1, limit_val_batches=0, callbacks=[Failing()]).fit(
            LSTMClassifier(12, 9, hidden_size=8), datamodule=JapaneseVowelsDataModule(batch_size=32))
    assert not denormals_are_flushed()


def test_flushing_makes_the_long_sequence_backward_pass_give_the_same_gradients():
    """What flushing changes: nothing a float32 model can resolve (gradients equal to 1e-30)."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 16, batch_first=True)
    inputs = torch.randn(4, 300, 3)

    def gradients():
        lstm.zero_grad()
        lstm(inputs)[0][:, -1].sum().backward()
        return [p.grad.clone() for p in lstm.parameters()]

    kept = gradients()
    torch.set_flush_denormal(True)
    flushed = gradients()
    for a, b in zip(kept, flushed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-30)


def test_the_cli_flag_turns_flushing_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datamodule, model, _ = cli.build_run({"model": {"hidden_size": 8}, "flush_denormals": False, "trainer": {"max_epochs": 1}})
    assert model.flush_denormals is False
    _, model, _ = cli.build_run({"model": {"hidden_size": 8}, "trainer": {"max_epochs": 1}})
    assert model.flush_denormals is True


def flushed_share_across_threads():
    """Share of a 2-thread element-wise operation's results flushed: each intra-op thread
    multiplies its own half of a tensor of denormals, so a thread that keeps denormals leaves
    its half nonzero."""
    values = torch.full((1 << 18,), 1e-40)
    return float((values.mul(1.0) == 0).float().mean())


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_every_intra_op_thread_flushes_during_fit_and_keeps_denormals_after(two_threads):
    assert flushed_share_across_threads() == 0.0  # the worker pool now exists, created unflushed
    torch.set_flush_denormal(True)
    only_main = flushed_share_across_threads()
    torch.set_flush_denormal(False)

    class Share(pl.Callback):
        shares = []

        def on_train_batch_start(self, *args):
            self.shares.append(flushed_share_across_threads())

    quiet_trainer(max_steps=2, limit_val_batches=0, callbacks=[Share()]).fit(
        LSTMClassifier(12, 9, hidden_size=8), datamodule=JapaneseVowelsDataModule(batch_size=32))
    assert Share.shares == [1.0, 1.0]
    assert flushed_share_across_threads() == 0.0  # the workers keep denormals again
    if only_main == 0.5:  # torch's own flag reaches the main thread only (GNU OpenMP)
        with flushed_denormals():
            assert flushed_share_across_threads() == 1.0
        assert flushed_share_across_threads() == 0.0


def test_set_flush_denormal_reports_support_and_the_context_manager_restores_after_an_error():
    assert set_flush_denormal(True) is True and denormals_are_flushed()
    set_flush_denormal(False)
    with pytest.raises(KeyError):
        with flushed_denormals():
            assert denormals_are_flushed()
            raise KeyError("x")
    assert not denormals_are_flushed()
    with flushed_denormals(False):  # already off: nothing changes
        assert not denormals_are_flushed()


def test_predict_sequences_flushes_while_it_runs_and_restores_after():
    import numpy as np

    from lstm_plugins.model import predict_sequences

    seen = []

    class Probe(torch.nn.Module):  # in the forward path: sees the setting while the kernels run
        def forward(self, x):
            seen.append(("forward", denormals_are_flushed()))
            return x

    model = LSTMClassifier(2, 2, hidden_size=4)
    model.input_layers.append(Probe())
    predict_sequences(model, [np.zeros((3, 2), np.float32)])
    assert ("forward", True) in seen and not denormals_are_flushed()
    model.flush_denormals = False
    seen.clear()
    predict_sequences(model, [np.zeros((3, 2), np.float32)])
    assert ("forward", False) in seen
