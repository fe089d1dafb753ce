"""Inference: predict_sequences, the length-sorted prediction loader, Trainer.predict on the data
modules, and the predictions CSV."""

import csv

import numpy as np
import pytest
import torch
from conftest import quiet_trainer

from lstm_plugins import ClassificationTask, LSTMClassifier, LSTMRegressor, SequenceModel
from lstm_plugins.data import JapaneseVowelsDataModule, SequenceDataModule, load_japanese_vowels
from lstm_plugins.data._predict import (
    length_batches,
    prediction_loader,
    resolve_standardization,
    restore_input_order,
)
from lstm_plugins.model._inference import predict_sequences, write_predictions_csv

LENGTHS = [9, 3, 17, 1, 9, 12, 5, 17, 2, 8]


def _sequences(num_features, lengths=LENGTHS, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, num_features)).astype(np.float32) for n in lengths]


def _one_by_one(model, sequences):
    """The reference: every sequence alone (no padding, no batch-mates)."""
    with torch.no_grad():
        return [model(torch.from_numpy(s)[None], torch.tensor([len(s)]))[0] for s in sequences]


class _PerStepClassification(ClassificationTask):
    per_step = True  # the head reads every step: (batch, time, classes)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_probabilities_match_the_model_in_input_order(bidirectional):
    torch.manual_seed(0)
    model = LSTMClassifier(4, 3, hidden_size=8, num_layers=2, bidirectional=bidirectional)
    sequences = _sequences(4)
    probabilities = predict_sequences(model, sequences, batch_size=3)
    assert probabilities.shape == (len(sequences), 3) and probabilities.dtype == np.float32
    expected = torch.stack(_one_by_one(model.eval(), sequences)).softmax(-1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5, rtol=0)
    scores = predict_sequences(model, sequences, probabilities=False)
    np.testing.assert_allclose(scores, torch.stack(_one_by_one(model, sequences)).numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("num_outputs", [1, 2])
def test_regressor_values_match_the_model_in_input_order(num_outputs):
    torch.manual_seed(1)
    model = LSTMRegressor(2, num_outputs, hidden_size=8, bidirectional=True)
    sequences = _sequences(2)
    values = predict_sequences(model, sequences, batch_size=4)
    assert values.shape == ((len(sequences),) if num_outputs == 1 else (len(sequences), num_outputs))
    np.testing.assert_allclose(values, torch.stack(_one_by_one(model.eval(), sequences)).numpy(), atol=1e-5, rtol=0)


def test_per_step_predictions_are_cut_to_each_length():
    torch.manual_seed(2)
    model = SequenceModel(3, _PerStepClassification(4), hidden_size=8, bidirectional=True)
    sequences = _sequences(3)
    predictions = predict_sequences(model, sequences, batch_size=4)
    assert isinstance(predictions, list) and [p.shape for p in predictions] == [(n, 4) for n in LENGTHS]
    for got, expected in zip(predictions, _one_by_one(model.eval(), sequences)):
        np.testing.assert_allclose(got, expected.softmax(-1).numpy(), atol=1e-5, rtol=0)


def test_token_model_reads_integer_ids():
    torch.manual_seed(3)
    model = LSTMClassifier(5, 2, hidden_size=8, num_embeddings=11)
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 11, size=n) for n in (4, 1, 7)]
    got = predict_sequences(model, sequences, probabilities=False)
    with torch.no_grad():
        model.eval()
        expected = [model(torch.from_numpy(s)[None], torch.tensor([len(s)]))[0] for s in sequences]
    np.testing.assert_allclose(got, torch.stack(expected).numpy(), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"token ids in \[0, 11\)"):
        predict_sequences(model, [np.array([3, 11])])
    with pytest.raises(ValueError, match="token model"):
        predict_sequences(model, sequences, standardize=(np.zeros(5), np.ones(5)))


def test_mode_is_restored_and_bad_inputs_are_refused():
    model = LSTMClassifier(4, 3, hidden_size=8).train()
    predict_sequences(model, _sequences(4, [3, 2]))
    assert model.training
    with pytest.raises(ValueError, match="4 features"):
        predict_sequences(model, _sequences(5, [3]))
    with pytest.raises(ValueError, match="batch_size"):
        predict_sequences(model, _sequences(4, [3]), batch_size=0)
    with pytest.raises(TypeError, match="standardize"):
        predict_sequences(model, _sequences(4, [3]), standardize="yes")


def test_batches_are_sorted_by_length():
    batches = length_batches(LENGTHS, 4)
    assert [np.asarray(LENGTHS)[b].tolist() for b in batches] == [[17, 17, 12, 9], [9, 8, 5, 3], [2, 1]]
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(LENGTHS)))
    # One length per batch for tasks that carry the LSTM's state.
    equal = length_batches([3, 3, 2, 3, 2], 2, equal_lengths=True)
    assert [b.tolist() for b in equal] == [[0, 1], [3], [2, 4]]


def test_prediction_loader_standardises_and_restores_the_input_order():
    sequences = _sequences(3)
    mean, std = np.array([1.0, -2.0, 0.5]), np.array([2.0, 0.5, 1.0])
    loader = prediction_loader(sequences, batch_size=4, standardize_with=(mean, std))
    batches = list(loader)
    assert [b.lengths.tolist() for b in batches] == [[17, 17, 12, 9], [9, 8, 5, 3], [2, 1]]
    assert all(b.features.shape[1] == int(b.lengths.max()) for b in batches)  # little padding
    first = batches[0]
    position = int(first.targets[0])  # arrays: targets hold the input positions
    expected = ((sequences[position] - mean) / std).astype(np.float32)
    np.testing.assert_array_equal(first.features[0, : len(expected)].numpy(), expected)
    restored = restore_input_order([b.targets for b in batches], loader)
    assert restored.tolist() == list(range(len(sequences)))
    per_step = restore_input_order([b.features[..., 0] for b in batches], loader, per_step=True)
    assert [len(p) for p in per_step] == LENGTHS


