"""Locked dropout, weight drop, embedding dropout, AR/TAR, weight decay, initialisation."""

import warnings

import pytest
import torch
from conftest import make_batch
from torch.profiler import ProfilerActivity, profile

from lstm_plugins import LSTMClassifier, Technique, hookimpl
from lstm_plugins.model import valid_step_mask
from lstm_plugins.plugins import ActivationRegularization, DecoupledWeightDecay, EmbeddingDropout, Initialization, L2Penalty, LockedDropout, WeightDrop
from lstm_plugins.plugins.functional import activation_regularization, decoupled_weight_decay, embedding_dropout, initialization, locked_dropout, weight_drop
from lstm_plugins.plugins.activation_regularization import temporal_activation_regularization

# --- locked dropout -----------------------------------------------------------------------------


def test_locked_mask_is_constant_across_time_and_differs_between_sequences():
    torch.manual_seed(0)
    dropped = locked_dropout(torch.ones(64, 20, 32), 0.5)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # constant across time
    masks = dropped[:, 0]
    assert len({tuple(row.tolist()) for row in masks}) == 64  # one mask per sequence
    assert set(dropped.unique().tolist()) == {0.0, 2.0}  # kept values scaled by 1 / (1 - p)
    assert (masks == 0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert not torch.equal(locked_dropout(torch.ones(64, 20, 32), 0.5), dropped)  # new per call
    assert torch.equal(locked_dropout(torch.ones(4, 3, 2), 0.5, training=False), torch.ones(4, 3, 2))


def test_locked_dropout_plugin_fills_input_and_sequence_slots():
    model = LSTMClassifier(12, 9, techniques=[LockedDropout(input=0.2, output=0.3)])
    assert [layer.probability for layer in model.input_layers] == [0.2]
    assert [layer.probability for layer in model.sequence_layers] == [0.3]
    batch = make_batch([9, 4, 7])
    output = model.train().encode(batch.features, batch.lengths)
    zeroed = (output.sequence_output == 0).all(dim=1)  # a dropped unit is zero at every step
    assert zeroed.any() and not torch.equal(output.sequence_output, output.raw_sequence_output)
    model.eval()
    evaluated = model.encode(batch.features, batch.lengths)
    torch.testing.assert_close(evaluated.sequence_output, evaluated.raw_sequence_output)


# --- weight drop --------------------------------------------------------------------------------


def test_weight_drop_masks_only_hidden_to_hidden_changes_each_step_and_is_off_in_eval():
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, num_layers=2, bidirectional=True, techniques=[WeightDrop(0.5)])
    names = model.lstm._flat_weights_names
    first, second = model.lstm_weights(), model.lstm_weights()
    for name, parameter, a, b in zip(names, model.lstm._flat_weights, first, second):
        if name.startswith("weight_hh"):
            kept = a != 0
            assert 0.4 < kept.float().mean().item() < 0.6
            torch.testing.assert_close(a[kept], parameter[kept] * 2)  # scaled by 1 / (1 - p)
            assert not torch.equal(a, b)  # a new mask every forward pass
        else:
            assert a is parameter  # input weights and biases untouched
    model.eval()
    assert all(torch.equal(w, p) for w, p in zip(model.lstm_weights(), model.lstm._flat_weights))


