"""The third-party example examples/training_recipes_package: label smoothing, mixup and a weight
average, checked against hand computations and through real ``Trainer.fit`` runs.

The package is imported from its folder (not pip-installed); its entry points are exercised
through a ``*.dist-info`` folder written from its ``pyproject.toml`` onto ``sys.path``.
"""

import doctest
import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import RecordingLogger, quiet_trainer
from pytorch_lightning.callbacks import ModelCheckpoint

from lstm_plugins import LSTMClassifier, LSTMRegressor, Technique, available_techniques, hookimpl
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.model._evaluation import EvaluationGuard

PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "training_recipes_package"
MODULE = "lstm_plugins_training_recipes"


def _import_example():
    if MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(MODULE, PACKAGE / f"{MODULE}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE] = module  # so its entry points ("module:Class") load this very module
        spec.loader.exec_module(module)
    return sys.modules[MODULE]


recipes = _import_example()
LabelSmoothing, Mixup, WeightAverage = recipes.LabelSmoothing, recipes.Mixup, recipes.WeightAverage


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def _hand_smoothed_loss(logits, targets, eps):
    """-(1 - eps) * log p_y - eps / C * sum_c log p_c, averaged (targets: indices or probabilities)."""
    log_p = logits.double().log_softmax(-1)
    num_classes = logits.shape[-1]
    if targets.is_floating_point():
        return -(((1 - eps) * targets.double() + eps / num_classes) * log_p).sum(-1).mean()
    return (-(1 - eps) * log_p.gather(1, targets[:, None]).squeeze(1) - eps / num_classes * log_p.sum(-1)).mean()


class Recorder(Technique):
    """Records what the techniques listed before it did: the trainable weights after every
    optimizer step and at the start of every validation, and the task loss of every step."""

    name = "recorder"

    def __init__(self) -> None:
        self.trajectory, self.evaluated, self.task_losses, self.expected = [], [], [], []

    @hookimpl
    def on_loss_computed(self, batch, predictions, task_loss):
        self.task_losses.append(task_loss.detach().clone())
        self.expected.append(_hand_smoothed_loss(predictions.detach(), batch.targets, 0.2))

    @hookimpl
    def on_train_step_end(self, model):
        self.trajectory.append([p.detach().clone() for p in _trainable(model)])

    @hookimpl
    def on_evaluation_start(self, model, stage):
        if stage == "validate" and not model.trainer.sanity_checking:
            self.evaluated.append([p.detach().clone() for p in _trainable(model)])


def _data():
    return JapaneseVowelsDataModule(batch_size=32, seed=0)  # 243 training sequences: 8 steps an epoch


# --- the package ----------------------------------------------------------------------------------


def test_docstring_examples_run():
    result = doctest.testmod(recipes, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_entry_points_make_the_three_names_available(tmp_path, monkeypatch):
    """The names in pyproject.toml resolve to the classes, and a model is built by name."""
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    dist_info = tmp_path / "lstm_plugins_training_recipes-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    group = project["entry-points"]["lstm_plugins"]
    (dist_info / "entry_points.txt").write_text(
        "[lstm_plugins]\n" + "".join(f"{name} = {target}\n" for name, target in group.items())
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    assert set(group) == {"label_smoothing", "mixup", "ema"}
    listing = available_techniques()
    for name in group:
        assert listing[name].distribution == "lstm-plugins-training-recipes 0.1.0" and listing[name].error is None
    assert listing["ema"].description.startswith("Exponential moving average of the weights")

    model = LSTMClassifier(12, 9, techniques=["mixup", "label_smoothing", {"ema": {"decay": 0.99}}])
    assert [type(t) for t in model.techniques] == [Mixup, LabelSmoothing, WeightAverage]
    assert model.techniques[2].decay == 0.99
    assert model.hparams["techniques"] == [
        {"name": "mixup", "alpha": 0.2}, {"name": "label_smoothing", "smoothing": 0.1}, {"name": "ema", "decay": 0.99},
    ]


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: WeightAverage(decay=2), ValueError, "Expected `decay` to be a float in (0, 1), but got 2.0."),
        (lambda: WeightAverage(decay=0.0), ValueError, "Expected `decay` to be a float in (0, 1), but got 0.0."),
        (lambda: WeightAverage(decay="0.9"), TypeError, "Expected `decay` to be a float in (0, 1), but got '0.9'."),
        (lambda: WeightAverage(decay=True), TypeError, "Expected `decay` to be a float in (0, 1), but got True."),
        (lambda: Mixup(alpha=0), ValueError, "Expected `alpha` to be a positive float, but got 0.0."),
        (lambda: Mixup(alpha=None), TypeError, "Expected `alpha` to be a positive float, but got None."),
        (lambda: LabelSmoothing(smoothing=1), ValueError, "Expected `smoothing` to be a float in [0, 1), but got 1.0."),
    ],
)
def test_arguments_are_checked_at_construction(build, error, message):
    with pytest.raises(error) as caught:
        build()
    assert str(caught.value) == message


