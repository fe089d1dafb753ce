"""The hook phases added for techniques: batch, task loss, loss observer, once-per-step,
evaluation, technique state in checkpoints, logging rows and pluggy's own validation."""

import importlib.metadata

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import RecordingLogger, make_batch, quiet_trainer

import lstm_plugins
from lstm_plugins import LSTMClassifier, Technique, TechniqueValidationError, hookimpl, toolkit
from lstm_plugins.data import JapaneseVowelsDataModule


class Doubling(Technique):
    name = "doubling"

    @hookimpl
    def transform_batch(self, batch):
        return batch._replace(features=batch.features * 2)


class Observing(Technique):
    name = "observing"

    def __init__(self):
        self.seen = []

    @hookimpl
    def transform_batch(self, batch, batch_index):
        self.seen.append((batch_index, batch.features.clone()))


def test_transform_batch_is_chained_and_feeds_the_forward_pass():
    batch = make_batch([9, 4, 7])
    observer = Observing()
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[Doubling(), observer])
    loss = model.training_step(batch, 3)
    assert observer.seen[0][0] == 3
    torch.testing.assert_close(observer.seen[0][1], batch.features * 2)  # after the first technique
    expected = F.cross_entropy(model(batch.features * 2, batch.lengths), batch.targets)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_transform_batch_refuses_wrappers():
    class Wrapping(Technique):
        name = "wrapping_batch"

        @hookimpl(wrapper=True)
        def transform_batch(self, batch):
            return (yield)

    with pytest.raises(TechniqueValidationError, match="`wrapping_batch`: hook `transform_batch` is chained .* cannot be a wrapper"):
        LSTMClassifier(12, 9, techniques=[Wrapping()])


class Smoothing(Technique):
    name = "smoothing"

    def __init__(self, smoothing=0.2):
        self.smoothing = smoothing

    @hookimpl
    def compute_task_loss(self, batch, predictions):
        return F.cross_entropy(predictions, batch.targets, label_smoothing=self.smoothing)


class Abstaining(Technique):
    name = "abstaining"

    @hookimpl
    def compute_task_loss(self):
        return None


def test_compute_task_loss_replaces_the_task_loss_during_training_only():
    batch = make_batch([9, 4, 7])
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[Smoothing(0.2)])
    predictions = model(batch.features, batch.lengths)
    assert model.training_step(batch, 0).item() == pytest.approx(
        F.cross_entropy(predictions, batch.targets, label_smoothing=0.2).item(), rel=1e-6)
    model.validation_step(batch, 0)  # the validation loss stays the task's own
    assert model.val_loss.compute().item() == pytest.approx(F.cross_entropy(predictions, batch.targets).item(), rel=1e-6)
    plain = LSTMClassifier(12, 9, hidden_size=8, techniques=[Abstaining()])
    assert plain.training_step(batch, 0).item() == pytest.approx(
        F.cross_entropy(plain(batch.features, batch.lengths), batch.targets).item(), rel=1e-6)


def test_two_task_loss_replacements_are_refused_naming_both():
    with pytest.raises(ValueError, match=r"Techniques `smoothing` .* and `abstaining` .* both take the `task_loss` slot"):
        LSTMClassifier(12, 9, techniques=[Smoothing(), Abstaining()])


def test_on_loss_computed_sees_the_optimized_loss_and_its_terms():
    seen = {}

    class Term(Technique):
        name = "term"

        @hookimpl
        def loss_terms(self):
            return {"constant": torch.tensor(0.25)}

    class Watch(Technique):
        name = "watch"

        @hookimpl
        def on_loss_computed(self, loss, task_loss, terms):
            seen.update(loss=loss.detach(), task_loss=task_loss.detach(), terms=dict(terms))

    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[Term(), Watch()])
    loss = model.training_step(make_batch([5, 3]), 0)
    assert seen["loss"].item() == pytest.approx(loss.item())
    assert seen["loss"].item() == pytest.approx(seen["task_loss"].item() + 0.25, rel=1e-6)
    assert list(seen["terms"]) == ["constant"]


class StepCounter(Technique):
    name = "step_counter"

    def __init__(self):
        self.steps = []
        self.weights = []

    @hookimpl
    def on_train_step_end(self, model, batch, step):
        self.steps.append(step)
        self.weights.append(model.head.weight.detach().clone())


def test_on_train_step_end_fires_once_per_optimizer_step_under_accumulation():
    counter = StepCounter()
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[counter])
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=7, limit_val_batches=0, accumulate_grad_batches=3)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    # 7 micro-batches, 3 per step: steps after batches 3 and 6, and the epoch's partial last one.
    assert trainer.global_step == 3
    assert counter.steps == [0, 1, 2]
    assert torch.equal(counter.weights[-1], model.head.weight)  # fired after the optimizer stepped
    assert not torch.equal(counter.weights[0], counter.weights[1])


