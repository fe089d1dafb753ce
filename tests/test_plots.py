"""Plots from the logs: a run's CSVLogger metrics.csv read back and drawn, during or after the run."""

import numpy as np
import pytest
import torch
from conftest import quiet_trainer

from lstm_plugins import LSTMClassifier
from lstm_plugins.cli._metrics_log import find_metrics_csv, read_metrics_log
from lstm_plugins.cli._plotting import plot_from_log, plot_run

CSV = """\
epoch,grad_norm/total,gradient_clipping/clipped_fraction,gradient_clipping/pre_clip_norm,step,\
train/loss,train/task_loss,val/accuracy,val/loss,test/accuracy
0,2.0,1.0,2.0,1,1.2,1.1,,,
0,,,,1,,,0.5,1.0,
1,0.4,0.5,0.4,3,0.9,0.8,,,
1,,,,3,,,0.75,0.7,
1,,,,3,,,,,0.8
"""


def _write_run(folder, hparams="techniques:\n- name: gradient_clipping\n  threshold: 0.5\n  mode: norm\n"):
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(CSV)
    (folder / "hparams.yaml").write_text(hparams)
    return folder


def test_read_metrics_log_merges_rows_and_derives_the_clipped_norm(tmp_path):
    run = _write_run(tmp_path / "lightning_logs" / "version_0")
    history = read_metrics_log(run)
    assert [row["step"] for row in history["train"]] == [1.0, 3.0]
    first, second = history["train"]
    assert first["grad_norm_before_clipping"] == 2.0 and first["grad_norm_after_clipping"] == 0.5
    assert second["grad_norm_after_clipping"] == 0.4  # below the threshold: unchanged
    assert [(row["epoch"], row["val/accuracy"]) for row in history["validation"]] == [(0.0, 0.5), (1.0, 0.75)]
    assert history["test"] == {"test/accuracy": 0.8} and history["clipping_threshold"] == 0.5
    # A folder of runs: the newest metrics.csv below it.
    assert find_metrics_csv(tmp_path) == run / "metrics.csv"
    assert read_metrics_log(run / "metrics.csv") == history


def test_without_a_known_threshold_only_the_norm_before_clipping_is_drawn(tmp_path):
    history = read_metrics_log(_write_run(tmp_path / "run", hparams="techniques: []\n"))
    assert all("grad_norm_after_clipping" not in row for row in history["train"])
    assert history["clipping_threshold"] is None
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        read_metrics_log(tmp_path / "missing")


def test_plot_from_a_written_log(tmp_path):
    pytest.importorskip("matplotlib")
    run = _write_run(tmp_path / "run")
    path = plot_from_log(run, tmp_path / "out" / "run.png", title="redrawn")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_run(run / "metrics.csv", tmp_path / "again.png").stat().st_size > 0  # plot_run reads a log too


@pytest.mark.slow
def test_fit_with_csv_logger_then_plot_from_log(tmp_path):
    pytest.importorskip("matplotlib")
    from pytorch_lightning.loggers import CSVLogger

    from lstm_plugins.data import SequenceDataModule
    from lstm_plugins.techniques._registry import technique_specs

    rng = np.random.default_rng(0)
    sequences = [rng.normal(size=(int(n), 3)) for n in rng.integers(2, 12, size=48)]
    labels = np.arange(48) % 2
    datamodule = SequenceDataModule(sequences, labels, sequences[:8], labels[:8], batch_size=8, val_fraction=0.25)
    torch.manual_seed(0)
    model = LSTMClassifier(3, 2, hidden_size=8, learning_rate=0.01,
                           techniques=[{"name": "gradient_clipping", "threshold": 0.05}, "grad_norm"])
    logger = CSVLogger(tmp_path / "logs")
    # Where the fixed threshold is read from: the technique specs in the run's hparams.yaml.
    logger.log_hyperparams({"techniques": technique_specs(model.techniques)})
    trainer = quiet_trainer(max_epochs=2, log_every_n_steps=2, logger=logger)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    history = read_metrics_log(logger.log_dir)
    assert [int(row["step"]) for row in history["train"]] == list(range(1, trainer.global_step, 2))
    for row in history["train"]:
        assert row["grad_norm_before_clipping"] == pytest.approx(row["grad_norm/total"], rel=1e-5)
        assert row["grad_norm_after_clipping"] == pytest.approx(min(row["grad_norm_before_clipping"], 0.05))
    assert [row["epoch"] for row in history["validation"]] == [0.0, 1.0]
    assert history["test"]["test/accuracy"] == pytest.approx(model.test_results["test/accuracy"].item())
    path = plot_from_log(tmp_path / "logs", tmp_path / "fit.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