@pytest.mark.parametrize("technique", [LabelSmoothing, Mixup])
def test_classification_techniques_refuse_a_regressor(technique):
    with pytest.raises(ValueError, match=r"needs a classifier .* task is RegressionTask"):
        LSTMRegressor(2, techniques=[technique()])


# --- label smoothing ------------------------------------------------------------------------------


def test_label_smoothing_loss_equals_the_hand_computation():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=generator)
    indices = torch.randint(0, 5, (6,), generator=generator)
    probabilities = torch.rand(6, 5, generator=generator).softmax(-1)
    for eps in (0.0, 0.1, 0.35):
        for targets in (indices, probabilities):
            loss = recipes.label_smoothing_loss(logits, targets, eps)
            torch.testing.assert_close(loss.double(), _hand_smoothed_loss(logits, targets, eps))
    one_hot = F.one_hot(indices, 5).float()  # index and one-hot targets are the same loss
    torch.testing.assert_close(
        recipes.label_smoothing_loss(logits, one_hot, 0.1), recipes.label_smoothing_loss(logits, indices, 0.1)
    )


def test_label_smoothing_replaces_the_task_loss_of_a_training_step(batch):
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[LabelSmoothing(0.2)])
    loss = model.training_step(batch, 0)
    logits = model(batch.features, batch.lengths)
    assert loss.item() == pytest.approx(_hand_smoothed_loss(logits, batch.targets, 0.2).item(), rel=1e-6)
    assert not torch.allclose(loss, F.cross_entropy(logits, batch.targets))


@pytest.mark.slow
def test_label_smoothing_is_the_logged_task_loss_of_a_fit():
    torch.manual_seed(0)
    recorder = Recorder()
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[LabelSmoothing(0.2), recorder])
    logger = RecordingLogger()
    quiet_trainer(max_steps=3, limit_val_batches=0, log_every_n_steps=1, logger=logger).fit(model, datamodule=_data())
    logged = logger.values("train/task_loss")
    assert [step for step, _ in logged] == [0, 1, 2]
    for (_, value), expected, task_loss in zip(logged, recorder.expected, recorder.task_losses):
        assert value == pytest.approx(expected.item(), rel=1e-5)
        assert value == pytest.approx(task_loss.item(), rel=1e-6)


def test_two_task_loss_techniques_are_refused_naming_both():
    class FocalLoss(Technique):
        """Focal loss (a stub taking the same slot)."""

        name = "focal_loss"

        @hookimpl
        def compute_task_loss(self, predictions, batch):
            return F.cross_entropy(predictions, batch.targets)

    with pytest.raises(ValueError, match=r"`label_smoothing` .*`focal_loss` .*both take the `task_loss` slot"):
        LSTMClassifier(12, 9, techniques=[LabelSmoothing(), FocalLoss()])


# --- mixup ----------------------------------------------------------------------------------------


