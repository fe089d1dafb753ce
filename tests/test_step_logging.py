"""``model.log_step_values``: per-step values queued on the device, handed to the loggers once per step."""

import csv
from pathlib import Path

import pytest
import torch
from conftest import RecordingLogger, quiet_trainer
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from lstm_plugins import LSTMClassifier, Technique, hookimpl
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.plugins import Dropout, GradientClipping, GradientNorms, L2Penalty

DEFAULT_NAMES = {
    "train/loss", "train/task_loss", "train/l2",
    "grad_norm/total", "grad_norm/lstm.layer0", "grad_norm/head",
    "gradient_clipping/pre_clip_norm", "gradient_clipping/clipped_fraction",
}


def _default_stack():
    return [GradientClipping(1.0), Dropout(input=0.1, output=0.3), L2Penalty(1e-5), GradientNorms(log_every_n_steps=10)]


class _StepRecorder(Callback):
    """What a callback sees at each batch end: the returned loss and the callback metrics."""

    def __init__(self):
        self.losses, self.seen = {}, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step - 1
        self.losses[step] = outputs["loss"].item()
        if "train/loss" in trainer.callback_metrics:
            self.seen[step] = trainer.callback_metrics["train/loss"].item()


def test_each_logging_step_reaches_the_loggers_in_one_row_with_the_values_of_that_step():
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, hidden_size=16, techniques=_default_stack())
    logger, recorder = RecordingLogger(), _StepRecorder()
    trainer = quiet_trainer(max_steps=31, limit_val_batches=0, logger=logger, log_every_n_steps=10,
                            callbacks=[recorder])
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    rows = [(step, metrics) for step, metrics in logger.rows if "train/loss" in metrics]
    # One row per logging step, holding every technique's values: one host copy per step.
    assert [step for step, _ in rows] == [9, 19, 29]
    for step, metrics in rows:
        names = {name for name in metrics if name != "epoch"}
        assert names >= DEFAULT_NAMES
        assert metrics["epoch"] == step // 16
        # The loss logged at a step is the loss of that step, not of an earlier one.
        assert metrics["train/loss"] == pytest.approx(recorder.losses[step], rel=1e-6)
        assert metrics["train/loss"] == pytest.approx(metrics["train/task_loss"] + metrics["train/l2"], rel=1e-5)
        assert metrics["gradient_clipping/clipped_fraction"] <= 1.0
    # No row between logging steps.
    assert all(step % 10 == 9 for step, metrics in logger.rows if set(metrics) & DEFAULT_NAMES)
    # Callbacks see the values in the batch they were logged in (ModelCheckpoint, EarlyStopping).
    assert {step: recorder.seen[step] for step in (9, 19, 29)} == {
        step: pytest.approx(metrics["train/loss"], rel=1e-6) for step, metrics in rows
    }
    assert trainer.logged_metrics["grad_norm/total"].item() == pytest.approx(rows[-1][1]["grad_norm/total"])


def test_a_checkpoint_can_monitor_a_step_value(tmp_path):
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, hidden_size=16, techniques=[GradientNorms(log_every_n_steps=1)])
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="grad_norm/total", mode="min", every_n_train_steps=4)
    trainer = quiet_trainer(max_steps=12, limit_val_batches=0, enable_checkpointing=True, callbacks=[checkpoint],
                            log_every_n_steps=1)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert checkpoint.best_model_score is not None
    assert torch.isfinite(checkpoint.best_model_score)


def test_the_csv_logger_of_the_default_fit_gets_the_step_values(tmp_path):
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, hidden_size=16, techniques=_default_stack())
    trainer = quiet_trainer(max_epochs=2, logger=CSVLogger(tmp_path), log_every_n_steps=10)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    rows = list(csv.DictReader(Path(trainer.logger.log_dir, "metrics.csv").open()))
    train_steps = [int(row["step"]) for row in rows if row.get("grad_norm/total")]
    assert train_steps == [9, 19, 29]
    assert any(row.get("val/accuracy") for row in rows)  # Lightning's own logging still works


class _CountingTechnique(Technique):
    """Queues a tensor and a Python number every step, and a value from on_train_step_end."""

    name = "counting"

    def __init__(self):
        self.count = torch.zeros(())

    @hookimpl
    def on_gradients_ready(self, model):
        self.count += 1
        model.log_step_values({"counting/tensor": self.count, "counting/number": model.trainer.global_step})

    @hookimpl
    def on_train_step_end(self, model):
        model.log_step_values({"counting/after_step": self.count * 10})


