"""The gradient diagnostics: exploding-gradient spikes, gradient reach over time, gate saturation."""

import math
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import RecordingLogger, make_batch, quiet_trainer
from torch.profiler import ProfilerActivity, profile

from lstm_plugins import LSTMClassifier, hookimpl
from lstm_plugins.data import JapaneseVowelsDataModule, SequenceBatch
from lstm_plugins.plugins.exploding_gradients import (
    ExplodingGradients,
    GradientSpikeStatistics,
    GradientSpikeWarning,
    exploding_gradients,
)
from lstm_plugins.plugins.gate_saturation import GateSaturation, gate_saturation, measure_gate_saturation
from lstm_plugins.plugins.gradient_reach import (
    GradientReach,
    InputGradientCapture,
    gradient_reach,
    mean_step_profile,
    measure_gradient_reach,
    step_gradient_norms,
)

TECHNIQUE_FILES = ("exploding_gradients.py", "gradient_reach.py", "gate_saturation.py")


class _InjectSpike:
    """Test helper: at one step, adds a huge penalty on one LSTM layer's recurrent weights, so
    that layer's gradient (and the total norm) explodes in the observe phase."""

    name = "inject_spike"

    def __init__(self, step, layer=1, scale=1e4):
        self.step, self.layer, self.scale = step, layer, scale

    @hookimpl
    def loss_terms(self, model):
        if model.trainer.global_step != self.step:
            return None
        weight = getattr(model.lstm, f"weight_hh_l{self.layer}")
        return {"spike": self.scale * weight.pow(2).sum()}