def _small_datamodule():
    rng = np.random.default_rng(0)
    train = [rng.normal(loc=2.0, size=(int(n), 3)) for n in rng.integers(2, 15, size=30)]
    test = [rng.normal(loc=2.0, size=(int(n), 3)) for n in rng.integers(1, 20, size=13)]
    dm = SequenceDataModule(train, np.arange(30) % 3, test, np.arange(13) % 3, batch_size=4, val_fraction=0.2)
    return dm, test


def test_trainer_predict_on_the_data_module_equals_predict_sequences():
    torch.manual_seed(4)
    dm, raw_test = _small_datamodule()
    model = LSTMClassifier(3, 3, hidden_size=8, bidirectional=True)
    outputs = quiet_trainer().predict(model, datamodule=dm)
    scores = restore_input_order(outputs, dm.predict_dataloader())
    assert scores.shape == (13, 3)
    probabilities = predict_sequences(model, raw_test, batch_size=5, standardize=dm)
    np.testing.assert_allclose(probabilities, scores.softmax(-1).numpy(), atol=1e-5, rtol=0)
    # Given sequences go through the module's statistics.
    given = dm.predict_dataloader(raw_test[:4])
    outputs = quiet_trainer().predict(model, dataloaders=given)
    np.testing.assert_allclose(restore_input_order(outputs, given).softmax(-1).numpy(), probabilities[:4], atol=1e-5)


def test_predict_dataloader_without_test_data_says_what_to_pass():
    rng = np.random.default_rng(0)
    dm = SequenceDataModule([rng.normal(size=(3, 2)) for _ in range(6)], [0, 1] * 3, val_fraction=0)
    with pytest.raises(ValueError, match=r"predict_dataloader\(sequences\)"):
        dm.predict_dataloader()
    assert resolve_standardization(dm)[0].shape == (2,)


def test_japanese_vowels_predict_in_test_order():
    torch.manual_seed(5)
    dm = JapaneseVowelsDataModule(batch_size=64)
    model = LSTMClassifier(12, 9, hidden_size=8)
    loader = dm.predict_dataloader()
    lengths = [int(b.lengths[0]) for b in loader]
    assert lengths == sorted(lengths, reverse=True)
    scores = restore_input_order(quiet_trainer().predict(model, dataloaders=loader), loader)
    _, test = load_japanese_vowels()
    probabilities = predict_sequences(model, test.sequences, batch_size=100, standardize=dm)
    np.testing.assert_allclose(probabilities, scores.softmax(-1).numpy(), atol=1e-5, rtol=0)


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_csv_for_a_classifier(tmp_path):
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=np.float32)
    rows = _read(write_predictions_csv(tmp_path / "out" / "p.csv", ["u1", 7], probabilities, ["a", "b", "c"]))
    assert rows[0] == ["id", "class", "class_name", "probability_a", "probability_b", "probability_c"]
    assert rows[1][:3] == ["u1", "0", "a"] and rows[2][:3] == ["7", "2", "c"]
    np.testing.assert_array_equal(np.array(rows[1][3:], dtype=np.float32), probabilities[0])


def test_csv_for_values_and_per_step(tmp_path):
    rows = _read(write_predictions_csv(tmp_path / "r.csv", ["a", "b"], np.array([1.5, -2.0])))
    assert rows == [["id", "value"], ["a", "1.5"], ["b", "-2"]]
    rows = _read(write_predictions_csv(tmp_path / "r2.csv", ["a"], np.array([[1.0, 2.0]])))
    assert rows == [["id", "value_0", "value_1"], ["a", "1", "2"]]
    per_step = [np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([[0.2, 0.8]])]
    rows = _read(write_predictions_csv(tmp_path / "s.csv", ["x", "y"], per_step, ["no", "yes"]))
    assert rows[0] == ["id", "step", "class", "class_name", "probability_no", "probability_yes"]
    assert [r[:4] for r in rows[1:]] == [["x", "0", "0", "no"], ["x", "1", "1", "yes"], ["y", "0", "1", "yes"]]
    with pytest.raises(ValueError, match="one id per sequence"):
        write_predictions_csv(tmp_path / "bad.csv", ["a"], np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="one per class name"):
        write_predictions_csv(tmp_path / "bad.csv", ["a"], np.array([[1.0, 2.0]]), ["a", "b", "c"])


def test_predictions_end_to_end_to_csv(tmp_path):
    torch.manual_seed(6)
    model = LSTMClassifier(4, 3, hidden_size=8)
    sequences = _sequences(4)
    probabilities = predict_sequences(model, sequences)
    path = write_predictions_csv(tmp_path / "p.csv", range(len(sequences)), probabilities, ["x", "y", "z"])
    rows = _read(path)[1:]
    assert [int(r[1]) for r in rows] == probabilities.argmax(1).tolist()


def test_a_failed_write_keeps_the_file_that_stood_there(tmp_path):
    from lstm_plugins._files import replaced_atomically

    target = tmp_path / "predictions.csv"
    target.write_text("good")
    with pytest.raises(RuntimeError):
        with replaced_atomically(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "good" and list(tmp_path.iterdir()) == [target]
