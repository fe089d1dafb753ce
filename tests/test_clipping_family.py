"""The clipping family: adaptive (AGC), automatic (AutoClip) and global clipping, checked with
numbers against independent references, in real ``Trainer.fit`` runs and across a resume."""

import math

import numpy as np
import pytest
import torch
from conftest import RecordingLogger, quiet_trainer

from lstm_plugins import LSTMClassifier, hookimpl, toolkit
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.plugins.adaptive_clipping import AdaptiveGradientClipping, adaptive_gradient_clipping, unitwise_norm
from lstm_plugins.plugins.auto_clipping import (
    AutoClipping,
    GradientNormHistory,
    auto_clipping,
    norm_percentile,
    scale_gradients_to_norm,
)
from lstm_plugins.plugins.gradient_clipping import GradientClipping, gradient_clipping


def _data():
    return JapaneseVowelsDataModule(batch_size=32)


class _Recorder:
    """Records, each optimizer step, the weights and gradients before and after the transform."""

    def __init__(self):
        self.weights, self.before, self.after, self.norms = [], [], [], []

    @hookimpl
    def on_gradients_ready(self, model):
        named = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
        self.weights.append({n: p.detach().clone() for n, p in named})
        self.before.append({n: p.grad.clone() for n, p in named})
        self.norms.append(toolkit.gradient_norms(named, per_layer=False)["total"].item())

    @hookimpl
    def on_train_step_end(self, model):
        # The optimizer step leaves .grad alone; the next step's zero_grad is postponed below.
        self.after.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


def _fit(techniques, recorder=None, **trainer_options):
    torch.manual_seed(0)
    stack = ([recorder] if recorder is not None else []) + list(techniques)
    model = LSTMClassifier(12, 9, hidden_size=16, techniques=stack)
    model.optimizer_zero_grad = lambda epoch, batch_idx, optimizer: optimizer.zero_grad(set_to_none=False)
    ckpt_path = trainer_options.pop("ckpt_path", None)
    options = dict(max_steps=5, limit_val_batches=0, log_every_n_steps=1)
    options.update(trainer_options)
    trainer = quiet_trainer(**options)
    trainer.fit(model, datamodule=_data(), ckpt_path=ckpt_path)
    return model, trainer


# --- adaptive gradient clipping ---------------------------------------------------------------


def _reference_agc(weight, gradient, clipping, eps):
    """AGC unit by unit in float64, from the paper's formula: a loop, no broadcasting tricks."""
    weight, gradient = weight.double(), gradient.double().clone()
    units = range(weight.shape[0]) if weight.ndim > 1 else [None]
    for unit in units:
        w = weight if unit is None else weight[unit]
        g = gradient if unit is None else gradient[unit]
        w_norm = math.sqrt(sum(x * x for x in w.flatten().tolist()))
        g_norm = math.sqrt(sum(x * x for x in g.flatten().tolist()))
        bound = clipping * max(w_norm, eps)
        if g_norm > bound:
            g.mul_(bound / max(g_norm, 1e-6))
    return gradient


def _agc_parameters():
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(6, 4, generator=generator)
    weight[2] = 0.0  # a zero row: its bound is clipping * eps
    conv = torch.randn(3, 2, 5, generator=generator)
    bias = torch.randn(6, generator=generator)
    scalar = torch.tensor(2.0)
    parameters = [torch.nn.Parameter(t) for t in (weight, conv, bias, scalar)]
    grad_scales = [torch.tensor([[1.0], [1e-4], [1.0], [0.03], [1e-5], [0.5]]), 0.02, 1e-4, 1.0]
    for parameter, scale in zip(parameters, grad_scales):
        parameter.grad = torch.randn(parameter.shape, generator=generator) * scale
    return parameters


@pytest.mark.parametrize("clipping, eps", [(0.01, 1e-3), (0.1, 0.5)])
def test_agc_clips_each_unit_by_its_formula(clipping, eps):
    parameters = _agc_parameters()
    before = [p.grad.clone() for p in parameters]
    expected = [_reference_agc(p.detach(), g, clipping, eps) for p, g in zip(parameters, before)]
    expected_pre = math.sqrt(sum(float((g.double() ** 2).sum()) for g in before))

    pre_clip = adaptive_gradient_clipping(parameters, clipping=clipping, eps=eps)

    assert pre_clip.item() == pytest.approx(expected_pre, rel=1e-6)
    touched = untouched = 0
    for parameter, old, new in zip(parameters, before, expected):
        torch.testing.assert_close(parameter.grad.double(), new, rtol=1e-5, atol=1e-9)
        rows = zip(parameter.grad, old) if parameter.ndim > 1 else [(parameter.grad, old)]
        for clipped_row, old_row in rows:
            if torch.equal(clipped_row, old_row):
                untouched += 1  # below the bound: bit for bit as it was
            else:
                touched += 1
    assert touched > 0 and untouched > 0


