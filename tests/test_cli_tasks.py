"""Every task runs from a config through the CLI, and task-specific keys are checked."""

from pathlib import Path

import pytest

from lstm_plugins import cli
from lstm_plugins.cli._config import ConfigError, load_config, validate_config
from lstm_plugins.cli._tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
FAST = ["--set", "trainer.enable_progress_bar=false", "--set", "trainer.logger=false",
        "--set", "trainer.enable_checkpointing=false", "--set", "trainer.enable_model_summary=false",
        "--set", "trainer.max_epochs=1", "--set", "threads=1"]
SMALL = {
    "regression_tecator.yaml": [],
    "forecasting_airline.yaml": [],
    "char_language_model.yaml": ["--set", "data.max_train_chars=20000", "--set", "data.max_eval_chars=5000",
                                 "--set", "model.hidden_size=16"],
    "speaker_turns.yaml": ["--set", "data.num_train=40", "--set", "data.num_val=10", "--set", "data.num_test=20",
                           "--set", "model.hidden_size=8"],
}
EXPECTED_ROWS = {
    "regression_tecator.yaml": ["MAE", "RMSE", "R²"],
    "forecasting_airline.yaml": ["MAE", "RMSE", "MASE"],
    "speaker_turns.yaml": ["accuracy", "recall (macro)", "F1 (macro)"],
    "char_language_model.yaml": ["perplexity", "bits per char"],
}


def test_every_task_has_an_example_config_that_validates():
    configs = {load_config(path)["task"] for path in CONFIGS.glob("*.yaml")}
    assert configs == set(TASKS) - {"classification"}  # classification: examples/japanese_vowels.yaml
    assert set(SMALL) == {path.name for path in CONFIGS.glob("*.yaml")}


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


@pytest.mark.parametrize(
    "config, message",
    [
        ({"task": "translation"}, "Expected `task` to be one of 'classification', 'regression'"),
        ({"task": "regression", "data": {"lookback": 3}}, "Unknown key(s) 'lookback' in `data`"),
        ({"task": "forecasting", "data": {"dataset": "tecator"}},
         "Expected `data.dataset` to be one of airline, solar for the `forecasting` task, but got 'tecator'."),
        ({"task": "classification", "model": {"loss": "mae"}}, "Unknown key(s) 'loss' in `model`"),
        ({"task": "forecasting", "data": {"csv": "x.csv", "dataset": "airline"}},
         "Give either `data.dataset` or `data.csv` (a CSV file), not both."),
        ({"task": "regression", "data": {"test": "x.ts"}}, "`data.test` needs `data.train`: give both .ts files."),
    ],
)
def test_task_specific_keys_are_checked(config, message):
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert message in str(error.value)


def test_each_task_defaults_to_its_embedded_data_set():
    for name, recipe in TASKS.items():
        assert validate_config({"task": name})["data"]["dataset"] == recipe.datasets[0]