def test_weight_drop_state_dict_loads_into_a_fresh_model():
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, bidirectional=True, techniques=[WeightDrop(0.5)]).eval()
    plain = LSTMClassifier(12, 9, bidirectional=True).eval()
    assert list(model.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(model.state_dict())
    again = LSTMClassifier(12, 9, bidirectional=True, techniques=[WeightDrop(0.5)]).eval()
    again.load_state_dict(model.state_dict())
    batch = make_batch([12, 5, 8])
    reference = model(batch.features, batch.lengths)
    torch.testing.assert_close(plain(batch.features, batch.lengths), reference)
    torch.testing.assert_close(again(batch.features, batch.lengths), reference)


def test_weight_drop_trains_on_the_fused_kernel_without_warnings(batch):
    model = LSTMClassifier(12, 9, num_layers=2, techniques=[WeightDrop(0.3)]).train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            output = model.encode(batch.features, batch.lengths)
            torch.nn.functional.cross_entropy(output.logits, batch.targets).backward()
    names = [event.name for event in prof.events()]
    assert names.count("aten::mkldnn_rnn_layer") == 2
    assert model.lstm.weight_hh_l0.grad is not None and model.lstm.weight_hh_l0.grad.abs().sum() > 0


def test_two_weight_drops_on_one_weight_are_refused_naming_both():
    other = WeightDrop(0.2)
    other.name = "my_weight_drop"
    with pytest.raises(ValueError, match="Techniques `weight_drop` and `my_weight_drop` both transform the LSTM weight `weight_hh_l0`"):
        LSTMClassifier(12, 9, techniques=[WeightDrop(0.5), other])


def test_weight_drop_arguments():
    with pytest.raises(ValueError, match=r"Expected `probability` to be a float in \[0, 1\), but got 1.0."):
        WeightDrop(1.0)
    with pytest.raises(ValueError, match="Expected `layers` to name layers of the 1-layer LSTM, but got \\[3\\]."):
        LSTMClassifier(12, 9, techniques=[WeightDrop(0.5, layers=[3])])
    # One index beyond the LSTM is a typo too, even beside a valid one.
    with pytest.raises(ValueError, match="Expected `layers` to name layers of the 2-layer LSTM, but got \\[0, 2\\]."):
        LSTMClassifier(12, 9, num_layers=2, techniques=[WeightDrop(0.5, layers=[0, 2])])


def test_weight_drop_function_face_is_what_the_technique_applies():
    torch.manual_seed(0)
    weight = torch.ones(200, 50)
    dropped = weight_drop(weight, 0.25)
    assert dropped.unique().tolist() == pytest.approx([0.0, 1 / 0.75])  # kept ones scaled by 1 / (1 - p)
    assert (dropped == 0).float().mean().item() == pytest.approx(0.25, abs=0.02)
    assert torch.equal(weight_drop(weight, 0.25, training=False), weight)
    model = LSTMClassifier(12, 9, techniques=[WeightDrop(0.25)]).train()
    torch.manual_seed(1)
    applied = model.lstm_weights()[1]  # weight_hh_l0
    torch.manual_seed(1)
    torch.testing.assert_close(applied, weight_drop(model.lstm.weight_hh_l0, 0.25))


# --- embedding dropout --------------------------------------------------------------------------


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(0)
    model = LSTMClassifier(8, 2, num_embeddings=50, techniques=[EmbeddingDropout(0.5)]).train()
    tokens = torch.tensor([[3, 7, 3, 3, 9], [7, 7, 3, 1, 0]])
    embedded = model.embedding(tokens)
    dropped = (embedded == 0).all(-1)
    for word in (3, 7):  # every occurrence of a word shares its fate
        assert len(set(dropped[tokens == word].tolist())) == 1
    weights = embedding_dropout(torch.ones(2000, 4), 0.5)
    assert ((weights == 0).all(1) | (weights == 2).all(1)).all()
    model.eval()
    torch.testing.assert_close(model.embedding(tokens), model.embedding.weight[tokens])
    logits = model(tokens, torch.tensor([5, 4]))
    assert logits.shape == (2, 2)


def test_embedding_dropout_needs_token_inputs():
    with pytest.raises(ValueError, match="`embedding_dropout` needs token inputs"):
        LSTMClassifier(8, 2, techniques=[EmbeddingDropout(0.1)])


# --- AR / TAR -----------------------------------------------------------------------------------


def test_ar_and_tar_equal_their_formulas_on_padded_batches():
    torch.manual_seed(0)
    lengths = torch.tensor([5, 1, 3, 7])
    outputs = torch.randn(4, 7, 6)
    outputs[valid_step_mask(lengths, 7) == 0] = 1e3  # padding must not count
    sequences = [outputs[i, :n].double() for i, n in enumerate(lengths)]
    expected_ar = 2.0 * torch.stack([s.pow(2).mean() for s in sequences]).mean()
    with_pairs = [s for s in sequences if len(s) > 1]
    expected_tar = 0.5 * torch.stack([(s[1:] - s[:-1]).pow(2).mean() for s in with_pairs]).mean()
    assert activation_regularization(outputs, lengths, 2.0).item() == pytest.approx(expected_ar.item(), rel=1e-6)
    assert temporal_activation_regularization(outputs, lengths, 0.5).item() == pytest.approx(expected_tar.item(), rel=1e-6)
    assert temporal_activation_regularization(outputs[1:2], lengths[1:2], 0.5).item() == 0.0  # no pair
    # Batch-mates and padding do not change a sequence's share.
    alone = activation_regularization(outputs[3:4, :7], lengths[3:4], 2.0)
    assert alone.item() == pytest.approx(2.0 * sequences[3].pow(2).mean().item(), rel=1e-6)


def test_ar_uses_dropped_outputs_and_tar_raw_outputs():
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, techniques=[LockedDropout(output=0.5), ActivationRegularization(1.0, 1.0)]).train()
    batch = make_batch([9, 4, 7])
    output = model.encode(batch.features, batch.lengths)
    (terms,) = [t for t in model._hook.loss_terms(model=model, batch=batch, output=output, task_loss=torch.tensor(0.0)) if t]
    assert terms["ar"].item() == pytest.approx(activation_regularization(output.sequence_output, batch.lengths, 1.0).item())
    assert terms["tar"].item() == pytest.approx(temporal_activation_regularization(output.raw_sequence_output, batch.lengths, 1.0).item())
    assert terms["ar"].item() != pytest.approx(activation_regularization(output.raw_sequence_output, batch.lengths, 1.0).item())