def test_gradient_accumulation_logs_once_per_optimizer_step_and_values_from_batch_end_arrive():
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, hidden_size=16, techniques=[_CountingTechnique()])
    logger = RecordingLogger()
    trainer = quiet_trainer(max_steps=4, limit_val_batches=0, logger=logger, accumulate_grad_batches=3,
                            log_every_n_steps=1)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert [step for step, _ in logger.values("counting/tensor")] == [0, 1, 2, 3]
    assert [value for _, value in logger.values("counting/tensor")] == [1.0, 2.0, 3.0, 4.0]
    assert [value for _, value in logger.values("counting/number")] == [0.0, 1.0, 2.0, 3.0]
    assert [value for _, value in logger.values("counting/after_step")] == [10.0, 20.0, 30.0, 40.0]
    assert [step for step, _ in logger.values("counting/after_step")] == [0, 1, 2, 3]
    # The training loss is logged once per optimizer step too (the last micro-batch's).
    assert [step for step, _ in logger.values("train/loss")] == [0, 1, 2, 3]


def test_values_must_be_single_numbers():
    model = LSTMClassifier(12, 9)
    model.log_step_values({"ok": torch.tensor([1.5])})  # without a Trainer: nothing logged, no error
    with pytest.raises(ValueError, match=r"Expected `bad` to be a single value, but got a tensor of shape \(2,\)"):
        model.log_step_values({"bad": torch.ones(2)})
    with pytest.raises(TypeError, match=r"Expected `bad` to be a number or a one-element tensor, but got 'x'"):
        model.log_step_values({"bad": "x"})


def test_in_validation_the_values_go_through_lightning_logging():
    class ValidationLogging(LSTMClassifier):
        def validation_step(self, batch, batch_idx):
            self.log_step_values({"val/custom": torch.tensor(2.0)})
            return super().validation_step(batch, batch_idx)

    model = ValidationLogging(12, 9, hidden_size=8)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert trainer.callback_metrics["val/custom"].item() == 2.0


def test_queued_values_are_not_pickled():
    import pickle

    model = LSTMClassifier(12, 9, hidden_size=8)
    model.step_logger.tensors["x"] = torch.tensor(1.0)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.step_logger.tensors == {} and model.step_logger.tensors != {}


def test_validation_metrics_during_fit_reach_loggers_callbacks_and_validate_still_returns_them():
    from pytorch_lightning.callbacks import EarlyStopping

    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, hidden_size=16)
    logger = RecordingLogger()
    stopping = EarlyStopping(monitor="val/loss", patience=100)
    trainer = quiet_trainer(max_epochs=2, logger=logger, callbacks=[stopping], num_sanity_val_steps=2, log_every_n_steps=5)
    datamodule = JapaneseVowelsDataModule(batch_size=16)
    trainer.fit(model, datamodule=datamodule)
    rows = [(step, metrics) for step, metrics in logger.rows if "val/accuracy" in metrics]
    # The sanity check logs nothing; each epoch's validation is logged at that epoch's last
    # training step (Lightning's own convention: 16 batches per epoch, steps 0-15).
    assert [(step, metrics["epoch"]) for step, metrics in rows] == [(15, 0), (31, 1)]
    assert set(rows[-1][1]) >= {"val/accuracy", "val/recall", "val/f1", "val/loss"}
    assert stopping.best_score.item() == pytest.approx(min(metrics["val/loss"] for _, metrics in rows))
    (results,) = trainer.validate(model, datamodule=datamodule, verbose=False)
    assert results["val/accuracy"] == pytest.approx(rows[-1][1]["val/accuracy"])


class _ManualOptimization(LSTMClassifier):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = super().training_step(batch, batch_idx)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


class _OwnOptimizerStep(LSTMClassifier):
    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        optimizer.step(closure=optimizer_closure)  # Lightning's warm-up recipe, without super()


@pytest.mark.parametrize("model_class", [_ManualOptimization, _OwnOptimizerStep])
def test_values_reach_the_loggers_at_their_step_without_the_default_optimizer_step(model_class):
    torch.manual_seed(0)
    model = model_class(12, 9, hidden_size=8)
    logger = RecordingLogger()
    quiet_trainer(max_steps=7, limit_val_batches=0, logger=logger, log_every_n_steps=2).fit(
        model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert [step for step, _ in logger.values("train/loss")] == [1, 3, 5]


def test_log_every_n_steps_zero_logs_no_step_values():
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[GradientNorms(log_every_n_steps=1)])
    logger = RecordingLogger()
    quiet_trainer(max_steps=4, limit_val_batches=0, logger=logger, log_every_n_steps=0).fit(
        model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert not [row for row in logger.rows if set(row[1]) - {"epoch"}]


class _InPlaceCounter(Technique):
    name = "in_place"

    def __init__(self):
        self.count = torch.zeros(())

    @hookimpl
    def on_gradients_ready(self, model):
        model.log_step_values({"in_place/count": self.count})
        self.count += 1  # changed after queuing: the logged value is the queued one


def test_a_queued_value_is_a_copy():
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[_InPlaceCounter()])
    logger = RecordingLogger()
    quiet_trainer(max_steps=3, limit_val_batches=0, logger=logger, log_every_n_steps=1).fit(
        model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert [value for _, value in logger.values("in_place/count")] == [0.0, 1.0, 2.0]
