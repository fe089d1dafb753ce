"""Every example runs as the README says (in smoke mode), and ``fit --plot`` writes its PNG."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import quiet_trainer

from lstm_plugins import LSTMClassifier, cli
from lstm_plugins.cli._plotting import MetricHistory

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
         "--trainer.enable_model_summary=false"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _run(arguments, cwd, environment=None, timeout=300):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(environment or {})}
    run = subprocess.run([sys.executable, *map(str, arguments)], cwd=cwd, env=environment,
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return run.stdout


def _results_table(output: str) -> list[str]:
    """The lines of the printed test table, without the timing line."""
    lines = output.splitlines()
    start = lines.index("Test results")
    return [line for line in lines[start:] if line.strip() and not line.strip().startswith("(")
            and "plot written" not in line and not line.strip().startswith(("tested:", "note:"))]


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_python_stack_and_yaml_stack_train_to_the_same_numbers(tmp_path, monkeypatch, capsys):
    """examples/compose_in_python.py is examples/japanese_vowels.yaml written in Python."""
    plot = ["--plot", tmp_path / "python.png"] if _has_matplotlib() else []
    python_output = _run([EXAMPLES / "compose_in_python.py", "--smoke", *plot], cwd=tmp_path)
    if plot:
        _assert_png(tmp_path / "python.png")

    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", "--config", str(EXAMPLES / "japanese_vowels.yaml"), "--trainer.max_epochs", "1", *QUIET, "--trainer.logger=false"]) == 0
    yaml_output = capsys.readouterr().out
    assert "accuracy" in yaml_output and "370 test sequences" in yaml_output
    assert _results_table(python_output) == _results_table(yaml_output)


def test_fit_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "figures" / "fit.png"
    code = cli.main(["fit", "--trainer.max_epochs", "2", "--model.hidden_size", "16", *QUIET,
                     "--trainer.default_root_dir", str(tmp_path), "--plot", str(path)])
    assert code == 0
    assert f"plot written to {path} (from " in capsys.readouterr().out
    _assert_png(path)


def test_fit_plot_without_matplotlib_fails_before_training(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    code = cli.main(["fit", "--trainer.max_epochs", "50", *QUIET, "--trainer.logger=false",
                     "--trainer.default_root_dir", str(tmp_path), "--plot", str(tmp_path / "fit.png")])
    assert code == 2
    error = capsys.readouterr()
    assert "pip install 'lstm-plugins[plot]'" in error.err and "Test results" not in error.out
    assert not (tmp_path / "fit.png").exists()


def test_metric_history_records_the_gradient_norm_before_and_after_clipping():
    from lstm_plugins.data import JapaneseVowelsDataModule

    torch.manual_seed(0)
    datamodule = JapaneseVowelsDataModule(batch_size=16, seed=0)
    model = LSTMClassifier(12, 9, hidden_size=16, learning_rate=0.01,
                           techniques=[{"gradient_clipping": {"threshold": 0.5}}])
    history = MetricHistory()
    trainer = quiet_trainer(max_epochs=1, log_every_n_steps=4, callbacks=[history])
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    steps = [int(row["step"]) for row in history.train]
    assert steps == list(range(3, trainer.global_step, 4))  # logging steps only: Lightning's rows
    for row in history.train:
        before, after = row["grad_norm_before_clipping"], row["grad_norm_after_clipping"]
        assert before == pytest.approx(row["gradient_clipping/pre_clip_norm"], rel=1e-5)
        assert after == pytest.approx(min(before, 0.5), rel=1e-4)  # the clipped gradients the optimizer used
    assert history.clipping_threshold == 0.5
    assert [row["epoch"] for row in history.validation] == [0.0]  # sanity check excluded
    assert {"val/loss", "val/accuracy", "val/f1", "val/recall"} <= set(history.validation[0])
    assert history.test["test/accuracy"] == pytest.approx(model.test_results["test/accuracy"].item())


def test_adding_problem_example(tmp_path):
    plot = ["--plot", tmp_path / "adding.png"] if _has_matplotlib() else []
    output = _run([EXAMPLES / "adding_problem.py", "--smoke", *plot], cwd=tmp_path)
    assert "Part 1: one run" in output and "Part 2: 2 seeds" in output
    assert re.search(r"^\| 1 \| (\d+ steps|not solved in \d+) \| (\d+ steps|not solved in \d+) \|$", output, re.M)
    if plot:
        _assert_png(tmp_path / "adding.png")


def test_japanese_vowels_results_example(tmp_path):
    output = _run([EXAMPLES / "japanese_vowels_results.py", "--smoke"], cwd=tmp_path)
    rows = [line for line in output.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model | accuracy (%) | macro recall (%) | macro F1 (%)")
    assert rows[2].startswith("| plain LSTM (no technique), seeds 0-1 | ")
    assert rows[3].startswith("| recommended stack, seeds 0-1 | ")
    assert re.fullmatch(r"\| .* \| \d+\.\d\d ± \d+\.\d\d \| \d+\.\d\d ± \d+\.\d\d \| \d+\.\d\d ± \d+\.\d\d \| \d+\.\d s \|", rows[3])
    assert any("Kudo et al. 1999" in row and "94.1" in row for row in rows)


@pytest.mark.distributed
def test_ddp_example_runs_on_two_cpu_processes(tmp_path):
    output = _run([EXAMPLES / "ddp_on_cpu.py", "--smoke"], cwd=tmp_path)
    assert "DDP on 2 processes (cpu)" in output
    assert "370 test sequences" in output
