"""The hook API: validation at registration, declared order, every phase firing, the registry."""

import pickle

import pytest
import torch
from conftest import make_batch, quiet_trainer
from pytorch_lightning.callbacks import Callback
from torchmetrics.classification import MulticlassAccuracy

from lstm_plugins import LSTMClassifier, Technique, TechniqueValidationError, available_techniques, hookimpl
from lstm_plugins.techniques import resolve_technique
from lstm_plugins.data import JapaneseVowelsDataModule


class Recorder(Technique):
    """Records every hook it receives into a shared journal."""

    def __init__(self, label: str, journal: list) -> None:
        self.label = label
        self.journal = journal
        self.name = label

    def _note(self, hook):
        self.journal.append((hook, self.label))

    @hookimpl
    def configure_network(self, model):
        self._note("configure_network")

    @hookimpl
    def on_fit_setup(self, model, trainer):
        self._note("on_fit_setup")

    @hookimpl
    def configure_parameter_groups(self, parameter_groups):
        self._note("configure_parameter_groups")

    @hookimpl
    def on_gradients_ready(self):
        self._note("on_gradients_ready")

    @hookimpl
    def transform_gradients(self):
        self._note("transform_gradients")

    @hookimpl
    def transform_batch(self, batch):
        self._note("transform_batch")

    @hookimpl
    def loss_terms(self):
        self._note("loss_terms")

    @hookimpl
    def on_loss_computed(self, loss):
        self._note("on_loss_computed")

    @hookimpl
    def on_train_step_end(self, step):
        self._note("on_train_step_end")

    @hookimpl
    def on_train_epoch_end(self):
        self._note("on_train_epoch_end")

    @hookimpl
    def on_evaluation_start(self, stage):
        self._note(f"on_evaluation_start:{stage}")

    @hookimpl
    def on_evaluation_end(self, stage):
        self._note(f"on_evaluation_end:{stage}")

    @hookimpl
    def on_save_checkpoint(self, checkpoint):
        self._note("on_save_checkpoint")

    @hookimpl
    def on_load_checkpoint(self, checkpoint):
        self._note("on_load_checkpoint")


def test_every_phase_fires_in_training_order_and_techniques_in_listed_order(tmp_path):
    journal: list = []
    model = LSTMClassifier(12, 9, techniques=[Recorder("first", journal), Recorder("second", journal)])
    assert journal == [("configure_network", "first"), ("configure_network", "second")]
    journal.clear()
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, enable_checkpointing=True, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    hooks = [hook for hook, label in journal if label == "first"]
    assert hooks == [
        "on_fit_setup",
        "configure_parameter_groups",
        "transform_batch",
        "loss_terms",
        "on_loss_computed",
        "on_gradients_ready",
        "transform_gradients",
        "on_train_step_end",
        "on_train_epoch_end",
        "on_save_checkpoint",
    ]
    # Within each hook the first listed technique is called first.
    for hook in hooks:
        assert [label for h, label in journal if h == hook] == ["first", "second"]
    journal.clear()
    trainer.test(model, datamodule=JapaneseVowelsDataModule(batch_size=32), verbose=False)
    assert [hook for hook, label in journal if label == "first"] == ["on_evaluation_start:test", "on_evaluation_end:test"]


def test_tryfirst_overrides_listed_order():
    journal: list = []

    class Early(Technique):
        name = "early"

        @hookimpl(tryfirst=True)
        def configure_network(self, model):
            journal.append("early")

    class Late(Technique):
        name = "late"

        @hookimpl
        def configure_network(self, model):
            journal.append("late")

    LSTMClassifier(12, 9, techniques=[Late(), Early()])
    assert journal == ["early", "late"]


def test_unknown_hook_is_refused_with_the_technique_name():
    class Typo:
        name = "typo_technique"

        @hookimpl
        def on_gradient_ready(self, model):  # missing "s"
            pass

    with pytest.raises(TechniqueValidationError, match=r"`typo_technique` implements unknown hook 'on_gradient_ready'. Known hooks: .*on_gradients_ready"):
        LSTMClassifier(12, 9, techniques=[Typo()])


def test_wrong_signature_is_refused_with_the_technique_name():
    class WrongArguments:
        name = "wrong_arguments"

        @hookimpl
        def loss_terms(self, model, logits):
            return None

    with pytest.raises(TechniqueValidationError, match=r"Technique `wrong_arguments`: hook `loss_terms` asks for 'logits', which the hook does not provide. It provides: model, batch, output, task_loss."):
        LSTMClassifier(12, 9, techniques=[WrongArguments()])


