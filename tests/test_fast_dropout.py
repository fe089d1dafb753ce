"""The toolkit's dropout: torch's semantics, masks from 16-bit lanes, and the LSTM's between-layer
dropout run layer by layer on the fused kernel with those masks."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from lstm_plugins.model import run_lstm
from lstm_plugins.model._forward import run_lstm_from_state
from lstm_plugins.toolkit import FastDropout, _kept_lanes, _lanes_are_exact_enough, dropout_keep_mask, fast_dropout


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.5, 0.9])
def test_keep_rate_and_scale_match_torch_dropout(p):
    torch.manual_seed(1)
    values = torch.rand(2_000_003) + 0.5  # an odd count: the last 64-bit draw is cut
    dropped = fast_dropout(values, p)
    kept = dropped != 0
    n = values.numel()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * sigma
    # Kept values are scaled exactly as torch scales them.
    torch.testing.assert_close(dropped[kept], values[kept] * (1 / (1 - p)), rtol=0, atol=0)
    reference = F.dropout(values, p, True)
    assert torch.equal(reference[reference != 0], values[reference != 0] * (1 / (1 - p)))
    # Unbiased: the mean of the output is the mean of the input.
    assert abs(dropped.mean().item() - values.mean().item()) < 5 * values.mean().item() * math.sqrt(p / ((1 - p) * n))


def test_kept_values_equal_torch_dropouts_bit_for_bit_at_every_probability():
    values = torch.rand(4000) + 0.5
    for step in range(1, 1000):
        p = step / 1000
        ours, torchs = fast_dropout(values, p), F.dropout(values, p, True)
        both = (ours != 0) & (torchs != 0)
        assert torch.equal(ours[both], torchs[both]), p


def test_probabilities_the_lanes_cannot_represent_use_torchs_draw():
    # The lanes round the keep probability to 1/65536; they stand in only within 1e-4 of it.
    for step in range(1, 100_000):
        p = step / 100_000
        if _lanes_are_exact_enough(p):
            assert abs(_kept_lanes(p) / 65536 - (1 - p)) <= 1e-4 * (1 - p)
    assert _lanes_are_exact_enough(0.5) and not _lanes_are_exact_enough(0.99999)
    # At p = 0.999995 the nearest lane count is 0: every element would be dropped.
    torch.manual_seed(0)
    assert (fast_dropout(torch.ones(4_000_000), 0.999995) != 0).sum() > 0


def test_arguments_are_checked_like_torch_dropouts():
    with pytest.raises(ValueError, match=r"Expected `probability` to be in \[0, 1\], but got -0.1"):
        fast_dropout(torch.ones(3), -0.1)
    with pytest.raises(ValueError, match="but got 1.5"):
        dropout_keep_mask((3,), 1.5)
    with pytest.raises(TypeError, match="floating-point tensor, but got torch.int64"):
        fast_dropout(torch.ones(3, dtype=torch.int64), 0.5)


def test_the_four_lanes_of_one_draw_are_independent():
    torch.manual_seed(2)
    mask = (dropout_keep_mask((500_000, 4), 0.5) > 0).float()
    # Each column is one lane position of the 64-bit draws; pairwise correlations are noise only.
    correlation = torch.corrcoef(mask.T)
    off_diagonal = correlation[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.abs().max().item() < 5 / math.sqrt(500_000)
    assert (mask.mean(0) - 0.5).abs().max().item() < 5 * 0.5 / math.sqrt(500_000)


def test_masks_change_per_call_repeat_under_a_seed_and_vanish_in_eval():
    x = torch.ones(64, 50, 16)
    torch.manual_seed(3)
    first, second = fast_dropout(x, 0.3), fast_dropout(x, 0.3)
    assert not torch.equal(first, second)
    torch.manual_seed(3)
    assert torch.equal(fast_dropout(x, 0.3), first)
    assert fast_dropout(x, 0.3, training=False) is x
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))
    layer = FastDropout(0.3)
    assert isinstance(layer, torch.nn.Dropout)
    assert torch.equal(layer.eval()(x), x)
    assert not torch.equal(layer.train()(x), x)


def test_small_tensors_take_torchs_dropout_unchanged():
    x = torch.randn(40, 51)  # 2040 elements: under the lanes' threshold
    torch.manual_seed(6)
    ours = fast_dropout(x, 0.3)
    torch.manual_seed(6)
    assert torch.equal(ours, F.dropout(x, 0.3, True))


def test_gradient_is_the_mask_and_dtypes_are_kept():
    x = torch.randn(70, 90, requires_grad=True)
    torch.manual_seed(4)
    out = fast_dropout(x, 0.4)
    out.sum().backward()
    torch.manual_seed(4)
    mask = dropout_keep_mask((70, 90), 0.4)
    assert torch.equal(x.grad, mask)
    assert torch.equal(out, x * mask)
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        assert fast_dropout(torch.ones(50, 300, dtype=dtype), 0.5).dtype == dtype
    y = torch.ones(10_000)
    torch.manual_seed(5)
    expected = fast_dropout(y, 0.5)
    torch.manual_seed(5)
    assert fast_dropout(y, 0.5, inplace=True) is y and torch.equal(y, expected)


def _layerwise_reference(lstm, x, state, p, masks):
    """The stacked LSTM as separate one-layer ``nn.LSTM`` modules, dropout masks given."""
    directions = 2 if lstm.bidirectional else 1
    h0, c0 = state
    finals_h, finals_c = [], []
    for layer in range(lstm.num_layers):
        if layer > 0:
            x = x * masks[layer - 1]
        single = torch.nn.LSTM(x.size(-1), lstm.hidden_size, batch_first=True, bidirectional=lstm.bidirectional)
        for suffix in ("", "_reverse")[:directions]:
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(single, f"{kind}_l0{suffix}").data.copy_(getattr(lstm, f"{kind}_l{layer}{suffix}"))
        rows = slice(layer * directions, (layer + 1) * directions)
        x, (h, c) = single(x, (h0[rows].contiguous(), c0[rows].contiguous()))
        finals_h.append(h)
        finals_c.append(c)
    return x, torch.cat(finals_h), torch.cat(finals_c)


def _masks_drawn_like_the_library(seed, shape, layers, p):
    torch.manual_seed(seed)
    return [dropout_keep_mask(shape, p) for _ in range(layers - 1)]


def test_stacked_lstm_dropout_runs_layer_by_layer_with_the_toolkit_masks():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 32, num_layers=3, batch_first=True, dropout=0.25)
    x = torch.randn(8, 11, 6)
    lengths = torch.full((8,), 11)
    masks = _masks_drawn_like_the_library(7, (8, 11, 32), 3, 0.25)  # 2816 elements: lanes
    torch.manual_seed(7)
    output = run_lstm(lstm, x, lengths)
    zeros = torch.zeros(3, 8, 32)
    expected, _, _ = _layerwise_reference(lstm, x, (zeros, zeros), 0.25, masks)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-6)
    # In eval the masks are gone and the one multi-layer call is the module's own forward.
    lstm.eval()
    torch.testing.assert_close(run_lstm(lstm, x, lengths), lstm(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_chunked_lstm_dropout_carries_every_layers_state(bidirectional):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 16, num_layers=2, batch_first=True, dropout=0.5, bidirectional=bidirectional)
    directions = 2 if bidirectional else 1
    x = torch.randn(8, 20, 5)
    state = (torch.randn(2 * directions, 8, 16), torch.randn(2 * directions, 8, 16))
    masks = _masks_drawn_like_the_library(11, (8, 20, 16 * directions), 2, 0.5)  # 2560+ elements: lanes
    torch.manual_seed(11)
    output, (h, c) = run_lstm_from_state(lstm, x, state)
    expected, expected_h, expected_c = _layerwise_reference(lstm, x, state, 0.5, masks)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, expected_h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, expected_c, rtol=1e-5, atol=1e-6)


def test_between_layer_dropout_stays_on_the_fused_kernel_without_bernoulli():
    lstm = torch.nn.LSTM(6, 16, num_layers=2, batch_first=True, dropout=0.3)
    x = torch.randn(8, 20, 6, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_lstm(lstm, x, torch.full((8,), 20)).sum().backward()
    names = [event.key for event in prof.key_averages()]
    assert "aten::mkldnn_rnn_layer" in names and "aten::mkldnn_rnn_layer_backward" in names
    assert not [name for name in names if "bernoulli" in name]
