"""Configs are YAML of bounded size with every key once; Trainer values are checked at the door."""

import time

import pytest
import yaml
from jsonargparse import ArgumentError, ArgumentParser

from lstm_plugins import cli
from lstm_plugins.cli import ConfigError
from lstm_plugins.cli._trainer_values import check_threads, check_trainer_values, cluster_environment
from lstm_plugins.cli._yaml import MAX_NODES, check_yaml, load_yaml, register_parser_mode


def _bomb(levels: int, width: int = 9) -> str:
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, key, line, first", [
    ("a: 1\nb: 2\na: 3\n", "a", 3, 1),
    ("model:\n  techniques: [l2]\n  hidden_size: 8\n  techniques: [dropout]\n", "techniques", 4, 2),
    ("trainer: {max_epochs: 1, max_epochs: 2}\n", "max_epochs", 1, 1),
    ("model:\n  techniques:\n    - l2: {weight: 0.1, weight: 0.2}\n", "weight", 3, 3),
])
def test_a_repeated_key_is_refused_naming_it_and_both_lines(text, key, line, first):
    with pytest.raises(ConfigError) as error:
        load_yaml(text, "run.yaml")
    assert str(error.value) == (f"run.yaml, line {line}: key `{key}` is given twice (first on line {first}); "
                                "give it once.")
    assert yaml.safe_load(text) is not None  # plain PyYAML keeps the last value without a word


def test_a_merge_key_may_be_overridden_and_the_result_is_pyyamls():
    text = "base: &base {hidden_size: 8, num_layers: 2}\nmodel:\n  <<: *base\n  hidden_size: 16\n"
    assert load_yaml(text) == yaml.safe_load(text)
    assert load_yaml(text)["model"] == {"hidden_size": 16, "num_layers": 2}


def test_aliases_of_bounded_size_load_like_pyyaml():
    text = _bomb(3, 3)  # 3 + 9 + 27 scalars once expanded
    assert load_yaml(text) == yaml.safe_load(text)
    assert sum(len(inner) for outer in load_yaml(text)["a2"] for inner in outer) == 27


def test_an_alias_bomb_is_refused_before_anything_expands_and_the_message_is_short():
    text = _bomb(9)  # 9**9 = 387 million scalars once expanded
    started = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        check_yaml(text, "bomb.yaml")
    assert time.perf_counter() - started < 1.0
    message = str(error.value)
    assert message.startswith("bomb.yaml, line 2: the aliases (`*name`) expand to more than ")
    assert str(MAX_NODES) in message and len(message) < 300


def test_the_bound_counts_expanded_values_exactly():
    # a0 holds 1 + 9 values; each a_i holds 1 + 9 * size(a_{i-1}); the document adds its keys.
    sizes = [10]
    for _ in range(1, 6):
        sizes.append(1 + 9 * sizes[-1])
    assert sizes[4] < MAX_NODES < sizes[5]
    check_yaml(_bomb(5))  # the largest level is 66430 values: allowed
    with pytest.raises(ConfigError):
        check_yaml(_bomb(6))


def test_a_recursive_anchor_is_refused():
    with pytest.raises(ConfigError, match="a recursive anchor"):
        check_yaml("a: &a [1, *a]\n", "r.yaml")


def test_jsonargparse_reads_flag_values_through_the_check():
    parser = ArgumentParser(parser_mode=register_parser_mode(), exit_on_error=False)
    parser.add_argument("--a", type=dict)
    assert parser.parse_args(["--a", "{x: 1, y: 2}"]).a == {"x": 1, "y": 2}
    with pytest.raises(ArgumentError, match="key `x` is given twice"):
        parser.parse_args(["--a", "{x: 1, x: 2}"])


def test_the_cli_refuses_a_config_with_a_repeated_key_before_parsing(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  techniques: [gradient_clipping]\ntrainer: {max_epochs: 1}\n"
                      "model:\n  techniques: [dropout]\n")
    assert cli.main(["fit", "--config", str(config), "--print_config"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        f"lstm-plugins: error: {config}, line 4: key `model` is given twice (first on line 1); give it once.")


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_key(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_bytes("\ufefftrainer: {max_epochs: 7}\n".encode())
    assert cli.main(["fit", "--config", str(config), "--print_config"]) == 0
    assert "max_epochs: 7" in capsys.readouterr().out


@pytest.mark.parametrize("trainer", [
    {"max_epochs": -1, "max_steps": -1, "devices": "auto", "num_nodes": 1, "accumulate_grad_batches": 1},
    {"max_epochs": 3, "devices": "0,1", "limit_train_batches": 0.5, "val_check_interval": 1.0},
    {"devices": [0], "limit_val_batches": 3.0, "limit_test_batches": 0, "num_sanity_val_steps": -1},
    {"devices": -1, "gradient_clip_val": 0.0, "check_val_every_n_epoch": None, "log_every_n_steps": None},
])
def test_values_lightning_runs_are_accepted(trainer):
    check_trainer_values(trainer)


@pytest.mark.parametrize("key, value", [
    ("max_epochs", 0), ("max_epochs", -2), ("max_steps", 0), ("min_steps", -1), ("accumulate_grad_batches", 0),
    ("accumulate_grad_batches", None), ("devices", "0,x"), ("devices", "-2"), ("devices", []), ("num_nodes", 0),
    ("limit_val_batches", 1.5), ("val_check_interval", 0.0), ("num_sanity_val_steps", -2),
    ("reload_dataloaders_every_n_epochs", -1), ("max_epochs", True), ("gradient_clip_val", float("inf")),
])
def test_values_lightning_cannot_run_are_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"^Expected `trainer\.{key}` to be "):
        check_trainer_values({key: value})


def test_num_nodes_above_one_needs_a_cluster_environment(monkeypatch):
    for variable in ("NODE_RANK", "MASTER_ADDR", "SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID",
                     "KUBERNETES_PORT", "LSB_JOBID"):
        monkeypatch.delenv(variable, raising=False)
    assert cluster_environment() is None
    with pytest.raises(ConfigError, match=r"^`trainer.num_nodes` is 2, but no cluster environment"):
        check_trainer_values({"num_nodes": 2})
    monkeypatch.setenv("NODE_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    assert cluster_environment() == "NODE_RANK"
    check_trainer_values({"num_nodes": 2})


def test_threads_are_bounded_by_four_per_cpu(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    check_threads(12)
    check_threads(None)
    with pytest.raises(ConfigError, match=r"at most 12 \(4 per CPU of this machine\) or null, but got 13\.$"):
        check_threads(13)
    with pytest.raises(ConfigError, match=r"but got 2\.5\.$"):
        check_threads(2.5)