def test_a_technique_without_hooks_is_refused():
    class Forgotten:
        def loss_terms(self, model):  # not decorated
            return {}

    with pytest.raises(TechniqueValidationError, match="`Forgotten` .* implements no hook"):
        LSTMClassifier(12, 9, techniques=[Forgotten()])


def test_a_technique_given_twice_is_refused():
    with pytest.raises(TechniqueValidationError, match="Technique `l2` is given twice"):
        LSTMClassifier(12, 9, techniques=["l2", {"l2": {"weight": 0.1}}])


def test_a_class_instead_of_an_instance_is_refused():
    from lstm_plugins.plugins import Dropout

    with pytest.raises(TypeError, match=r"instantiate it: Dropout\(...\)"):
        LSTMClassifier(12, 9, techniques=[Dropout])


def test_each_model_owns_its_plugin_manager():
    first = LSTMClassifier(12, 9, techniques=["l2"])
    second = LSTMClassifier(12, 9, techniques=["grad_norm"])
    assert first.plugin_manager is not second.plugin_manager
    assert [type(t).__name__ for t in first.plugin_manager.get_plugins()] == ["L2Penalty"]
    assert [type(t).__name__ for t in second.plugin_manager.get_plugins()] == ["GradientNorms"]
    assert LSTMClassifier(12, 9).plugin_manager.get_plugins() == set()


def test_loss_terms_are_summed_into_the_loss_and_duplicates_refused(batch):
    class Constant(Technique):
        def __init__(self, term: str, value: float) -> None:
            self.term, self.value = term, value
            self.name = f"constant_{term}_{value}"

        @hookimpl
        def loss_terms(self, task_loss):
            return {self.term: torch.tensor(self.value)}

    model = LSTMClassifier(12, 9, techniques=[Constant("a", 1.5), Constant("b", 2.0)])
    loss = model.training_step(batch, 0)
    task = torch.nn.functional.cross_entropy(model(batch.features, batch.lengths), batch.targets)
    assert loss.item() == pytest.approx(task.item() + 3.5, rel=1e-6)
    clash = LSTMClassifier(12, 9, techniques=[Constant("a", 1.0), Constant("a", 2.0)])
    with pytest.raises(ValueError, match="Two techniques return a loss term named `a`"):
        clash.training_step(batch, 0)


def test_parameter_groups_metrics_and_callbacks_are_contributed():
    class Marker(Callback):
        pass

    class Everything(Technique):
        name = "everything"

        @hookimpl
        def configure_parameter_groups(self, parameter_groups):
            group = parameter_groups.pop()
            biases = [i for i, n in enumerate(group["names"]) if "bias" in n]
            parameter_groups.append({"params": [p for i, p in enumerate(group["params"]) if i not in biases], "names": []})
            parameter_groups.append({"params": [group["params"][i] for i in biases], "names": [], "lr": 0.5})

        @hookimpl
        def configure_metrics(self):
            return {"top3": MulticlassAccuracy(9, top_k=3)}

        @hookimpl
        def configure_callbacks(self):
            return Marker()

    model = LSTMClassifier(12, 9, techniques=[Everything()])
    optimizer = model.configure_optimizers()
    assert [len(g["params"]) for g in optimizer.param_groups] == [3, 3]
    assert optimizer.param_groups[1]["lr"] == 0.5
    assert "top3" in model.test_metrics.keys(keep_base=True)
    from lstm_plugins.model._evaluation import EvaluationGuard
    from lstm_plugins.training import FlushDenormals

    # The core's own (the evaluation guard, denormal flushing), then what techniques contribute.
    assert [type(c) for c in model.configure_callbacks()] == [EvaluationGuard, FlushDenormals, Marker]


def test_optimizer_is_fused_by_default_on_cpu():
    optimizer = LSTMClassifier(12, 9).configure_optimizers()
    assert optimizer.defaults.get("fused") is True


# --- registry ---------------------------------------------------------------------------------


def test_registry_lists_the_built_ins_with_their_package():
    listing = available_techniques()
    for name in ("gradient_clipping", "dropout", "l2", "grad_norm"):
        assert listing[name].distribution.startswith("lstm-plugins ")
        assert listing[name].target.startswith("lstm_plugins.plugins.")
        assert listing[name].description and listing[name].error is None


def test_an_installed_technique_is_available_but_not_active():
    assert "l2" in available_techniques()
    assert LSTMClassifier(12, 9).techniques == ()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown technique `dropuot`. Known techniques: .*dropout.*grad_norm.*gradient_clipping.*l2"):
        resolve_technique("dropuot")


def test_block_list_disables_a_name(monkeypatch):
    monkeypatch.setenv("LSTM_PLUGINS_BLOCK", "l2, dropout")
    with pytest.raises(ValueError, match="Technique `l2` is blocked by the environment variable LSTM_PLUGINS_BLOCK"):
        LSTMClassifier(12, 9, techniques=["l2"])
    assert available_techniques()["dropout"].blocked