# --- decoupled weight decay ---------------------------------------------------------------------


def test_weight_decay_groups_and_a_decoupled_step():
    model = LSTMClassifier(12, 9, optimizer="adamw", learning_rate=0.1,
                           techniques=[DecoupledWeightDecay(0.5, exclude=["head.*"])])
    optimizer = model.configure_optimizers()
    decayed, excluded = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decayed["params"]) == ["lstm.weight_hh_l0", "lstm.weight_ih_l0"]
    assert decayed["weight_decay"] == 0.5 and excluded["weight_decay"] == 0.0
    before = model.lstm.weight_hh_l0.detach().clone()
    head_before = model.head.weight.detach().clone()
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    # With a zero gradient AdamW only decays: w <- w * (1 - lr * weight_decay).
    torch.testing.assert_close(model.lstm.weight_hh_l0.detach(), before * (1 - 0.1 * 0.5))
    torch.testing.assert_close(model.head.weight.detach(), head_before)


def test_weight_decay_with_adam_is_refused():
    with pytest.raises(ValueError, match="`weight_decay` needs optimizer 'adamw'.*uses 'adam'"):
        LSTMClassifier(12, 9, optimizer="adam", techniques=[DecoupledWeightDecay()])


def test_weight_decay_function_face_makes_the_techniques_groups():
    model = LSTMClassifier(12, 9, optimizer="adamw", techniques=[DecoupledWeightDecay(0.5, exclude=["head.*"])])
    groups = decoupled_weight_decay(model.named_parameters(), 0.5, exclude=["head.*"])
    assert [(g["names"], g["weight_decay"]) for g in groups] == [
        (["lstm.weight_ih_l0", "lstm.weight_hh_l0"], 0.5),
        (["lstm.bias_ih_l0", "lstm.bias_hh_l0", "head.weight", "head.bias"], 0.0),
    ]
    optimizer = model.configure_optimizers()
    assert [[id(p) for p in g["params"]] for g in optimizer.param_groups] == [[id(p) for p in g["params"]] for g in groups]
    everything = decoupled_weight_decay(model.named_parameters(), 0.5, exclude_biases=False)
    assert [(len(g["names"]), g["weight_decay"]) for g in everything] == [(6, 0.5)]


def test_weight_decay_splits_each_existing_group_keeping_its_options():
    class HeadLearningRate(Technique):
        name = "head_learning_rate"

        @hookimpl
        def configure_parameter_groups(self, parameter_groups):
            (group,) = parameter_groups
            pairs = list(zip(group["names"], group["params"]))
            head = [(n, p) for n, p in pairs if n.startswith("head.")]
            rest = [(n, p) for n, p in pairs if not n.startswith("head.")]
            parameter_groups[:] = [
                {"names": [n for n, _ in rest], "params": [p for _, p in rest]},
                {"names": [n for n, _ in head], "params": [p for _, p in head], "lr": 0.5},
            ]

    # The pattern matches only in the second group: decided over all groups, not refused per group.
    model = LSTMClassifier(12, 9, optimizer="adamw", learning_rate=0.1,
                           techniques=[HeadLearningRate(), DecoupledWeightDecay(0.2, exclude=["head.weight"])])
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [([names[id(p)] for p in g["params"]], g["weight_decay"], g["lr"])
              for g in model.configure_optimizers().param_groups]
    assert groups == [
        (["lstm.weight_ih_l0", "lstm.weight_hh_l0"], 0.2, 0.1),
        (["lstm.bias_ih_l0", "lstm.bias_hh_l0"], 0.0, 0.1),
        (["head.weight", "head.bias"], 0.0, 0.5),
    ]


