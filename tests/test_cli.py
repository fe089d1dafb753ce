"""The lstm-plugins command, YAML configs, and a third-party technique installed as a package."""

from pathlib import Path

import pytest
import yaml

from lstm_plugins import cli
from lstm_plugins.cli._config import DEFAULT_CONFIG, ConfigError, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "trainer.enable_progress_bar=false", "--set", "trainer.logger=false",
        "--set", "trainer.enable_checkpointing=false", "--set", "trainer.enable_model_summary=false"]


def test_plugins_lists_every_built_in_with_its_package(capsys):
    assert cli.main(["plugins"]) == 0
    listing = capsys.readouterr().out
    for name in ("gradient_clipping", "dropout", "l2", "grad_norm"):
        line = next(line for line in listing.splitlines() if line.startswith(name + " "))
        assert "lstm-plugins 0.1.0" in line


def test_fit_prints_accuracy_recall_and_f1_with_per_class_rows(capsys):
    code = cli.main(["fit", "--max-epochs", "2", "--set", "model.hidden_size=16", *FAST])
    assert code == 0
    output = capsys.readouterr().out
    assert "accuracy" in output and "recall (macro)" in output and "F1 (macro)" in output
    class_rows = [line.split() for line in output.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in class_rows] == [str(i) for i in range(1, 10)]
    assert "370 test sequences" in output


def test_example_config_is_the_default_stack():
    example = load_config(ROOT / "examples" / "japanese_vowels.yaml")
    assert example == validate_config(DEFAULT_CONFIG)


def test_the_cli_checkpoints_every_n_epochs_and_keeps_the_final_weights_in_last_ckpt(tmp_path):
    import pytorch_lightning as pl
    import torch

    _, _, trainer = cli.build_run(validate_config(DEFAULT_CONFIG))
    (checkpoint,) = [c for c in trainer.callbacks if isinstance(c, pl.callbacks.ModelCheckpoint)]
    (bar,) = [c for c in trainer.callbacks if isinstance(c, pl.callbacks.TQDMProgressBar)]
    assert checkpoint.save_last and checkpoint._every_n_epochs == 10 and bar.refresh_rate == 10

    config = validate_config({
        **DEFAULT_CONFIG, "checkpoint_every_n_epochs": 2, "model": {"hidden_size": 8},
        "trainer": {"max_epochs": 3, "accelerator": "cpu", "default_root_dir": str(tmp_path),
                    "enable_progress_bar": False, "limit_train_batches": 2, "limit_val_batches": 1},
    })
    datamodule, model, trainer = cli.build_run(config)
    trainer.fit(model, datamodule=datamodule)
    saved = sorted(path.name for path in tmp_path.rglob("*.ckpt"))
    assert saved == ["epoch=1-step=4.ckpt", "last.ckpt"]
    last = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=True)
    assert (last["epoch"], last["global_step"]) == (3, 6)  # after all 3 epochs, not after epoch 1
    every_other_validation = validate_config({**config, "trainer": {**config["trainer"], "max_epochs": 4,
                                                                   "check_val_every_n_epoch": 3,
                                                                   "default_root_dir": str(tmp_path / "b")}})
    datamodule, model, trainer = cli.build_run(every_other_validation)
    trainer.fit(model, datamodule=datamodule)
    saved = sorted(path.name for path in (tmp_path / "b").rglob("*.ckpt"))
    assert saved == ["epoch=3-step=8.ckpt", "last.ckpt"]  # epochs 1 and 3 saved; top-1 keeps the latest
    no_checkpoints = validate_config({**config, "trainer": {**config["trainer"], "enable_checkpointing": False}})
    _, _, trainer = cli.build_run(no_checkpoints)
    assert not any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in trainer.callbacks)


def test_technique_flags_and_overrides_compose(capsys):
    code = cli.main(["fit", "--technique", "l2:weight=0.001,include_biases=true", "--technique", "grad_norm",
                     "--seed", "3", "--set", "model.hidden_size=8", "--print-config"])
    assert code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["techniques"] == [{"l2": {"weight": 0.001, "include_biases": True}}, "grad_norm"]
    assert printed["seed"] == 3 and printed["model"]["hidden_size"] == 8


@pytest.mark.parametrize(
    "config, message",
    [
        ({"trainer": {"epochs": 3}}, "Unknown key(s) 'epochs' in `trainer`. Allowed keys: "),
        ({"modle": {}}, "Unknown key(s) 'modle' in `config`."),
        ({"model": {"hidden": 3}}, "Unknown key(s) 'hidden' in `model`."),
        ({"seed": "zero"}, "Expected `seed` to be an int, but got 'zero'."),
        ({"techniques": {"l2": {}}}, "Expected `techniques` to be a list"),
        ({"techniques": [3]}, "Expected each entry of `techniques` to be a name or a mapping, but got 3."),
        ({"data": {"dataset": "mnist"}}, "Expected `data.dataset` to be one of japanese_vowels for the `classification` task, but got 'mnist'."),
        ({"data": {"test": "x.ts"}}, "`data.test` needs `data.train`"),
    ],
)
def test_bad_configs_name_the_key(config, message):
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert message in str(error.value)


def test_unknown_technique_in_a_config_lists_the_known_ones(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("techniques:\n  - gradient_clipping\n  - dropuot: {output: 0.2}\n")
    assert cli.main(["fit", "--config", str(path), *FAST]) == 2
    error = capsys.readouterr().err
    assert "Unknown technique `dropuot`. Known techniques: " in error
    known = error.split("Known techniques: ")[1].rstrip(".\n").split(", ")
    assert {"dropout", "grad_norm", "gradient_clipping", "l2"} <= set(known) and known == sorted(known)


def test_yaml_is_parsed_as_data_only(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)


def test_ts_files_from_a_config_are_read_relative_to_it(tmp_path, capsys):
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
    assert cli.main(["fit", "--config", str(tmp_path / "toy.yaml"), *FAST]) == 0
    output = capsys.readouterr().out
    assert "40 test sequences" in output
    assert [line.split()[0] for line in output.splitlines() if line.startswith("  a ") or line.startswith("  b ")] == ["a", "b"]