@pytest.mark.parametrize(
    "spec, error",
    [
        ({"l2": {"weight": -1}}, "Expected `weight` to be a positive float, but got -1.0."),
        ({"l2": {"wieght": 1}}, "Technique `l2`: .*unexpected keyword argument 'wieght'"),
        ({"name": "l2", "weight": 0.1, "extra": 1}, "Technique `l2`: .*unexpected keyword argument 'extra'"),
        ({"l2": 0.1}, "Expected the arguments of technique `l2` to be a mapping, but got 0.1."),
        ({"l2": {}, "dropout": {}}, "Expected a technique spec to be a name"),
    ],
)
def test_bad_technique_specs_fail_at_construction(spec, error):
    with pytest.raises((ValueError, TypeError), match=error):
        LSTMClassifier(12, 9, techniques=[spec])


# --- model arguments, checkpoints, pickling ---------------------------------------------------


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"input_size": 0}, "Expected `input_size` to be a positive int, but got 0."),
        ({"num_classes": 1}, "Expected `num_classes` to be at least 2, but got 1."),
        ({"hidden_size": 2.5}, "Expected `hidden_size` to be a positive int, but got 2.5."),
        ({"num_layers": -1}, "Expected `num_layers` to be a positive int, but got -1."),
        ({"bidirectional": "yes"}, "Expected `bidirectional` to be a bool, but got 'yes'."),
        ({"optimizer": "adagrad"}, "Expected `optimizer` to be one of 'adam', 'adamw', 'sgd', 'rmsprop', but got 'adagrad'."),
        ({"learning_rate": -0.1}, "Expected `learning_rate` to be a positive float, but got -0.1."),
        ({"techniques": "l2"}, "Expected `techniques` to be a list of techniques"),
    ],
)
def test_model_arguments_are_checked_at_construction(arguments, message):
    options = {"input_size": 12, "num_classes": 9, **arguments}
    with pytest.raises((ValueError, TypeError)) as error:
        LSTMClassifier(**options)
    assert str(error.value).startswith(message)


def test_wrong_feature_count_is_named(batch):
    model = LSTMClassifier(13, 9)
    with pytest.raises(ValueError, match=r"Expected `features` of shape \(batch, time, 13\), but got \(8, 29, 12\)"):
        model(batch.features, batch.lengths)


def test_data_module_mismatch_is_refused_before_training():
    trainer = quiet_trainer(max_epochs=1)
    with pytest.raises(ValueError, match="`num_classes`=5 but the data module has `num_classes`=9"):
        trainer.fit(LSTMClassifier(12, 5), datamodule=JapaneseVowelsDataModule())
    with pytest.raises(ValueError, match="`input_size`=10 but the data module has `num_features`=12"):
        trainer.fit(LSTMClassifier(10, 9), datamodule=JapaneseVowelsDataModule())


def test_model_and_stack_pickle_for_spawn(batch):
    model = LSTMClassifier(12, 9, num_layers=2, techniques=["gradient_clipping", {"dropout": {"output": 0.2}}, "l2", "grad_norm"]).eval()
    clone = pickle.loads(pickle.dumps(model))
    torch.testing.assert_close(clone(batch.features, batch.lengths), model(batch.features, batch.lengths))
    assert [type(t).__name__ for t in clone.plugin_manager.get_plugins()] != []
    assert clone._hook.loss_terms(model=clone, batch=batch, output=clone.encode(batch.features, batch.lengths), task_loss=None)


def test_checkpoint_rebuilds_the_stack_by_name(tmp_path, batch):
    stack = [{"gradient_clipping": {"threshold": 0.5}}, {"dropout": {"output": 0.2}}, "l2"]
    model = LSTMClassifier(12, 9, bidirectional=True, techniques=stack)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0, enable_checkpointing=True, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["lstm_plugins"]["techniques"] == ["gradient_clipping", "dropout", "l2"]
    restored = LSTMClassifier.load_from_checkpoint(path, weights_only=True)
    assert [repr(t) for t in restored.techniques] == [repr(t) for t in model.techniques]
    model.eval(), restored.eval()
    torch.testing.assert_close(restored(batch.features, batch.lengths), model(batch.features, batch.lengths))


class _Returns(Technique):
    """Returns a value from loss_terms (or None), optionally tryfirst/trylast, optionally failing."""

    def __init__(self, name, value, fail=False):
        self.name, self.value, self.fail = name, value, fail

    @hookimpl
    def loss_terms(self, task_loss):
        if self.fail:
            raise KeyError(f"{self.name} failed")
        return self.value


