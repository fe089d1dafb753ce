"""LSTMRegressor: the adding problem, regression from .ts files and arrays, targets, metrics."""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_batch, quiet_trainer
from torch.profiler import ProfilerActivity, profile

from lstm_plugins import LSTMClassifier, LSTMRegressor, SequenceModel
from lstm_plugins.data import MEAN_PREDICTOR_MSE, AddingProblemDataModule, adding_problem
from lstm_plugins.data import SequenceDataModule
from lstm_plugins.data._tecator import TecatorDataModule, load_tecator
from lstm_plugins.data._ts import read_ts
from lstm_plugins.model._tasks import RegressionTask


def test_adding_problem_data():
    features, targets = adding_problem(2000, 30, seed=1)
    values, markers = features[..., 0], features[..., 1]
    assert ((values >= 0) & (values <= 1)).all()
    assert torch.equal(markers[:, :15].sum(1), torch.ones(2000))  # one marker in each half
    assert torch.equal(markers[:, 15:].sum(1), torch.ones(2000))
    torch.testing.assert_close((values * markers).sum(1), targets)
    # Predicting the mean sits on the 1/6 plateau.
    assert ((targets - 1.0) ** 2).mean().item() == pytest.approx(MEAN_PREDICTOR_MSE, abs=0.015)
    again, _ = adding_problem(2000, 30, seed=1)
    assert torch.equal(again, features)
    assert not torch.equal(adding_problem(2000, 30, seed=2)[0], features)


def test_regressor_learns_the_adding_problem():
    torch.manual_seed(0)
    datamodule = AddingProblemDataModule(length=10, train_size=2000, val_size=200, test_size=500, batch_size=50)
    model = LSTMRegressor(2, hidden_size=32, learning_rate=0.01, techniques=["gradient_clipping"])
    trainer = quiet_trainer(max_epochs=6)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    results = model.test_results
    assert results["test/rmse"].item() ** 2 < 0.2 * MEAN_PREDICTOR_MSE  # far below the plateau
    assert results["test/r2"].item() > 0.8
    assert results["test/mae"].item() < results["test/rmse"].item() + 1e-6


def test_regressor_metrics_and_losses_against_references():
    torch.manual_seed(0)
    batch = make_batch([6, 3, 9, 4], num_features=2)
    targets = torch.randn(4)
    for loss, reference in (("mse", torch.nn.functional.mse_loss), ("mae", torch.nn.functional.l1_loss)):
        model = LSTMRegressor(2, loss=loss)
        predictions = model(batch.features, batch.lengths)
        assert predictions.shape == (4,)
        assert model.task.loss(predictions, targets).item() == pytest.approx(reference(predictions, targets).item())
    multi = LSTMRegressor(2, num_outputs=3)
    assert multi(batch.features, batch.lengths).shape == (4, 3)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"num_outputs": 0}, "Expected `num_outputs` to be a positive int, but got 0."),
        ({"loss": "huber"}, "Expected `loss` to be one of 'mse', 'mae', but got 'huber'."),
    ],
)
def test_regressor_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        LSTMRegressor(2, **arguments)


def test_regressor_checks_the_data_module():
    trainer = quiet_trainer(max_epochs=1)
    with pytest.raises(ValueError, match="`input_size`=3 but the data module has `num_features`=2"):
        trainer.fit(LSTMRegressor(3), datamodule=AddingProblemDataModule(length=10, train_size=50))


# --------------------------------------------------------------------------- regression from files

REPOSITORY = Path(__file__).resolve().parents[1]
REGRESSION_HEADER = "@problemName Tiny\n@univariate false\n@dimensions 2\n@targetLabel true\n@data\n"