def test_mixup_batch_mixes_valid_steps_and_takes_the_longer_length(batch):
    lam, permutation = 0.3, torch.tensor([3, 0, 7, 1, 2, 6, 4, 5])
    features, lengths, targets = recipes.mixup_batch(batch.features, batch.lengths, batch.targets, 9, lam, permutation)
    assert lengths.tolist() == torch.maximum(batch.lengths, batch.lengths[permutation]).tolist()
    assert features.shape == batch.features.shape
    for i, j in enumerate(permutation.tolist()):
        valid = int(lengths[i])
        expected = lam * batch.features[i, :valid] + (1 - lam) * batch.features[j, :valid]
        torch.testing.assert_close(features[i, :valid], expected)
        assert not features[i, valid:].any()  # padding stays zero
    torch.testing.assert_close(targets.sum(-1), torch.ones(8))
    one_hot = F.one_hot(batch.targets, 9).float()
    torch.testing.assert_close(targets, lam * one_hot + (1 - lam) * one_hot[permutation])
    # Probability targets (a second mix) are mixed as they are and still sum to 1.
    _, _, again = recipes.mixup_batch(features, lengths, targets, 9, 0.6, permutation.flip(0))
    torch.testing.assert_close(again.sum(-1), torch.ones(8))


def test_mixup_draws_from_the_global_stream(batch):
    """The technique's mix is the function's, with lam ~ Beta(alpha, alpha) and the permutation
    drawn from torch's global stream (so a restored random state replays it)."""
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[Mixup(alpha=0.4)])
    torch.manual_seed(5)
    mixed = model.techniques[0].transform_batch(model, batch)
    torch.manual_seed(5)
    lam, permutation = recipes.sample_mixup(0.4, 8)
    expected = recipes.mixup_batch(batch.features, batch.lengths, batch.targets, 9, lam, permutation)
    for actual, wanted in zip(mixed, expected):
        assert torch.equal(actual, wanted)
    assert 0.0 < lam < 1.0 and sorted(permutation.tolist()) == list(range(8))
    model.training_step(batch, 0)  # the classifier's loss takes the probability targets


@pytest.mark.slow
def test_mixup_and_label_smoothing_fit():
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[Mixup(0.4), LabelSmoothing(0.1)])
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=4, log_every_n_steps=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=_data())
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/task_loss"]) and 0.0 <= float(metrics["val/accuracy"]) <= 1.0


# --- weight average -------------------------------------------------------------------------------


@pytest.mark.slow
def test_weight_average_follows_the_trajectory_and_is_what_validation_evaluates():
    torch.manual_seed(0)
    decay = 0.8
    average, recorder = WeightAverage(decay), Recorder()
    model = LSTMClassifier(12, 9, hidden_size=8, learning_rate=0.01, techniques=[average, recorder])
    datamodule = _data()
    trainer = quiet_trainer(max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=datamodule)

    # The shadow is the EMA of the weights after each step, started at the first step's weights.
    steps = recorder.trajectory
    assert len(steps) == 8 and average.updates == 8
    hand = [w.double() for w in steps[0]]
    for weights in steps[1:]:
        hand = [decay * s + (1 - decay) * w.double() for s, w in zip(hand, weights)]
    state = average.state_dict()
    assert list(state) == ["updates", "shadow"] and state["updates"] == 8
    assert list(state["shadow"]) == [name for name, p in model.named_parameters() if p.requires_grad]
    for shadow, expected in zip(state["shadow"].values(), hand):
        torch.testing.assert_close(shadow.double(), expected, rtol=0, atol=1e-6)

    # Validation ran on the averaged weights; the training weights came back bit for bit.
    (evaluated,) = recorder.evaluated
    for weights, shadow in zip(evaluated, state["shadow"].values()):
        assert torch.equal(weights, shadow)
    for parameter, trained in zip(_trainable(model), steps[-1]):
        assert torch.equal(parameter, trained)
    assert not all(torch.equal(p, s) for p, s in zip(_trainable(model), state["shadow"].values()))

    def validation_loss():
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in datamodule.val_dataloader():
                total += F.cross_entropy(model(batch.features, batch.lengths), batch.targets, reduction="sum").item()
                count += len(batch.targets)
        return total / count

    model.eval()
    with average.averaged_weights(model):
        averaged_loss = validation_loss()
    assert float(trainer.callback_metrics["val/loss"]) == pytest.approx(averaged_loss, rel=1e-5)
    assert validation_loss() != pytest.approx(averaged_loss, rel=1e-5)
    for parameter, trained in zip(_trainable(model), steps[-1]):
        assert torch.equal(parameter, trained)