def test_weight_decay_refuses_a_misspelt_exclude_pattern_naming_the_technique():
    with pytest.raises(ValueError, match=r"^Technique `weight_decay`: `exclude` pattern\(s\) 'haed\.\*' match no parameter"):
        LSTMClassifier(12, 9, optimizer="adamw", techniques=[DecoupledWeightDecay(exclude=["head.*", "haed.*"])])
    with pytest.raises(ValueError, match=r"^Technique `weight_decay`: `exclude` pattern\(s\) 'haed\.\*' match no parameter"):
        LSTMClassifier(12, 9, optimizer="adamw", techniques=[DecoupledWeightDecay(exclude=["haed.*"], allow_with_l2=True)])
    with pytest.raises(TypeError, match=r"Expected `exclude` to be a list of name patterns, but got 'head.\*'."):
        DecoupledWeightDecay(exclude="head.*")


def test_l2_and_weight_decay_refuse_a_misspelt_pattern_with_the_same_message():
    names = "lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0, head.weight, head.bias"
    message = "Technique `{}`: `{}` pattern(s) 'haed.*' match no parameter; parameter names are: " + names + "."
    with pytest.raises(ValueError) as decay_error:
        LSTMClassifier(12, 9, optimizer="adamw", techniques=[DecoupledWeightDecay(exclude=["haed.*"])])
    assert str(decay_error.value) == message.format("weight_decay", "exclude")
    # l2 resolves its parameters when training starts; a valid pattern beside it does not hide it.
    model = LSTMClassifier(12, 9, techniques=[L2Penalty(parameters=["lstm.*", "haed.*"])])
    with pytest.raises(ValueError) as l2_error:
        model._hook.on_fit_setup(model=model, trainer=None)
    assert str(l2_error.value) == message.format("l2", "parameters")


def test_weight_decay_and_l2_on_the_same_parameters_are_refused_unless_allowed():
    with pytest.raises(ValueError, match="Techniques `l2` and `weight_decay` both regularise head.weight, lstm.weight_hh_l0, lstm.weight_ih_l0;"):
        LSTMClassifier(12, 9, optimizer="adamw", techniques=[L2Penalty(1e-4), DecoupledWeightDecay(0.01)])
    LSTMClassifier(12, 9, optimizer="adamw", techniques=[L2Penalty(1e-4), DecoupledWeightDecay(0.01, allow_with_l2=True)])
    LSTMClassifier(12, 9, optimizer="adamw",
                   techniques=[L2Penalty(1e-4, parameters=["head.*"]), DecoupledWeightDecay(0.01, exclude=["head.*"])])


# --- initialisation -----------------------------------------------------------------------------


def test_forget_gate_bias_and_orthogonal_recurrent_blocks():
    model = LSTMClassifier(12, 9, hidden_size=16, num_layers=2, bidirectional=True,
                           techniques=[Initialization(forget_bias=1.0)])
    hidden = 16
    for name in model.lstm._flat_weights_names:
        if name.startswith("bias_ih"):
            total = getattr(model.lstm, name) + getattr(model.lstm, name.replace("_ih", "_hh"))
            assert torch.equal(total[hidden : 2 * hidden], torch.ones(hidden))
        if name.startswith("weight_hh"):
            weight = getattr(model.lstm, name).detach()
            for gate in range(4):
                block = weight[gate * hidden : (gate + 1) * hidden]
                torch.testing.assert_close(block @ block.T, torch.eye(hidden), atol=1e-5, rtol=0)


def test_initialization_function_face_is_what_the_technique_applies():
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, hidden_size=8, techniques=[Initialization(forget_bias=2.0, orthogonal_hidden=False)])
    torch.manual_seed(0)
    plain = LSTMClassifier(12, 9, hidden_size=8)
    initialization(plain.lstm, forget_bias=2.0, orthogonal_hidden=False)
    for name, parameter in model.lstm.named_parameters():
        assert torch.equal(parameter, getattr(plain.lstm, name)), name
    torch.testing.assert_close((plain.lstm.bias_ih_l0 + plain.lstm.bias_hh_l0)[8:16], torch.full((8,), 2.0))


def test_initialization_runs_before_techniques_that_read_weights():
    seen = []

    class ReadsWeights(Technique):
        name = "reads_weights"

        @hookimpl
        def configure_network(self, model):
            seen.append((model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0)[64:128].mean().item())

    LSTMClassifier(12, 9, techniques=[ReadsWeights(), Initialization(forget_bias=3.0)])
    assert seen == [pytest.approx(3.0)]