def test_agc_units_are_output_rows_and_a_bias_is_one_unit():
    weight = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert unitwise_norm(weight).tolist() == [[5.0], [0.0]]
    assert unitwise_norm(torch.ones(2, 2, 2)).shape == (2, 1, 1)
    assert unitwise_norm(torch.tensor([3.0, 4.0])).item() == 5.0
    w = torch.nn.Parameter(weight)
    w.grad = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    adaptive_gradient_clipping([w], clipping=0.1, eps=0.01)
    # Row 0: bound 0.1 * 5 = 0.5; row 1 (zero weights): bound 0.1 * eps = 0.001.
    torch.testing.assert_close(w.grad, torch.tensor([[0.5, 0.0], [0.001, 0.0]]))


def test_agc_exclude_patterns_need_names_and_leave_those_gradients_alone():
    model = LSTMClassifier(12, 9, hidden_size=8)
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    head_before = model.head.weight.grad.clone()
    adaptive_gradient_clipping(model.named_parameters(), exclude=["head.*"])
    assert torch.equal(model.head.weight.grad, head_before)
    assert model.lstm.weight_hh_l0.grad.abs().max() < 1  # clipped
    with pytest.raises(TypeError, match="pairs when `exclude` is given"):
        adaptive_gradient_clipping(model.parameters(), exclude=["head.*"])


def test_agc_plugin_in_fit_matches_the_formula_and_skips_the_head():
    recorder = _Recorder()
    clipper = AdaptiveGradientClipping(clipping=0.01)
    _, trainer = _fit([clipper], recorder, max_steps=3)
    assert len(recorder.after) == 3
    clipped_steps = 0
    for weights, before, after in zip(recorder.weights, recorder.before, recorder.after):
        for name, gradient in before.items():
            if name.startswith("head."):
                assert torch.equal(after[name], gradient)  # excluded, as in the paper
            else:
                expected = _reference_agc(weights[name], gradient, 0.01, 1e-3)
                torch.testing.assert_close(after[name].double(), expected, rtol=1e-5, atol=1e-9)
        clipped_steps += any(not torch.equal(after[n], before[n]) for n in before)
    assert clipped_steps > 0
    logged = trainer.logged_metrics
    # The logged pre-clip norm is that of all gradients, head included.
    assert logged["adaptive_clipping/pre_clip_norm"].item() == pytest.approx(recorder.norms[-1], rel=1e-5)
    assert logged["adaptive_clipping/clipped_fraction"].item() == pytest.approx(clipped_steps / 3)
    assert clipper.steps == 3


def test_agc_exclude_pattern_matching_nothing_is_refused_at_fit_setup():
    clipper = AdaptiveGradientClipping(exclude=["head.*", "classifier.*"])
    model = LSTMClassifier(12, 9, techniques=[clipper])  # construction accepts it: names come later
    message = r"`adaptive_clipping`: `exclude` pattern\(s\) 'classifier.\*' match no parameter"
    with pytest.raises(ValueError, match=message) as raised:
        quiet_trainer(max_steps=1).fit(model, datamodule=_data())
    assert "(raised by technique `adaptive_clipping` in hook `on_fit_setup`)" in getattr(raised.value, "__notes__", [])
    assert clipper.steps == 0  # refused before the first step
    # The function face refuses the same typo.
    with pytest.raises(ValueError, match=message):
        adaptive_gradient_clipping(model.named_parameters(), exclude=["classifier.*"])


# --- auto-clipping ----------------------------------------------------------------------------


