"""Attributions over time and gate activations (lstm_plugins.explain) and `lstm-plugins explain`."""

import csv
import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("captum")

from lstm_plugins import LSTMClassifier, LSTMRegressor  # noqa: E402
from lstm_plugins import cli  # noqa: E402
from lstm_plugins.explain import (  # noqa: E402
    METHODS, ConvergenceWarning, attribute, gate_activations, plot_attributions, plot_gates,
)
from lstm_plugins.model import LSTMSequenceLabeller  # noqa: E402

LENGTHS = torch.tensor([9, 4, 1, 6])
PNG = b"\x89PNG\r\n\x1a\n"


def _padded(lengths=LENGTHS, features=3, seed=0, padding=0.0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), int(lengths.max()), features, generator=generator)
    valid = torch.arange(x.size(1)) < lengths.unsqueeze(1)
    return torch.where(valid.unsqueeze(-1), x, padding)


def _model(cls=LSTMClassifier, *args, scale=2.0, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = cls(*args, hidden_size=6, **kwargs)
    with torch.no_grad():  # larger weights: a model far from linear, so completeness is a real check
        for weight in model.lstm.parameters():
            weight.mul_(scale)
        model.head.weight.mul_(5.0)
    return model.eval()


@pytest.fixture(scope="module")
def classifier():
    return _model(LSTMClassifier, 3, 4, num_layers=2, bidirectional=True)


@pytest.mark.parametrize("method", METHODS)
def test_padded_steps_get_zero_and_padding_content_never_matters(classifier, method):
    clean = attribute(classifier, _padded(), LENGTHS, method=method)
    noisy = attribute(classifier, _padded(padding=7.0), LENGTHS, method=method)
    valid = (torch.arange(clean.size(1)) < LENGTHS.unsqueeze(1)).unsqueeze(-1).expand_as(clean)
    assert clean[~valid].eq(0).all() and noisy[~valid].eq(0).all()
    assert torch.equal(clean, noisy)
    assert clean[valid].abs().gt(0).float().mean() > 0.9  # the valid steps do carry attributions


def test_the_model_itself_gives_padded_steps_no_gradient(classifier):
    """The zeros above are not only attribute()'s mask: the fused forward pass itself never reads
    padding, so the raw gradient of each sequence's logit is exactly 0 at its padded steps, whatever
    the padding holds, and its valid steps' gradient does not depend on the padding either."""
    gradients = []
    for padding in (0.0, 7.0):
        features = _padded(padding=padding).requires_grad_(True)
        logits = classifier(features, LENGTHS)
        logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
        gradients.append(features.grad)
    valid = (torch.arange(gradients[0].size(1)) < LENGTHS.unsqueeze(1)).unsqueeze(-1).expand_as(gradients[0])
    assert gradients[1][~valid].eq(0).all() and gradients[1][valid].abs().gt(0).any()
    torch.testing.assert_close(gradients[0][valid], gradients[1][valid], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_batched_attributions_equal_per_sample(classifier, method):
    features = _padded()
    batched = attribute(classifier, features, LENGTHS, method=method)
    for row, length in enumerate(LENGTHS.tolist()):
        alone = attribute(classifier, features[row : row + 1, :length], [length], method=method)
        torch.testing.assert_close(batched[row, :length], alone[0], atol=1e-5, rtol=1e-4)


def _gradient(model, features, lengths, target):
    x = features.clone().requires_grad_()
    model(x, lengths).reshape(len(lengths), -1).gather(1, target.view(-1, 1)).sum().backward()
    return x.grad


def test_one_pass_methods_equal_the_hand_computed_gradient(classifier):
    features = _padded()
    with torch.no_grad():
        predicted = classifier(features, LENGTHS).argmax(-1)
    gradient = _gradient(classifier, features, LENGTHS, predicted)
    torch.testing.assert_close(attribute(classifier, features, LENGTHS, method="saliency"), gradient.abs())
    torch.testing.assert_close(attribute(classifier, features, LENGTHS, method="input_x_gradient"), gradient * features)
    # The default target is the predicted class; another target gives other attributions.
    other = (predicted + 1) % 4
    torch.testing.assert_close(attribute(classifier, features, LENGTHS, method="saliency", target=other),
                               _gradient(classifier, features, LENGTHS, other).abs())


@pytest.mark.parametrize("baseline", [None, 0.5])
@pytest.mark.filterwarnings("error::lstm_plugins.explain.ConvergenceWarning")  # none at 64 steps
def test_integrated_gradients_are_complete_within_their_convergence_delta(classifier, baseline):
    features = _padded()
    attributions, delta = attribute(classifier, features, LENGTHS, baseline=baseline, n_steps=64,
                                    return_convergence_delta=True)
    reference = torch.full_like(features, 0.0 if baseline is None else baseline)  # padding never counts
    with torch.no_grad():
        target = classifier(features, LENGTHS).argmax(-1, keepdim=True)
        gap = (classifier(features, LENGTHS).gather(1, target) - classifier(reference, LENGTHS).gather(1, target))[:, 0]
    sums = attributions.sum(dim=(1, 2))
    torch.testing.assert_close(sums - gap, delta, atol=1e-5, rtol=0)  # delta is what Captum says it is
    assert gap.abs().mean() > 0.05
    assert (delta.abs() < 0.02 * gap.abs() + 1e-4).all(), (delta, gap)  # complete within 2 % at 64 steps
    with pytest.warns(ConvergenceWarning, match=r"did not converge for \d of 4 sequences at `n_steps`=2"):
        _, coarse = attribute(classifier, features, LENGTHS, baseline=baseline, n_steps=2,
                              return_convergence_delta=True)
    assert coarse.abs().sum() > 5 * delta.abs().sum()  # and the delta shrinks as the path is refined


def test_regression_attributions_are_complete():
    model = _model(LSTMRegressor, 3, target_mean=1.0, target_std=2.0)
    features = _padded()
    attributions, delta = attribute(model, features, LENGTHS, n_steps=64, return_convergence_delta=True)
    with torch.no_grad():
        gap = model(features, LENGTHS) - model(torch.zeros_like(features), LENGTHS)
    torch.testing.assert_close(attributions.sum(dim=(1, 2)), gap, atol=0.02 * float(gap.abs().max()), rtol=0)
    assert delta.abs().max() < 1e-2


def test_the_backward_pass_stays_on_the_fused_kernel(classifier):
    from torch.profiler import profile

    with profile() as profiler:
        attribute(classifier, _padded(), LENGTHS, n_steps=4)
    names = {event.name for event in profiler.events()}
    assert {"aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward"} <= names
    assert not {name for name in names if "lstm_cell" in name or "_thnn_fused" in name}


def test_bad_arguments_are_refused_clearly(classifier):
    features = _padded()
    with pytest.raises(ValueError, match="Expected `method` to be one of 'integrated_gradients'"):
        attribute(classifier, features, LENGTHS, method="deeplift")
    with pytest.raises(ValueError, match="`baseline` belongs to integrated gradients"):
        attribute(classifier, features, LENGTHS, method="saliency", baseline=1.0)
    with pytest.raises(ValueError, match=r"`target` in \[0, 4\)"):
        attribute(classifier, features, LENGTHS, target=4)
    with pytest.raises(ValueError, match=r"every length in \[1, 9\]"):
        attribute(classifier, features, torch.tensor([9, 4, 0, 6]))
    with pytest.raises(ValueError, match=r"shape \(batch, time, 3\)"):
        attribute(classifier, features[..., :2], LENGTHS)
    with pytest.raises(ValueError, match="the `sequence_labelling` task predicts one per step"):
        attribute(LSTMSequenceLabeller(3, 4, hidden_size=4), features, LENGTHS)
    with pytest.raises(ValueError, match=r"`target` \(an output index in \[0, 2\)\)"):
        attribute(LSTMRegressor(3, 2, hidden_size=4), features, LENGTHS)


def test_a_missing_captum_names_the_extra(classifier, monkeypatch):
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ImportError, match=r"pip install 'lstm-plugins\[explain\]'"):
        attribute(classifier, _padded(), LENGTHS)
    gate_activations(classifier, _padded()[0])  # gates need no Captum


class _Halve(nn.Module):
    def forward(self, weight):
        return 0.5 * weight


def test_gates_from_the_kernels_weights_reproduce_the_kernel_output():
    model = _model(LSTMClassifier, 3, 4, num_layers=2, bidirectional=True, scale=1.5)
    model.input_layers.append(nn.Linear(3, 3))
    model.input_layers.append(nn.Tanh())
    model.weight_transforms["weight_hh_l0"] = _Halve()  # what weight drop does: the kernel gets other weights
    features = _padded()
    with torch.no_grad():
        kernel = model.encode(features, LENGTHS).raw_sequence_output
        model.weight_transforms.clear()
        untransformed = model.encode(features, LENGTHS).raw_sequence_output
        model.weight_transforms["weight_hh_l0"] = _Halve()
    assert (kernel - untransformed).abs().max() > 1e-2  # the transform matters
    for row, length in enumerate(LENGTHS.tolist()):
        gates = gate_activations(model, features[row], length)
        assert [(g.layer, g.direction) for g in gates] == [(0, "forward"), (0, "backward"), (1, "forward"),
                                                           (1, "backward")]
        last = torch.cat((gates[2].hidden, gates[3].hidden), dim=-1)
        torch.testing.assert_close(last, kernel[row, :length], atol=1e-5, rtol=0)
        for g in gates:  # the recurrence the gates describe
            torch.testing.assert_close(g.hidden, g.output * g.cell.tanh())
            previous = torch.cat((torch.zeros(1, 6), g.cell[:-1])) if g.direction == "forward" else \
                torch.cat((g.cell[1:], torch.zeros(1, 6)))
            torch.testing.assert_close(g.cell, g.forget * previous + g.input * g.cell_candidate)
            assert g.forget.min() >= 0 and g.forget.max() <= 1 and g.cell_candidate.abs().max() <= 1


def test_gates_refuse_what_they_cannot_read(classifier):
    with pytest.raises(ValueError, match=r"shape \(time, 3\)"):
        gate_activations(classifier, _padded())
    with pytest.raises(ValueError, match=r"`length` in \[1, 9\]"):
        gate_activations(classifier, _padded()[0], 10)


def test_plots_write_one_png_per_sequence_and_leave_no_partial_file(classifier, tmp_path):
    features, lengths = _padded(LENGTHS[:2]), LENGTHS[:2]
    attributions = attribute(classifier, features, lengths, method="input_x_gradient")
    paths = plot_attributions(attributions, features, lengths, tmp_path, titles=["a", "b"])
    assert [p.name for p in paths] == ["attribution_0000.png", "attribution_0001.png"]
    path = plot_gates(gate_activations(classifier, features[0], 9), tmp_path / "gates.png", features=features[0])
    assert all(p.read_bytes()[:8] == PNG for p in [*paths, path])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [*paths, path])
    with pytest.raises(ValueError, match="of the features' shape"):
        plot_attributions(attributions[:, :3], features, lengths, tmp_path)


