"""Zoneout: the per-step recurrence checked against the fused path and an independent reference."""

import importlib
import warnings

import pytest
import torch
from conftest import quiet_trainer

from lstm_plugins import LSTMClassifier, Technique, hookimpl
from lstm_plugins.data import JapaneseVowelsDataModule
from lstm_plugins.model import last_step_summary, run_lstm
from lstm_plugins.plugins.zoneout import Zoneout, ZoneoutRecurrence, zoneout

# The module itself: the package's `zoneout` attribute is the function face.
zoneout_module = importlib.import_module("lstm_plugins.plugins.zoneout")

LENGTHS = [9, 3, 6, 1, 9, 4]
SHAPES = [(False, 1), (False, 2), (True, 1), (True, 2)]


@pytest.fixture(autouse=True)
def _quiet_slowdown_warning(monkeypatch):
    # Each test starts as a fresh process would: the warning not yet given.
    monkeypatch.setattr(zoneout_module, "_warned_slow", False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Zoneout runs the LSTM as a per-step loop")
        yield


def _lstm(bidirectional, num_layers, input_size=5, hidden_size=7, seed=0, **options):
    torch.manual_seed(seed)
    return torch.nn.LSTM(
        input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional, **options
    )


def _padded(lengths, input_size=5, seed=1, padding=0.0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    features = torch.randn(len(lengths), int(lengths.max()), input_size, generator=generator)
    invalid = torch.arange(features.size(1)) >= lengths.unsqueeze(1)
    features[invalid] = padding
    return features, lengths


def _valid(values, lengths):
    """The valid steps of every sequence, concatenated: padded steps are unspecified."""
    return values[torch.arange(values.size(1)) < lengths.unsqueeze(1)]


def _reference(lstm, features, lengths, cell, hidden, cell_masks=None, hidden_masks=None):
    """Zoneout written out per sample, per direction and per step, straight from the paper.

    Without masks it computes the expectation (evaluation); with masks, ``*_masks[layer][s, d, b]``
    says which units of sample ``b`` keep their previous value at the ``s``-th step direction
    ``d`` processes. Returns each sample's ``(length, hidden * directions)`` outputs.
    """
    directions = 2 if lstm.bidirectional else 1
    results = []
    for b, length in enumerate(lengths.tolist()):
        sequence = features[b, :length]
        for layer in range(lstm.num_layers):
            per_direction = []
            for d in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                w_ih, w_hh = getattr(lstm, "weight_ih" + suffix), getattr(lstm, "weight_hh" + suffix)
                bias = getattr(lstm, "bias_ih" + suffix) + getattr(lstm, "bias_hh" + suffix)
                h = torch.zeros(lstm.hidden_size)
                c = torch.zeros(lstm.hidden_size)
                out = [None] * length
                positions = range(length - 1, -1, -1) if d else range(length)
                for s, position in enumerate(positions):
                    i, f, g, o = (w_ih @ sequence[position] + w_hh @ h + bias).chunk(4)
                    c_candidate = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h_candidate = torch.sigmoid(o) * torch.tanh(c_candidate)
                    if cell_masks is None:
                        c = cell * c + (1 - cell) * c_candidate
                        h = hidden * h + (1 - hidden) * h_candidate
                    else:
                        c = torch.where(cell_masks[layer][s, d, b], c, c_candidate)
                        h = torch.where(hidden_masks[layer][s, d, b], h, h_candidate)
                    out[position] = h
                per_direction.append(torch.stack(out))
            sequence = torch.cat(per_direction, dim=-1)
        results.append(sequence)
    return results


# --- the function -------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional, num_layers", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_zero_probabilities_equal_the_fused_lstm_outputs_and_gradients(bidirectional, num_layers, training):
    lstm = _lstm(bidirectional, num_layers)
    features, lengths = _padded(LENGTHS)
    results = []
    for run in (lambda: run_lstm(lstm, features, lengths),
                lambda: zoneout(features, lengths, lstm, cell=0.0, hidden=0.0, training=training)):
        lstm.zero_grad()
        output = run()
        last_step_summary(output, lengths, bidirectional).pow(2).sum().backward()
        results.append((_valid(output, lengths), [p.grad.clone() for p in lstm.parameters()]))
    (fused, fused_grads), (zoned, zoned_grads) = results
    torch.testing.assert_close(zoned, fused, rtol=1e-5, atol=1e-5)
    for zoned_grad, fused_grad in zip(zoned_grads, fused_grads):
        torch.testing.assert_close(zoned_grad, fused_grad, rtol=1e-5, atol=1e-5)


def test_replacement_weights_are_used():
    lstm = _lstm(True, 2)
    features, lengths = _padded(LENGTHS)
    weights = [w * 1.5 for w in lstm._flat_weights]
    expected = run_lstm(lstm, features, lengths, weights)
    zoned = zoneout(features, lengths, lstm, weights, cell=0.0, hidden=0.0)
    torch.testing.assert_close(_valid(zoned, lengths), _valid(expected, lengths), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_valid(zoned, lengths), _valid(run_lstm(lstm, features, lengths), lengths))


def test_inter_layer_dropout_applies_in_training_as_in_the_fused_path():
    lstm = _lstm(True, 2, dropout=0.4)
    features, lengths = _padded(LENGTHS)
    torch.manual_seed(5)
    expected = run_lstm(lstm, features, lengths)
    torch.manual_seed(5)
    zoned = zoneout(features, lengths, lstm, cell=0.0, hidden=0.0, training=True)
    torch.testing.assert_close(_valid(zoned, lengths), _valid(expected, lengths), rtol=1e-5, atol=1e-5)
    lstm.eval()
    without_dropout = zoneout(features, lengths, lstm, cell=0.0, hidden=0.0, training=False)
    assert not torch.allclose(_valid(zoned, lengths), _valid(without_dropout, lengths))


@pytest.mark.parametrize("bidirectional, num_layers", SHAPES)
def test_evaluation_is_the_expectation_computed_per_sample(bidirectional, num_layers):
    lstm = _lstm(bidirectional, num_layers)
    features, lengths = _padded(LENGTHS, padding=7.0)  # padding must not matter
    with torch.no_grad():
        zoned = zoneout(features, lengths, lstm, cell=0.6, hidden=0.3, training=False)
        expected = _reference(lstm, features, lengths, 0.6, 0.3)
    for b, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(zoned[b, :length], expected[b], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bidirectional, num_layers", SHAPES)
def test_training_draws_the_documented_masks(bidirectional, num_layers):
    lstm = _lstm(bidirectional, num_layers)
    features, lengths = _padded(LENGTHS)
    directions = 2 if bidirectional else 1
    shape = (features.size(1), directions, features.size(0), lstm.hidden_size)
    torch.manual_seed(3)
    cell_masks, hidden_masks = [], []
    for _ in range(num_layers):  # per layer: the cell masks, then the hidden masks
        cell_masks.append(torch.rand(shape) < 0.5)
        hidden_masks.append(torch.rand(shape) < 0.2)
    torch.manual_seed(3)
    with torch.no_grad():
        zoned = zoneout(features, lengths, lstm, cell=0.5, hidden=0.2, training=True)
        expected = _reference(lstm, features, lengths, 0.5, 0.2, cell_masks, hidden_masks)
    for b, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(zoned[b, :length], expected[b], rtol=1e-5, atol=1e-6)


def test_training_masks_change_between_calls_and_keep_units_at_the_rate():
    lstm = _lstm(False, 1, hidden_size=64)
    features, lengths = _padded([40] * 16)
    with torch.no_grad():
        first = zoneout(features, lengths, lstm, cell=0.0, hidden=0.3)
        second = zoneout(features, lengths, lstm, cell=0.0, hidden=0.3)
        evaluated = [
            zoneout(features, lengths, lstm, cell=0.0, hidden=0.3, training=False) for _ in range(2)
        ]
    assert not torch.equal(first, second)
    assert torch.equal(*evaluated)
    # A unit that keeps its value repeats it exactly; a new value almost never does.
    kept = (first[:, 1:] == first[:, :-1]).float().mean().item()
    assert kept == pytest.approx(0.3, abs=0.02)


def test_training_outputs_and_gradients_do_not_depend_on_padding():
    lstm = _lstm(True, 2)
    runs = []
    for padding in (0.0, 3.0):
        features, lengths = _padded(LENGTHS, padding=padding)
        features.requires_grad_(True)
        lstm.zero_grad()
        torch.manual_seed(11)
        output = zoneout(features, lengths, lstm, cell=0.3, hidden=0.1)
        last_step_summary(output, lengths, True).pow(2).sum().backward()
        gradients = [p.grad.clone() for p in lstm.parameters()]
        runs.append((_valid(output, lengths), _valid(features.grad, lengths), gradients))
    (out_a, input_grad_a, grads_a), (out_b, input_grad_b, grads_b) = runs
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(input_grad_a, input_grad_b)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"cell": 1.5}, "Expected `cell` to be a float in [0, 1), but got 1.5."),
        ({"cell": 1.0}, "Expected `cell` to be a float in [0, 1), but got 1.0."),
        ({"hidden": -0.1}, "Expected `hidden` to be a float in [0, 1), but got -0.1."),
    ],
)
def test_probabilities_are_checked(arguments, message):
    for build in (Zoneout, ZoneoutRecurrence):
        with pytest.raises(ValueError) as error:
            build(**arguments)
        assert str(error.value) == message
    with pytest.raises(ValueError) as error:
        zoneout(*_padded([2]), _lstm(False, 1), **arguments)
    assert str(error.value) == message


