"""Every task runs from a config through the CLI, and task-specific keys are checked."""

from pathlib import Path

import pytest
import yaml

from lstm_plugins import cli
from lstm_plugins.cli._lightning import TASK_CLASSES
from lstm_plugins.cli._tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
# search_*.yaml are `lstm-plugins tune` searches (tests/test_tune.py reads them), not fit configs.
FIT_CONFIGS = sorted(path for path in CONFIGS.glob("*.yaml") if not path.name.startswith("search_"))
FAST = ["--trainer.enable_progress_bar=false", "--trainer.logger=false", "--trainer.enable_checkpointing=false",
        "--trainer.enable_model_summary=false", "--trainer.max_epochs=1", "--threads=1"]
SMALL = {
    "regression_tecator.yaml": [],
    "forecasting_airline.yaml": [],
    "char_language_model.yaml": ["--data.max_train_chars=20000", "--data.max_eval_chars=5000",
                                 "--model.hidden_size=16"],
    "speaker_turns.yaml": ["--data.num_train=40", "--data.num_val=10", "--data.num_test=20", "--model.hidden_size=8"],
}
EXPECTED_ROWS = {
    "regression_tecator.yaml": ["MAE", "RMSE", "R²"],
    "forecasting_airline.yaml": ["MAE", "RMSE", "MASE"],
    "speaker_turns.yaml": ["accuracy", "recall (macro)", "F1 (macro)"],
    "char_language_model.yaml": ["perplexity", "bits per char"],
}


def test_the_cli_runs_every_task():
    assert set(TASK_CLASSES) == set(TASKS)


def test_every_task_has_an_example_config_that_validates(capsys):
    tasks = set()
    for path in FIT_CONFIGS:
        assert cli.main(["fit", "--config", str(path), *SMALL[path.name], "--print_config"]) == 0, path
        tasks.add(yaml.safe_load(capsys.readouterr().out)["task"])
    assert tasks == set(TASKS) - {"classification"}  # classification: examples/japanese_vowels.yaml
    assert set(SMALL) == {path.name for path in FIT_CONFIGS}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_each_task_config_trains_and_prints_its_table(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", "--config", str(CONFIGS / name), *FAST, *SMALL[name]]) == 0
    output = capsys.readouterr().out
    table = output[output.index("Test results"):].splitlines()
    labels = [line.split()[0] for line in table[1:] if line.strip()]
    for row in EXPECTED_ROWS[name]:
        assert row.split()[0] in labels, (row, table)
    assert "tested: " in output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--task", "translation"], "Expected `task` to be one of 'classification', 'regression'"),
        (["--task", "regression", "--data.lookback", "3"], "Unknown key 'lookback' in `data`. Allowed keys: "),
        (["--task", "forecasting", "--data.dataset", "tecator"], 'Parser key "data.dataset"'),
        (["--model.loss", "mae"], "Unknown key 'loss' in `model`. Allowed keys: "),
        (["--task", "regression", "--data.test", __file__], "data: `data.test` needs `data.train`: give both .ts files."),
        (["--task", "regression", "--data.train", "missing.ts"], 'Parser key "data.train"'),
    ],
)
def test_task_specific_keys_are_checked(arguments, message, capsys):
    assert cli.main(["fit", *arguments, "--print_config"]) == 2
    assert message in capsys.readouterr().err


EMBEDDED = {"classification": "japanese_vowels", "regression": "tecator", "sequence_labelling": "speaker_turns",
            "forecasting": "airline", "language_model": "shakespeare"}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_defaults_to_its_embedded_data_set(task, capsys):
    extra = ["--data.max_train_chars=2000", "--data.max_eval_chars=2000"] if task == "language_model" else []
    assert cli.main(["fit", "--task", task, *extra, "--print_config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["dataset"] == EMBEDDED[task]
