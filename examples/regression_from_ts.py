"""Regression from ``.ts`` files: Tecator (fat content of meat from its infrared spectrum), 5 seeds.

The data are the Tecator problem of the Monash/UEA/UCR regression archive (172 training and 43
test spectra of 100 channels, the target is the fat content in percent), embedded in the package
(:func:`lstm_plugins.data.load_tecator`). Without ``--train``/``--test`` the script writes them
out as ``.ts`` files with ``@targetLabel true`` (what the archive distributes) and reads them back
through the library, so every row starts from files:

* ``raw spectrum``: ``SequenceDataModule.from_ts_files`` (the task comes from the file header);
* ``+ derivatives``: ``read_ts``, then the first and second derivative of each spectrum
  (``numpy.gradient``) as two more features, through ``SequenceDataModule(..., task="regression")``;
* ``+ derivatives, raw targets``: the same without target standardisation (the head learns the
  fat content in percent directly), to show what standardisation is for.

Every row trains a one-layer LSTM with 32 units (Adam at 3e-3, batches of 16, 100 epochs,
gradient clipping at norm 1, MSE loss, 10 % of the training set held out for validation) and
reports test RMSE, MAE and R² as mean ± standard deviation (n - 1) over seeds 0-4, next to
predicting the training mean, and the mean wall time of one run (training and test).

Targets are standardised inside the model: ``RegressionTask(target_mean=dm.target_mean,
target_std=dm.target_std)`` with statistics of the training split only; the head learns
``(fat - mean) / std``, and predictions and metrics come back in percent.

Usage::

    python examples/regression_from_ts.py                  # 15 runs, about 2 minutes on one core
    python examples/regression_from_ts.py --train Tecator_TRAIN.ts --test Tecator_TEST.ts
    python examples/regression_from_ts.py --smoke          # 1 seed x 2 epochs, a small model
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from lstm_plugins import SequenceModel
from lstm_plugins.data import SequenceDataModule
from lstm_plugins.data._tecator import load_tecator
from lstm_plugins.data._ts import TsData, read_ts
from lstm_plugins.model._tasks import RegressionTask


def write_ts(path: Path, data: TsData) -> Path:
    """Write a regression problem as a ``.ts`` file (one dimension per feature, ``@targetLabel true``)."""
    lines = [f"@problemName {data.problem_name or path.stem}", "@timeStamps false", "@missing false",
             f"@univariate {'true' if data.num_features == 1 else 'false'}",
             f"@dimensions {data.num_features}", "@equalLength false", "@targetLabel true", "@data"]
    for sequence, target in zip(data.sequences, data.labels):
        dimensions = (",".join(repr(float(v)) for v in column) for column in sequence.T)
        lines.append(":".join(dimensions) + f":{float(target)!r}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def with_derivatives(sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each univariate spectrum with its first and second derivative as two more features."""
    out = []
    for sequence in sequences:
        spectrum = sequence[:, 0].astype(np.float64)
        first = np.gradient(spectrum)
        out.append(np.stack([spectrum, first, np.gradient(first)], axis=1).astype(np.float32))
    return out


def raw_data(train: Path, test: Path, seed: int, batch_size: int) -> SequenceDataModule:
    return SequenceDataModule.from_ts_files(train, test, batch_size=batch_size, val_fraction=0.1, seed=seed)


def derivative_data(train: Path, test: Path, seed: int, batch_size: int) -> SequenceDataModule:
    train_data, test_data = read_ts(train), read_ts(test)
    return SequenceDataModule(
        with_derivatives(train_data.sequences), train_data.labels,
        with_derivatives(test_data.sequences), test_data.labels,
        task="regression", batch_size=batch_size, val_fraction=0.1, seed=seed,
    )


ROWS: dict[str, tuple[Callable[..., SequenceDataModule], bool]] = {
    "raw spectrum (from_ts_files)": (raw_data, True),
    "+ 1st and 2nd derivatives (read_ts, arrays)": (derivative_data, True),
    "+ derivatives, targets not standardised": (derivative_data, False),
}


