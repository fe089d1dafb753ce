"""A NaN or infinite training loss stops training with an error by default, read without a per-step
host sync; ``nonfinite_guard`` still skips such steps; ``stop_on_nonfinite_loss=False`` trains on."""

import sys

import pytest
import torch
from conftest import quiet_trainer

from lstm_plugins import LSTMClassifier, Technique, hookimpl
from lstm_plugins import cli
from lstm_plugins.data import SequenceDataModule
from lstm_plugins.model import SequenceModel
from lstm_plugins.training import NonFiniteLossError, NonFiniteLossStop, Safeguards

STOP_FILE = "training/_nonfinite.py"


class PoisonSteps(Technique):
    """Test technique: a NaN loss term on the chosen optimizer steps."""

    name = "poison_steps"

    def __init__(self, steps):
        self.steps = set(steps)

    @hookimpl
    def loss_terms(self, model, task_loss):
        if model.trainer.global_step in self.steps:
            return {"poison": task_loss * float("nan")}
        return {}


def _data():
    from parity_script import _sequences

    return SequenceDataModule(*_sequences(64, seed=1), *_sequences(8, seed=2), num_classes=3,
                              val_fraction=0.0, batch_size=8, seed=0)  # 8 steps per epoch


def _model(*techniques, **options):
    torch.manual_seed(0)
    return LSTMClassifier(3, 3, hidden_size=8, techniques=list(techniques), **options)


def _trainer(**options):
    return quiet_trainer(limit_val_batches=0, **{"max_epochs": 3, "log_every_n_steps": 4, **options})


def test_a_nan_loss_stops_training_naming_the_steps_since_the_last_read():
    model = _model(PoisonSteps([5]))
    trainer = _trainer()
    with pytest.raises(NonFiniteLossError, match=r"at a step between 4 and 7 \(epoch 0\).*`nonfinite_guard`"
                                                 r".*`stop_on_nonfinite_loss=False`"):
        trainer.fit(model, datamodule=_data())
    # Read on the logging step after the NaN (steps 4-7 are rows 3, 7: the read after step 7).
    assert trainer.global_step == 8


def test_the_epoch_end_read_catches_what_no_logging_step_read():
    model = _model(PoisonSteps([14]))
    with pytest.raises(NonFiniteLossError, match=r"between 8 and 15 \(epoch 1\)"):
        _trainer(log_every_n_steps=0).fit(model, datamodule=_data())


def test_an_infinite_loss_stops_too():
    class Infinite(PoisonSteps):
        @hookimpl
        def loss_terms(self, model, task_loss):
            return {"inf": task_loss * float("inf")} if model.trainer.global_step in self.steps else {}

    with pytest.raises(NonFiniteLossError, match="between 0 and 3"):
        _trainer().fit(_model(Infinite([2])), datamodule=_data())


def test_a_nan_step_is_never_saved_as_a_checkpoint(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    checkpoints = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_last=True, save_top_k=-1)
    trainer = _trainer(log_every_n_steps=0, enable_checkpointing=True, callbacks=[checkpoints])
    with pytest.raises(NonFiniteLossError, match="between 2 and 3"):
        trainer.fit(_model(PoisonSteps([3])), datamodule=_data())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    assert all(torch.isfinite(value).all() for value in last["state_dict"].values() if value.is_floating_point())


def test_the_guard_skips_the_steps_and_the_core_does_not_stop():
    from lstm_plugins.plugins import NonFiniteGuard

    guard = NonFiniteGuard(max_consecutive_skips=3)
    model = _model(PoisonSteps([5, 6]), guard)
    trainer = _trainer()
    trainer.fit(model, datamodule=_data())
    assert trainer.global_step == 24
    assert guard.skipped_steps == 2
    (guards,) = [callback for callback in trainer.callbacks if isinstance(callback, Safeguards)]
    assert guards.nonfinite is None
    assert all(torch.isfinite(parameter).all() for parameter in model.parameters())


