"""Export for serving: the ONNX graph reproduces ``model(features, lengths)`` on variable-length
batches within 1e-5, checked with ONNX Runtime (the ``export`` extra; skipped without it)."""

import json
import sys

import numpy as np
import pytest
import torch

from lstm_plugins import ClassificationTask, LSTMClassifier, LSTMRegressor, SequenceModel
from lstm_plugins.model._export import export_model, exported_parity
from lstm_plugins.model._inference import predict_sequences

TOLERANCE = 1e-5


@pytest.fixture
def runtime():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


class _PerStepClassification(ClassificationTask):
    per_step = True


def _run(runtime, path, features, lengths):
    session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": features.numpy(), "lengths": lengths.numpy()})[0]


def _padded(lengths, num_features, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    features = torch.randn(len(lengths), int(lengths.max()), num_features, generator=generator)
    features[torch.arange(features.size(1)) >= lengths.unsqueeze(1)] = 0
    return features, lengths


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_reproduces_the_model_on_variable_lengths(runtime, tmp_path, bidirectional):
    torch.manual_seed(0)
    model = LSTMClassifier(12, 9, hidden_size=16, num_layers=2, bidirectional=bidirectional)
    path = export_model(model, tmp_path / "model.onnx")
    assert model.training  # mode restored
    features, lengths = _padded([23, 1, 9, 17, 4, 23, 2], 12)  # other batch and time than traced
    with torch.no_grad():
        expected = model.eval()(features, lengths).numpy()
    got = _run(runtime, path, features, lengths)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOLERANCE
    assert exported_parity(path, model) <= TOLERANCE


def test_regressor_token_and_per_step_models(runtime, tmp_path):
    torch.manual_seed(1)
    models = {
        "regressor": LSTMRegressor(3, 2, hidden_size=8, bidirectional=True),
        "scalar": LSTMRegressor(3, hidden_size=8),
        "tokens": LSTMClassifier(6, 3, hidden_size=8, num_embeddings=20, bidirectional=True),
        "per_step": SequenceModel(4, _PerStepClassification(5), hidden_size=8, bidirectional=True),
    }
    for name, model in models.items():
        path = export_model(model, tmp_path / f"{name}.onnx")
        assert exported_parity(path, model, seed=3) <= TOLERANCE, name


def test_training_only_techniques_are_inactive(runtime, tmp_path):
    torch.manual_seed(2)
    model = LSTMClassifier(
        12, 9, hidden_size=16, num_layers=2, bidirectional=True,
        techniques=[{"name": "dropout", "input": 0.3, "between_layers": 0.3, "output": 0.3},
                    {"name": "weight_drop", "probability": 0.5}],
    )
    path = export_model(model, tmp_path / "stack.onnx")
    features, lengths = _padded([8, 3, 5], 12)
    first, second = _run(runtime, path, features, lengths), _run(runtime, path, features, lengths)
    np.testing.assert_array_equal(first, second)
    with torch.no_grad():
        assert np.abs(first - model.eval()(features, lengths).numpy()).max() <= TOLERANCE


def test_baked_standardisation_and_probabilities_match_predict_sequences(runtime, tmp_path):
    torch.manual_seed(3)
    model = LSTMClassifier(3, 4, hidden_size=8, bidirectional=True)
    rng = np.random.default_rng(0)
    statistics = (np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.5, 3.0]))
    sequences = [rng.normal(loc=1.0, size=(int(n), 3)).astype(np.float32) for n in (6, 1, 13, 4)]
    path = export_model(model, tmp_path / "served.onnx", standardize=statistics, probabilities=True,
                        class_names=["a", "b", "c", "d"])
    lengths = torch.tensor([len(s) for s in sequences])
    features = torch.zeros(len(sequences), int(lengths.max()), 3)
    for row, sequence in enumerate(sequences):
        features[row, : len(sequence)] = torch.from_numpy(sequence)
    got = _run(runtime, path, features, lengths)
    expected = predict_sequences(model, sequences, standardize=statistics)
    assert np.abs(got - expected).max() <= TOLERANCE
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(metadata["lstm_plugins.class_names"]) == ["a", "b", "c", "d"]
    assert metadata["lstm_plugins.output"] == "probabilities"


@pytest.mark.filterwarnings("ignore:Zoneout runs the LSTM")
def test_recurrence_slot_is_refused(tmp_path):
    model = LSTMClassifier(4, 2, hidden_size=8, techniques=["zoneout"])
    with pytest.raises(ValueError, match="recurrence"):
        export_model(model, tmp_path / "z.onnx")


def test_missing_onnx_says_which_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"lstm-plugins\[export\]"):
        export_model(LSTMClassifier(4, 2, hidden_size=8), tmp_path / "m.onnx")