def test_on_train_step_end_fires_under_manual_optimization():
    class Manual(LSTMClassifier):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            loss = super().training_step(batch, batch_idx)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()

    counter = StepCounter()
    model = Manual(12, 9, hidden_size=8, techniques=[counter])
    quiet_trainer(max_steps=4, limit_val_batches=0).fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert counter.steps == [0, 1, 2, 3]


class ZeroHead(Technique):
    """Swaps a zero head in for evaluation: every class scores 0, so accuracy is the first
    class's frequency and the loss is log(num_classes)."""

    name = "zero_head"

    def __init__(self):
        self.saved = None
        self.stages = []

    @hookimpl
    def on_evaluation_start(self, model, stage):
        self.stages.append(("start", stage))
        self.saved = [model.head.weight.detach().clone(), model.head.bias.detach().clone()]
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.zero_()

    @hookimpl
    def on_evaluation_end(self, model, stage):
        self.stages.append(("end", stage))
        with torch.no_grad():
            model.head.weight.copy_(self.saved[0])
            model.head.bias.copy_(self.saved[1])


def test_evaluation_hooks_wrap_validation_and_checkpoints_hold_training_weights(tmp_path):
    technique = ZeroHead()
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[technique])
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", save_last=True)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3, enable_checkpointing=True, callbacks=[checkpoint],
                            num_sanity_val_steps=0)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert technique.stages == [("start", "validate"), ("end", "validate")]
    assert trainer.callback_metrics["val/loss"].item() == pytest.approx(torch.log(torch.tensor(9.0)).item(), rel=1e-5)
    assert model.head.weight.abs().sum() > 0  # training weights are back
    saved = torch.load(checkpoint.last_model_path, weights_only=True)["state_dict"]
    torch.testing.assert_close(saved["head.weight"], model.head.weight.detach())
    predictions = trainer.predict(model, dataloaders=JapaneseVowelsDataModule(batch_size=16).test_dataloader())
    assert technique.stages[-2:] == [("start", "predict"), ("end", "predict")]
    assert all(torch.count_nonzero(p) == 0 for p in predictions)


def test_specname_maps_a_method_to_a_hook():
    class Aliased(Technique):
        name = "aliased"

        @hookimpl(specname="loss_terms")
        def penalty(self, task_loss):
            return {"double": task_loss}

    batch = make_batch([5, 3])
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[Aliased()])
    task = F.cross_entropy(model(batch.features, batch.lengths), batch.targets)
    assert model.training_step(batch, 0).item() == pytest.approx(2 * task.item(), rel=1e-6)


# --- technique state in checkpoints ----------------------------------------------------------


class Counting(Technique):
    name = "counting"

    def __init__(self):
        self.count = 0
        self.total = torch.zeros(())

    @hookimpl
    def on_train_step_end(self, model):
        self.count += 1
        self.total = self.total + 1.5

    def state_dict(self):
        return {"count": self.count, "total": self.total.clone()}

    def load_state_dict(self, state):
        if state["count"] < 0:
            raise ValueError("`count` cannot be negative")
        self.count, self.total = state["count"], state["total"].clone()


def _saved(model):
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    return checkpoint


def test_technique_state_round_trips_through_the_checkpoint():
    model = LSTMClassifier(12, 9, techniques=[Counting()])
    model.techniques[0].count, model.techniques[0].total = 3, torch.tensor(4.5)
    checkpoint = _saved(model)
    assert checkpoint["lstm_plugins"]["state"] == {"counting": {"count": 3, "total": torch.tensor(4.5)}}
    fresh = LSTMClassifier(12, 9, techniques=[Counting()])
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.techniques[0].count == 3 and fresh.techniques[0].total.item() == 4.5


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda state: state.pop("total"), r"technique `counting`, key `total` is missing"),
        (lambda state: state.update(extra=1), r"technique `counting`, key `extra` is not a key this technique stores"),
        (lambda state: state.update(total=2.0), r"technique `counting`, key `total`: expected a tensor of torch.float32, but got a number"),
        (lambda state: state.update(count="3"), r"technique `counting`, key `count`: expected a number, but got a str"),
    ],
)
def test_a_tampered_technique_state_is_refused_naming_the_technique_and_key(tamper, message):
    checkpoint = _saved(LSTMClassifier(12, 9, techniques=[Counting()]))
    tamper(checkpoint["lstm_plugins"]["state"]["counting"])
    fresh = LSTMClassifier(12, 9, techniques=[Counting()])
    with pytest.raises(ValueError, match=message):
        fresh.on_load_checkpoint(checkpoint)
    assert fresh.techniques[0].count == 0  # nothing was loaded