def _fit(model, max_steps, **options):
    trainer = quiet_trainer(max_steps=max_steps, limit_val_batches=0, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    ours = [w for w in caught if "LeafSpec" not in str(w.message)]  # a torch/Lightning deprecation
    return trainer, ours


# --- exploding gradients ----------------------------------------------------------------------


def test_spike_rule_in_log_space():
    mean, variance = torch.tensor(0.0), torch.tensor(0.04)  # std 0.2 in log space
    norms = torch.tensor([1.0, 2.0, 3.9, 4.1, math.inf, math.nan])
    spikes = exploding_gradients(norms.log(), mean, variance, threshold=6.0, min_ratio=4.0)
    # 6 std is a factor e^1.2 = 3.3 < min_ratio: the ratio bound decides.
    assert spikes.tolist() == [False, False, False, True, True, True]
    wide = exploding_gradients(torch.tensor([20.0, 30.0]).log(), mean, torch.tensor(0.25), 6.0, 4.0)
    assert wide.tolist() == [False, True]  # e^3 = 20.1 is the bound


def test_running_statistics_are_exact_then_exponential():
    statistics = GradientSpikeStatistics(warmup_steps=100, decay=0.9)
    values = [1.0, 2.0, 4.0, 8.0, 0.5]
    for step, value in enumerate(values):
        statistics.update({"total": torch.tensor(value)}, step)
    logs = torch.tensor(values).log()
    assert statistics._tensors["mean"].item() == pytest.approx(logs.mean().item(), abs=1e-6)
    assert statistics._tensors["variance"].item() == pytest.approx(logs.var(unbiased=False).item(), abs=1e-6)
    for step in range(5, 40):  # beyond 1 / (1 - decay) steps the average forgets the start
        statistics.update({"total": torch.tensor(3.0)}, step)
    assert statistics._tensors["mean"].exp().item() == pytest.approx(3.0, rel=0.05)


def test_spike_is_reported_once_with_its_step_and_layer():
    torch.manual_seed(0)
    detector = ExplodingGradients(warmup_steps=10, log_every_n_steps=5)
    model = LSTMClassifier(12, 9, num_layers=2, techniques=[detector, _InjectSpike(step=23, layer=1)])
    trainer, caught = _fit(model, max_steps=40)
    assert [type(w.message) for w in caught] == [GradientSpikeWarning]
    message = str(caught[0].message)
    assert "at step 23 " in message and "`lstm.layer1`" in message, message
    summary = detector.statistics.summary()
    assert (summary.first_step, summary.first_layer) == (23, "lstm.layer1")
    assert summary.first_ratio > 1e3
    assert trainer.logged_metrics["exploding_gradients/spikes"].item() == summary.spikes >= 1
    assert detector.reported


def test_no_spike_is_flagged_during_warm_up_or_in_plain_training():
    torch.manual_seed(0)
    during_warm_up = ExplodingGradients(warmup_steps=10, log_every_n_steps=5)
    model = LSTMClassifier(12, 9, num_layers=2, techniques=[during_warm_up, _InjectSpike(step=4, layer=0)])
    trainer, caught = _fit(model, max_steps=40)
    assert caught == []
    assert during_warm_up.statistics.summary().spikes == 0
    assert trainer.logged_metrics["exploding_gradients/spikes"].item() == 0


class _InjectInfinity(_InjectSpike):
    """Test helper: an infinite loss term at one step, as an fp16 overflow gives."""

    name = "inject_infinity"

    @hookimpl
    def loss_terms(self, model):
        if model.trainer.global_step != self.step:
            return None
        return {"overflow": math.inf * model.head.weight.sum()}


def _loss_scaling_only():
    """Lightning's mixed precision with its GradScaler but without autocast (oneDNN has no
    float16 LSTM training kernel on CPU); the loss scaling is what matters here."""
    import contextlib

    from pytorch_lightning.plugins import MixedPrecision

    class Plugin(MixedPrecision):
        def forward_context(self):
            return contextlib.nullcontext()

    return Plugin("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))


@pytest.mark.parametrize("loss_scaled", [False, True])
def test_a_non_finite_norm_is_a_spike_unless_a_loss_scaler_expects_overflows(loss_scaled):
    torch.manual_seed(0)
    detector = ExplodingGradients(warmup_steps=3, log_every_n_steps=2)
    # The infinite loss is the point here: the default stop would end the run at it.
    model = LSTMClassifier(12, 9, techniques=[detector, _InjectInfinity(step=6)], stop_on_nonfinite_loss=False)
    _, caught = _fit(model, max_steps=9, plugins=[_loss_scaling_only()] if loss_scaled else [])
    summary = detector.statistics.summary()
    if loss_scaled:
        assert caught == [] and summary.spikes == 0
    else:
        assert [type(w.message) for w in caught] == [GradientSpikeWarning]
        assert summary.first_step == 6
    assert math.isfinite(detector.statistics._tensors["mean"].item())


def test_spike_statistics_survive_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    detector = ExplodingGradients(warmup_steps=3, log_every_n_steps=100)
    model = LSTMClassifier(12, 9, techniques=[detector, _InjectSpike(step=8, layer=0)])
    trainer, caught = _fit(model, max_steps=12)
    assert [type(w.message) for w in caught] == [GradientSpikeWarning]  # read at the epoch end
    path = tmp_path / "detector.ckpt"
    trainer.save_checkpoint(path)
    stored = torch.load(path, weights_only=True)["lstm_plugins"]["state"]["exploding_gradients"]
    assert stored["observed_steps"] == 12 and stored["reported"] is True

    restored = ExplodingGradients(warmup_steps=3, log_every_n_steps=100)
    assert restored.state_dict().keys() == detector.state_dict().keys()  # stable keys: checked on load
    LSTMClassifier.load_from_checkpoint(path, techniques=[restored])
    assert restored.statistics.observed_steps == 12 and restored.reported
    assert restored.statistics.layer_names == detector.statistics.layer_names
    for key, value in detector.statistics._tensors.items():
        torch.testing.assert_close(restored.statistics._tensors[key], value)
    assert restored.statistics.summary() == detector.statistics.summary()
    tampered = dict(stored, layer_names=stored["layer_names"][:-1])
    with pytest.raises(ValueError, match="do not match their layer names"):
        ExplodingGradients().load_state_dict(tampered)


def test_detector_keeps_its_statistics_on_the_gradients_device():
    statistics = GradientSpikeStatistics(warmup_steps=2)
    norms = {"total": torch.tensor(1.0), "head": torch.tensor(0.5)}
    spike = statistics.update(norms, 0)
    assert spike.dtype == torch.bool and spike.device == norms["total"].device
    assert all(value.device == norms["total"].device for value in statistics._tensors.values())


# --- no host synchronisation off the interval ---------------------------------------------------


def _count_host_reads_from_techniques(monkeypatch, trainer_ref, reads):
    """Patch every tensor -> host read so that those made from the diagnostics' modules record
    the optimizer step they happen at."""

    def wrap(name):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, **kwargs):
            frame, functions = sys._getframe(1), []
            while frame is not None:
                if frame.f_code.co_filename.endswith(TECHNIQUE_FILES):
                    functions.append(frame.f_code.co_name)
                frame = frame.f_back
            if functions:
                reads.append((trainer_ref[0].global_step, functions[-1]))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        wrap(name)


def test_diagnostics_read_the_host_only_on_their_interval_and_do_not_warn(monkeypatch):
    torch.manual_seed(0)
    techniques = [
        ExplodingGradients(warmup_steps=5, log_every_n_steps=4),
        GradientReach(log_every_n_steps=4),
        GateSaturation(log_every_n_steps=4),
    ]
    model = LSTMClassifier(12, 9, num_layers=2, bidirectional=True, techniques=techniques)
    trainer = quiet_trainer(max_steps=14, limit_val_batches=0, log_every_n_steps=4)
    reads = []
    _count_host_reads_from_techniques(monkeypatch, [trainer], reads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    monkeypatch.undo()
    assert [str(w.message) for w in caught if "LeafSpec" not in str(w.message)] == []  # no warnings
    hooks = {hook for _, hook in reads}
    assert "on_gradients_ready" in hooks and hooks <= {"on_gradients_ready", "on_train_step_end", "on_train_epoch_end"}
    # Reads happen while step s is taken (global_step == s, on_train_step_end included), on
    # Lightning's logging rows s = 3, 7, 11 only; and at the epoch's end.
    steps = {step for step, hook in reads if hook != "on_train_epoch_end"}
    assert steps == {3, 7, 11}, sorted(set(reads))
    assert techniques[1].last_step == 11


# --- gradient reach -----------------------------------------------------------------------------


def test_reach_of_hand_made_profiles():
    def reach(values, fraction=0.01):
        return int(gradient_reach(torch.tensor(values), None, fraction))

    assert reach([1.0, 0.5, 0.2, 0.1]) == 3  # never below 1%: reaches the first step
    assert reach([1.0, 0.5, 0.009, 0.5]) == 1  # falls at 2 steps back; the later rise is not reach
    assert reach([1.0, 0.001, 0.5]) == 0
    assert reach([2.0, 0.03, 0.015], fraction=0.005) == 2  # the level is 0.01
    assert reach([2.0, 0.03, 0.015], fraction=0.01) == 1  # the level is 0.02
    assert reach([0.0, 0.0]) == 0  # no gradient at all


def test_reach_aligns_each_sequence_at_its_last_valid_step():
    # Two sequences, lengths 4 and 2; norms decay by 10x per step back from each last step.
    lengths = torch.tensor([4, 2])
    gradient = torch.zeros(2, 4, 3)
    for step, norm in enumerate([1e-3, 1e-2, 1e-1, 1.0]):
        gradient[0, step, 1] = norm
    gradient[1, 0, 0], gradient[1, 1, 2] = -0.1, 1.0
    gradient[1, 2:] = 123.0  # padding: must be ignored
    aligned = step_gradient_norms(gradient, lengths)
    torch.testing.assert_close(aligned, torch.tensor([[1.0, 0.1, 0.01, 1e-3], [1.0, 0.1, 0.0, 0.0]]))
    profile = mean_step_profile(aligned, lengths)
    torch.testing.assert_close(profile, torch.tensor([1.0, 0.1, 0.01, 1e-3]))  # means over valid steps
    assert int(gradient_reach(aligned, lengths, fraction=0.05)) == 1
    assert int(gradient_reach(aligned, lengths, fraction=0.005)) == 2
    assert int(gradient_reach(aligned, lengths, fraction=1e-4)) == 3


def _first_step_task(count, seed, min_length, max_length=40, noise=0.5):
    """The label is the sign of feature 0 at the first step; the later steps are noise."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_length, max_length + 1, (count,), generator=generator)
    features = noise * torch.randn(count, max_length, 3, generator=generator)
    features[:, 0] = torch.randn(count, 3, generator=generator)
    targets = (features[:, 0, 0] > 0).long()
    features *= (torch.arange(max_length) < lengths.unsqueeze(1)).unsqueeze(-1)
    return SequenceBatch(features, lengths, targets)


def test_trained_lstm_reaches_the_deciding_first_step_and_an_untrained_one_does_not():
    torch.manual_seed(0)
    model = LSTMClassifier(3, 2, hidden_size=32)
    evaluation = _first_step_task(256, seed=1, min_length=30)  # 30 to 40 steps
    untrained = measure_gradient_reach(model, *evaluation)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    for step in range(450):  # lengths 1..40, so short sequences teach what to keep
        batch = _first_step_task(64, seed=100 + step, min_length=1)
        loss = F.cross_entropy(model(batch.features, batch.lengths), batch.targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = model(evaluation.features, evaluation.lengths)
    assert (logits.argmax(-1) == evaluation.targets).float().mean().item() > 0.95
    trained = measure_gradient_reach(model, *evaluation)
    longest = int(evaluation.lengths.max())
    assert int(trained.reach) == longest - 1  # back to step 0 of the longest sequences
    assert int(untrained.reach) < 20  # forget gates near 0.5: the gradient fades within steps
    assert untrained.profile[-1] / untrained.profile[0] < 1e-4


def test_technique_is_the_last_input_layer_and_keeps_results_and_the_fused_kernel(batch):
    from lstm_plugins.plugins import Dropout
    from lstm_plugins.toolkit import FastDropout

    stacked = LSTMClassifier(12, 9, techniques=[GradientReach(), Dropout(input=0.1)])
    assert [type(m) for m in stacked.input_layers] == [FastDropout, InputGradientCapture]

    torch.manual_seed(0)
    reach = GradientReach(log_every_n_steps=1)
    model = LSTMClassifier(12, 9, num_layers=2, techniques=[reach])
    plain = LSTMClassifier(12, 9, num_layers=2)
    plain.load_state_dict(model.state_dict())

    def step(network):
        network.zero_grad()
        loss = F.cross_entropy(network(batch.features, batch.lengths), batch.targets)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in network.parameters()]

    for armed in (True, False):
        reach.capture.armed = armed
        loss, gradients = step(model)
        reference_loss, reference = step(plain)
        assert (reach.capture.take() is not None) is armed
        assert torch.equal(loss, reference_loss)
        assert all(torch.equal(a, b) for a, b in zip(gradients, reference))

    reach.capture.armed = True
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(model)
    calls = [e for e in prof.events() if e.name == "aten::lstm"]
    assert calls and all("aten::mkldnn_rnn_layer" in {c.name for c in e.cpu_children} for e in calls)
    reach.capture.take()
    model.eval()
    model(batch.features, batch.lengths).sum().backward()
    assert reach.capture.take() is None  # never in eval mode


class _Recorder:
    """Test helper: the reach of each step's batch before the optimizer step, by the function."""

    name = "recorder"

    def __init__(self):
        self.batch, self.measured = None, {}

    @hookimpl
    def on_loss_computed(self, batch):
        self.batch = batch

    @hookimpl
    def on_gradients_ready(self, model):
        batch = self.batch
        self.measured[model.trainer.global_step] = measure_gradient_reach(model, *batch, fraction=0.05)


def test_technique_logs_the_reach_of_its_interval_steps():
    torch.manual_seed(0)
    recorder, reach = _Recorder(), GradientReach(log_every_n_steps=3, fraction=0.05)
    model = LSTMClassifier(12, 9, techniques=[recorder, reach])
    logger = RecordingLogger()
    trainer = quiet_trainer(max_steps=7, limit_val_batches=0, logger=logger, log_every_n_steps=5)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    logged = logger.values("gradient_reach/steps")
    assert [step for step, _ in logged] == [2, 5]  # Lightning's rows: steps N - 1, 2N - 1
    expected = recorder.measured[5]
    assert logged[-1][1] == reach.last_reach == int(expected.reach)
    assert reach.last_step == 5
    assert reach.last_profile.device.type == "cpu"
    torch.testing.assert_close(reach.last_profile, expected.profile, rtol=1e-4, atol=1e-9)


def test_with_gradient_accumulation_one_micro_batch_per_interval_step_is_measured():
    torch.manual_seed(0)
    reach = GradientReach(log_every_n_steps=2)
    model = LSTMClassifier(12, 9, techniques=[reach])
    captures = []
    original = reach.capture.forward

    def spy(features):
        output = original(features)
        if output is not features:
            captures.append(model.trainer.global_step)
        return output

    reach.capture.forward = spy
    trainer = quiet_trainer(max_steps=5, limit_val_batches=0, accumulate_grad_batches=2)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert captures == [1, 3]  # the first micro-batch of steps 1 and 3 only
    assert reach.last_step == 3


@pytest.mark.parametrize("accumulate_grad_batches", [1, 2])
def test_reach_lands_on_the_rows_of_lightnings_own_logging(accumulate_grad_batches):
    torch.manual_seed(0)
    reach = GradientReach()  # the Trainer's interval
    model = LSTMClassifier(12, 9, techniques=[reach])
    logger = RecordingLogger()
    trainer = quiet_trainer(max_steps=8, limit_val_batches=0, logger=logger, log_every_n_steps=3,
                            accumulate_grad_batches=accumulate_grad_batches)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    loss_rows = [step for step, _ in logger.values("train/loss")]
    assert loss_rows == [2, 5]
    assert [step for step, _ in logger.values("gradient_reach/steps")] == loss_rows
    assert reach.last_step == 5


# --- gate saturation ----------------------------------------------------------------------------


def _reference_saturation(lstm, features, lengths, margin):
    """Explicit per-sample LSTM-cell loops, with the gate equations written out."""
    hidden = lstm.hidden_size
    directions = 2 if lstm.bidirectional else 1
    counts = {}
    sequences = [features[b, : int(lengths[b])] for b in range(features.size(0))]
    for layer in range(lstm.num_layers):
        outputs = [[] for _ in sequences]
        for direction in range(directions):
            suffix = "_reverse" if direction else ""
            w_ih = getattr(lstm, f"weight_ih_l{layer}{suffix}")
            w_hh = getattr(lstm, f"weight_hh_l{layer}{suffix}")
            bias = getattr(lstm, f"bias_ih_l{layer}{suffix}") + getattr(lstm, f"bias_hh_l{layer}{suffix}")
            saturated = {"input": 0, "forget": 0}
            total = 0
            for index, sequence in enumerate(sequences):
                steps = range(len(sequence) - 1, -1, -1) if direction else range(len(sequence))
                h = torch.zeros(hidden, dtype=features.dtype)
                c = torch.zeros(hidden, dtype=features.dtype)
                hs = [None] * len(sequence)
                for t in steps:
                    pre = w_ih @ sequence[t] + w_hh @ h + bias
                    i = torch.sigmoid(pre[:hidden])
                    f = torch.sigmoid(pre[hidden : 2 * hidden])
                    g = torch.tanh(pre[2 * hidden : 3 * hidden])
                    o = torch.sigmoid(pre[3 * hidden :])
                    c = f * c + i * g
                    h = o * torch.tanh(c)
                    hs[t] = h
                    for name, gate in (("input", i), ("forget", f)):
                        saturated[name] += int(((gate < margin) | (gate > 1 - margin)).sum())
                    total += hidden
                outputs[index].append(torch.stack(hs))
            for name in ("input", "forget"):
                counts[f"layer{layer}{suffix}/{name}"] = saturated[name] / total
        sequences = [torch.cat(parts, dim=-1) for parts in outputs]
    return counts


@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)])
def test_gate_saturation_matches_explicit_cell_equations(num_layers, bidirectional):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(4, 6, num_layers=num_layers, batch_first=True, bidirectional=bidirectional).double()
    with torch.no_grad():
        for parameter in lstm.parameters():
            parameter.mul_(6.0)  # large weights: many gates saturate
    batch = make_batch([9, 3, 6, 1], num_features=4)
    features = batch.features.double()
    fractions = gate_saturation(lstm, features, batch.lengths, margin=0.1)
    expected = _reference_saturation(lstm, features, batch.lengths, margin=0.1)
    assert set(fractions) == set(expected)
    for key, value in expected.items():
        assert fractions[key].item() == pytest.approx(value, abs=1e-12), key
    assert 0.05 < sum(expected.values()) / len(expected) < 0.95  # a non-trivial mix