@pytest.mark.parametrize("percentile", [0.5, 10.0, 33.3, 50.0, 90.0, 100.0])
@pytest.mark.parametrize("count", [1, 2, 7, 100])
def test_norm_percentile_equals_numpy_percentile(percentile, count):
    values = torch.rand(count, generator=torch.Generator().manual_seed(count)) * 10
    values[: count // 3] = values[0]  # ties
    expected = np.percentile(values.double().numpy(), percentile)
    assert norm_percentile(values, percentile).item() == pytest.approx(expected, rel=1e-6)
    assert norm_percentile(values, percentile).item() == pytest.approx(
        torch.quantile(values, percentile / 100).item(), rel=1e-6
    )


def test_norm_percentile_with_an_infinite_norm_is_finite_below_it():
    values = torch.tensor([1.0, 2.0, math.inf])
    assert norm_percentile(values, 50.0).item() == 2.0
    assert norm_percentile(values, 75.0).item() == math.inf  # not nan


def test_history_is_a_bounded_ring_buffer():
    history = GradientNormHistory(4)
    for step in range(1, 7):
        history.append(torch.tensor(float(step)))
    assert len(history) == 4 and history.position == 2
    assert history.buffer.tolist() == [5.0, 6.0, 3.0, 4.0]  # 1 and 2, the oldest, were dropped
    assert history.values().tolist() == [3.0, 4.0, 5.0, 6.0]
    history.append(torch.tensor(float("nan")))
    assert history.values().tolist() == [4.0, 5.0, 6.0, math.inf]

    restored = GradientNormHistory(4)
    restored.load_state_dict(history.state_dict())
    assert torch.equal(restored.buffer, history.buffer) and restored.position == history.position
    smaller = GradientNormHistory(3)
    smaller.load_state_dict(history.state_dict())
    assert smaller.values().tolist() == [5.0, 6.0, math.inf]  # the newest kept, in order


def test_clip_to_a_tensor_bound_is_clip_grad_norm_above_it_and_identity_below():
    generator = torch.Generator().manual_seed(0)
    parameters = [torch.zeros(s, requires_grad=True) for s in [(4, 3), (5,)]]
    for parameter in parameters:
        parameter.grad = torch.randn(parameter.shape, generator=generator)
    references = [p.detach().clone().requires_grad_() for p in parameters]
    for reference, parameter in zip(references, parameters):
        reference.grad = parameter.grad.clone()
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in parameters]))
    assert scale_gradients_to_norm(parameters, total * 0.3, total).item() is True
    torch.nn.utils.clip_grad_norm_(references, (total * 0.3).item())
    for reference, parameter in zip(references, parameters):
        torch.testing.assert_close(parameter.grad, reference.grad)
    kept = [p.grad.clone() for p in parameters]
    assert scale_gradients_to_norm(parameters, total, total * 0.3).item() is False
    assert all(torch.equal(p.grad, k) for p, k in zip(parameters, kept))


def _expected_thresholds(norms, percentile, history_size, prior=()):
    history = list(prior)
    thresholds = []
    for norm in norms:
        history = (history + [norm])[-history_size:]
        thresholds.append(np.percentile(np.asarray(history, dtype=np.float32), percentile))
    return thresholds, history


def test_auto_clip_threshold_is_the_percentile_of_the_recorded_history():
    recorder = _Recorder()
    clipper = AutoClipping(percentile=30.0, history_size=4)
    _, trainer = _fit([clipper], recorder, max_steps=7)
    thresholds, window = _expected_thresholds(recorder.norms, 30.0, 4)

    # The history holds exactly the last 4 pre-clip norms, oldest first; the ring has wrapped.
    np.testing.assert_allclose(clipper.history.values().numpy(), window, rtol=1e-6)
    assert clipper.history.filled == 4 and clipper.history.position == 7 % 4
    # Each step's gradients were clipped to that step's percentile (or left alone below it).
    clipped = 0
    for norm, threshold, after in zip(recorder.norms, thresholds, recorder.after):
        after_norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in after.values()])).item()
        assert after_norm == pytest.approx(min(norm, threshold), rel=1e-5)
        clipped += norm > threshold
    assert 0 < clipped < 7
    logged = trainer.logged_metrics
    assert logged["auto_clipping/threshold"].item() == pytest.approx(thresholds[-1], rel=1e-6)
    assert logged["auto_clipping/pre_clip_norm"].item() == pytest.approx(recorder.norms[-1], rel=1e-5)
    assert logged["auto_clipping/clipped_fraction"].item() == pytest.approx(clipped / 7)
    assert clipper.clipped_steps.item() == clipped and clipper.steps == 7


def test_auto_clip_function_face():
    history = GradientNormHistory(10)
    w = torch.zeros(3, requires_grad=True)
    norms = []
    for step, scale in enumerate([1.0, 4.0, 0.5, 8.0]):
        w.grad = torch.full((3,), scale)
        norms.append(scale * math.sqrt(3))
        pre = auto_clipping([w], history, percentile=50.0)
        assert pre.item() == pytest.approx(norms[-1], rel=1e-6)
        threshold = np.percentile(norms, 50.0)
        assert w.grad.norm().item() == pytest.approx(min(norms[-1], threshold), rel=1e-5)