def _recipes_fit(max_epochs, *, seed=0, checkpoint_dir=None, ckpt_path=None):
    pl.seed_everything(seed, verbose=False)
    model = LSTMClassifier(12, 9, hidden_size=8, learning_rate=0.01,
                           techniques=[Mixup(0.4), LabelSmoothing(0.1), WeightAverage(0.9)])
    options = {}
    if checkpoint_dir is not None:
        options = dict(enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=checkpoint_dir, save_last=True)])
    trainer = quiet_trainer(max_epochs=max_epochs, limit_val_batches=1, **options)
    trainer.fit(model, datamodule=_data(), ckpt_path=ckpt_path)
    return model


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resuming_continues_the_average_exactly(tmp_path):
    """Two epochs straight equal one epoch, a checkpoint written during training (so it must
    hold the training weights, not the averaged ones), and a resumed second epoch."""
    straight = _recipes_fit(2)
    _recipes_fit(1, checkpoint_dir=tmp_path)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)  # plain data only
    ema_state = saved["lstm_plugins"]["state"]["ema"]
    assert ema_state["updates"] == 8 and set(ema_state["shadow"]) == {n for n, _ in straight.named_parameters()}
    # A different seed: weights, the average and the random stream all come from the checkpoint.
    resumed = _recipes_fit(2, seed=123, checkpoint_dir=tmp_path, ckpt_path=tmp_path / "last.ckpt")

    for (name, expected), actual in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(expected, actual), name
    a, b = straight.techniques[2].state_dict(), resumed.techniques[2].state_dict()
    assert a["updates"] == b["updates"] == 16
    assert list(a["shadow"]) == list(b["shadow"])
    for name in a["shadow"]:
        assert torch.equal(a["shadow"][name], b["shadow"][name]), name


def test_weight_average_state_is_checked_on_loading():
    average = WeightAverage(0.9)
    assert average.state_dict() == {"updates": 0, "shadow": {}}
    with pytest.raises(ValueError, match="non-negative int"):
        average.load_state_dict({"updates": -1, "shadow": {}})
    with pytest.raises(ValueError, match="positive number of updates"):
        average.load_state_dict({"updates": 3, "shadow": {}})
    with pytest.raises(ValueError, match="map parameter names to tensors"):
        average.load_state_dict({"updates": 3, "shadow": {"head.bias": [0.0]}})

    # A stored average is matched to the model by name and shape when it is first used.
    small = LSTMClassifier(12, 9, hidden_size=4, techniques=[average])
    stored = {name: torch.zeros_like(p) for name, p in LSTMClassifier(12, 9, hidden_size=8).named_parameters()}
    average.load_state_dict({"updates": 3, "shadow": stored})
    with pytest.raises(ValueError, match="average of `lstm.weight_ih_l0` has shape"):
        average.on_train_step_end(small)
    del stored["head.bias"]
    average.load_state_dict({"updates": 3, "shadow": stored})
    with pytest.raises(ValueError, match="missing: head.bias"):
        average.on_evaluation_start(small)


@pytest.mark.slow
def test_training_weights_come_back_when_evaluation_fails():
    """A validation batch raises while the average is swapped in: the core's EvaluationGuard
    ends the evaluation, and the technique's on_evaluation_end puts the training weights back."""

    class FailingBatch(pl.Callback):
        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            self.evaluated = [p.detach().clone() for p in _trainable(pl_module)]
            raise RuntimeError("evaluation failed")

    torch.manual_seed(0)
    average, recorder, failing = WeightAverage(0.5), Recorder(), FailingBatch()
    model = LSTMClassifier(12, 9, hidden_size=8, learning_rate=0.01, techniques=[average, recorder])
    trainer = quiet_trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[failing]
    )
    with pytest.raises(RuntimeError, match="evaluation failed"):
        trainer.fit(model, datamodule=_data())
    assert any(isinstance(callback, EvaluationGuard) for callback in trainer.callbacks)
    assert average.updates == 2
    shadow = list(average.state_dict()["shadow"].values())
    for evaluated, averaged in zip(failing.evaluated, shadow):  # it failed with the average in
        assert torch.equal(evaluated, averaged)
    for parameter, trained in zip(_trainable(model), recorder.trajectory[-1]):
        assert torch.equal(parameter, trained)
    assert not all(torch.equal(p, s) for p, s in zip(_trainable(model), shadow))
    assert model.evaluating is None
