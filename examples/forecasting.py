"""Forecasting results: an LSTM against the seasonal-naive forecast on two real series, 5 seeds.

The series ship with the package (sources and licence in ``lstm_plugins/data/_forecasting.py``):

* ``airline``: monthly airline passengers 1949-1960 (Box & Jenkins), 144 values, seasonality 12.
  Training 1949-1956, validation 1957-1958, test 1959-1960; 24 months in, 12 months forecast.
* ``solar``: half-hourly GB solar generation, 2021-05-01 to 05-07 (Sheffield Solar PV_Live),
  289 values, seasonality 48 (a day). Training the first 3 days, validation the 4th, test the
  last 2 (and the closing midnight); 48 steps (a day) in, 12 steps (6 hours) forecast.

Each LSTM row is a one-layer LSTM (32 units, Adam at 0.01, batches of 16, gradient clipping at
1.0, MSE on standardised values) trained for 50 epochs; MASE, MAE and RMSE are
computed on every test window (all forecast origins in the test span) in the series' units, as
mean ± standard deviation (n - 1) over seeds 0-4 with the mean wall time of one run (training
and test). MASE's scale is the in-sample MAE of the seasonal-naive forecast on the training span.
``absolute`` windows are standardised values; ``relative`` windows are taken relative to their
last input value (``ForecastingDataModule(relative=True)``). The seasonal-naive row is the
forecast ``y[t + h - m * (h // m + 1)]`` on the same windows (deterministic). The settings were
picked on validation MASE from a small grid (32 or 64 units, rate 0.003 or 0.01, 50, 100 or 200
epochs, 2 seeds), one setting for both series; the test span was read once, for the table.

Usage::

    python examples/forecasting.py            # 2 series x 2 window kinds x 5 seeds
    python examples/forecasting.py --smoke    # 2 seeds x 2 epochs
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from typing import Any

import pytorch_lightning as pl
import torch

from lstm_plugins.data._forecasting import ForecastingDataModule
from lstm_plugins.model._forecasting import LSTMForecaster

SERIES: dict[str, dict[str, Any]] = {
    "airline": {"lookback": 24, "horizon": 12, "val_size": 24, "test_size": 24},
    "solar": {"lookback": 48, "horizon": 12, "val_size": 48, "test_size": 97},
}
MODEL: dict[str, Any] = {"hidden_size": 32, "learning_rate": 0.01, "techniques": [{"gradient_clipping": {"threshold": 1.0}}]}
EPOCHS = 50
BATCH_SIZE = 16
METRICS = ("mase", "mae", "rmse")


def run(series: str, relative: bool, seed: int, epochs: int) -> dict[str, float]:
    """Train one LSTM and return its test metrics (and the run's seconds)."""
    started = time.perf_counter()
    pl.seed_everything(seed, verbose=False)
    datamodule = ForecastingDataModule.from_embedded(
        series, batch_size=BATCH_SIZE, relative=relative, seed=seed, **SERIES[series]
    )
    model = LSTMForecaster(1, datamodule.horizon, seasonality=datamodule.seasonality, **MODEL)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, deterministic=True,
    )
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    results = {name.removeprefix("test/"): value.item() for name, value in model.test_results.items()}
    results["seconds"] = time.perf_counter() - started
    return results


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.mean(values):.3g} ± {statistics.stdev(values):.2g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 seeds x 2 epochs (a quick check)")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    seeds, epochs = (2, 2) if args.smoke else (args.seeds, EPOCHS)
    torch.set_num_threads(1)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")

    print("| series | model | test MASE | test MAE | test RMSE | time / run |")
    print("| --- | --- | --- | --- | --- | --- |")
    total = time.perf_counter()
    for series in SERIES:
        naive: dict[str, float] = {}
        for relative in (False, True):
            runs = [run(series, relative, seed, epochs) for seed in range(seeds)]
            naive = {name: runs[0][f"naive_{name}"] for name in METRICS}
            cells = " | ".join(_cell([r[name] for r in runs]) for name in METRICS)
            seconds = statistics.mean(r["seconds"] for r in runs)
            kind = "relative" if relative else "absolute"
            print(f"| {series} | LSTM, {kind} windows ({seeds} seeds) | {cells} | {seconds:.1f} s |", flush=True)
        print(f"| {series} | seasonal naive | " + " | ".join(f"{naive[name]:.3g}" for name in METRICS) + " | - |")
    print(f"\n{time.perf_counter() - total:.0f} s in all, torch threads 1")


if __name__ == "__main__":
    main()
