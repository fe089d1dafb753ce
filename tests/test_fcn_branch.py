"""The LSTM-FCN branch: equal to plain torch layers on unpadded data, exact on variable-length
batches (eval and train), refused where it cannot work, and trained, checkpointed, exported and
distributed like any network part."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import quiet_trainer
from torch import nn
from torch.profiler import ProfilerActivity, profile

from lstm_plugins import LSTMClassifier
from lstm_plugins.model import LSTMLanguageModel, LSTMSequenceLabeller
from lstm_plugins.plugins import FCNBranch
from lstm_plugins.plugins._fcn_layers import FullyConvolutionalBranch, MaskedBatchNorm1d

LENGTHS = torch.tensor([11, 3, 8, 1, 11, 6])
SMALL = {"filters": [6, 10, 6], "kernel_sizes": [8, 5, 3]}


def _batch(lengths=LENGTHS, num_features=2, time=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    time = int(lengths.max()) if time is None else time
    features = torch.randn(len(lengths), time, num_features, generator=generator)
    features[torch.arange(time) >= lengths.unsqueeze(1)] = 0
    return features


def test_masked_batch_norm_equals_torch_batch_norm_on_unpadded_data():
    torch.manual_seed(0)
    masked, reference = MaskedBatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        masked.weight.uniform_(0.5, 2), masked.bias.uniform_(-1, 1)
        reference.weight.copy_(masked.weight), reference.bias.copy_(masked.bias)
    mask = torch.ones(4, 1, 9, dtype=torch.bool)
    for _ in range(3):
        values = torch.randn(4, 3, 9) * 3 + 2
        torch.testing.assert_close(masked(values, mask), reference(values), atol=1e-5, rtol=0)
    torch.testing.assert_close(masked.running_mean, reference.running_mean)
    torch.testing.assert_close(masked.running_var, reference.running_var)
    masked.eval(), reference.eval()
    values = torch.randn(4, 3, 9)
    torch.testing.assert_close(masked(values, mask), reference(values), atol=1e-5, rtol=0)


def test_masked_batch_norm_statistics_are_those_of_the_valid_steps_only():
    norm = MaskedBatchNorm1d(1, momentum=1.0)
    values = torch.tensor([[[1.0, 3.0, 500.0]], [[2.0, 4.0, 5.0]]])
    mask = torch.tensor([[[True, True, False]], [[True, True, True]]])
    output = norm(values, mask)
    valid = torch.tensor([1.0, 3.0, 2.0, 4.0, 5.0])  # by hand: mean 3, biased variance 2
    torch.testing.assert_close(output[mask], (valid - 3) / (2 + 1e-5) ** 0.5)
    assert output[~mask].tolist() == [0.0]
    torch.testing.assert_close(norm.running_mean, torch.tensor([3.0]))
    torch.testing.assert_close(norm.running_var, torch.tensor([valid.var().item()]))  # unbiased, as BatchNorm1d


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # the reference's
def test_the_branch_equals_plain_torch_layers_on_an_unpadded_batch():
    torch.manual_seed(0)
    branch = FullyConvolutionalBranch(2, [6, 10, 6], [8, 5, 3])
    layers = []
    for convolution in branch.convolutions:
        reference = nn.Conv1d(convolution.in_channels, convolution.out_channels, convolution.kernel_size, padding="same")
        reference.load_state_dict(convolution.state_dict())
        layers += [reference, nn.BatchNorm1d(convolution.out_channels), nn.ReLU()]
    reference = nn.Sequential(*layers)
    features = torch.randn(4, 13, 2)
    expected = reference(features.transpose(1, 2)).mean(2)
    torch.testing.assert_close(branch(features, torch.full((4,), 13)), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_sample_does_not_depend_on_its_batch_mates_in_eval_mode(bidirectional):
    torch.manual_seed(0)
    model = LSTMClassifier(2, 3, hidden_size=8, bidirectional=bidirectional, techniques=[FCNBranch(**SMALL)])
    model.train()
    for seed in range(3):  # non-trivial running statistics
        model(_batch(seed=seed), LENGTHS)
    model.eval()
    features = _batch(seed=5)
    with torch.no_grad():
        batched = model.encode(features, LENGTHS).final_features
        for row, length in enumerate(LENGTHS.tolist()):
            alone = model.encode(features[row : row + 1, :length], LENGTHS[row : row + 1]).final_features
            torch.testing.assert_close(batched[row : row + 1], alone, atol=1e-5, rtol=0)


def test_adding_padding_changes_nothing_in_training_mode():
    torch.manual_seed(0)
    model = LSTMClassifier(2, 3, hidden_size=8, techniques=[FCNBranch(**SMALL)]).train()
    padded_model = LSTMClassifier(2, 3, hidden_size=8, techniques=[FCNBranch(**SMALL)]).train()
    padded_model.load_state_dict(model.state_dict())
    features = _batch()
    more_padding = torch.cat((features, torch.zeros(len(LENGTHS), 9, 2)), dim=1)
    output = model.encode(features, LENGTHS).logits
    padded_output = padded_model.encode(more_padding, LENGTHS).logits
    torch.testing.assert_close(padded_output, output, atol=1e-5, rtol=0)
    for name, buffer in model.named_buffers():  # running statistics of the valid steps only
        torch.testing.assert_close(dict(padded_model.named_buffers())[name], buffer, atol=1e-6, rtol=0)
    output.sum().backward(), padded_output.sum().backward()
    for (name, p), q in zip(model.named_parameters(), padded_model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-5, msg=name)


def test_the_head_reads_the_summary_then_the_branch():
    model = LSTMClassifier(2, 3, hidden_size=8, techniques=[FCNBranch(**SMALL)]).eval()
    assert (model.head.in_features, model.head.out_features) == (8 + 6, 3)
    features = _batch()
    with torch.no_grad():
        final = model.encode(features, LENGTHS).final_features
        torch.testing.assert_close(final[:, :8], model.summary(model.encode(features, LENGTHS).sequence_output, LENGTHS, False))
        torch.testing.assert_close(final[:, 8:], model.branches["fcn"](features, LENGTHS))


@pytest.mark.parametrize("build, task", [
    (lambda t: LSTMSequenceLabeller(2, 4, hidden_size=8, techniques=t), "sequence_labelling"),
    (lambda t: LSTMLanguageModel(11, embedding_size=4, hidden_size=8, techniques=t), "language_model"),
])
def test_refused_on_a_per_step_task_naming_the_task(build, task):
    with pytest.raises(ValueError, match=f"`fcn_branch` technique cannot work with the `{task}` task"):
        build([FCNBranch(**SMALL)])


def test_arguments_are_checked_at_construction():
    with pytest.raises(ValueError, match="Expected `filters` and `kernel_sizes` of one equal, non-zero length"):
        FCNBranch(filters=[8, 8], kernel_sizes=[3])
    with pytest.raises(ValueError, match="Expected `filters` to be a positive int"):
        FCNBranch(filters=[8, 0, 8])
    with pytest.raises(ValueError, match="Expected `sequence_length`.*with dimension_shuffle=True"):
        FCNBranch(dimension_shuffle=True)
    with pytest.raises(ValueError, match="Expected `sequence_length` to be None without the dimension shuffle"):
        FCNBranch(sequence_length=150)


def test_a_branch_added_once_a_trainer_is_attached_is_refused():
    model = LSTMClassifier(2, 3, hidden_size=8)
    model.trainer = quiet_trainer()
    with pytest.raises(RuntimeError, match="Cannot add branch `fcn`: the model is attached to a Trainer"):
        FCNBranch(**SMALL).configure_network(model)


def test_dimension_shuffle_reads_the_transposed_input_and_refuses_variable_lengths():
    torch.manual_seed(0)
    model = LSTMClassifier(2, 3, hidden_size=8, techniques=[FCNBranch(**SMALL, dimension_shuffle=True, sequence_length=11)])
    model.eval()
    assert model.lstm.input_size == 11
    features = _batch(torch.full((4,), 11))
    with torch.no_grad():
        output = model.encode(features, torch.full((4,), 11))
        _, (h, _) = model.lstm(features.transpose(1, 2))  # 2 steps (the features) of 11 inputs
        torch.testing.assert_close(output.final_features[:, :8], h[-1])
    assert output.lengths.tolist() == [2] * 4
    with pytest.raises(ValueError, match="needs every sequence to have exactly 11 steps.*lengths \\[3, 11\\]"):
        model.encode(_batch(torch.tensor([11, 3])), torch.tensor([11, 3]))
    with pytest.raises(ValueError, match="`sequence_view` slot is filled"):
        from lstm_plugins.model import export_model

        export_model(model, "unused.onnx")


@pytest.mark.parametrize("shuffle", [False, True])
def test_the_lstm_stays_on_the_fused_kernel(shuffle):
    options = {"dimension_shuffle": True, "sequence_length": 11} if shuffle else {}
    model = LSTMClassifier(2, 3, hidden_size=8, num_layers=2, bidirectional=True,
                           techniques=[FCNBranch(**SMALL, **options)]).train()
    lengths = torch.full((6,), 11) if shuffle else LENGTHS
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.encode(_batch(lengths), lengths).logits.sum().backward()
    assert len([e for e in prof.events() if e.name == "aten::mkldnn_rnn_layer"]) == 2 * 2


def test_onnx_export_matches_the_model_on_variable_length_batches(tmp_path):
    pytest.importorskip("onnxruntime")
    from lstm_plugins.model import export_model, exported_parity

    model = LSTMClassifier(2, 3, hidden_size=8, bidirectional=True, techniques=[FCNBranch(**SMALL)]).train()
    for seed in range(3):
        model(_batch(seed=seed), LENGTHS)
    path = export_model(model, tmp_path / "model.onnx", check_parity=False)
    assert exported_parity(path, model) < 1e-5


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")  # the resumed fit's
def test_fit_stacked_with_dropout_and_clipping_then_checkpoint_round_trip_and_resume(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from lstm_plugins.data import ArchiveDataModule

    stack = [{"fcn_branch": SMALL}, {"summary": {"mode": "attention"}}, {"dropout": {"output": 0.3}},
             {"gradient_clipping": {"threshold": 1.0}}]
    datamodule = ArchiveDataModule("gun_point", batch_size=16, seed=0)
    torch.manual_seed(0)
    model = LSTMClassifier(1, 2, hidden_size=8, techniques=stack)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = quiet_trainer(max_epochs=2, enable_checkpointing=True, callbacks=[checkpoint])
    trainer.fit(model, datamodule=datamodule)
    for name in ("branches.fcn.convolutions.0.weight", "branches.fcn.norms.2.running_var", "summary.context.weight"):
        assert not torch.equal(model.state_dict()[name], initial[name]), name
    assert int(model.state_dict()["branches.fcn.norms.0.num_batches_tracked"]) == trainer.global_step

    loaded = LSTMClassifier.load_from_checkpoint(tmp_path / "last.ckpt")
    assert [type(t).__name__ for t in loaded.techniques] == ["FCNBranch", "SequenceSummary", "Dropout", "GradientClipping"]
    features = _batch(num_features=1)
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(features, LENGTHS), model(features, LENGTHS), atol=0, rtol=0)

    resumed_model = LSTMClassifier(1, 2, hidden_size=8, techniques=stack)
    resumed = quiet_trainer(max_epochs=3, enable_checkpointing=True, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    resumed.fit(resumed_model, datamodule=datamodule, ckpt_path=tmp_path / "last.ckpt")
    assert resumed.global_step == trainer.global_step * 3 // 2
    assert int(resumed_model.state_dict()["branches.fcn.norms.0.num_batches_tracked"]) == resumed.global_step


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("ddp_fcn")
    script = Path(__file__).with_name("ddp_fcn_fit.py")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    completed = subprocess.run([sys.executable, str(script), str(output)], env=environment,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return output


@pytest.mark.distributed
def test_batch_norm_statistics_and_gradients_are_global_across_processes(ddp_run):
    """Two gloo processes, half the batch each, compute what one process computes on the whole."""
    from ddp_fcn_fit import norm_case

    halves = [json.loads((ddp_run / f"norm_rank{rank}.json").read_text()) for rank in (0, 1)]
    norm, values, mask, weights = norm_case()
    (norm(values, mask) * weights).sum().backward()
    distributed = torch.tensor(halves[0]["grad"] + halves[1]["grad"])
    torch.testing.assert_close(distributed, values.grad, atol=1e-4, rtol=1e-5)
    for half in halves:
        torch.testing.assert_close(torch.tensor(half["running_mean"]), norm.running_mean)
    # Each process holds the gradient of its own outputs; DDP sums (averages) them as for any parameter.
    weight_grad = torch.tensor(halves[0]["weight_grad"]) + torch.tensor(halves[1]["weight_grad"])
    torch.testing.assert_close(weight_grad, norm.weight.grad, atol=1e-3, rtol=1e-5)


@pytest.mark.distributed
def test_fit_under_two_process_ddp(ddp_run):
    rank0, rank1 = (json.loads((ddp_run / f"metrics_rank{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1 and rank0["world_size"] == 2
    model = LSTMClassifier(1, 2, hidden_size=8, techniques=rank0["stack"])
    model.load_state_dict(torch.load(ddp_run / "weights.pt", weights_only=True))
    from lstm_plugins.data import ArchiveDataModule

    quiet_trainer().test(model, datamodule=ArchiveDataModule("gun_point", batch_size=16, seed=0), verbose=False)
    assert model.test_results["test/accuracy"].item() == pytest.approx(rank0["test/accuracy"], abs=1e-6)


def test_gate_saturation_reads_the_shuffled_steps():
    """Diagnostics that rerun the LSTM see the steps it reads: with the dimension shuffle, one step
    of `sequence_length` features (it crashed on the unshuffled input mid-training before)."""
    from lstm_plugins.plugins import FCNBranch
    from lstm_plugins.plugins.gate_saturation import measure_gate_saturation

    model = LSTMClassifier(1, 2, hidden_size=4, techniques=[FCNBranch(filters=(4, 4, 4), dimension_shuffle=True,
                                                                    sequence_length=20)])
    fractions = measure_gate_saturation(model, torch.randn(3, 20, 1), torch.full((3,), 20))
    assert fractions and all(0.0 <= float(value) <= 1.0 for value in fractions.values())
