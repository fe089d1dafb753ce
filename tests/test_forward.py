"""Variable-length batches are exact and stay on the fused kernel."""

import pytest
import torch
from conftest import make_batch
from torch.profiler import ProfilerActivity, profile

from lstm_plugins import LSTMClassifier
from lstm_plugins.model import last_step_summary, reverse_within_length_index, run_lstm
from lstm_plugins.cli import DEFAULT_CONFIG


def test_reverse_within_length_index_is_an_involution():
    lengths = torch.tensor([5, 1, 3])
    index = reverse_within_length_index(lengths, 5)
    assert index.tolist() == [[4, 3, 2, 1, 0], [0, 1, 2, 3, 4], [2, 1, 0, 3, 4]]
    assert torch.equal(index.gather(1, index), torch.arange(5).expand(3, 5))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_batched_output_equals_unpadded_runs(bidirectional, num_layers):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(12, 16, num_layers, batch_first=True, bidirectional=bidirectional).eval()
    batch = make_batch([29, 7, 1, 22, 9, 29, 12])
    sequence_output = run_lstm(lstm, batch.features, batch.lengths)
    final = last_step_summary(sequence_output, batch.lengths, bidirectional)
    for index, length in enumerate(batch.lengths.tolist()):
        alone, (hidden, _) = lstm(batch.features[index : index + 1, :length])
        expected_final = torch.cat((hidden[-2], hidden[-1]), -1) if bidirectional else hidden[-1]
        torch.testing.assert_close(final[index], expected_final[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(sequence_output[index, :length], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_output_does_not_depend_on_batch_mates_or_padding(bidirectional):
    torch.manual_seed(1)
    model = LSTMClassifier(12, 9, num_layers=2, bidirectional=bidirectional).eval()
    batch = make_batch([10, 4, 7])
    logits = model(batch.features, batch.lengths)
    longer = torch.nn.functional.pad(batch.features, (0, 0, 0, 15), value=123.0)  # garbage padding
    other_mates = make_batch([30, 30, 30], seed=5).features
    other_mates[0, :10] = batch.features[0, :10]
    torch.testing.assert_close(model(longer, batch.lengths), logits, atol=1e-5, rtol=0)
    alone = model(other_mates[:1], torch.tensor([10]))
    torch.testing.assert_close(alone[0], logits[0], atol=1e-5, rtol=0)


def _lstm_events(run):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = prof.events()
    lstm_calls = [e for e in events if e.name == "aten::lstm"]
    return lstm_calls, [e for e in events if e.name == "aten::mkldnn_rnn_layer"]


@pytest.mark.parametrize("bidirectional", [False, True])
def test_default_stack_runs_the_fused_kernel_on_variable_length_batches(batch, bidirectional):
    model = LSTMClassifier(
        12, 9, num_layers=2, bidirectional=bidirectional, techniques=DEFAULT_CONFIG["model"]["techniques"]
    ).train()

    def step():
        output = model.encode(batch.features, batch.lengths)
        torch.nn.functional.cross_entropy(output.logits, batch.targets).backward()

    lstm_calls, fused = _lstm_events(step)
    assert lstm_calls, "no LSTM call was profiled"
    for call in lstm_calls:
        children = {child.name for child in call.cpu_children}
        assert "aten::mkldnn_rnn_layer" in children, f"an LSTM call left the fused kernel: {children}"
    # Every layer and direction went through oneDNN.
    assert len(fused) == model.lstm.num_layers * (2 if bidirectional else 1)


def test_packed_input_would_leave_the_fused_kernel_on_cpu(batch):
    """Why the CPU path pads: the profiler shows a PackedSequence runs unfused."""
    lstm = torch.nn.LSTM(12, 16, batch_first=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        batch.features, batch.lengths, batch_first=True, enforce_sorted=False
    )
    _, fused = _lstm_events(lambda: lstm(packed))
    assert fused == []