def run(make_data: Callable[..., SequenceDataModule], standardise: bool, files: tuple[Path, Path],
        seed: int, max_epochs: int, hidden_size: int) -> dict[str, float]:
    """One seed: test RMSE, MAE and R², the training-mean baseline, seconds."""
    started = time.perf_counter()
    pl.seed_everything(seed, verbose=False)
    dm = make_data(*files, seed=seed, batch_size=16)
    scaling = {"target_mean": dm.target_mean, "target_std": dm.target_std} if standardise else {}
    model = SequenceModel(
        dm.num_features, RegressionTask(dm.num_outputs or 1, "mse", **scaling), hidden_size=hidden_size,
        learning_rate=3e-3, techniques=[{"gradient_clipping": {"threshold": 1.0}}],
    )
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, deterministic=True, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    seconds = time.perf_counter() - started
    assert dm.test_dataset is not None and dm.target_mean is not None
    residual = dm.test_dataset.targets.double() - dm.target_mean[0]  # predicting the training mean
    return {
        **{name: model.test_results[f"test/{name}"].item() for name in ("rmse", "mae", "r2")},
        "baseline_rmse": residual.pow(2).mean().sqrt().item(), "baseline_mae": residual.abs().mean().item(),
        "baseline_r2": 1.0 - (residual.pow(2).mean() / dm.test_dataset.targets.double().var(unbiased=False)).item(),
        "seed": seed, "seconds": seconds,
    }


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def table(rows: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| model (Tecator, fat %) | test RMSE | test MAE | test R² | time per run |",
             "| --- | --- | --- | --- | --- |"]
    first = next(iter(rows.values()))
    lines.append(f"| predicting the training mean | {mean_std([r['baseline_rmse'] for r in first])} | "
                 f"{mean_std([r['baseline_mae'] for r in first])} | {mean_std([r['baseline_r2'] for r in first], 3)} | |")
    for name, runs in rows.items():
        cells = [mean_std([r[m] for r in runs], 3 if m == "r2" else 2) for m in ("rmse", "mae", "r2")]
        seeds = f"seeds {runs[0]['seed']}-{runs[-1]['seed']}"
        seconds = statistics.fmean(r["seconds"] for r in runs)
        lines.append(f"| LSTM, {name}, {seeds} | {' | '.join(cells)} | {seconds:.1f} s |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tecator regression from .ts files: LSTM vs the training mean.")
    parser.add_argument("--train", type=Path, help="a regression .ts file (default: the embedded Tecator)")
    parser.add_argument("--test", type=Path, help="its test .ts file")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--smoke", action="store_true", help="1 seed, 2 epochs, a small model")
    arguments = parser.parse_args(argv)
    if (arguments.train is None) != (arguments.test is None):
        parser.error("give --train and --test together")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    torch.set_num_threads(arguments.threads)
    seeds = 1 if arguments.smoke else arguments.seeds
    max_epochs = 2 if arguments.smoke else arguments.max_epochs
    hidden_size = 8 if arguments.smoke else 32

    with tempfile.TemporaryDirectory() as directory:
        if arguments.train is None:
            train, test = load_tecator()
            files = (write_ts(Path(directory) / "Tecator_TRAIN.ts", train),
                     write_ts(Path(directory) / "Tecator_TEST.ts", test))
        else:
            files = (arguments.train, arguments.test)
        rows: dict[str, list[dict[str, Any]]] = {}
        for name, (make_data, standardise) in ROWS.items():
            rows[name] = []
            for seed in range(seeds):
                result = run(make_data, standardise, files, seed, max_epochs, hidden_size)
                rows[name].append(result)
                print(f"{name}, seed {seed}: RMSE {result['rmse']:.3f}  MAE {result['mae']:.3f}  "
                      f"R² {result['r2']:.3f}  (mean predictor RMSE {result['baseline_rmse']:.3f}; "
                      f"{result['seconds']:.1f} s)", flush=True)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