def test_a_missing_or_impossible_state_is_refused_and_an_absent_technique_starts_fresh():
    checkpoint = _saved(LSTMClassifier(12, 9, techniques=[Counting()]))
    checkpoint["lstm_plugins"]["state"]["counting"]["count"] = -1
    with pytest.raises(ValueError, match="cannot be negative") as error:
        LSTMClassifier(12, 9, techniques=[Counting()]).on_load_checkpoint(checkpoint)
    assert "(raised by technique `counting` in hook `load_state_dict`)" in error.value.__notes__
    del checkpoint["lstm_plugins"]["state"]["counting"]
    with pytest.raises(ValueError, match="state of technique `counting` is missing"):
        LSTMClassifier(12, 9, techniques=[Counting()]).on_load_checkpoint(checkpoint)
    plain = _saved(LSTMClassifier(12, 9))  # written without the technique
    model = LSTMClassifier(12, 9, techniques=[Counting()])
    model.on_load_checkpoint(plain)
    assert model.techniques[0].count == 0


def test_state_that_is_not_plain_data_is_refused_when_saving():
    class Opaque(Counting):
        name = "opaque"

        def state_dict(self):
            return {"count": self.count, "total": object()}

    with pytest.raises(TypeError, match=r"technique `opaque`, key `total`: expected plain data"):
        _saved(LSTMClassifier(12, 9, techniques=[Opaque()]))


def test_technique_state_resumes_in_a_real_fit(tmp_path):
    counting = Counting()
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[counting])
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    trainer.save_checkpoint(tmp_path / "three.ckpt")
    resumed = LSTMClassifier(12, 9, hidden_size=8, techniques=[Counting()])
    quiet_trainer(max_steps=5, limit_val_batches=0, default_root_dir=tmp_path).fit(
        resumed, datamodule=JapaneseVowelsDataModule(batch_size=32), ckpt_path=tmp_path / "three.ckpt")
    assert resumed.techniques[0].count == 5 and resumed.techniques[0].total.item() == pytest.approx(7.5)


# --- logging rows, progress bar, version ------------------------------------------------------


class Probe(Technique):
    name = "probe"

    @hookimpl
    def on_gradients_ready(self, model):
        if toolkit.log_due(model.trainer):
            model.log_step_values({"probe/value": torch.tensor(1.0)})


class LightningLogs(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pl_module.log("lightning/value", 2.0, on_step=True, on_epoch=False)


def test_technique_values_land_on_the_rows_of_lightnings_self_log():
    logger = RecordingLogger()
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[Probe()])
    trainer = quiet_trainer(max_steps=12, limit_val_batches=0, logger=logger, log_every_n_steps=4,
                            callbacks=[LightningLogs()])
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert logger.steps_with("lightning/value") == [3, 7, 11]
    assert logger.steps_with("probe/") == logger.steps_with("train/loss") == [3, 7, 11]


def test_the_progress_bar_shows_the_training_loss():
    model = LSTMClassifier(12, 9, hidden_size=8)
    trainer = quiet_trainer(max_steps=4, limit_val_batches=0, log_every_n_steps=2)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert isinstance(trainer.progress_bar_metrics["train/loss"], float)


def test_version_comes_from_the_package_metadata():
    assert lstm_plugins.__version__ == importlib.metadata.version("lstm-plugins")


def test_every_evaluation_end_runs_even_when_one_raises():
    class Failing(Technique):
        name = "failing"

        @hookimpl
        def on_evaluation_end(self):
            raise RuntimeError("restore failed")

    restorer = ZeroHead()
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[Failing(), restorer])
    before = model.head.weight.detach().clone()
    model.start_evaluation("test")
    assert model.head.weight.abs().sum() == 0
    with pytest.raises(RuntimeError, match="restore failed") as error:
        model.end_evaluation()
    assert "(raised by technique `failing` in hook `on_evaluation_end`)" in error.value.__notes__
    assert torch.equal(model.head.weight, before)  # the second technique still restored its weights
    assert model.evaluating is None

    class Wrapping(Technique):
        name = "wrapping_end"

        @hookimpl(wrapper=True)
        def on_evaluation_end(self):
            return (yield)

    with pytest.raises(TechniqueValidationError, match="hook `on_evaluation_end` undoes a change"):
        LSTMClassifier(12, 9, techniques=[Wrapping()])


def test_every_hook_documents_every_argument():
    import inspect

    from lstm_plugins.techniques import hookspecs

    for name in hookspecs.__all__:
        hook = getattr(hookspecs, name)
        documentation = inspect.getdoc(hook)
        assert documentation.splitlines()[0].endswith("."), name
        for argument in inspect.signature(hook).parameters:
            assert f":param {argument}:" in documentation, f"{name} does not document `{argument}`"