def test_auto_clip_history_is_restored_exactly_from_a_checkpoint(tmp_path):
    """Six steps, save, resume for three more: the same history as nine uninterrupted steps."""
    options = dict(max_steps=-1, limit_train_batches=3)
    first = AutoClipping(percentile=20.0, history_size=5)
    # The recorder is in both runs: a resumed fit continues the checkpoint's stack.
    model, trainer = _fit([first], _Recorder(), max_epochs=2, **options)
    path = tmp_path / "auto.ckpt"
    trainer.save_checkpoint(path)

    checkpoint = torch.load(path, weights_only=True)  # plain data only
    state = checkpoint["lstm_plugins"]["state"]["auto_clipping"]
    assert state["history"]["filled"] == 5 and state["history"]["position"] == 6 % 5
    assert torch.equal(state["history"]["values"], first.history.buffer.cpu())
    assert state["steps"] == 6 and state["clipped_steps"] == first.clipped_steps.item()

    fresh = LSTMClassifier(12, 9, hidden_size=16, techniques=[AutoClipping(percentile=20.0, history_size=5)])
    fresh.on_load_checkpoint(torch.load(path, weights_only=True))
    restored = fresh.techniques[0]
    assert torch.equal(restored.history.buffer, first.history.buffer)
    assert (restored.history.filled, restored.history.position) == (5, 1)
    assert restored.steps == 6 and restored.clipped_steps.item() == first.clipped_steps.item()

    recorder = _Recorder()
    resumed = AutoClipping(percentile=20.0, history_size=5)
    _, resumed_trainer = _fit([resumed], recorder, max_epochs=3, ckpt_path=str(path), **options)
    assert resumed_trainer.global_step == 9 and len(recorder.norms) == 3
    thresholds, window = _expected_thresholds(recorder.norms, 20.0, 5, prior=first.history.values().tolist())
    np.testing.assert_allclose(resumed.history.values().numpy(), window, rtol=1e-6)
    new_clips = sum(n > t for n, t in zip(recorder.norms, thresholds))
    assert resumed.steps == 9 and resumed.clipped_steps.item() == first.clipped_steps.item() + new_clips

    uninterrupted = AutoClipping(percentile=20.0, history_size=5)
    _fit([uninterrupted], max_epochs=3, **options)
    assert torch.equal(resumed.history.values(), uninterrupted.history.values())
    assert resumed.clipped_steps.item() == uninterrupted.clipped_steps.item()


# --- every clipper: clipped fraction, checkpointed counts, refusals ---------------------------


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_gradient_clipping_clipped_fraction_equals_the_count(mode, tmp_path):
    recorder = _Recorder()
    threshold = 0.35 if mode == "norm" else 0.1
    clipper = GradientClipping(threshold, mode=mode)
    model, trainer = _fit([clipper], recorder, max_steps=6)
    if mode == "norm":
        expected = sum(norm > threshold for norm in recorder.norms)
    else:
        expected = sum(max(g.abs().max().item() for g in before.values()) > threshold for before in recorder.before)
    assert 0 < expected < 6
    assert trainer.logged_metrics["gradient_clipping/clipped_fraction"].item() == pytest.approx(expected / 6)
    assert clipper.clipped_steps.item() == expected

    path = tmp_path / "clip.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["lstm_plugins"]["state"]["gradient_clipping"]
    assert state == {"steps": 6, "clipped_steps": expected}
    fresh = LSTMClassifier(12, 9, hidden_size=16, techniques=[GradientClipping(threshold, mode=mode)])
    fresh.on_load_checkpoint(torch.load(path, weights_only=True))
    assert fresh.techniques[0].clipped_fraction.item() == pytest.approx(expected / 6)


def test_clipping_is_logged_only_on_the_interval():
    clipper = AutoClipping(log_every_n_steps=3)
    model = LSTMClassifier(12, 9, hidden_size=16, techniques=[clipper])
    logger = RecordingLogger()
    quiet_trainer(max_steps=7, limit_val_batches=0, logger=logger, log_every_n_steps=5).fit(model, datamodule=_data())
    assert logger.steps_with("auto_clipping/") == [2, 5]  # Lightning's rows: N - 1, 2N - 1
    assert logger.steps_with("train/loss") == [4]
    assert clipper.steps == 7  # counted every step


