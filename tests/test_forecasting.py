"""Forecasting: windows split by time without leakage, MASE against hand computations, the
seasonal-naive baseline, bad inputs, techniques, the fused kernel, resume and DDP sums."""

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import quiet_trainer
from torch.profiler import ProfilerActivity, profile

from lstm_plugins import SequenceModel
from lstm_plugins.data._forecasting import ForecastingDataModule
from lstm_plugins.data._series import EMBEDDED_SERIES, read_series_csv
from lstm_plugins.model._forecasting import ForecastingTask, LSTMForecaster

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "forecasting.py"


def seasonal_series(length=96, num_series=1, seed=0):
    """A trending seasonal series (period 12) with noise, ``(length, num_series)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    return 10 + 0.1 * t + 3 * np.sin(2 * np.pi * t / 12 + np.arange(num_series)) + rng.normal(0, 0.5, (length, num_series))


def small_module(series=None, **options):
    arguments = dict(lookback=12, horizon=4, seasonality=12, val_size=20, test_size=20, batch_size=8)
    arguments.update(options)
    return ForecastingDataModule(seasonal_series() if series is None else series, **arguments)


def hand_scale(values, m):
    """In-sample MAE of the seasonal-naive forecast y[t - m] over ``values`` (a list)."""
    errors = [abs(values[t] - values[t - m]) for t in range(m, len(values))]
    return sum(errors) / len(errors)


# --- the task and its metrics, by hand -------------------------------------------------------------


def test_loss_and_metrics_equal_a_hand_computation_on_a_small_batch():
    predictions = torch.tensor([[0.5, 1.0, -1.0], [0.0, 2.0, 1.0]])
    targets = torch.tensor([[0.0, 1.5, -1.0], [1.0, 1.0, 1.0]])
    errors = [0.5, -0.5, 0.0, -1.0, 1.0, 0.0]  # predictions - targets, standardised
    mse = ForecastingTask(3, loss="mse").loss(predictions, targets)
    mae = ForecastingTask(3, loss="mae").loss(predictions, targets)
    assert mse.item() == pytest.approx(sum(e * e for e in errors) / 6)
    assert mae.item() == pytest.approx(sum(abs(e) for e in errors) / 6)

    std, scale = 2.0, 0.8  # the series' training std; the seasonal-naive in-sample MAE (its units)
    task = ForecastingTask(3, seasonality=4, statistics=SimpleNamespace(std=[std], naive_scale=[scale]))
    metrics = task.metrics({})
    metrics.update(predictions[:1], targets[:1])  # two updates: the sums accumulate
    metrics.update(predictions[1:], targets[1:])
    results = {name: value.item() for name, value in metrics.compute().items()}
    original = [e * std for e in errors]  # errors in the series' units
    hand_mae = sum(abs(e) for e in original) / 6
    assert results["mae"] == pytest.approx(hand_mae)
    assert results["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in original) / 6))
    assert results["mase"] == pytest.approx(hand_mae / scale)


def test_several_series_are_averaged_series_by_series():
    task = ForecastingTask(2, num_series=2, statistics=SimpleNamespace(std=[1.0, 10.0], naive_scale=[0.5, 4.0]))
    head = torch.arange(8.0).reshape(2, 4)  # unit h * num_series + s
    predictions = task.predictions(head)
    assert predictions.shape == (2, 2, 2) and predictions[1, 1, 0].item() == 6.0
    targets = predictions - torch.tensor([[[1.0, 0.1], [-1.0, 0.3]], [[1.0, -0.1], [3.0, 0.1]]])
    metrics = task.metrics({})
    metrics.update(predictions, targets)
    results = metrics.compute()
    mae = [(1 + 1 + 1 + 3) / 4, 10 * (0.1 + 0.3 + 0.1 + 0.1) / 4]
    rmse = [math.sqrt((1 + 1 + 1 + 9) / 4), 10 * math.sqrt((0.01 + 0.09 + 0.01 + 0.01) / 4)]
    assert results["mae"].item() == pytest.approx(sum(mae) / 2, rel=1e-6)
    assert results["rmse"].item() == pytest.approx(sum(rmse) / 2, rel=1e-6)
    assert results["mase"].item() == pytest.approx((mae[0] / 0.5 + mae[1] / 4.0) / 2, rel=1e-6)


def test_the_scale_is_the_seasonal_naive_in_sample_mae_of_the_training_span_only():
    series = seasonal_series()
    dm = small_module(series)
    train = series[: dm.spans["train"][1], 0].tolist()
    assert dm.spans == {"train": (0, 56), "val": (56, 76), "test": (76, 96)}
    assert dm.statistics.naive_scale[0] == pytest.approx(hand_scale(train, 12))
    assert dm.statistics.mean[0] == pytest.approx(sum(train) / len(train))
    assert dm.statistics.std[0] == pytest.approx(float(np.std(train)))


def test_mase_of_a_trained_model_equals_a_hand_computation_on_the_test_windows():
    series = seasonal_series()
    dm = small_module(series, relative=True)
    torch.manual_seed(0)
    model = LSTMForecaster(1, 4, seasonality=12, hidden_size=8, learning_rate=0.01)
    trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    forecasts = dm.inverse_transform(torch.cat(trainer.predict(model, datamodule=dm)), split="test")
    values, m = series[:, 0].tolist(), 12
    errors = [
        float(forecasts[w, h]) - values[origin + h]
        for w, origin in enumerate(range(76, 96 - 4 + 1))
        for h in range(4)
    ]
    hand_mae = sum(abs(e) for e in errors) / len(errors)
    scale = hand_scale(values[:56], m)
    results = model.test_results
    assert results["test/mae"].item() == pytest.approx(hand_mae, rel=1e-4)
    assert results["test/rmse"].item() == pytest.approx(math.sqrt(sum(e * e for e in errors) / len(errors)), rel=1e-4)
    assert results["test/mase"].item() == pytest.approx(hand_mae / scale, rel=1e-4)
    # The seasonal-naive baseline on the same windows, by hand: the last value of the same season.
    naive = [values[o + h - m] - values[o + h] for o in range(76, 93) for h in range(4)]
    naive_mae = sum(abs(e) for e in naive) / len(naive)
    assert results["test/naive_mae"].item() == pytest.approx(naive_mae, rel=1e-6)
    assert results["test/naive_mase"].item() == pytest.approx(naive_mae / scale, rel=1e-6)
    assert results["test/naive_rmse"].item() == pytest.approx(math.sqrt(sum(e * e for e in naive) / len(naive)), rel=1e-6)


def test_the_seasonal_naive_forecast_beyond_one_season_repeats_the_last_season():
    dm = ForecastingDataModule(np.arange(40.0) ** 1.5, lookback=4, horizon=5, seasonality=2, val_size=10, test_size=10)
    origin = dm.origins("test")[0]
    forecast = dm.seasonal_naive_forecast("test")[0, :, 0]
    last_season = dm.values[origin - 2 : origin, 0]
    assert forecast.tolist() == [*last_season, *last_season, last_season[0]]


def test_mase_without_the_scale_is_refused_and_the_scale_can_be_given_to_the_task():
    dm = small_module()
    plain = SequenceModel(1, ForecastingTask(4, seasonality=12), hidden_size=8)
    with pytest.raises(ValueError, match="MASE needs the seasonal-naive scale of the training span"):
        quiet_trainer(max_epochs=1).fit(plain, datamodule=dm)
    given = SequenceModel(1, ForecastingTask(4, seasonality=12, statistics=dm.statistics), hidden_size=8)
    quiet_trainer(max_epochs=1).test(given, datamodule=dm, verbose=False)
    assert given.test_results["test/mase"].item() > 0


# --- windows and leakage ----------------------------------------------------------------------------


def _all_batches(loader):
    return [(batch.features.clone(), batch.targets.clone()) for batch in loader]


def test_windows_never_cross_into_a_later_span():
    dm = small_module()
    train_end, val_end = dm.spans["train"][1], dm.spans["val"][1]
    train, val, test = (dm.origins(split) for split in ("train", "val", "test"))
    assert train[0] == 12 and train[-1] + 4 <= train_end  # inputs and targets inside the training span
    assert val[0] == train_end and val[-1] + 4 <= val_end  # forecasts start after the training span
    assert test[0] == val_end and test[-1] + 4 == 96
    batch = dm.test_dataset[0]
    expected = dm.transform(dm.values[val_end - 12 : val_end + 4, 0:1])[:, 0]
    torch.testing.assert_close(torch.cat([batch.features[0, :, 0], batch.targets[0]]), torch.tensor(expected, dtype=torch.float32))
    assert batch.lengths.tolist() == [12]


@pytest.mark.parametrize("changed", ["test", "val"])
def test_changing_a_later_span_changes_no_training_batch_and_no_statistic(changed):
    series = seasonal_series()
    dm = small_module(series)
    other = series.copy()
    start, stop = dm.spans[changed]
    other[start:stop] = np.random.default_rng(1).normal(1000, 300, (stop - start, 1))
    changed_dm = small_module(other)
    assert changed_dm.statistics == dm.statistics
    for first, second in zip(_all_batches(dm.train_dataloader()), _all_batches(changed_dm.train_dataloader())):
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    if changed == "test":  # validation windows read nothing after their span either
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                   for a, b in zip(_all_batches(dm.val_dataloader()), _all_batches(changed_dm.val_dataloader())))
    else:
        assert not torch.equal(dm.val_dataset.targets, changed_dm.val_dataset.targets)


def test_several_series_batches_and_model_shapes():
    dm = small_module(seasonal_series(num_series=3), series_names=["a", "b", "c"])
    batch = next(iter(dm.train_dataloader()))
    assert batch.features.shape == (8, 12, 3) and batch.targets.shape == (8, 4, 3)
    assert dm.num_features == dm.num_series == 3
    model = LSTMForecaster(3, 4, seasonality=12, hidden_size=8)
    assert model(batch.features, batch.lengths).shape == (8, 4, 3)
    trainer = quiet_trainer(max_steps=3, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert math.isfinite(model.test_results["test/mase"].item())
    restored = dm.inverse_transform(dm.test_dataset.targets)
    np.testing.assert_allclose(restored[0].numpy(), dm.values[76:80], rtol=1e-5)


def test_relative_windows_keep_errors_and_restore_levels():
    absolute, relative = small_module(), small_module(relative=True)
    assert relative.train_dataset.features[:, -1].abs().max().item() == 0  # the level is the last input
    shift = absolute.test_dataset.targets - relative.test_dataset.targets
    torch.testing.assert_close(shift, relative.test_dataset.levels[:, :, 0].expand_as(shift))
    np.testing.assert_allclose(relative.inverse_transform(relative.test_dataset.targets, split="test"),
                               absolute.inverse_transform(absolute.test_dataset.targets), rtol=1e-5)
    with pytest.raises(ValueError, match="Expected `split` for relative windows"):
        relative.inverse_transform(relative.test_dataset.targets)


def test_the_embedded_series():
    airline = read_series_csv(Path(__file__).resolve().parents[1] / "lstm_plugins" / "data" / EMBEDDED_SERIES["airline"].file,
                              time_column="Date")
    assert airline.values.shape == (144, 1) and airline.values.sum() == 40363  # Box & Jenkins series G
    assert airline.time_labels[0] == "1949-01" and airline.time_labels[-1] == "1960-12"
    solar = ForecastingDataModule.from_embedded("solar", lookback=48, horizon=12, val_size=48, test_size=97)
    assert solar.values.shape == (289, 1) and solar.seasonality == 48 and solar.series_names == ("solar_gen",)
    assert 0 <= solar.values.min() and solar.values.max() < 1  # a share of installed capacity


def test_csv_with_several_columns(tmp_path):
    path = tmp_path / "two.csv"
    rows = "\n".join(f"t{i},{i},{i * i % 7},label" for i in range(30))
    path.write_text("time,x,y,note\n" + rows + "\n\n")
    dm = ForecastingDataModule.from_csv(path, columns=["y", "x"], time_column="time", lookback=4, horizon=2,
                                        seasonality=1, val_size=6, test_size=6)
    assert dm.series_names == ("y", "x") and dm.values[3].tolist() == [2.0, 3.0] and dm.time_labels[-1] == "t29"


# --- bad inputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"lookback": 53}, ValueError, r"Expected `lookback` \+ `horizon` \(53 \+ 4 = 57\) to fit in the training span, "
                                       r"but it has 56 steps \(the series' 96 less 20 for validation and 20 for test\)"),
        ({"horizon": 30}, ValueError, r"Expected the validation span \(20 steps\) to hold at least one `horizon` \(30\)"),
        ({"horizon": 0}, ValueError, r"Expected `horizon` to be a positive int, but got 0\."),
        ({"lookback": 2.5}, TypeError, r"Expected `lookback` to be a positive int, but got 2\.5\."),
        ({"val_size": 1.5}, ValueError, r"Expected `val_size` to be a float in \(0, 1\), but got 1\.5\."),
        ({"test_size": -1}, ValueError, r"Expected `test_size` to be a float in \(0, 1\) or a non-negative int, but got -1\."),
        ({"test_size": 96}, ValueError, r"Expected `test_size` to leave a training span, but got 96 of the series' 96 steps\."),
        ({"seasonality": 60, "lookback": 4}, ValueError, r"Expected the training span \(56 steps\) to be longer than `seasonality` \(60\)"),
        ({"series": np.ones(96)}, ValueError, r"seasonal-naive forecast \(seasonality 12\) is exact on the training span of series `0`"),
        ({"series": np.r_[np.ones(10), np.nan, np.ones(85)]}, ValueError, r"step 10 of series 0 is nan"),
        ({"series": np.array(["a", "b"])}, TypeError, r"Expected `series` to be a real array"),
        ({"series_names": ["a", "b"]}, ValueError, r"Expected `series_names` to be 1 names, one per series"),
    ],
)
def test_bad_arguments_are_refused_clearly(options, error, message):
    series = options.pop("series", None)
    with pytest.raises(error, match=message):
        small_module(series, **options)


@pytest.mark.parametrize(
    "text, options, message",
    [
        ("Date,Passengers\n1949-01,112\n1949-02,\n", {"time_column": "Date"},
         r"'{path}', line 3, column `Passengers`: the value is missing"),
        ("Date,Passengers\n1949-01,112\n1949-02,NaN\n", {"time_column": "Date"},
         r"'{path}', line 3, column `Passengers`: the value is missing \(NaN\)"),
        ("Date,Passengers\n1949-01,112\n1949-02,1e999\n", {"time_column": "Date"},
         r"'{path}', line 3, column `Passengers`: the value is infinite"),
        ("Date,Passengers\n1949-01,112\n1949-02,118\n", {},
         r"'{path}', line 2, column `Date`: expected a number, but got '1949-01' \(the column is not numeric"),
        ("Date,Passengers\n1949-01,112\n1949-02,many\n", {"time_column": "Date"},
         r"'{path}', line 3, column `Passengers`: expected a number, but got 'many'\.$"),
        ("Date,Passengers\n1949-01,112\n1949-02\n", {"time_column": "Date"},
         r"'{path}', line 3: expected 2 cells like the header, but got 1\."),
        ("Date,Passengers\n1949-01,112\n1949-02,3\n", {"columns": ["passengers"]},
         r"Expected a column `passengers` in '{path}', but its columns are Date, Passengers\."),
        ("", {}, r"Expected '{path}' to start with a header line naming its columns, but it is empty\."),
        ("a,a\n1,2\n3,4\n", {}, r"Expected distinct column names in '{path}', but `a` is repeated\."),
        ("a\n1\n", {}, r"Expected at least two rows of values in '{path}', but got 1\."),
    ],
)
def test_bad_csv_files_name_the_file_line_and_column(tmp_path, text, options, message):
    path = tmp_path / "series.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message.format(path=str(path).replace("\\", "\\\\"))):
        ForecastingDataModule.from_csv(path, lookback=1, horizon=1, **options)


def test_a_missing_csv_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="No series file at .*nowhere.csv"):
        ForecastingDataModule.from_csv(tmp_path / "nowhere.csv", lookback=1, horizon=1)


@pytest.mark.parametrize(
    "model, message",
    [
        (dict(num_series=1, horizon=5, seasonality=12), "`horizon`=5 but the data module has `horizon`=4"),
        (dict(num_series=1, horizon=4, seasonality=4), "`seasonality`=4 but the data module has `seasonality`=12"),
        (dict(num_series=2, horizon=4, seasonality=12), "`input_size`=2 but the data module has `num_features`=1"),
    ],
)
def test_a_model_that_does_not_fit_the_data_is_refused_before_training(model, message):
    with pytest.raises(ValueError, match=message):
        quiet_trainer(max_epochs=1).fit(LSTMForecaster(**model, hidden_size=8), datamodule=small_module())


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"horizon": 0}, r"Expected `horizon` to be a positive int, but got 0\."),
        ({"horizon": 2, "num_series": 0}, r"Expected `num_series` to be a positive int, but got 0\."),
        ({"horizon": 2, "loss": "huber"}, r"Expected `loss` to be one of 'mse', 'mae', but got 'huber'\."),
        ({"horizon": 2, "statistics": SimpleNamespace(std=[1.0], naive_scale=[0.0])},
         r"Expected `statistics.naive_scale` to hold 1 positive finite values"),
    ],
)
def test_task_arguments_are_checked(arguments, message):
    with pytest.raises(ValueError, match=message):
        ForecastingTask(**arguments).metrics({})


# --- techniques, the fused kernel, checkpoints -------------------------------------------------------

STACK = [
    "initialization",
    {"dropout": {"input": 0.1, "between_layers": 0.1, "output": 0.2}},
    {"locked_dropout": {"input": 0.1, "output": 0.1}},
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


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Zoneout runs the LSTM")
@pytest.mark.parametrize("stack", [STACK, ["zoneout", "adaptive_clipping"], ["gradient_clipping"]],
                         ids=["full", "zoneout", "clipping"])
def test_the_built_in_techniques_train_a_forecaster(stack):
    torch.manual_seed(0)
    model = LSTMForecaster(1, 4, seasonality=12, num_layers=2, hidden_size=8, optimizer="adamw", techniques=stack)
    trainer = quiet_trainer(max_steps=6, log_every_n_steps=1, val_check_interval=3, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=small_module())
    assert math.isfinite(trainer.callback_metrics["val/mase"].item())


def test_the_training_step_runs_the_fused_kernel():
    model = LSTMForecaster(1, 4, seasonality=12, num_layers=2, hidden_size=8, techniques=["gradient_clipping"])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        quiet_trainer(max_steps=2, limit_val_batches=0).fit(model, datamodule=small_module())
    calls = [event for event in prof.events() if event.name == "aten::lstm"]
    assert len(calls) >= 2
    for call in calls:
        assert "aten::mkldnn_rnn_layer" in {child.name for child in call.cpu_children}


def _fit(root, max_epochs, resume_from=None, callbacks=()):
    pl.seed_everything(0, verbose=False)
    model = LSTMForecaster(1, 4, seasonality=12, hidden_size=8, learning_rate=0.01,
                           techniques=[{"dropout": {"output": 0.2}}, "gradient_clipping"])
    trainer = quiet_trainer(max_epochs=max_epochs, default_root_dir=root, num_sanity_val_steps=0,
                            enable_checkpointing=bool(callbacks), callbacks=list(callbacks))
    trainer.fit(model, datamodule=small_module(relative=True), ckpt_path=resume_from)
    return model, trainer


def _assert_same_weights(first, second):
    for (name, expected), actual in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(expected, actual), name


def test_a_resumed_fit_equals_an_uninterrupted_one_and_checkpoints_keep_the_statistics(tmp_path):
    uninterrupted, _ = _fit(tmp_path / "a", max_epochs=3)
    _, trainer = _fit(tmp_path / "b", max_epochs=1)
    checkpoint = tmp_path / "epoch1.ckpt"
    trainer.save_checkpoint(checkpoint)
    resumed, _ = _fit(tmp_path / "c", max_epochs=3, resume_from=checkpoint)
    _assert_same_weights(uninterrupted, resumed)
    loaded = LSTMForecaster.load_from_checkpoint(checkpoint)  # weights_only: plain data
    assert loaded.test_metrics["mase"].naive_scale.tolist() == list(small_module().statistics.naive_scale)
    assert (loaded.horizon, loaded.seasonality) == (4, 12)


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_a_fit_resumed_in_the_middle_of_an_epoch_equals_an_uninterrupted_one(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    uninterrupted, _ = _fit(tmp_path / "a", max_epochs=2)
    every_4_steps = ModelCheckpoint(tmp_path / "steps", filename="{step}", every_n_train_steps=4, save_top_k=-1)
    _fit(tmp_path / "b", max_epochs=1, callbacks=[every_4_steps])  # 6 batches an epoch: step 4 is mid-epoch
    resumed, _ = _fit(tmp_path / "c", max_epochs=2, resume_from=tmp_path / "steps" / "step=4.ckpt")
    _assert_same_weights(uninterrupted, resumed)


# --- DDP: the metric's sums ----------------------------------------------------------------------

_DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
from types import SimpleNamespace
from lstm_plugins.model._forecasting import ForecastingTask
rank, path = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", init_method="file://" + path + "/rendezvous", rank=rank, world_size=2)
generator = torch.Generator().manual_seed(0)
predictions, targets = torch.randn(7, 3, 2, generator=generator), torch.randn(7, 3, 2, generator=generator)
task = ForecastingTask(3, 2, statistics=SimpleNamespace(std=[2.0, 0.5], naive_scale=[1.5, 0.25]))
metrics = task.metrics({})
part = slice(0, 3) if rank == 0 else slice(3, 7)  # unequal shares
metrics.update(predictions[part], targets[part])
results = {name: value.item() for name, value in metrics.compute().items()}
single = task.metrics({})
single.update(predictions, targets)
expected = {name: value.item() for name, value in single.compute().items()}
assert all(abs(results[k] - expected[k]) < 1e-6 for k in expected), (results, expected)
print("rank", rank, "ok", results)
# Torn down before exit: gloo's threads left to the interpreter's exit can abort the process.
from lstm_plugins.training import end_process_group
assert end_process_group()
"""


@pytest.mark.distributed
def test_metrics_sum_across_processes_to_the_single_process_values(tmp_path):
    script = tmp_path / "ddp_metrics.py"
    script.write_text(_DDP_SCRIPT)
    processes = [subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
        assert " ok " in out


# --- the results example -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_results_example_runs_in_smoke_mode(tmp_path):
    completed = subprocess.run([sys.executable, str(EXAMPLE), "--smoke"], cwd=tmp_path, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("| series | model | test MASE")
    assert sum("seasonal naive" in line for line in lines) == 2
    assert sum("LSTM" in line for line in lines) == 4