class _First(_Returns):
    @hookimpl(tryfirst=True)
    def loss_terms(self, task_loss):
        return self.value


class _Last(_Returns):
    @hookimpl(trylast=True)
    def loss_terms(self, task_loss):
        return self.value


class _Wrapping(Technique):
    name = "wrapping"

    def __init__(self):
        self.seen = []

    @hookimpl(wrapper=True)
    def loss_terms(self):
        results = yield
        self.seen.append(list(results))
        return results


def _both_ways(model):
    """The model's direct hook calls and pluggy's own dispatch, for the same arguments."""
    arguments = dict(model=model, batch=None, output=None, task_loss=torch.tensor(1.0))
    return model._hook.loss_terms(**arguments), model.plugin_manager.hook.loss_terms(**arguments)


def test_direct_hook_calls_follow_pluggys_order_and_drop_none_results():
    stack = [_Returns("a", {"a": 1}), _Last("z", {"z": 1}), _Returns("none", None), _First("f", {"f": 1}),
             _Returns("b", {"b": 1})]
    direct, through_pluggy = _both_ways(LSTMClassifier(12, 9, techniques=stack))
    assert direct == through_pluggy == [{"f": 1}, {"a": 1}, {"b": 1}, {"z": 1}]
    empty = LSTMClassifier(12, 9)
    assert _both_ways(empty) == ([], [])


def test_wrappers_monitoring_and_late_registration_go_through_pluggy():
    wrapping = _Wrapping()
    model = LSTMClassifier(12, 9, techniques=[_Returns("a", {"a": 1}), wrapping])
    direct, _ = _both_ways(model)
    assert direct == [{"a": 1}] and wrapping.seen[0] == [{"a": 1}]

    model = LSTMClassifier(12, 9, techniques=[_Returns("a", {"a": 1})])
    calls = []
    undo = model.plugin_manager.add_hookcall_monitoring(lambda name, *_: calls.append(name), lambda *_: None)
    model._hook.loss_terms(model=model, batch=None, output=None, task_loss=None)
    assert calls == ["loss_terms"]
    undo()

    model.plugin_manager.register(_Returns("late", {"late": 1}), name="late")
    assert model._hook.loss_terms(model=model, batch=None, output=None, task_loss=None) == [{"late": 1}, {"a": 1}]
    model.plugin_manager.unregister(name="late")
    assert model._hook.loss_terms(model=model, batch=None, output=None, task_loss=None) == [{"a": 1}]


@pytest.mark.parametrize("with_wrapper", [False, True])
def test_an_exception_names_the_technique_that_raised_it(with_wrapper):
    stack = [_Returns("fine", {"a": 1}), _Returns("broken", None, fail=True)] + ([_Wrapping()] if with_wrapper else [])
    model = LSTMClassifier(12, 9, techniques=stack)
    with pytest.raises(KeyError, match="broken failed") as error:
        model._hook.loss_terms(model=model, batch=None, output=None, task_loss=None)
    assert error.value.__notes__ == ["(raised by technique `broken` in hook `loss_terms`)"]


def test_cached_named_parameters_are_the_models_and_rebuilt_at_each_fit():
    model = LSTMClassifier(12, 9, hidden_size=8)
    cached = model.cached_named_parameters()
    assert cached is model.cached_named_parameters()
    assert [(n, id(p)) for n, p in cached] == [(n, id(p)) for n, p in model.named_parameters()]
    model.extra = torch.nn.Linear(2, 2)  # a module added after the first call...
    assert "extra.weight" not in dict(model.cached_named_parameters())
    quiet_trainer(max_steps=1, limit_val_batches=0).fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    assert "extra.weight" in dict(model.cached_named_parameters())  # ...is seen from the next fit on
    clone = pickle.loads(pickle.dumps(model))
    assert [n for n, _ in clone.cached_named_parameters()] == [n for n, _ in clone.named_parameters()]
    assert all(p is q for (_, p), (_, q) in zip(clone.cached_named_parameters(), clone.named_parameters()))


def test_a_gradient_transform_registered_late_takes_over_clipping():
    class Zeroing(Technique):
        name = "zeroing"

        @hookimpl
        def transform_gradients(self, model):
            for parameter in model.parameters():
                if parameter.grad is not None:
                    parameter.grad.zero_()

    model = LSTMClassifier(12, 9, hidden_size=8)
    assert not model.plugin_manager.hook_calls.implemented("transform_gradients")
    model.plugin_manager.register(Zeroing(), name="zeroing")
    assert model.plugin_manager.hook_calls.implemented("transform_gradients")
    before = [p.detach().clone() for p in model.parameters()]
    quiet_trainer(max_steps=2, limit_val_batches=0, gradient_clip_val=None).fit(
        model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # zero gradients: Adam does not move