@pytest.mark.parametrize(
    "stack, names",
    [
        ([AutoClipping(), AdaptiveGradientClipping()], ("auto_clipping", "adaptive_clipping")),
        ([GradientClipping(), AutoClipping()], ("gradient_clipping", "auto_clipping")),
        ([AdaptiveGradientClipping(), GradientClipping()], ("adaptive_clipping", "gradient_clipping")),
    ],
)
def test_two_clippers_are_refused_naming_both(stack, names):
    with pytest.raises(ValueError, match=rf"`{names[0]}`.*`{names[1]}`.*`gradient_clipping` slot"):
        LSTMClassifier(12, 9, techniques=stack)


@pytest.mark.parametrize("clipper", [AutoClipping(), AdaptiveGradientClipping(), GradientClipping()])
def test_trainer_gradient_clip_val_is_refused_naming_both(clipper):
    model = LSTMClassifier(12, 9, techniques=[clipper])
    trainer = quiet_trainer(max_steps=1, gradient_clip_val=0.5)
    with pytest.raises(ValueError, match=rf"`{clipper.name}`.*`Trainer\(gradient_clip_val=0.5\)`"):
        trainer.fit(model, datamodule=_data())


@pytest.mark.parametrize(
    "technique, arguments, error, message",
    [
        (AdaptiveGradientClipping, {"clipping": 0}, ValueError,
         "Expected `clipping` to be a positive float, but got 0.0."),
        (AdaptiveGradientClipping, {"clipping": -1}, ValueError,
         "Expected `clipping` to be a positive float, but got -1.0."),
        (AdaptiveGradientClipping, {"eps": 0.0}, ValueError, "Expected `eps` to be a positive float, but got 0.0."),
        (AdaptiveGradientClipping, {"exclude": "head.*"}, TypeError,
         "Expected `exclude` to be a list of name patterns, but got 'head.*'."),
        (AdaptiveGradientClipping, {"log_every_n_steps": 0}, ValueError,
         "Expected `log_every_n_steps` to be a positive int or None, but got 0."),
        (AutoClipping, {"percentile": 0}, ValueError,
         "Expected `percentile` to be a float in (0, 100], but got 0.0."),
        (AutoClipping, {"percentile": 100.5}, ValueError,
         "Expected `percentile` to be a float in (0, 100], but got 100.5."),
        (AutoClipping, {"percentile": "10"}, TypeError,
         "Expected `percentile` to be a float in (0, 100], but got '10'."),
        (AutoClipping, {"history_size": 0}, ValueError, "Expected `history_size` to be a positive int, but got 0."),
        (AutoClipping, {"history_size": 2.5}, TypeError, "Expected `history_size` to be a positive int, but got 2.5."),
        (AutoClipping, {"norm_type": -2}, ValueError, "Expected `norm_type` to be a positive float, but got -2.0."),
        (AutoClipping, {"log_every_n_steps": -1}, ValueError,
         "Expected `log_every_n_steps` to be a positive int or None, but got -1."),
    ],
)
def test_arguments_are_checked_at_construction(technique, arguments, error, message):
    with pytest.raises(error) as raised:
        technique(**arguments)
    assert str(raised.value) == message


def test_configs_round_trip_and_none_excludes_nothing():
    assert AutoClipping(percentile=5, norm_type="inf").norm_type == math.inf
    clipper = AdaptiveGradientClipping(exclude=None)
    assert clipper.config["exclude"] is None and clipper.exclude == ()
    rebuilt = AdaptiveGradientClipping(**AdaptiveGradientClipping(clipping=0.05).config)
    assert rebuilt.config == AdaptiveGradientClipping(clipping=0.05).config


# --- checkpoint state: refused when tampered ------------------------------------------------


def _saved_state(clipper):
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[clipper])
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    return model, checkpoint, checkpoint["lstm_plugins"]["state"][clipper.name]


def _tamper_unexpected(state):
    state["bogus"] = 1
    return "bogus", "is not a key this technique stores"


def _tamper_missing(state):
    del state["clipped_steps"]
    return "clipped_steps", "is missing"


def _tamper_tensor(state):
    state["steps"] = torch.tensor(3)
    return "steps", "expected a number, but got a tensor"


