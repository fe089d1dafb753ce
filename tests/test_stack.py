"""The whole built-in stack at once: declared order, fused kernel, no warnings, exact resume."""

import warnings
from pathlib import Path

import pytorch_lightning as pl
import pytest
import torch
from conftest import quiet_trainer
from pytorch_lightning.callbacks import Callback
from torch.profiler import ProfilerActivity, profile

import lstm_plugins
from lstm_plugins import LSTMClassifier
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.plugins import AutoClipping, GradientClipping, GradientNorms, NonFiniteGuard
from stacks import full_stack

PACKAGE_DIRS = (str(Path(lstm_plugins.__file__).parent), str(Path(lstm_plugins.plugins.__file__).parent))




def full_model(**options):
    return LSTMClassifier(12, 9, hidden_size=16, num_layers=2, bidirectional=True, optimizer="adamw",
                          learning_rate=0.01, techniques=full_stack(**options))


def test_one_step_acts_in_the_declared_order(monkeypatch):
    """observe -> guard -> clip -> optimizer step, whatever order the techniques are listed in."""
    import lstm_plugins.plugins.grad_norm as grad_norm
    import lstm_plugins.plugins.gradient_clipping as gradient_clipping
    import lstm_plugins.plugins.nonfinite_guard as nonfinite_guard

    journal = []

    def recorded(module, name, label):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            journal.append(label)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    recorded(grad_norm, "gradient_norms", "observe")
    recorded(nonfinite_guard, "non_finite_guard", "guard")
    recorded(gradient_clipping, "clip_gradients_by_norm", "clip")

    class RecordStep(Callback):
        def on_train_start(self, trainer, pl_module):
            trainer.optimizers[0].register_step_post_hook(lambda *_: journal.append("step"))

    # Listed clip, guard, observe: the phases, not the listing, decide the order.
    model = LSTMClassifier(12, 9, techniques=[GradientClipping(1.0), NonFiniteGuard(), GradientNorms(log_every_n_steps=1)])
    quiet_trainer(max_steps=2, limit_val_batches=0, callbacks=[RecordStep()]).fit(
        model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    assert journal == ["observe", "guard", "clip", "step"] * 2


def test_the_full_stack_keeps_the_fused_kernel_and_emits_no_warning():
    torch.manual_seed(0)
    model = full_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            quiet_trainer(max_steps=3, limit_val_batches=0, log_every_n_steps=1).fit(
                model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    ours = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if w.filename.startswith(PACKAGE_DIRS)]
    assert ours == []
    lstm_calls = [event for event in prof.events() if event.name == "aten::lstm"]
    assert len(lstm_calls) >= 3 * 4  # 3 steps x 2 layers x 2 directions
    for call in lstm_calls:
        assert "aten::mkldnn_rnn_layer" in {child.name for child in call.cpu_children}


def test_conflicting_stacks_are_refused_naming_both():
    with pytest.raises(ValueError, match="`auto_clipping`.*`gradient_clipping`.*`gradient_clipping` slot"):
        LSTMClassifier(12, 9, techniques=[AutoClipping(), GradientClipping()])
    trainer = quiet_trainer(max_epochs=1, gradient_clip_val=1.0)
    with pytest.raises(ValueError, match=r"`auto_clipping`.*`Trainer\(gradient_clip_val=1.0\)`"):
        trainer.fit(LSTMClassifier(12, 9, techniques=[AutoClipping()]), datamodule=JapaneseVowelsDataModule())


def _fit(tmp_path: Path, max_epochs: int, resume_from: Path | None = None):
    pl.seed_everything(0, verbose=False)
    model = full_model()
    datamodule = JapaneseVowelsDataModule(batch_size=32, seed=0)
    trainer = quiet_trainer(max_epochs=max_epochs, default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    return model, trainer


def test_resuming_after_an_epoch_equals_an_uninterrupted_run(tmp_path):
    uninterrupted, _ = _fit(tmp_path / "a", max_epochs=3)
    first_leg, trainer = _fit(tmp_path / "b", max_epochs=1)
    checkpoint = tmp_path / "epoch1.ckpt"
    trainer.save_checkpoint(checkpoint)
    saved = torch.load(checkpoint, weights_only=True)  # plain data only
    assert set(saved["lstm_plugins"]["state"]) >= {"auto_clipping", "exploding_gradients", "nonfinite_guard"}
    resumed, _ = _fit(tmp_path / "c", max_epochs=3, resume_from=checkpoint)
    for (name, expected), actual in zip(uninterrupted.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(expected, actual), name
    clip_a, clip_b = uninterrupted.techniques[-1], resumed.techniques[-1]
    assert torch.equal(clip_a.history.values(), clip_b.history.values())
