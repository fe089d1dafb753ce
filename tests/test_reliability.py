"""Errors name their source; checkpoints load safely; third-party entry points can be turned off."""

import sys

import pytest
import torch
from conftest import quiet_trainer

from lstm_plugins import LSTMClassifier, Technique, available_techniques, hookimpl
from lstm_plugins.techniques import resolve_technique
from lstm_plugins.data import JapaneseVowelsDataModule


class Boom(Technique):
    name = "boom"

    @hookimpl
    def loss_terms(self, model):
        if model.trainer.global_step == 1:
            raise RuntimeError("kaput")


def test_an_exception_in_a_hook_names_the_technique_and_the_hook():
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0)
    with pytest.raises(RuntimeError, match="kaput") as error:
        trainer.fit(LSTMClassifier(12, 9, techniques=[Boom()]), datamodule=JapaneseVowelsDataModule(batch_size=32))
    assert "(raised by technique `boom` in hook `loss_terms`)" in error.value.__notes__


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/lstm_plugins_pwned_by_checkpoint",))


def test_a_checkpoint_crafted_to_run_code_does_not_run_it(tmp_path):
    import os

    marker = "/tmp/lstm_plugins_pwned_by_checkpoint"
    if os.path.exists(marker):
        os.remove(marker)
    model = LSTMClassifier(12, 9)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    path = tmp_path / "crafted.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["lstm_plugins"]["state"]["evil"] = _Payload()
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"crafted\.ckpt' holds a pickled `(posix|os|nt)\.system`"):
        LSTMClassifier.load_from_checkpoint(path)
    assert not os.path.exists(marker)


def test_a_checkpoint_whose_technique_is_missing_names_it(tmp_path):
    model = LSTMClassifier(12, 9, techniques=["l2"])
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["techniques"].append({"name": "uninstalled_technique", "strength": 2})
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="Unknown technique `uninstalled_technique`. Known techniques:"):
        LSTMClassifier.load_from_checkpoint(path)


def test_third_party_entry_points_can_be_turned_off(monkeypatch, tmp_path):
    broken = tmp_path / "broken_technique-1.0.dist-info"
    broken.mkdir()
    (broken / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-technique\nVersion: 1.0\n")
    (broken / "entry_points.txt").write_text("[lstm_plugins]\nbroken = broken_technique_module_that_does_not_exist:Broken\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    listing = available_techniques()
    assert listing["broken"].error.startswith("ModuleNotFoundError: No module named 'broken_technique_module")
    assert listing["broken"].distribution == "broken-technique 1.0"
    assert listing["l2"].error is None  # one broken package breaks nothing else
    with pytest.raises(ImportError, match=r"Technique `broken` .*from broken-technique 1.0\) failed to load"):
        resolve_technique("broken")
    monkeypatch.setenv("LSTM_PLUGINS_DISABLE_ENTRY_POINTS", "1")
    listing = available_techniques()
    assert "broken" not in listing and "l2" in listing  # built-ins stay available