@pytest.mark.parametrize("tamper", [_tamper_unexpected, _tamper_missing, _tamper_tensor])
@pytest.mark.parametrize("make", [GradientClipping, AdaptiveGradientClipping, AutoClipping])
def test_a_tampered_checkpoint_state_is_refused_naming_technique_and_key(make, tamper):
    model, checkpoint, state = _saved_state(make())
    assert set(state) >= {"steps", "clipped_steps"}
    key, problem = tamper(state)
    with pytest.raises(ValueError, match=rf"technique `{make.name}`, key `{key}`.*{problem}"):
        model.on_load_checkpoint(checkpoint)
    assert model.techniques[0].steps == 0


def test_a_tampered_history_and_impossible_counts_are_refused():
    model, checkpoint, state = _saved_state(AutoClipping())
    state["history"]["filled"] = torch.tensor(0)
    with pytest.raises(ValueError, match=r"technique `auto_clipping`, key `history.filled`: expected a number"):
        model.on_load_checkpoint(checkpoint)

    model, checkpoint, state = _saved_state(AutoClipping(history_size=4))
    state["history"].update(values=torch.ones(2), filled=3)  # kinds right, values inconsistent
    with pytest.raises(ValueError, match="Inconsistent gradient-norm history") as raised:
        model.on_load_checkpoint(checkpoint)
    assert "(raised by technique `auto_clipping` in hook `load_state_dict`)" in raised.value.__notes__

    model, checkpoint, state = _saved_state(GradientClipping())
    state.update(steps=2, clipped_steps=3)
    with pytest.raises(ValueError, match=r"`gradient_clipping`: .*`clipped_steps` to be an int in \[0, 2\], but got 3"):
        model.on_load_checkpoint(checkpoint)
    assert model.techniques[0].steps == 0  # nothing loaded


@pytest.mark.parametrize("make", [GradientClipping, AdaptiveGradientClipping, AutoClipping])
def test_state_keys_are_the_same_before_and_after_training(make):
    before = make()
    fresh_keys = set(before.state_dict())
    _fit([before], max_steps=2)
    assert set(before.state_dict()) == fresh_keys and before.state_dict()["steps"] == 2


# --- function faces: the class's effect, on the same gradients --------------------------------


def _replay(recorder, step):
    """Parameters holding the weights and the pre-transform gradients of a recorded step."""
    named = []
    for name, weight in recorder.weights[step].items():
        parameter = torch.nn.Parameter(weight.clone())
        parameter.grad = recorder.before[step][name].clone()
        named.append((name, parameter))
    return named


def _assert_same_effect(named, after):
    for name, parameter in named:
        torch.testing.assert_close(parameter.grad, after[name], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "clipper, face",
    [
        (GradientClipping(0.35), lambda named: gradient_clipping([p for _, p in named], 0.35)),
        (GradientClipping(0.05, norm_type="inf"), lambda named: gradient_clipping(named, 0.05, norm_type="inf")),
        (GradientClipping(0.1, mode="value"), lambda named: gradient_clipping(named, 0.1, mode="value")),
        (AdaptiveGradientClipping(0.01), lambda named: adaptive_gradient_clipping(named, 0.01, exclude=["head.*"])),
        (AdaptiveGradientClipping(0.05, eps=0.1, exclude=None),
         lambda named: adaptive_gradient_clipping(named, 0.05, 0.1)),
    ],
    ids=["norm", "inf-norm", "value", "agc", "agc-all"],
)
def test_each_function_face_has_the_class_effect(clipper, face):
    recorder = _Recorder()
    _fit([clipper], recorder, max_steps=4)
    changed = 0
    for step, after in enumerate(recorder.after):
        named = _replay(recorder, step)
        pre_clip = face(named)
        _assert_same_effect(named, after)
        changed += any(not torch.equal(after[n], recorder.before[step][n]) for n in after)
        if clipper.name == "gradient_clipping" and clipper.norm_type == 2.0:
            assert pre_clip.item() == pytest.approx(recorder.norms[step], rel=1e-5)
    assert changed == clipper.clipped_steps.item() and changed > 0


def test_auto_clipping_function_face_has_the_class_effect():
    recorder = _Recorder()
    clipper = AutoClipping(percentile=30.0, history_size=4)
    _fit([clipper], recorder, max_steps=6)
    history = GradientNormHistory(4)
    for step, after in enumerate(recorder.after):
        named = _replay(recorder, step)
        pre_clip = auto_clipping(named, history, percentile=30.0)
        assert pre_clip.item() == pytest.approx(recorder.norms[step], rel=1e-5)
        _assert_same_effect(named, after)
    torch.testing.assert_close(history.values(), clipper.history.values())