# --- the technique ------------------------------------------------------------------------------


def test_the_model_runs_zoneout_in_train_mode_and_the_expectation_in_eval_mode(batch):
    model = LSTMClassifier(12, 9, hidden_size=16, bidirectional=True, techniques=[Zoneout(cell=0.5, hidden=0.1)])
    assert isinstance(model.recurrence, ZoneoutRecurrence)
    assert (model.recurrence.cell, model.recurrence.hidden) == (0.5, 0.1)
    plain = LSTMClassifier(12, 9, hidden_size=16, bidirectional=True)
    assert model.state_dict().keys() == plain.state_dict().keys()  # no parameters of its own
    model.train()
    assert model.recurrence.training
    assert not torch.equal(model(batch.features, batch.lengths), model(batch.features, batch.lengths))
    model.eval()
    assert not model.recurrence.training
    logits = model(batch.features, batch.lengths)
    torch.testing.assert_close(model(batch.features, batch.lengths), logits)
    # Evaluation is exact: each sample alone, unpadded, gives the same logits as in the batch.
    for b, length in enumerate(batch.lengths.tolist()):
        alone = model(batch.features[b : b + 1, :length], batch.lengths[b : b + 1])
        torch.testing.assert_close(alone[0], logits[b], rtol=1e-5, atol=1e-6)


