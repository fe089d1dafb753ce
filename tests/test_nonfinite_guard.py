"""The non-finite guard skips exactly the poisoned steps, with and without a loss scaler."""

import contextlib

import pytest
import torch
from conftest import quiet_trainer

from lstm_plugins import LSTMClassifier, Technique, hookimpl
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.plugins import GradientClipping, NonFiniteGuard, NonFiniteStepError


class Poison(Technique):
    """Test technique: makes the loss NaN on chosen optimizer steps; snapshots weights."""

    name = "poison"

    def __init__(self, steps):
        self.steps = set(steps)
        self.snapshots = []

    @hookimpl
    def loss_terms(self, model, task_loss):
        if model.trainer.global_step in self.steps:
            return {"poison": task_loss * float("nan")}
        return None

    @hookimpl
    def on_train_step_end(self, model):
        self.snapshots.append([p.detach().clone() for p in model.parameters()])


def _loss_scaling_only():
    from pytorch_lightning.plugins import MixedPrecision

    class Plugin(MixedPrecision):  # the GradScaler without autocast (no fp16 LSTM on CPU)
        def forward_context(self):
            return contextlib.nullcontext()

    return Plugin("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))


@pytest.mark.parametrize(
    "optimizer, scaled",
    [("adam", False), ("sgd", False), ("rmsprop", False), ("adam", True)],
    ids=["fused-adam", "fused-sgd", "host-rmsprop", "amp-scaler"],
)
def test_the_guard_skips_exactly_the_poisoned_step(optimizer, scaled):
    torch.manual_seed(0)
    poison = Poison(steps=[2])
    guard = NonFiniteGuard(max_consecutive_skips=3)
    model = LSTMClassifier(12, 9, optimizer=optimizer, learning_rate=0.01, techniques=[poison, GradientClipping(1.0), guard])
    initial = [p.detach().clone() for p in model.parameters()]
    trainer = quiet_trainer(max_steps=5, limit_val_batches=0, plugins=[_loss_scaling_only()] if scaled else [])
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    snapshots = [initial] + poison.snapshots
    for step in range(5):
        before, after = snapshots[step], snapshots[step + 1]
        unchanged = all(torch.equal(a, b) for a, b in zip(before, after))
        assert unchanged == (step == 2), f"step {step}"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert guard.skipped_steps == 1
    # Optimizer state is not polluted by the skipped step: later steps still move the weights.
    assert not all(torch.equal(a, b) for a, b in zip(snapshots[3], snapshots[5]))


@pytest.mark.parametrize("optimizer, latest_stop", [("rmsprop", 3), ("adam", 6)])
def test_the_guard_stops_after_k_consecutive_skips(optimizer, latest_stop):
    model = LSTMClassifier(12, 9, optimizer=optimizer, techniques=[Poison(steps=range(100)), NonFiniteGuard(max_consecutive_skips=3)])
    trainer = quiet_trainer(max_steps=20, limit_val_batches=0)
    with pytest.raises(NonFiniteStepError, match=r"stopped training at step \d+: \d+ consecutive optimizer steps had NaN or infinite"):
        trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    assert trainer.global_step <= latest_stop  # host path: at once; fused path: within K steps
    assert all(torch.isfinite(p).all() for p in model.parameters())


class PoisonFirstMicroBatch(Poison):
    """Test technique: a NaN loss term without gradient (finite gradients, NaN loss) on the first
    micro-batch of chosen optimizer steps."""

    name = "poison_first_micro_batch"

    @hookimpl
    def transform_batch(self, batch_index):
        self.first = batch_index % 2 == 0  # accumulating 2 micro-batches per step

    @hookimpl
    def loss_terms(self, model):
        if model.trainer.global_step in self.steps and self.first:
            return {"poison": torch.tensor(float("nan"))}
        return None


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_a_non_finite_loss_on_any_micro_batch_skips_the_step(optimizer):
    torch.manual_seed(0)
    poison, guard = PoisonFirstMicroBatch(steps=[1]), NonFiniteGuard()
    model = LSTMClassifier(12, 9, optimizer=optimizer, techniques=[poison, guard])
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0, accumulate_grad_batches=2)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    moved = [not all(torch.equal(a, b) for a, b in zip(before, after))
             for before, after in zip(poison.snapshots, poison.snapshots[1:])]
    assert moved == [False, True]  # step 1 (between snapshots 0 and 1) was skipped, step 2 was not
    assert guard.skipped_steps == 1


def test_guard_counters_are_checkpointed(tmp_path):
    guard = NonFiniteGuard()
    model = LSTMClassifier(12, 9, techniques=[Poison(steps=[0, 1]), guard])
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    checkpoint = torch.load(tmp_path / "run.ckpt", weights_only=True)
    assert checkpoint["lstm_plugins"]["state"]["nonfinite_guard"] == {"counters": [2, 0, 2]}
    restored = NonFiniteGuard()
    LSTMClassifier(12, 9, techniques=[restored]).on_load_checkpoint(checkpoint)
    assert restored.skipped_steps == 2
    with pytest.raises(ValueError, match="Expected `counters` to be"):
        NonFiniteGuard().load_state_dict({"counters": [1, 2, 0]})


def test_guard_argument():
    with pytest.raises(ValueError, match="Expected `max_consecutive_skips` to be a positive int, but got 0."):
        NonFiniteGuard(0)