def test_gate_saturation_ignores_padding():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, batch_first=True, bidirectional=True)
    batch = make_batch([4, 2], num_features=3)
    padded = torch.cat([batch.features, 50 * torch.ones(2, 3, 3)], dim=1)  # garbage beyond the lengths
    padded[1, 2:] = -7.0
    torch.testing.assert_close(
        gate_saturation(lstm, padded, batch.lengths), gate_saturation(lstm, batch.features, batch.lengths)
    )


def test_gate_saturation_technique_logs_every_layer_on_its_interval():
    from lstm_plugins.plugins import Dropout

    torch.manual_seed(0)
    model = LSTMClassifier(
        12, 9, num_layers=2, bidirectional=True, techniques=[Dropout(input=0.5), GateSaturation(log_every_n_steps=3, margin=0.2)]
    )
    logger = RecordingLogger()
    trainer = quiet_trainer(max_steps=7, limit_val_batches=0, logger=logger, log_every_n_steps=5)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    # Measured after the optimizer step of steps 2 and 5 (Lightning's rows), and logged at them.
    assert logger.steps_with("gate_saturation/") == [2, 5]
    names = {f"gate_saturation/layer{k}{d}/{g}" for k in (0, 1) for d in ("", "_reverse") for g in ("input", "forget")}
    assert set(trainer.logged_metrics) >= names
    assert model.input_layers.training  # eval mode only while measuring
    batch = make_batch([20, 7], num_features=12)
    model.eval()
    with torch.no_grad():
        expected = gate_saturation(model.lstm, batch.features, batch.lengths, 0.2)
    model.train()
    measured = measure_gate_saturation(model, batch.features, batch.lengths, 0.2)  # dropout off
    torch.testing.assert_close(measured, expected)