def test_zero_probabilities_give_the_plain_model(batch):
    shape = dict(hidden_size=16, num_layers=2, bidirectional=True)
    model = LSTMClassifier(12, 9, **shape, techniques=[Zoneout(0.0, 0.0)])
    plain = LSTMClassifier(12, 9, **shape)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(
        model(batch.features, batch.lengths), plain(batch.features, batch.lengths), rtol=1e-5, atol=1e-5
    )


def test_the_slowdown_warning_is_given_once_per_process(monkeypatch):
    monkeypatch.setattr(zoneout_module, "_warned_slow", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LSTMClassifier(12, 9, techniques=[Zoneout()])
        LSTMClassifier(12, 9, techniques=[Zoneout(cell=0.5)])
    messages = [str(w.message) for w in caught if "per-step loop" in str(w.message)]
    assert len(messages) == 1
    assert "off the fused kernel" in messages[0]
    assert f"about {zoneout_module.SLOWDOWN}x slower" in messages[0]
    assert f"about {zoneout_module.SLOWDOWN}x slower" in " ".join(Zoneout.__doc__.split())


class _OtherRecurrence(Technique):
    """Test helper: another technique that replaces the recurrence."""

    name = "other_recurrence"
    exclusive = "recurrence"

    @hookimpl
    def configure_network(self, model):
        model.recurrence = torch.nn.Identity()


def test_a_second_recurrence_technique_is_refused_naming_both():
    with pytest.raises(ValueError, match="`zoneout`.*`other_recurrence`.*`recurrence` slot"):
        LSTMClassifier(12, 9, techniques=[Zoneout(), _OtherRecurrence()])


class _RecordLoss:
    """Test helper: records the task loss of every training step."""

    def __init__(self):
        self.losses = []

    @hookimpl
    def loss_terms(self, task_loss):
        self.losses.append(task_loss.detach())


def test_fit_with_zoneout_runs_and_the_loss_decreases():
    torch.manual_seed(0)
    recorder = _RecordLoss()
    model = LSTMClassifier(12, 9, bidirectional=True, learning_rate=1e-2, techniques=[Zoneout(), recorder])
    trainer = quiet_trainer(max_steps=30, limit_val_batches=0)
    trainer.fit(model, datamodule=JapaneseVowelsDataModule(batch_size=32))
    losses = torch.stack(recorder.losses)
    assert len(losses) == 30 and torch.isfinite(losses).all()
    assert losses[-5:].mean() < 0.7 * losses[:5].mean()