def _regression_sequences(n=40, num_features=2, seed=0):
    """Sequences whose target is the mean of their first feature (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    sequences = [rng.normal(size=(int(m), num_features)).astype(np.float32) for m in rng.integers(3, 12, size=n)]
    targets = np.array([s[:, 0].mean() * 4 + 10 for s in sequences])
    return sequences, targets


def _write_regression_ts(path, sequences, targets):
    rows = "".join(
        ":".join(",".join(repr(float(v)) for v in column) for column in s.T) + f":{float(t)!r}\n"
        for s, t in zip(sequences, targets)
    )
    path.write_text(REGRESSION_HEADER + rows)
    return path


def test_read_ts_regression_targets(tmp_path):
    path = tmp_path / "r.ts"
    path.write_text("# sktime writes this\n@problemName r\n@classLabel false\n@targetLabel true\n@data\n"
                    "1,2,3:4,5,6:0.25\n7:8:-3e2\n")
    data = read_ts(path)
    assert data.task == "regression" and data.class_names == ()
    assert data.labels.dtype == np.float32 and data.labels.tolist() == [0.25, -300.0]
    assert [s.shape for s in data.sequences] == [(3, 2), (1, 2)]


REGRESSION_ROW_ERRORS = {
    "non-numeric target": ("1,2:3,4:abc", "expected a number as the regression target after the last ':', but got 'abc'"),
    "missing target": ("1,2:3,4:", "missing regression target: expected a number after the last ':'"),
    "target left out": ("1,2:3,4", r"but got '3,4' \(is the target missing\?\)"),
    "no separator": ("1,2,3", "and a regression target after the last ':'"),
    "unknown target": ("1,2:3,4:?", r"missing regression target \('\?'\)"),
    "nan target": ("1,2:3,4:nan", "expected a finite regression target"),
    "float32 overflow": ("1,2:3,4:1e39", "within the float32 range"),
}


@pytest.mark.parametrize("row, pattern", REGRESSION_ROW_ERRORS.values(), ids=list(REGRESSION_ROW_ERRORS))
def test_read_ts_regression_errors_name_file_and_line(tmp_path, row, pattern):
    path = tmp_path / "bad.ts"
    path.write_text(REGRESSION_HEADER + "1,2:3,4:1.5\n" + row + "\n")
    with pytest.raises(ValueError, match=re.escape(f"Line 7 of {str(path)!r}: ") + ".*" + pattern):
        read_ts(path)


@pytest.mark.parametrize("header, line", [
    ("@classLabel true a b\n@targetLabel true\n", 2),
    ("@targetLabel true\n@classLabel true a b\n", 2),
])
def test_read_ts_refuses_both_task_headers(tmp_path, header, line):
    path = tmp_path / "both.ts"
    path.write_text(header + "@data\n1:0.5\n")
    with pytest.raises(ValueError, match=f"Line {line} of .*contradicts.*not both"):
        read_ts(path)


def test_embedded_tecator_equals_the_archive_files_it_came_from(tmp_path):
    train, test = load_tecator()
    assert (len(train), len(test), train.num_features, train.problem_name) == (172, 43, 1, "TECATOR")
    assert set(train.lengths.tolist()) == {100} and train.task == "regression"
    # Written back out as .ts and read again: the same values (float32 round trip).
    sys.path.insert(0, str(REPOSITORY / "examples"))
    try:
        from regression_from_ts import write_ts
    finally:
        sys.path.pop(0)
    again = read_ts(write_ts(tmp_path / "t.ts", test))
    np.testing.assert_array_equal(again.labels, test.labels)
    np.testing.assert_array_equal(np.stack(again.sequences), np.stack(test.sequences))
    with np.load(REPOSITORY / "lstm_plugins" / "data" / "tecator.npz") as npz:
        assert "redistributed as long as this permission note is attached" in str(npz["permission"])


def test_regression_datamodule_random_split_and_target_statistics_from_training_only():
    sequences, targets = _regression_sequences(n=40)
    test_targets = np.full(5, 1e4)  # far away: must not move the statistics
    dm = SequenceDataModule(sequences, targets, sequences[:5], test_targets, task="regression",
                            val_fraction=0.25, seed=3)
    assert (dm.task, dm.num_outputs, dm.num_classes, dm.class_names) == ("regression", 1, None, ())
    train, val = dm.train_indices, dm.val_indices
    assert len(val) == 10 and len(train) == 30 and not set(train) & set(val)
    again = SequenceDataModule(sequences, targets, task="regression", val_fraction=0.25, seed=3)
    np.testing.assert_array_equal(again.val_indices, val)
    assert not np.array_equal(SequenceDataModule(sequences, targets, task="regression", val_fraction=0.25,
                                                 seed=4).val_indices, val)
    kept = targets[train].astype(np.float32).astype(np.float64)
    assert dm.target_mean == pytest.approx((kept.mean(),)) and dm.target_std == pytest.approx((kept.std(),))
    assert dm.target_mean[0] != pytest.approx(targets.mean())  # the validation targets are left out
    # Targets stay in their units in the batches; the model standardises them.
    assert dm.train_dataset.targets.dtype == torch.float32
    np.testing.assert_allclose(dm.train_dataset.targets.numpy(), targets[train], rtol=1e-6)
    np.testing.assert_allclose(dm.test_dataset.targets.numpy(), test_targets)
    multi = SequenceDataModule(sequences, np.stack([targets, -targets, np.ones(40)], 1), task="regression")
    assert multi.num_outputs == 3 and next(iter(multi.train_dataloader())).targets.shape == (32, 3)
    assert multi.target_std[2] == 1.0  # a constant output is never divided by zero
    column = SequenceDataModule(sequences, targets[:, None], task="regression")
    assert column.num_outputs == 1 and column.train_dataset.targets.shape == (36,)


def _sequences(n=6):
    return [np.ones((3, 2), np.float32)] * n


@pytest.mark.parametrize("kwargs, error, message", [
    ({"train_labels": np.arange(6, dtype=np.float64)}, TypeError,
     "Expected `train_labels` to be a 1-D array of integers, but got dtype float64. For float (regression) "
     "targets, build the data module with task='regression'."),
    ({"train_labels": np.arange(6), "task": "regression"}, TypeError,
     "Expected `train_labels` to be regression targets of a float dtype, but got dtype int64 (class indices?)"),
    ({"train_labels": np.ones(6), "task": "regression", "num_classes": 2}, TypeError,
     "Expected no `num_classes` for task='regression', but got 2."),
    ({"train_labels": np.r_[np.ones(5), np.inf], "task": "regression"}, ValueError,
     "Expected `train_labels` to contain only finite float32 values, but `train_labels[5]` is inf."),
    ({"train_labels": np.ones((6, 2, 1)), "task": "regression"}, ValueError,
     "Expected `train_labels` to be a float array of shape (6,) or (6, num_outputs)"),
    ({"train_labels": np.ones(6), "task": "forecast"}, ValueError,
     "Expected `task` to be one of 'classification', 'regression', but got 'forecast'."),
    ({"train_labels": np.ones((6, 2)), "task": "regression", "test_sequences": _sequences(1),
      "test_labels": np.ones((1, 3))}, ValueError,
     "Expected `test_labels` to have the outputs of `train_labels` (shape (N, 2)), but got shape (1, 3)."),
])
def test_regression_datamodule_refusals(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        SequenceDataModule(_sequences(), **kwargs)


def test_models_refuse_the_other_tasks_targets():
    sequences, targets = _regression_sequences(n=12)
    regression = SequenceDataModule(sequences, targets, task="regression", val_fraction=0.0)
    classification = SequenceDataModule(sequences, np.arange(12) % 2, val_fraction=0.0)
    with pytest.raises(ValueError, match=re.escape(
            "The model's task is classification, but the data module holds regression targets "
            "(task='regression'); use a regressor (LSTMRegressor)")):
        quiet_trainer(max_steps=1).fit(LSTMClassifier(2, 2), datamodule=regression)
    with pytest.raises(ValueError, match="The model's task is regression, but the data module holds classification"):
        quiet_trainer(max_steps=1).fit(LSTMRegressor(2), datamodule=classification)
    # Batches that bypass a data module: the task refuses integer targets and misshapen ones.
    task = RegressionTask(2)
    with pytest.raises(TypeError, match=r"needs float targets, but the batch has torch.int64 targets \(class indices\?\)"):
        task.loss(torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=re.escape("Expected regression targets of shape (3, 2) (num_outputs=2), but got (3,).")):
        task.metric_inputs(torch.zeros(3, 2), torch.zeros(3))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"target_mean": 1.0}, ValueError, "Expected `target_mean` and `target_std` to be given together, but got one."),
    ({"target_mean": 0.0, "target_std": 0.0}, ValueError, "Expected `target_std` to be a positive float, but got 0.0."),
    ({"num_outputs": 2, "target_mean": [0.0], "target_std": [1.0, 1.0]}, ValueError,
     "Expected `target_mean` to have one value per output (2), but got [0.0]."),
    ({"target_mean": float("nan"), "target_std": 1.0}, ValueError, "Expected `target_mean` to be a finite float, but got nan."),
    ({"target_mean": "0", "target_std": 1.0}, TypeError, "Expected `target_mean` to be a finite float, but got '0'."),
])
def test_target_scaling_arguments(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        RegressionTask(**kwargs)


def test_loss_and_metrics_equal_a_hand_computation_per_output_and_averaged(tmp_path):
    """Three outputs, standardised targets: loss, averaged and per-output metrics by hand."""
    torch.manual_seed(0)
    sequences, first = _regression_sequences(n=7, seed=5)
    targets = np.stack([first, first * -2.0 + 1.0, np.sin(first)], axis=1)
    dm = SequenceDataModule(sequences, targets, sequences, targets, task="regression", val_fraction=0.0,
                            batch_size=4, standardize=False)
    mean, std = np.array(dm.target_mean), np.array(dm.target_std)
    model = SequenceModel(2, RegressionTask(3, target_mean=dm.target_mean, target_std=dm.target_std), hidden_size=8)
    model.eval()
    batch = dm.test_dataset.__getitems__(list(range(7)))
    with torch.no_grad():
        head = model.encode(batch.features, batch.lengths).logits.double().numpy()
        predictions = model(batch.features, batch.lengths).double().numpy()
        loss = model.task.loss(model(batch.features, batch.lengths), batch.targets).item()
    np.testing.assert_allclose(predictions, head * std + mean, rtol=1e-5)
    standardised = (targets - mean) / std
    assert loss == pytest.approx(((head - standardised) ** 2).mean(), rel=1e-4)
    mae_loss = RegressionTask(3, "mae", target_mean=mean, target_std=std).loss(
        torch.from_numpy(predictions), torch.from_numpy(targets)).item()
    assert mae_loss == pytest.approx(np.abs(head - standardised).mean(), rel=1e-4)

    trainer = quiet_trainer()
    logged = trainer.test(model, datamodule=dm, verbose=False)[0]
    errors = predictions - targets
    mae = np.abs(errors).mean(0)
    rmse = np.sqrt((errors ** 2).mean(0))
    r2 = 1 - (errors ** 2).sum(0) / ((targets - targets.mean(0)) ** 2).sum(0)
    results = model.test_results
    for name, per_output in (("mae", mae), ("rmse", rmse), ("r2", r2)):
        assert results[f"test/{name}"].dim() == 0
        assert results[f"test/{name}"].item() == pytest.approx(per_output.mean(), rel=1e-4)
        np.testing.assert_allclose(results[f"test/{name}_per_output"].numpy(), per_output, rtol=1e-4)
        assert logged[f"test/{name}"] == pytest.approx(per_output.mean(), rel=1e-4)
        for index in range(3):
            assert logged[f"test/{name}/output_{index}"] == pytest.approx(per_output[index], rel=1e-4)
    assert not any(name.endswith("_per_output") for name in logged)
    assert results["test/mae"].item() == pytest.approx(np.abs(errors).mean(), rel=1e-4)  # equal counts


def test_scaled_task_pickles_without_its_device_cache():
    import pickle

    task = RegressionTask(2, target_mean=[1.0, 2.0], target_std=[3.0, 4.0])
    assert task.predictions(torch.zeros(1, 2)).tolist() == [[1.0, 2.0]]
    assert task._scales  # cached per device and dtype
    copy = pickle.loads(pickle.dumps(task))
    assert copy._scales == {} and copy.target_std == (3.0, 4.0)
    assert copy.predictions(torch.ones(1, 2)).tolist() == [[4.0, 6.0]]


def test_single_output_metrics_have_no_per_output_vectors_and_r2_needs_two_samples():
    model = LSTMRegressor(2)
    assert set(model.test_metrics.keys()) == {"test/mae", "test/rmse", "test/r2"}
    model.val_metrics.update(torch.tensor([1.0]), torch.tensor([2.0]))
    values = model.val_metrics.compute()
    assert math.isnan(values["val/r2"].item()) and values["val/mae"].item() == 1.0


# Every built-in technique for feature inputs, by name (zoneout runs alone: it fills the recurrence
# slot that weight_drop uses; embedding_dropout is for token models).
REGRESSION_STACK = [
    "initialization",
    {"dropout": {"input": 0.1, "output": 0.2}},
    {"locked_dropout": {"output": 0.1}},
    {"weight_drop": {"probability": 0.2}},
    {"l2": {"weight": 1e-4, "parameters": ["head.*"]}},
    {"weight_decay": {"weight_decay": 0.01, "exclude": ["head.*"]}},
    {"activation_regularization": {"alpha": 0.5, "beta": 0.5}},
    {"grad_norm": {"log_every_n_steps": 2}},
    {"exploding_gradients": {"warmup_steps": 3, "log_every_n_steps": 2}},
    {"gradient_reach": {"log_every_n_steps": 2}},
    {"gate_saturation": {"log_every_n_steps": 2}},
    "nonfinite_guard",
    {"auto_clipping": {"percentile": 50, "history_size": 16}},
]


@pytest.mark.filterwarnings("ignore:Zoneout runs the LSTM as a per-step loop")
@pytest.mark.parametrize("techniques", [
    REGRESSION_STACK,
    [{"zoneout": {"cell": 0.1, "hidden": 0.05}}, "gradient_clipping"],
    ["adaptive_clipping"],
], ids=["full stack", "zoneout", "adaptive clipping"])
def test_trainer_fit_on_a_small_ts_regression_file(tmp_path, techniques):
    """A real fit from .ts files with the built-ins stacked by name (AdamW: weight_decay needs it)."""
    sequences, targets = _regression_sequences(n=48)
    train = _write_regression_ts(tmp_path / "train.ts", sequences[:40], targets[:40])
    test = _write_regression_ts(tmp_path / "test.ts", sequences[40:], targets[40:])
    dm = SequenceDataModule.from_ts_files(train, test, batch_size=8, val_fraction=0.2)
    assert (dm.task, dm.num_outputs, len(dm.train_dataset), len(dm.val_dataset)) == ("regression", 1, 32, 8)
    torch.manual_seed(0)
    model = SequenceModel(dm.num_features, RegressionTask(target_mean=dm.target_mean, target_std=dm.target_std),
                          hidden_size=16, learning_rate=0.01, optimizer="adamw", techniques=techniques)
    trainer = quiet_trainer(max_epochs=3, log_every_n_steps=2)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 12
    assert math.isfinite(trainer.callback_metrics["val/loss"].item())
    trainer.test(model, datamodule=dm, verbose=False)
    assert set(model.test_results) == {"test/mae", "test/rmse", "test/r2"}
    predictions = torch.cat(trainer.predict(model, dm.test_dataloader()))
    assert predictions.shape == (8,) and torch.isfinite(predictions).all()


def test_ts_task_must_agree(tmp_path):
    sequences, targets = _regression_sequences(n=6)
    train = _write_regression_ts(tmp_path / "train.ts", sequences, targets)
    classes = tmp_path / "classes.ts"
    classes.write_text("@classLabel true a b\n@data\n1:2:a\n3:4:b\n")
    with pytest.raises(ValueError, match="which declares a regression problem, but got task='classification'"):
        SequenceDataModule.from_ts_files(train, task="classification")
    with pytest.raises(ValueError, match="to be a regression problem like .* but it declares a classification problem"):
        SequenceDataModule.from_ts_files(train, classes)


def test_regressor_training_step_runs_the_fused_kernel():
    sequences, targets = _regression_sequences(n=16)
    dm = SequenceDataModule(sequences, np.stack([targets, -targets], 1), task="regression", val_fraction=0.0,
                            batch_size=16)
    model = SequenceModel(2, RegressionTask(2, target_mean=dm.target_mean, target_std=dm.target_std),
                          num_layers=2, bidirectional=True, techniques=["gradient_clipping"]).train()
    batch = next(iter(dm.train_dataloader()))

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.task.loss(model(batch.features, batch.lengths), batch.targets).backward()
    lstm_calls = [event for event in prof.events() if event.name == "aten::lstm"]
    assert lstm_calls
    for call in lstm_calls:
        assert "aten::mkldnn_rnn_layer" in {child.name for child in call.cpu_children}
    assert sum(event.name == "aten::mkldnn_rnn_layer" for event in prof.events()) == 2 * 2


def test_tecator_datamodule_checks_against_the_regressor():
    dm = TecatorDataModule(batch_size=64)
    assert (dm.num_features, dm.num_outputs, dm.task) == (1, 1, "regression")
    with pytest.raises(ValueError, match="`num_outputs`=2 but the data module has `num_outputs`=1"):
        quiet_trainer(max_steps=1).fit(LSTMRegressor(1, 2), datamodule=dm)


@pytest.mark.slow
def test_regression_results_example_smoke(tmp_path):
    completed = subprocess.run([sys.executable, str(REPOSITORY / "examples" / "regression_from_ts.py"), "--smoke"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "| predicting the training mean |" in completed.stdout
    assert completed.stdout.count("| LSTM,") == 3
