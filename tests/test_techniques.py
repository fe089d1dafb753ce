"""Each built-in technique, checked with numbers against a reference."""

import math

import pytest
import torch
from conftest import RecordingLogger, make_batch, quiet_trainer

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.plugins import Dropout, GradientClipping, GradientNorms, L2Penalty
from lstm_plugins.plugins.functional import dropout, gradient_clipping, gradient_norms, l2_penalty
from lstm_plugins.plugins.l2 import select_parameters
from lstm_plugins.toolkit import FastDropout


def _parameters_with_gradients(seed=0, scale=10.0):
    generator = torch.Generator().manual_seed(seed)
    parameters = [torch.zeros(shape, requires_grad=True) for shape in [(4, 3), (7,), (2, 2, 2)]]
    for parameter in parameters:
        parameter.grad = torch.randn(parameter.shape, generator=generator) * scale
    return parameters


def _reference_norm(gradients, p):
    flat = torch.cat([g.flatten() for g in gradients]).double()
    return flat.abs().max().item() if math.isinf(p) else flat.abs().pow(p).sum().pow(1 / p).item()


# --- gradient clipping ------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, math.inf])
def test_clipped_global_norm_equals_the_bound(norm_type):
    parameters = _parameters_with_gradients()
    before = [p.grad.clone() for p in parameters]
    expected_pre = _reference_norm(before, norm_type)
    pre_clip = gradient_clipping(parameters, 0.5, norm_type=norm_type)
    assert pre_clip.item() == pytest.approx(expected_pre, rel=1e-6)
    assert _reference_norm([p.grad for p in parameters], norm_type) == pytest.approx(0.5, abs=1e-6)
    # Clipping by norm rescales: the direction is unchanged.
    for old, new in zip(before, parameters):
        torch.testing.assert_close(new.grad, old * (0.5 / expected_pre), rtol=1e-5, atol=1e-7)


def test_gradients_under_the_bound_are_untouched():
    parameters = _parameters_with_gradients(scale=1e-3)
    before = [p.grad.clone() for p in parameters]
    gradient_clipping(parameters, 10.0)
    for old, parameter in zip(before, parameters):
        torch.testing.assert_close(parameter.grad, old)


def test_clip_by_value_clamps_each_element():
    parameters = _parameters_with_gradients()
    before = [p.grad.clone() for p in parameters]
    gradient_clipping(parameters, 0.25, mode="value")
    for old, parameter in zip(before, parameters):
        assert torch.equal(parameter.grad, old.clamp(-0.25, 0.25))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"threshold": -1}, "Expected `threshold` to be a positive float, but got -1.0."),
        ({"threshold": 0}, "Expected `threshold` to be a positive float, but got 0.0."),
        ({"mode": "both"}, "Expected `mode` to be one of 'norm', 'value', but got 'both'."),
        ({"norm_type": 0}, "Expected `norm_type` to be a positive float, but got 0.0."),
        ({"log_every_n_steps": 0}, "Expected `log_every_n_steps` to be a positive int or None, but got 0."),
    ],
)
def test_clipping_arguments_are_checked_at_construction(arguments, message):
    with pytest.raises(ValueError) as error:
        GradientClipping(**arguments)
    assert str(error.value) == message


def test_clipping_accepts_inf_from_a_config():
    assert GradientClipping(norm_type="inf").norm_type == math.inf


def test_two_clippers_are_refused_naming_both():
    with pytest.raises(ValueError, match="`gradient_clipping`.*`value_clip`.*`gradient_clipping` slot"):
        second = GradientClipping(0.1, mode="value")
        second.name = "value_clip"
        LSTMClassifier(12, 9, techniques=[GradientClipping(1.0), second])


def test_clipping_with_trainer_gradient_clip_val_is_refused_naming_both():
    model = LSTMClassifier(12, 9, techniques=[GradientClipping(1.0)])
    trainer = quiet_trainer(max_epochs=1, gradient_clip_val=0.5)
    with pytest.raises(ValueError, match=r"`gradient_clipping`.*`Trainer\(gradient_clip_val=0.5\)`"):
        trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=64))


class _RecordGradients:
    """Test helper: records gradient norms in each phase (a technique like any other)."""

    from lstm_plugins import hookimpl

    def __init__(self):
        self.observed, self.stepped = [], []

    @hookimpl
    def on_gradients_ready(self, model):
        self.observed.append(gradient_norms(model.named_parameters())["total"].item())

    @hookimpl
    def on_train_step_end(self, model):
        self.stepped.append(gradient_norms(model.named_parameters())["total"].item())