def test_gate_saturation_measures_once_per_optimizer_step_under_gradient_accumulation(monkeypatch):
    import lstm_plugins.plugins.gate_saturation as module

    measured_at = []
    original = module.measure_gate_saturation

    def counted(model, *args, **kwargs):
        measured_at.append(model.trainer.global_step)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(module, "measure_gate_saturation", counted)
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, techniques=[GateSaturation(log_every_n_steps=1)])
    logger = RecordingLogger()
    trainer = quiet_trainer(max_steps=4, limit_val_batches=0, logger=logger, log_every_n_steps=1,
                            accumulate_grad_batches=2)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=16))
    assert measured_at == [0, 1, 2, 3]  # 8 micro-batches, 4 optimizer steps: 4 measurements
    assert logger.steps_with("gate_saturation/") == [0, 1, 2, 3]  # one row per optimizer step


# --- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory, arguments, error, message",
    [
        (ExplodingGradients, {"threshold": 0}, ValueError, "Expected `threshold` to be a positive float, but got 0.0."),
        (ExplodingGradients, {"min_ratio": 1}, ValueError, "Expected `min_ratio` to be a float above 1, but got 1.0."),
        (ExplodingGradients, {"warmup_steps": 0}, ValueError, "Expected `warmup_steps` to be a positive int, but got 0."),
        (ExplodingGradients, {"log_every_n_steps": 2.5}, TypeError, "Expected `log_every_n_steps` to be a positive int or None, but got 2.5."),
        (ExplodingGradients, {"decay": 1.0}, ValueError, "Expected `decay` to be a float in [0, 1), but got 1.0."),
        (GradientReach, {"log_every_n_steps": 0}, ValueError, "Expected `log_every_n_steps` to be a positive int or None, but got 0."),
        (GradientReach, {"fraction": 0}, ValueError, "Expected `fraction` to be a float in (0, 1), but got 0."),
        (GradientReach, {"fraction": 1.5}, ValueError, "Expected `fraction` to be a float in [0, 1), but got 1.5."),
        (GateSaturation, {"log_every_n_steps": -1}, ValueError, "Expected `log_every_n_steps` to be a positive int or None, but got -1."),
        (GateSaturation, {"margin": 0.5}, ValueError, "Expected `margin` to be a float in (0, 0.5), but got 0.5."),
        (GateSaturation, {"margin": "small"}, TypeError, "Expected `margin` to be a positive float, but got 'small'."),
    ],
)
def test_arguments_are_checked_with_exact_messages(factory, arguments, error, message):
    with pytest.raises(error) as raised:
        factory(**arguments)
    assert str(raised.value) == message


