"""The lstm-plugins command on LightningCLI: defaults, configs, errors, resume, predict, early
stopping and the best checkpoint, plots from the log."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lstm_plugins import cli

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
FAST = [*QUIET, "--trainer.logger=false", "--trainer.enable_checkpointing=false"]
SMALL = ["--model.hidden_size", "8", "--trainer.limit_train_batches", "3"]


def _printed_config(capsys, *arguments):
    assert cli.main(["fit", *arguments, "--print_config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_plugins_lists_every_built_in_with_its_package(capsys):
    assert cli.main(["plugins"]) == 0
    listing = capsys.readouterr().out
    for name in ("gradient_clipping", "dropout", "l2", "grad_norm"):
        line = next(line for line in listing.splitlines() if line.startswith(name + " "))
        assert "lstm-plugins 0.1.0" in line


def test_help_lists_the_subcommands(capsys):
    assert cli.main(["--help"]) == 0
    output = capsys.readouterr().out
    assert all(name in output for name in ("fit", "validate", "test", "predict", "plugins", "plot"))


def test_fit_prints_accuracy_recall_and_f1_and_the_checkpoint_tested(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", "--trainer.max_epochs", "2", "--model.hidden_size", "16", *FAST]) == 0
    output = capsys.readouterr().out
    assert "accuracy" in output and "recall (macro)" in output and "F1 (macro)" in output
    class_rows = [line.split() for line in output.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in class_rows] == [str(i) for i in range(1, 10)]
    assert "370 test sequences" in output
    assert "tested: the final weights (epoch 2, step 32)" in output
    assert "the validation split holds only 27 sequences" in output


def test_the_example_config_is_the_default_stack(capsys):
    default = _printed_config(capsys)
    example = _printed_config(capsys, "--config", str(ROOT / "examples" / "japanese_vowels.yaml"))
    assert example == default
    assert default["model"]["hidden_size"] == 128 and len(default["model"]["techniques"]) == 4
    assert default["threads"] == 1 and default["checkpoint_every_n_epochs"] == 10


def test_one_flag_adds_a_technique_and_1e_3_is_a_float(capsys):
    printed = _printed_config(capsys, "--model.techniques+=gate_saturation",
                              '--model.techniques+={"activation_regularization": {"alpha": 1e-3}}')
    techniques = printed["model"]["techniques"]
    assert len(techniques) == 6 and techniques[-2] == "gate_saturation"
    assert techniques[-1] == {"activation_regularization": {"alpha": 0.001}}
    assert isinstance(techniques[-1]["activation_regularization"]["alpha"], float)


@pytest.mark.parametrize(
    "config, message",
    [
        ("trainer: {epochs: 3}\n", "Unknown key 'epochs' in `trainer`. Allowed keys: accelerator, "),
        ("modle: {hidden_size: 3}\n", "Unknown key(s) 'modle' in the config. Allowed keys: checkpoint_every_n_epochs,"),
        ("model: {hidden: 3}\n", "Unknown key 'hidden' in `model`. Allowed keys: bidirectional, hidden_size,"),
        ("model: {hidden_size: 2.5}\n", 'Parser key "model.hidden_size"'),
        ("seed_everything: zero\n", 'Parser key "seed_everything"'),
        ("model: {hidden_size: 0}\n", "model.hidden_size: Expected `hidden_size` to be a positive int, but got 0."),
        ("model: {optimizer: adagrad}\n", 'Parser key "model.optimizer"'),
        ("model: {techniques: [dropuot]}\n", "model.techniques: Unknown technique `dropuot`. Known techniques: "),
        ("model: {techniques: [{l2: {wieght: 0.1}}]}\n", "model.techniques: Technique `l2`: "),
        ("data: {dataset: mnist}\n", 'Parser key "data.dataset"'),
        ("task: translation\n", "Expected `task` to be one of 'classification', 'regression'"),
        ("trainer: {callbacks: [{class_path: os.system}]}\n", "`trainer.callbacks` names 'os.system'"),
        ("model: {techniques: [{class_path: collections.OrderedDict}]}\n",
         "`model.techniques` names class 'collections.OrderedDict', but a config names techniques by registered name"),
        ("trainer: {logger: {class_path: pytorch_lightning.loggers.WandbLogger}}\n",
         "`trainer.logger` names 'pytorch_lightning.loggers.WandbLogger'"),
    ],
)
def test_every_config_error_names_the_key(config, message, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    assert cli.main(["fit", "--config", str(path), "--print_config"]) == 2  # --print_config validates
    captured = capsys.readouterr()
    assert message in captured.err and "trainer:" not in captured.out


def test_print_config_validates_before_printing(capsys):
    assert cli.main(["fit", "--model.hidden_size", "0", "--print_config"]) == 2
    assert cli.main(["fit", "--model.hidden_size", "12", "--print_config"]) == 0


def test_lightning_callbacks_and_loggers_come_from_the_config(tmp_path, capsys, monkeypatch):
    import importlib.util

    monkeypatch.chdir(tmp_path)
    loggers = [{"class_path": "CSVLogger", "init_args": {"save_dir": "csv"}}]
    tensorboard = importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")
    if tensorboard:
        loggers.append({"class_path": "pytorch_lightning.loggers.TensorBoardLogger", "init_args": {"save_dir": "tb"}})
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 1, "logger": loggers,
                    "callbacks": [{"class_path": "pytorch_lightning.callbacks.LearningRateMonitor"}]},
    }))
    assert cli.main(["fit", "--config", str(config), *QUIET, *SMALL]) == 0
    assert list((tmp_path / "csv").rglob("metrics.csv"))
    assert not tensorboard or list((tmp_path / "tb").rglob("events.out.*"))
    assert list((tmp_path / "csv").rglob("config.yaml"))  # the config saved beside the run


@pytest.mark.slow
def test_the_cli_checkpoints_every_n_epochs_and_keeps_the_final_weights_in_last_ckpt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", *QUIET, *SMALL, "--trainer.max_epochs", "3", "--checkpoint_every_n_epochs", "2",
                     "--trainer.limit_train_batches", "2"]) == 0
    saved = sorted(path.name for path in tmp_path.rglob("*.ckpt"))
    assert saved == ["epoch=1-step=4.ckpt", "last.ckpt"]
    last = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=True)
    assert (last["epoch"], last["global_step"]) == (3, 6)
    assert list(tmp_path.rglob("config.yaml")) and list(tmp_path.rglob("metrics.csv"))


@pytest.mark.slow
def test_resume_through_the_cli_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = ["fit", *QUIET, *SMALL, "--trainer.logger=false"]
    assert cli.main([*run, "--trainer.default_root_dir", "a", "--trainer.max_epochs", "2"]) == 0
    assert cli.main([*run, "--trainer.default_root_dir", "b", "--trainer.max_epochs", "4",
                     "--ckpt_path", "a/checkpoints/last.ckpt"]) == 0
    assert cli.main([*run, "--trainer.default_root_dir", "c", "--trainer.max_epochs", "4"]) == 0
    resumed = torch.load("b/checkpoints/last.ckpt", weights_only=True)
    straight = torch.load("c/checkpoints/last.ckpt", weights_only=True)
    assert resumed["global_step"] == straight["global_step"] == 12
    for name, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name


@pytest.mark.slow
def test_predict_writes_what_the_model_computes(tmp_path, monkeypatch, capsys):
    from lstm_plugins import LSTMClassifier
    from lstm_plugins.data import JapaneseVowelsDataModule

    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", *QUIET, *SMALL, "--trainer.logger=false", "--trainer.max_epochs", "1"]) == 0
    assert cli.main(["predict", "--ckpt_path", "checkpoints/last.ckpt", "--output", "out/p.csv"]) == 0
    assert "370 predictions written to out/p.csv" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "out" / "p.csv").open()))
    model = LSTMClassifier.load_from_checkpoint("checkpoints/last.ckpt").eval()
    test = JapaneseVowelsDataModule(batch_size=16).test_dataset
    with torch.no_grad():
        expected = model(test.features, test.lengths).softmax(-1).numpy()
    assert [row["id"] for row in rows] == [str(i) for i in range(370)]
    names = [f"probability_{i}" for i in range(1, 10)]
    written = np.array([[float(row[name]) for name in names] for row in rows])
    np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)
    assert [int(row["class"]) for row in rows] == expected.argmax(1).tolist()
    assert [row["class_name"] for row in rows] == [str(i + 1) for i in expected.argmax(1)]


def test_predict_labels_new_unlabelled_series_from_raw_features(tmp_path, monkeypatch, capsys):
    from lstm_plugins import LSTMClassifier
    from lstm_plugins.data import JapaneseVowelsDataModule, load_japanese_vowels

    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", *QUIET, *SMALL, "--trainer.logger=false", "--trainer.max_epochs", "1"]) == 0
    _, test = load_japanese_vowels()
    raw = test.sequences[:5]  # as recorded: not standardised, no labels
    lines = ["@problemName new_recordings", "@classLabel false", "@data"]
    lines += [":".join(",".join(repr(float(v)) for v in sequence[:, d]) for d in range(sequence.shape[1])) for sequence in raw]
    (tmp_path / "new.ts").write_text("\n".join(lines) + "\n")
    assert cli.main(["predict", "--ckpt_path", "checkpoints/last.ckpt", "--input", "new.ts", "--output", "new.csv"]) == 0
    assert "5 predictions written to new.csv" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "new.csv").open()))
    model = LSTMClassifier.load_from_checkpoint("checkpoints/last.ckpt").eval()
    standardised = JapaneseVowelsDataModule(batch_size=16).test_dataset  # the same series, standardised
    with torch.no_grad():
        expected = model(standardised.features[:5], standardised.lengths[:5]).softmax(-1).numpy()
    written = np.array([[float(row[f"probability_{i}"]) for i in range(1, 10)] for row in rows])
    np.testing.assert_allclose(written, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_generate_continues_a_prompt_from_a_language_model_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "lm.yaml"
    config.write_text(
        "task: language_model\nmodel: {hidden_size: 16, embedding_size: 8}\n"
        "data: {dataset: shakespeare, max_train_chars: 5000, max_eval_chars: 2000, batch_size: 8, chunk_length: 16}\n"
        "trainer: {max_epochs: 1, enable_progress_bar: false, logger: false}\n"
    )
    assert cli.main(["fit", "--config", str(config)]) == 0
    capsys.readouterr()
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    assert cli.main(["predict", "--config", str(config), "--ckpt_path", str(checkpoint)]) == 2
    assert "lstm-plugins generate" in capsys.readouterr().err
    arguments = ["generate", "--ckpt_path", str(checkpoint), "--prompt", "To be", "--length", "20", "--seed", "3"]
    assert cli.main(arguments) == 0
    first = capsys.readouterr().out
    assert cli.main(arguments) == 0
    assert first.startswith("To be") and len(first.rstrip("\n")) == 25
    assert capsys.readouterr().out == first  # seeded: the same text again


@pytest.mark.slow
def test_early_stopping_tests_the_best_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", *QUIET, *SMALL, "--trainer.max_epochs", "6", "--early_stopping.monitor", "val/accuracy",
                     "--early_stopping.mode", "max", "--early_stopping.patience", "1"]) == 0
    output = capsys.readouterr().out
    best = sorted(tmp_path.rglob("best-*.ckpt"))
    assert len(best) == 1 and list(tmp_path.rglob("last.ckpt"))
    assert "tested: the best checkpoint (val/accuracy = " in output and str(best[0].name) in output


@pytest.mark.slow
def test_plot_redraws_a_run_from_its_log_folder(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", *QUIET, *SMALL, "--trainer.max_epochs", "2", "--plot", "fit.png"]) == 0
    assert "plot written to fit.png (from " in capsys.readouterr().out
    assert cli.main(["plot", "lightning_logs/version_0", "--output", "again.png"]) == 0
    for name in ("fit.png", "again.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ts_files_from_a_config_are_read_relative_to_it(tmp_path, capsys, monkeypatch):
    lines = ["@problemName toy", "@univariate false", "@dimensions 2", "@equalLength false",
             "@classLabel true a b", "@data"]
    for index in range(40):
        label = "ab"[index % 2]
        values = ",".join(str((index % 2) + 0.1 * step) for step in range(3 + index % 4))
        lines.append(f"{values}:{values}:{label}")
    (tmp_path / "toy.ts").write_text("\n".join(lines) + "\n")
    (tmp_path / "toy.yaml").write_text(
        "model: {hidden_size: 8}\ndata: {train: toy.ts, test: toy.ts, batch_size: 8}\ntrainer: {max_epochs: 2}\n"
    )
    monkeypatch.chdir(ROOT)  # elsewhere: the paths are the config's
    assert cli.main(["fit", "--config", str(tmp_path / "toy.yaml"), *FAST,
                     "--trainer.default_root_dir", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert "40 test sequences" in output
    assert [line.split()[0] for line in output.splitlines() if line.startswith(("  a ", "  b "))] == ["a", "b"]


def _readme_commands(subcommands=("fit", "validate", "test")):
    import re
    import shlex

    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():  # a `\` continues the line
            for part in line.split("  #")[0].split("&&"):
                words = shlex.split(part)
                if words[:1] == ["lstm-plugins"] and words[1:2] and words[1] in subcommands:
                    commands.append(words[1:])
    return commands


README_COMMANDS = _readme_commands()
# Not here: other packages (installed by tests/test_third_party_packages.py), GPUs, an earlier run's files.
NEEDS_MORE = ("gradient_noise", "mixup", "gpu", "--ckpt_path", "tune_jv/")


def test_the_readme_documents_cli_commands():
    assert ["fit"] in README_COMMANDS and len(README_COMMANDS) >= 8


@pytest.mark.parametrize("command", [c for c in README_COMMANDS if not any(w in " ".join(c) for w in NEEDS_MORE)],
                         ids=" ".join)
def test_every_documented_fit_command_validates_as_written(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    command = [part if not part.startswith("examples/") else str(ROOT / part) for part in command]
    assert cli.main([*command, "--print_config"]) == 0, capsys.readouterr().err


@pytest.mark.slow
def test_the_readme_workflow_after_a_fit_runs_as_written(tmp_path, monkeypatch, capsys):
    """The documented commands that need an earlier run's files (resume, test, predict, plot), run
    as written after a short default `fit`, each with only the epochs shortened."""
    from lstm_plugins.data import load_japanese_vowels

    monkeypatch.chdir(tmp_path)
    short = ["--trainer.limit_train_batches", "3", "--trainer.enable_progress_bar=false"]
    assert cli.main(["fit", "--trainer.max_epochs", "1", *short]) == 0
    _, test = load_japanese_vowels()
    rows = [":".join(",".join(repr(float(v)) for v in s[:, d]) for d in range(s.shape[1])) for s in test.sequences[:3]]
    (tmp_path / "new_recordings.ts").write_text("\n".join(["@classLabel false", "@data", *rows]) + "\n")
    workflow = [c for c in _readme_commands(("fit", "validate", "test", "predict", "plot", "explain"))
                if "lightning_logs/version_0" in " ".join(c)]
    assert {c[0] for c in workflow} >= {"fit", "test", "predict", "plot"}
    for command in workflow:
        extra = ["--trainer.max_epochs", "2", *short] if command[0] == "fit" else []
        if command[0] in ("plot", "explain"):
            pytest.importorskip("matplotlib")
        if command[0] == "explain":
            pytest.importorskip("captum")
        assert cli.main([*command, *extra]) == 0, (command, capsys.readouterr().err[-2000:])
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "run.png").is_file()


def test_build_run_builds_what_fit_builds_from_the_same_config_as_a_dict(tmp_path, monkeypatch):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, TQDMProgressBar

    from lstm_plugins.training import PeriodicCheckpoint

    monkeypatch.chdir(tmp_path)
    extra = pl.Callback()
    datamodule, model, trainer = cli.build_run(
        {"model": {"hidden_size": 8}, "trainer": {"max_epochs": 1}, "early_stopping": {"monitor": "val/loss"}},
        callbacks=[extra],
    )
    assert type(datamodule).__name__ == "JapaneseVowelsDataModule"
    assert model.hparams.hidden_size == 8 and model.hparams.bidirectional is True  # fit's defaults
    assert [spec["name"] for spec in model.hparams.techniques] == [
        next(iter(spec)) for spec in cli.DEFAULT_CONFIG["model"]["techniques"]]
    kinds = [type(callback) for callback in trainer.callbacks]
    assert extra in trainer.callbacks and TQDMProgressBar in kinds and EarlyStopping in kinds
    assert trainer.max_epochs == 1 and type(trainer.logger).__name__ == "CSVLogger"
    _, _, trainer = cli.build_run({"task": "forecasting", "model": {"hidden_size": 4}})
    assert any(isinstance(callback, PeriodicCheckpoint) for callback in trainer.callbacks)


@pytest.mark.parametrize("config, message", [
    ({"trainer": {"epochs": 3}}, "Unknown key 'epochs' in `trainer`"),
    ({"seed": 0}, "Unknown key(s) 'seed' in the config"),
    ({"techniques": []}, "Unknown key(s) 'techniques' in the config"),
    ({"task": "translation"}, "Expected `task` to be one of"),
    ({"model": {"hidden_size": 0}}, "model.hidden_size: Expected `hidden_size` to be a positive int"),
    ({"trainer": {"callbacks": [{"class_path": "os.system"}]}}, "`trainer.callbacks` names 'os.system'"),
])
def test_build_run_refuses_what_fit_refuses(config, message):
    with pytest.raises(cli.ConfigError) as error:
        cli.build_run(config)
    assert message in str(error.value)


def test_deterministic_runs_skip_filling_new_memory_but_stay_deterministic(monkeypatch):
    """`deterministic: true` (fit's default) keeps deterministic algorithms, without NaN-filling
    every new tensor (the fused kernels' workspaces included, about 12 % of a medium step)."""
    import torch

    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)
    _, _, trainer = cli.build_run({"trainer": {"max_epochs": 1, "logger": False}})
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False