def test_fit_observes_before_clipping_and_logs_the_pre_clip_norm():
    recorder = _RecordGradients()
    clipper = GradientClipping(0.05, log_every_n_steps=1)
    monitor = GradientNorms(log_every_n_steps=1)
    model = LSTMClassifier(12, 9, techniques=[recorder, monitor, clipper])
    # Keep gradients after the step so the clipped norm can be read (zero_grad runs next step).
    model.optimizer_zero_grad = lambda epoch, batch_idx, optimizer: optimizer.zero_grad(set_to_none=False)
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    assert len(recorder.observed) == 3
    assert all(norm > 0.05 for norm in recorder.observed)
    assert recorder.stepped == pytest.approx([0.05] * 3, abs=1e-6)  # clipped to the bound
    logged = trainer.logged_metrics
    assert logged["grad_norm/total"].item() == pytest.approx(recorder.observed[-1], rel=1e-5)
    assert logged["gradient_clipping/pre_clip_norm"].item() == pytest.approx(recorder.observed[-1], rel=1e-5)


# --- dropout ----------------------------------------------------------------------------------


def test_dropout_masks_change_between_steps_and_vanish_in_eval():
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, num_layers=2, techniques=[Dropout(input=0.2, between_layers=0.3, output=0.5)])
    assert model.lstm.dropout == 0.3
    assert [type(m) for m in model.input_layers] == [FastDropout]
    assert [type(m) for m in model.output_layers] == [FastDropout]
    batch = make_batch([20, 11, 5, 17])
    model.train()
    first = model(batch.features, batch.lengths)
    second = model(batch.features, batch.lengths)
    assert not torch.allclose(first, second)
    mask_a = model.output_layers[0](torch.ones(1000))
    mask_b = model.output_layers[0](torch.ones(1000))
    assert not torch.equal(mask_a, mask_b)
    assert (mask_a == 0).float().mean().item() == pytest.approx(0.5, abs=0.06)
    model.eval()
    torch.testing.assert_close(model(batch.features, batch.lengths), model(batch.features, batch.lengths))
    plain = LSTMClassifier(12, 9, num_layers=2)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    torch.testing.assert_close(model(batch.features, batch.lengths), plain(batch.features, batch.lengths))


def test_between_layer_dropout_on_one_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="Expected `between_layers` to be 0 for a one-layer LSTM"):
        LSTMClassifier(12, 9, num_layers=1, techniques=[Dropout(between_layers=0.2)])


@pytest.mark.parametrize("name", ["input", "between_layers", "output"])
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_dropout_probabilities_must_be_in_zero_one(name, value):
    with pytest.raises(ValueError, match=rf"Expected `{name}` to be a float in \[0, 1\), but got {value}"):
        Dropout(**{name: value})


def test_dropout_function_face_matches_the_plugin():
    functional = LSTMClassifier(12, 9, num_layers=2)
    dropout(functional, input=0.1, between_layers=0.2, output=0.3)
    plugin = LSTMClassifier(12, 9, num_layers=2, techniques=[Dropout(0.1, 0.2, 0.3)])
    assert repr(functional.input_layers) == repr(plugin.input_layers)
    assert repr(functional.output_layers) == repr(plugin.output_layers)
    assert functional.lstm.dropout == plugin.lstm.dropout == 0.2


# --- L2 ---------------------------------------------------------------------------------------