def test_stop_on_nonfinite_loss_false_trains_on():
    from lstm_plugins import ClassificationTask

    torch.manual_seed(0)
    model = SequenceModel(3, ClassificationTask(3), hidden_size=8, techniques=[PoisonSteps([5])],
                          stop_on_nonfinite_loss=False)
    assert model.hparams["stop_on_nonfinite_loss"] is False  # saved: load_from_checkpoint keeps it
    trainer = _trainer(max_epochs=1)
    trainer.fit(model, datamodule=_data())
    assert trainer.global_step == 8
    assert not torch.isfinite(model.head.weight).all()  # what the stop prevents: NaN weights
    attribute = _model(PoisonSteps([5]))
    attribute.stop_on_nonfinite_loss = False  # the attribute, before the first fit
    _trainer(max_epochs=1).fit(attribute, datamodule=_data())
    with pytest.raises(TypeError, match="Expected `stop_on_nonfinite_loss` to be a bool"):
        SequenceModel(3, ClassificationTask(3), stop_on_nonfinite_loss="no")


def test_the_stop_reads_the_host_only_on_the_logging_steps_and_the_epoch_end(monkeypatch):
    reads = []
    trainer = _trainer(max_epochs=2, log_every_n_steps=3)

    def wrap(name):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, **kwargs):
            frame = sys._getframe(1)
            while frame is not None:
                if frame.f_code.co_filename.endswith(STOP_FILE):
                    reads.append((trainer.global_step, frame.f_code.co_name))
                    break
                frame = frame.f_back
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        wrap(name)
    trainer.fit(_model(), datamodule=_data())
    monkeypatch.undo()
    # 16 steps: rows 2, 5, 8, 11, 14 (read once global_step has counted them) and 2 epoch ends.
    assert [step for step, _ in reads] == [3, 6, 8, 9, 12, 15, 16]
    assert {function for _, function in reads} == {"check"}


@pytest.mark.slow
def test_the_cli_exits_non_zero_with_the_message(tmp_path, monkeypatch, capsys):
    # An absurd learning rate makes the loss non-finite within the first epoch.
    monkeypatch.chdir(tmp_path)
    status = cli.main(["fit", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                       "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--model.hidden_size", "8",
                       "--model.optimizer", "sgd", "--model.learning_rate", "1e38", "--model.techniques", "[]",
                       "--data.batch_size", "96", "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1"])
    captured = capsys.readouterr()
    assert status != 0
    assert "training loss was NaN or infinite at step 1 (epoch 0)" in captured.err  # read every step
    assert "test/accuracy" not in captured.out  # no results table


def test_the_stop_is_part_of_a_plain_sequence_model():
    from lstm_plugins import ClassificationTask

    model = SequenceModel(3, ClassificationTask(3))
    assert model.stop_on_nonfinite_loss is True
    (guards,) = [callback for callback in model.configure_callbacks() if isinstance(callback, Safeguards)]
    assert isinstance(guards.nonfinite, NonFiniteLossStop)


class _LossScalingOnly:
    """Lightning's 16-mixed precision plugin with its GradScaler but without autocast (oneDNN has
    no float16 LSTM training kernel on CPU): what matters here is that a loss scaler is present."""

    def __new__(cls):
        import contextlib

        from pytorch_lightning.plugins import MixedPrecision

        class Plugin(MixedPrecision):
            def forward_context(self):
                return contextlib.nullcontext()

        return Plugin("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))


def test_with_a_loss_scaler_single_overflows_pass_and_a_run_of_them_stops():
    trainer = _trainer(max_epochs=1, plugins=[_LossScalingOnly()])
    trainer.fit(_model(PoisonSteps([5])), datamodule=_data())  # one overflow: the scaler skips it
    assert trainer.global_step == 8
    with pytest.raises(NonFiniteLossError, match="for every one of its 4 batches from step 4 to step 7"):
        _trainer(plugins=[_LossScalingOnly()]).fit(_model(PoisonSteps(range(3, 9))), datamodule=_data())