# --- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A GunPoint classifier after 2 optimizer steps (about a second), saved with its data module's
    standardisation statistics as `lstm-plugins fit` saves them."""
    import pytorch_lightning as pl

    from lstm_plugins.data import ArchiveDataModule

    folder = tmp_path_factory.mktemp("explain")
    datamodule = ArchiveDataModule("gun_point", batch_size=16)
    model = LSTMClassifier(1, 2, hidden_size=8)
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder)
    trainer.fit(model, datamodule)
    trainer.save_checkpoint(folder / "tiny.ckpt")
    return folder / "tiny.ckpt", model, datamodule


def test_explain_writes_a_heatmap_per_sequence_and_the_attributions(checkpoint, tmp_path, capsys):
    from lstm_plugins.data import load_archive

    path, model, datamodule = checkpoint
    assert cli.main(["explain", "--ckpt_path", str(path), "--dataset", "gun_point", "--limit", "3",
                     "--method", "saliency", "--output", str(tmp_path)]) == 0
    assert "3 attribution heatmaps (saliency: " in capsys.readouterr().out
    assert all((tmp_path / f"attribution_{i:04d}.png").read_bytes()[:8] == PNG for i in range(3))
    rows = list(csv.DictReader((tmp_path / "attributions.csv").open()))
    assert len(rows) == 3 * 150 and rows[0].keys() == {"id", "target", "step", "feature_0", "attribution_0"}
    # The same numbers as the Python call on the test split standardised with the training statistics.
    _, test = load_archive("gun_point")
    raw = torch.from_numpy(np.stack(test.sequences[:3]))
    mean, std = float(datamodule.feature_mean[0]), float(datamodule.feature_std[0])
    features = ((raw.double() - mean) / std).float()
    expected = attribute(model, features, [150] * 3, method="saliency")
    found = torch.tensor([float(r["attribution_0"]) for r in rows]).view(3, 150, 1)
    torch.testing.assert_close(found, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(torch.tensor([float(r["feature_0"]) for r in rows]).view(3, 150, 1), features)


def test_explain_reads_ts_files_and_plots_gates(checkpoint, tmp_path, capsys):
    from lstm_plugins.data import load_archive

    path = checkpoint[0]
    _, test = load_archive("gun_point")
    lines = ["@classLabel false", "@data", *(",".join(repr(float(v)) for v in s[: 40 + 20 * i, 0])
                                              for i, s in enumerate(test.sequences[:2]))]
    (tmp_path / "new.ts").write_text("\n".join(lines) + "\n")
    assert cli.main(["explain", "--ckpt_path", str(path), "--input", str(tmp_path / "new.ts"), "--n_steps", "8",
                     "--output", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "attributions.csv").open()))
    assert [sum(r["id"] == str(i) for r in rows) for i in range(2)] == [40, 60]  # each at its own length
    assert cli.main(["explain", "--ckpt_path", str(path), "--input", str(tmp_path / "new.ts"), "--gates",
                     "--index", "1", "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "gates_0001.png").read_bytes()[:8] == PNG


def test_explain_refuses_bad_input_clearly(checkpoint, tmp_path, capsys, monkeypatch):
    path = str(checkpoint[0])
    base = ["explain", "--ckpt_path", path, "--output", str(tmp_path)]
    assert cli.main([*base, "--dataset", "gun_point", "--method", "shap"]) == 2
    assert "invalid choice: 'shap'" in capsys.readouterr().err
    assert cli.main([*base, "--dataset", "japanese_vowels"]) == 2
    assert "Expected series with 1 features" in capsys.readouterr().err
    assert cli.main([*base, "--dataset", "gun_point", "--task", "regression"]) == 2
    assert "holds a classifier (--task classification)" in capsys.readouterr().err
    assert cli.main(["explain", "--ckpt_path", str(tmp_path / "none.ckpt"), "--dataset", "gun_point"]) == 2
    assert "none.ckpt' does not exist." in capsys.readouterr().err
    (tmp_path / "empty.ckpt").write_bytes(b"")  # an interrupted write: named, not a bare EOFError
    assert cli.main(["explain", "--ckpt_path", str(tmp_path / "empty.ckpt"), "--dataset", "gun_point"]) == 2
    assert "empty.ckpt' is empty (0 bytes)" in capsys.readouterr().err
    (tmp_path / "empty.ckpt").unlink()
    assert cli.main([*base, "--dataset", "gun_point", "--gates", "--index", "150"]) == 2
    assert "`--index` in [0, 150)" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    assert cli.main([*base, "--dataset", "gun_point"]) == 2
    assert "pip install 'lstm-plugins[explain]'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written by a refused command


def test_explain_reads_a_regressors_checkpoint_with_task_regression(tmp_path, capsys):
    import pytorch_lightning as pl

    from lstm_plugins.data import SequenceDataModule

    generator = np.random.default_rng(0)
    sequences = [generator.normal(3.0, 2.0, (n, 2)).astype(np.float32) for n in generator.integers(3, 12, 40)]
    targets = np.array([s[:, 0].mean() for s in sequences], dtype=np.float32)
    datamodule = SequenceDataModule(sequences, targets, task="regression", batch_size=8)
    model = LSTMRegressor(2, hidden_size=4, target_mean=float(targets.mean()), target_std=float(targets.std()))
    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule)
    trainer.save_checkpoint(tmp_path / "regressor.ckpt")
    lines = ["@targetLabel true", "@data", *(f"{','.join(map(repr, s[:, 0].tolist()))}:"
                                            f"{','.join(map(repr, s[:, 1].tolist()))}:1.0" for s in sequences[:2])]
    (tmp_path / "series.ts").write_text("\n".join(lines) + "\n")
    command = ["explain", "--ckpt_path", str(tmp_path / "regressor.ckpt"), "--input", str(tmp_path / "series.ts"),
               "--method", "input_x_gradient", "--output", str(tmp_path / "out")]
    assert cli.main(command) == 2
    assert "holds a regressor (--task regression)" in capsys.readouterr().err
    assert cli.main([*command, "--task", "regression"]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "attributions.csv").open()))
    assert len(rows) == sum(len(s) for s in sequences[:2]) and {r["target"] for r in rows} == {"0"}
    mean, std = datamodule.feature_mean, datamodule.feature_std
    first = torch.from_numpy(((sequences[0] - mean) / std).astype(np.float32))[None]
    expected = attribute(model, first, [len(sequences[0])], method="input_x_gradient")[0]
    found = torch.tensor([[float(r["attribution_0"]), float(r["attribution_1"])] for r in rows if r["id"] == "0"])
    torch.testing.assert_close(found, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("technique", [{"summary": {"mode": "mean"}}, {"summary": {"mode": "attention"}},
                                       {"fcn_branch": {"filters": [8, 8, 8]}}], ids=lambda t: str(t))
@pytest.mark.filterwarnings("ignore::lstm_plugins.explain.ConvergenceWarning")  # ReLU kinks: exactness is the point
def test_summaries_and_the_fcn_branch_are_explained_exactly(technique):
    """Issue 16's other parts: the LSTM's summary and a branch beside it are in the forward pass
    that is attributed, and padding still gets nothing."""
    torch.manual_seed(0)
    model = LSTMClassifier(3, 4, hidden_size=6, bidirectional=True, techniques=[technique]).eval()
    features = _padded()
    batched = attribute(model, features, LENGTHS, n_steps=32)
    assert batched[1, 4:].eq(0).all() and batched[1, :4].abs().sum() > 0
    for row, length in enumerate(LENGTHS.tolist()):
        alone = attribute(model, features[row : row + 1, :length], [length], n_steps=32)
        torch.testing.assert_close(batched[row, :length], alone[0], atol=1e-5, rtol=1e-4)


def test_gates_follow_the_dimension_shuffle():
    """With LSTM-FCN's dimension shuffle the LSTM reads one step per feature: the gates are those steps."""
    torch.manual_seed(0)
    model = LSTMClassifier(2, 3, hidden_size=5, techniques=[
        {"fcn_branch": {"filters": [4, 4, 4], "dimension_shuffle": True, "sequence_length": 7}}]).eval()
    features = torch.randn(1, 7, 2)
    with torch.no_grad():
        kernel = model.encode(features, torch.tensor([7])).raw_sequence_output[0]
    gates = gate_activations(model, features[0])
    assert gates[0].input.shape == (2, 5)
    torch.testing.assert_close(gates[0].hidden, kernel, atol=1e-5, rtol=0)