def test_l2_term_equals_lambda_sum_of_squares_over_selected_parameters(batch):
    model = LSTMClassifier(12, 9, num_layers=2, techniques=[L2Penalty(weight=0.01)])
    weights = [p for name, p in model.named_parameters() if "bias" not in name]
    assert len(weights) == 5  # 2 LSTM matrices x 2 layers + the head's weight
    expected = 0.01 * sum((p.double() ** 2).sum() for p in weights)
    output = model.encode(batch.features, batch.lengths)
    terms = model._hook.loss_terms(model=model, batch=batch, output=output, task_loss=torch.tensor(0.0))
    assert terms[0]["l2"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_l2_selection_by_pattern_and_biases():
    model = LSTMClassifier(12, 9)
    named = list(model.named_parameters())
    assert [n for n, _ in select_parameters(named, patterns=["lstm.*"])] == ["lstm.weight_ih_l0", "lstm.weight_hh_l0"]
    with_biases = [n for n, _ in select_parameters(named, include_biases=True)]
    assert with_biases == [n for n, _ in named]
    only_head = [p for _, p in select_parameters(named, patterns=["head.weight"])]
    assert l2_penalty(only_head, 2.0).item() == pytest.approx(2.0 * model.head.weight.pow(2).sum().item(), rel=1e-6)


def test_l2_with_a_pattern_matching_nothing_is_an_error():
    # Each pattern must match a parameter (toolkit.match_names), named in the message.
    model = LSTMClassifier(12, 9, techniques=[L2Penalty(parameters=["encoder.*"])])
    with pytest.raises(ValueError, match=r"^Technique `l2`: `parameters` pattern\(s\) 'encoder\.\*' match no parameter"):
        model._hook.on_fit_setup(model=model, trainer=None)
    # Patterns that match only biases, which are left out, select nothing.
    model = LSTMClassifier(12, 9, techniques=[L2Penalty(parameters=["lstm.bias_*"])])
    with pytest.raises(ValueError, match="^Technique `l2` selects no parameter: every parameter it covers is a bias"):
        model._hook.on_fit_setup(model=model, trainer=None)


def test_l2_term_is_in_the_optimized_loss_and_logged_separately():
    model = LSTMClassifier(12, 9, techniques=[L2Penalty(weight=0.5)])
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, log_every_n_steps=1)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    logged = trainer.logged_metrics
    assert logged["train/loss"].item() == pytest.approx(
        logged["train/task_loss"].item() + logged["train/l2"].item(), rel=1e-6
    )
    assert logged["train/l2"].item() > 0.1


@pytest.mark.parametrize("weight", [0, -1e-3])
def test_l2_weight_must_be_positive(weight):
    with pytest.raises(ValueError, match="Expected `weight` to be a positive float"):
        L2Penalty(weight=weight)


# --- gradient-norm monitoring -----------------------------------------------------------------


def test_gradient_norms_total_and_per_layer_match_reference(batch):
    model = LSTMClassifier(12, 9, num_layers=2, bidirectional=True)
    torch.nn.functional.cross_entropy(model(batch.features, batch.lengths), batch.targets).backward()
    norms = gradient_norms(model.named_parameters())
    named = dict(model.named_parameters())
    assert set(norms) == {"total", "lstm.layer0", "lstm.layer0_reverse", "lstm.layer1", "lstm.layer1_reverse", "head"}
    assert norms["total"].item() == pytest.approx(_reference_norm([p.grad for p in named.values()], 2), rel=1e-5)
    layer1 = [named[f"lstm.{k}_l1"].grad for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert norms["lstm.layer1"].item() == pytest.approx(_reference_norm(layer1, 2), rel=1e-5)


def test_gradient_norms_are_logged_only_on_the_interval():
    monitor = GradientNorms(log_every_n_steps=3)
    model = LSTMClassifier(12, 9, techniques=[monitor])
    logger = RecordingLogger()
    trainer = quiet_trainer(max_steps=7, limit_val_batches=0, logger=logger, log_every_n_steps=5)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert logger.steps_with("grad_norm/") == [2, 5]  # Lightning's rows: steps N - 1, 2N - 1


# --- AMP loss scaling -------------------------------------------------------------------------


class _LossScalingOnly:
    """Lightning's mixed precision with its GradScaler but without autocast: oneDNN has no
    float16 LSTM training kernel on CPU, and the loss scaling is what this test is about."""

    @staticmethod
    def plugin(scale):
        import contextlib

        from pytorch_lightning.plugins import MixedPrecision

        class Plugin(MixedPrecision):
            def forward_context(self):
                return contextlib.nullcontext()

        return Plugin("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=scale))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_gradients_are_observed_and_clipped_after_amp_unscaling(optimizer):
    """With a loss scale of 1024, observers and clippers still see the true gradients."""
    runs = {}
    for scaled in (False, True):
        torch.manual_seed(0)
        recorder = _RecordGradients()
        model = LSTMClassifier(12, 9, optimizer=optimizer, techniques=[recorder, GradientClipping(0.05, log_every_n_steps=1)])
        plugins = [_LossScalingOnly.plugin(1024.0)] if scaled else []
        trainer = quiet_trainer(max_steps=2, limit_val_batches=0, plugins=plugins)
        trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
        if scaled:
            assert trainer.precision_plugin.scaler.get_scale() == 1024.0
        runs[scaled] = (recorder.observed, trainer.logged_metrics["gradient_clipping/pre_clip_norm"].item())
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-4)
    assert runs[True][1] == pytest.approx(runs[False][1], rel=1e-4)
    assert runs[True][0][0] < 10  # not multiplied by the loss scale