def test_techniques_record_their_arguments_and_pickle():
    import pickle

    techniques = [ExplodingGradients(threshold=5.0), GradientReach(fraction=0.05), GateSaturation(margin=0.1)]
    assert [t.config for t in techniques] == [
        {"threshold": 5.0, "min_ratio": 4.0, "warmup_steps": 50, "log_every_n_steps": None, "decay": 0.98},
        {"log_every_n_steps": None, "fraction": 0.05},
        {"log_every_n_steps": None, "margin": 0.1},
    ]
    model = LSTMClassifier(12, 9, techniques=techniques)
    copy = pickle.loads(pickle.dumps(model))
    assert copy.techniques[1].capture is copy.input_layers[0]


def test_the_gradient_reach_example_runs(tmp_path):
    pytest.importorskip("matplotlib")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "gradient_reach_plot.py"
    spec = importlib.util.spec_from_file_location("gradient_reach_plot", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    output = tmp_path / "reach.png"
    results = example.main(["--smoke", "--output", str(output)])
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(results) == {"untrained", "trained"}


def test_both_faces_of_the_spike_statistics_agree(batch):
    from lstm_plugins import toolkit
    from lstm_plugins.plugins.functional import gradient_norms

    assert gradient_norms is toolkit.gradient_norms  # the function face is the toolkit's

    model = LSTMClassifier(12, 9, num_layers=2, bidirectional=True)
    by_name, fused = GradientSpikeStatistics(warmup_steps=2), GradientSpikeStatistics(warmup_steps=2)
    for step in range(4):
        model.zero_grad()
        scale = 1e5 if step == 3 else 1.0
        (scale * F.cross_entropy(model(batch.features, batch.lengths), batch.targets)).backward()
        by_name.update(gradient_norms(model.named_parameters()), step)
        fused.update_from_parameters(model.named_parameters(), step)
    assert fused.layer_names == by_name.layer_names
    for key, value in by_name._tensors.items():
        torch.testing.assert_close(fused._tensors[key], value, rtol=1e-5, atol=1e-5)
    assert fused.summary().first_step == 3
