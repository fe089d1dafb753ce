"""Sequence summaries: each equals a hand computation over the valid steps, padding never counts,
per-step tasks and two summaries are refused, and the LSTM stays on its fused kernel."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from lstm_plugins import LSTMClassifier, LSTMRegressor, Technique, hookimpl
from lstm_plugins.model import LSTMLanguageModel, LSTMSequenceLabeller
from lstm_plugins.model._summaries import AttentionSummary, LastStepSummary, masked_max, masked_mean
from lstm_plugins.plugins import SequenceSummary
from lstm_plugins.plugins.functional import sequence_summary

LENGTHS = torch.tensor([7, 2, 5, 1, 7])


def _batch(num_features=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(len(LENGTHS), int(LENGTHS.max()), num_features, generator=generator)
    features[torch.arange(features.size(1)) >= LENGTHS.unsqueeze(1)] = 0
    return features


def _by_hand(mode, outputs, summary):
    """The summary of one unpadded ``(time, features)`` output sequence, step by step."""
    if mode == "mean":
        return sum(outputs[t] for t in range(len(outputs))) / len(outputs)
    if mode == "max":
        best = outputs[0]
        for t in range(1, len(outputs)):
            best = torch.maximum(best, outputs[t])
        return best
    scores = [summary.context.weight[0] @ torch.tanh(summary.projection.weight @ outputs[t] + summary.projection.bias)
              for t in range(len(outputs))]
    exponentials = [torch.exp(score - max(scores)) for score in scores]
    return sum(e * outputs[t] for t, e in enumerate(exponentials)) / sum(exponentials)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mode", ["mean", "max", "attention"])
def test_each_summary_equals_a_hand_computation_over_valid_steps_of_each_sequence_alone(mode, bidirectional):
    torch.manual_seed(0)
    model = LSTMClassifier(3, 4, hidden_size=6, num_layers=2, bidirectional=bidirectional,
                           techniques=[SequenceSummary(mode)]).eval()
    features = _batch()
    with torch.no_grad():
        batched = model.encode(features, LENGTHS).final_features
        for row, length in enumerate(LENGTHS.tolist()):
            # torch.nn.LSTM's own forward on the sequence alone: no padding anywhere.
            outputs, _ = model.lstm(features[row : row + 1, :length])
            expected = _by_hand(mode, outputs[0], model.summary)
            torch.testing.assert_close(batched[row], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_step_summary_is_the_lstm_final_hidden_state(bidirectional):
    torch.manual_seed(0)
    model = LSTMClassifier(3, 4, hidden_size=6, bidirectional=bidirectional, techniques=[SequenceSummary("last")])
    assert isinstance(model.summary, LastStepSummary)
    features = _batch()
    with torch.no_grad():
        batched = model.encode(features, LENGTHS).final_features
        for row, length in enumerate(LENGTHS.tolist()):
            _, (h, _) = model.lstm(features[row : row + 1, :length])
            torch.testing.assert_close(batched[row], torch.cat(list(h[:, 0])), atol=1e-5, rtol=0)


@pytest.mark.parametrize("summary", [masked_mean, masked_max, AttentionSummary(4)])
def test_padded_steps_never_count_even_when_they_hold_inf_or_nan(summary):
    torch.manual_seed(0)
    values = torch.randn(5, 7, 4)
    poisoned = values.clone()
    padded = torch.arange(7) >= LENGTHS.unsqueeze(1)
    poisoned[padded] = float("nan")
    poisoned[padded.nonzero()[0, 0], padded.nonzero()[0, 1]] = float("inf")

    def run(v):
        return summary(v, LENGTHS) if not isinstance(summary, torch.nn.Module) else summary(v, LENGTHS, False)

    torch.testing.assert_close(run(poisoned), run(values), atol=0, rtol=0)
    assert torch.isfinite(run(poisoned)).all()
    if isinstance(summary, AttentionSummary):  # padded steps get weight exactly 0
        weights = summary.weights(poisoned, LENGTHS)
        assert weights[padded].abs().max() == 0
        torch.testing.assert_close(weights.sum(1), torch.ones(5))


def test_attention_gradient_reaches_no_padded_step():
    summary = AttentionSummary(4)
    values = torch.randn(5, 7, 4, requires_grad=True)
    summary(values, LENGTHS, False).sum().backward()
    padded = torch.arange(7) >= LENGTHS.unsqueeze(1)
    assert values.grad[padded].abs().max() == 0
    assert values.grad[~padded].abs().max() > 0


@pytest.mark.parametrize("build, task", [
    (lambda t: LSTMSequenceLabeller(3, 4, hidden_size=8, techniques=t), "sequence_labelling"),
    (lambda t: LSTMLanguageModel(11, embedding_size=4, hidden_size=8, techniques=t), "language_model"),
])
def test_refused_on_a_per_step_task_naming_the_task(build, task):
    with pytest.raises(ValueError, match=f"`summary` technique cannot work with the `{task}` task"):
        build([SequenceSummary("mean")])


def test_two_summary_techniques_are_refused_naming_both():
    class MedianSummary(Technique):
        """A third-party summary: it claims the same slot."""

        name = "median_summary"
        exclusive = "summary"

        @hookimpl
        def configure_network(self, model):
            model.summary = LastStepSummary()

    with pytest.raises(ValueError, match="`summary`.*`median_summary`.*both take the `summary` slot"):
        LSTMClassifier(3, 2, techniques=[SequenceSummary("max"), MedianSummary()])
    model = LSTMClassifier(3, 2, hidden_size=4, techniques=["summary"])
    with pytest.raises(ValueError, match="summary is set already"):
        sequence_summary(model, "max")  # the function face on a model whose summary is set


def test_arguments_are_checked_at_construction():
    with pytest.raises(ValueError, match="Expected `mode` to be one of 'last', 'mean', 'max', 'attention'"):
        SequenceSummary("median")
    with pytest.raises(ValueError, match="Expected `attention_size` to be None for the `mean` summary"):
        SequenceSummary("mean", attention_size=8)
    with pytest.raises(ValueError, match="Expected `attention_size` to be a positive int"):
        SequenceSummary("attention", attention_size=0)


def test_attention_parameters_are_named_in_the_summary_slot_and_trained():
    model = LSTMRegressor(3, 1, hidden_size=4, bidirectional=True, techniques=[SequenceSummary("attention", 5)])
    names = {name: tuple(p.shape) for name, p in model.named_parameters() if name.startswith("summary.")}
    assert names == {"summary.projection.weight": (5, 8), "summary.projection.bias": (5,), "summary.context.weight": (1, 5)}
    model.task.loss(model(_batch(), LENGTHS), torch.randn(5)).backward()
    assert model.summary.projection.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["mean", "attention"])
def test_the_lstm_stays_on_the_fused_kernel(mode):
    model = LSTMClassifier(3, 4, hidden_size=8, num_layers=2, bidirectional=True,
                           techniques=[SequenceSummary(mode)]).train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.encode(_batch(), LENGTHS).logits.sum().backward()
    fused = [e for e in prof.events() if e.name == "aten::mkldnn_rnn_layer"]
    assert len(fused) == 2 * 2  # every layer and direction went through oneDNN


@pytest.mark.parametrize("mode", ["max", "attention"])
def test_onnx_export_matches_the_model_on_variable_length_batches(mode, tmp_path):
    pytest.importorskip("onnxruntime")
    from lstm_plugins.model import export_model, exported_parity

    model = LSTMClassifier(3, 4, hidden_size=8, bidirectional=True, techniques=[SequenceSummary(mode)])
    path = export_model(model, tmp_path / "model.onnx", check_parity=False)
    assert exported_parity(path, model) < 1e-5
