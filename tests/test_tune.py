"""``lstm-plugins tune``: search values, search configs, folds, a tiny study end to end (SQLite in,
a runnable config out, the test split never read, a third-party technique's declared space
sampled), and bad inputs refused before any trial."""

import inspect
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import yaml

from lstm_plugins.cli import ConfigError
from lstm_plugins.techniques import Choice, FloatRange, IntRange, available_techniques, load_technique
from lstm_plugins.techniques._search_space import parse_search_value

optuna = pytest.importorskip("optuna")

BASE = {"model": {"hidden_size": 4, "techniques": []}, "data": {"dataset": "gun_point", "batch_size": 32},
        "trainer": {"max_epochs": 1}}


# --- search values ---------------------------------------------------------------------------

@pytest.mark.parametrize("build, message", [
    (lambda: FloatRange(0.5, 0.1), "Expected `high` to be a float >= low (0.5), but got 0.1."),
    (lambda: FloatRange(0.0, 1.0, log=True), "Expected `low` to be a positive float with log=True, but got 0.0."),
    (lambda: IntRange(4, 2), "Expected `high` to be an int >= low (4), but got 2."),
    (lambda: IntRange(1, 8, log=True, step=2), "Expected `step` to be 1 with log=True, but got 2."),
    (lambda: Choice(), "Expected `options` to be at least one option, but got ()."),
    (lambda: Choice("a", "a"), "Expected `options` to be distinct"),
])
def test_search_values_refuse_empty_and_inverted_ranges(build, message):
    with pytest.raises((ValueError, TypeError)) as error:
        build()
    assert message in str(error.value)


def test_search_values_parse_from_config_form_and_contain_their_values():
    assert parse_search_value("x", {"int": [16, 64], "step": 16}).values() == [16, 32, 48, 64]
    value = parse_search_value("x", {"float": [1e-4, 1e-2], "log": True})
    assert (value.contains(1e-3), value.contains(0.02), value.log) == (True, False, True)
    assert parse_search_value("x", {"choice": [True, False]}).contains(True)
    assert not Choice(1, 2).contains(True)  # a bool is not the int 1
    with pytest.raises(ValueError, match=r"`model.hidden_size`: Expected exactly one of"):
        parse_search_value("model.hidden_size", {"int": [1, 2], "float": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"`x`: Expected options among \['log'\], but got \['step'\]"):
        parse_search_value("x", {"float": [1.0, 2.0], "step": 1})


def test_every_declared_space_names_init_arguments_and_contains_the_default():
    checked = 0
    for name in available_techniques():
        factory = load_technique(name)
        parameters = inspect.signature(factory.__init__).parameters
        for key, value in getattr(factory, "search_space", {}).items():
            assert key in parameters, (name, key)
            default = parameters[key].default
            if not isinstance(value, Choice):
                # A paper's default lies inside its declared range (0.0 dropout defaults excepted: off).
                assert value.contains(default) or default == 0.0, (name, key, default, value)
            checked += 1
    assert checked >= 15


# --- search configs ---------------------------------------------------------------------------

def test_search_config_errors_name_the_item():
    from lstm_plugins.tune import parse_search

    with pytest.raises(ConfigError, match=r"Unknown parameter `search.model.hiden_size`; known: .*hidden_size"):
        parse_search({"model": {"hiden_size": {"int": [8, 16]}}})
    with pytest.raises(ConfigError, match=r"`search.techniques.dropuot`: Unknown technique `dropuot`. "
                                          r"Known techniques: .*dropout"):
        parse_search({"techniques": {"dropuot": "optional"}})
    with pytest.raises(ValueError, match=r"`search.model.learning_rate`: Expected `high` to be a float >= low"):
        parse_search({"model": {"learning_rate": {"float": [0.1, 0.01]}}})
    with pytest.raises(ConfigError, match=r"Unknown argument `treshold` of technique `gradient_clipping`"):
        parse_search({"techniques": {"gradient_clipping": {"space": {"treshold": {"float": [0.1, 1.0]}}}}})
    with pytest.raises(ConfigError, match=r"Expected `search.folds` to be an int >= 2, but got 1"):
        parse_search({"folds": 1})
    with pytest.raises(ConfigError, match=r"`search.model.dropout` has no default range|Unknown parameter"):
        parse_search({"model": {"dropout": "default"}})


def test_sampled_config_keeps_the_base_stack_order_and_switches_candidates():
    from lstm_plugins.tune import parse_search, sample_config

    search = parse_search({"model": {"hidden_size": {"int": [8, 32]}},
                           "techniques": {"dropout": "optional", "l2": {"space": {"weight": 0.001}},
                                          "grad_norm": False, "initialization": True}})
    base = {"model": {"techniques": ["grad_norm", {"gradient_clipping": {"threshold": 2.0}}, {"dropout": {"input": 0.1}}]}}
    on = optuna.trial.FixedTrial({"model.hidden_size": 12, "technique.dropout": True, "dropout.input": 0.2,
                                  "dropout.output": 0.3, "initialization.forget_bias": 2.0,
                                  "initialization.orthogonal_hidden": False})
    config = sample_config(on, search, base)
    assert config["model"]["hidden_size"] == 12
    assert config["model"]["techniques"] == [
        {"gradient_clipping": {"threshold": 2.0}}, {"dropout": {"input": 0.2, "output": 0.3}},
        {"l2": {"weight": 0.001}}, {"initialization": {"forget_bias": 2.0, "orthogonal_hidden": False}}]
    off = optuna.trial.FixedTrial({"model.hidden_size": 8, "technique.dropout": False,
                                   "initialization.forget_bias": 1.0, "initialization.orthogonal_hidden": True})
    names = [next(iter(entry)) for entry in sample_config(off, search, base)["model"]["techniques"]]
    assert names == ["gradient_clipping", "l2", "initialization"]
    assert base["model"]["techniques"][0] == "grad_norm"  # the base config is not modified


def test_stratified_folds_partition_the_training_split_and_keep_class_shares():
    from lstm_plugins.tune._folds import kfold_indices, stratified_kfold_indices

    labels = np.repeat(np.arange(3), [10, 7, 4])
    parts = stratified_kfold_indices(labels, 3, seed=5)
    assert sorted(np.concatenate(parts).tolist()) == list(range(21))
    counts = np.array([np.bincount(labels[part], minlength=3) for part in parts])
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all() and counts.sum(axis=0).tolist() == [10, 7, 4]
    assert [len(part) for part in parts] == [7, 7, 7]
    assert [len(part) for part in kfold_indices(11, 3)] == [4, 4, 3]
    with pytest.raises(ValueError, match=r"at least `folds` \(3\)"):
        kfold_indices(2, 3)


def test_missing_extra_and_bad_storage_fail_before_any_trial(tmp_path, monkeypatch, capsys):
    from lstm_plugins.cli import main
    from lstm_plugins.tune._study import open_storage, require_optuna

    with pytest.raises(ValueError, match=r"Cannot open the study storage 'sqlite:////nonexistent/dir/s.db'"):
        open_storage("sqlite:////nonexistent/dir/s.db")
    with pytest.raises(ValueError, match=r"Cannot open the study storage 'postgresql://nobody@127.0.0.1:9/none'"):
        open_storage("postgresql://nobody@127.0.0.1:9/none")
    with pytest.raises(ValueError, match=r"Expected `storage` to be a database URL"):
        open_storage("study.db")
    base, search = tmp_path / "base.yaml", tmp_path / "search.yaml"
    base.write_text(yaml.safe_dump(BASE))
    search.write_text("search:\n  techniques: {zoneut: optional}\n")
    assert main(["tune", "--config", str(base), "--search", str(search), "--output", str(tmp_path / "out")]) == 2
    assert "`search.techniques.zoneut`: Unknown technique `zoneut`" in capsys.readouterr().err
    search.write_text("search:\n  model: {learning_rate: {float: [0.01, 0.1]}}\n")
    assert main(["tune", "--config", str(base), "--search", str(search), "--output", str(tmp_path / "out"),
                 "--storage", "sqlite:////nonexistent/dir/s.db"]) == 2
    assert "Cannot open the study storage 'sqlite:////nonexistent/dir/s.db'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "study.db").exists()
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'lstm-plugins\[tune\]'"):
        require_optuna()


def _open_and_count_studies(url):
    from lstm_plugins.tune._study import open_storage

    try:
        return len(open_storage(url).get_all_studies())
    except ValueError as exc:
        return str(exc)


def test_workers_started_together_on_a_new_database_all_open_it(tmp_path):
    """Each worker creates a new database's tables and stamps its schema version; the losers of
    that race (a duplicate key in SQLite) open it again instead of failing. Before the retry, 4
    processes started together failed in about two rounds of three."""
    import multiprocessing

    from lstm_plugins.tune._study import _lost_creation_race

    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        for round_ in range(8):
            url = f"sqlite:///{tmp_path / f'study_{round_}.db'}"
            assert pool.map(_open_and_count_studies, [url] * 4) == [0] * 4
    # Only the creation race is retried: other database errors fail at once.
    IntegrityError = type("IntegrityError", (Exception,), {})
    OperationalError = type("OperationalError", (Exception,), {})
    assert _lost_creation_race(IntegrityError("UNIQUE constraint failed: alembic_version.version_num"))
    assert _lost_creation_race(OperationalError("table studies already exists"))
    assert not _lost_creation_race(IntegrityError("UNIQUE constraint failed: studies.study_name"))
    assert not _lost_creation_race(OperationalError("unable to open database file"))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_retried(tmp_path):
    """Optuna's stale check skips a running trial without a heartbeat (a worker killed right after
    ``ask``); such a trial must not stay running for good, or the workers waiting for the budget
    wait forever."""
    import time
    import warnings

    import optuna

    from lstm_plugins.tune._study import fail_trials_killed_before_starting, open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="s")
    killed = study.ask()  # running, no heartbeat, no worker: as left by a kill in that window
    live = study.ask()
    live.set_user_attr("worker", "host:1")  # a started trial: the heartbeat check is Optuna's
    assert fail_trials_killed_before_starting(study, storage) == []  # not past the grace period yet
    time.sleep(1.2)
    young = study.ask()  # started within the grace period: left alone
    assert fail_trials_killed_before_starting(study, storage) == [killed.number]
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states[killed.number] == "FAIL" and states[live.number] == states[young.number] == "RUNNING"
    retry = [t for t in study.get_trials() if t.state.name == "WAITING"]  # handed to the retry callback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) for t in retry] == [killed.number]
    assert fail_trials_killed_before_starting(study, storage) == []  # once


def test_importing_the_library_and_fitting_does_not_import_optuna():
    code = textwrap.dedent("""
        import sys
        import lstm_plugins, lstm_plugins.plugins, lstm_plugins.cli
        from lstm_plugins.techniques import FloatRange
        assert lstm_plugins.plugins.Dropout.search_space["output"] == FloatRange(0.0, 0.5)
        assert "optuna" not in sys.modules, "optuna imported by the core"
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "ok", run.stderr[-2000:]


# --- a tiny study end to end ------------------------------------------------------------------

THIRD_PARTY = textwrap.dedent('''
    from lstm_plugins import Technique, hookimpl
    from lstm_plugins.techniques import FloatRange

    CONSTRUCTED = []

    class TinyNoise(Technique):
        """A third-party technique declaring its own search space."""
        name = "tiny_noise"
        search_space = {"scale": FloatRange(0.01, 0.1, log=True)}

        def __init__(self, scale: float = 0.05) -> None:
            self.scale = scale
            CONSTRUCTED.append(scale)

        @hookimpl
        def on_train_epoch_end(self, model):
            pass
''')


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """2 trials x 2 folds x 1 epoch on GunPoint's training split, in SQLite, with a third-party
    technique registered by entry point, and every read of a test split counted."""
    from lstm_plugins.data import SequenceDataModule
    from lstm_plugins.techniques import _registry
    from lstm_plugins.tune import tune

    folder = tmp_path_factory.mktemp("tiny_study")
    (folder / "tiny_noise_module.py").write_text(THIRD_PARTY)
    reads = []
    original_dataset, original_entry_points = SequenceDataModule._dataset, _registry._entry_points

    def counting_dataset(self, name):
        if name == "test":
            reads.append(name)
        return original_dataset(self, name)

    def with_third_party():
        found = original_entry_points()
        found["tiny_noise"] = EntryPoint("tiny_noise", "tiny_noise_module:TinyNoise", "lstm_plugins")
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        patch.chdir(folder)  # the trials write nothing into the working folder (no config.yaml)
        patch.setattr(SequenceDataModule, "_dataset", counting_dataset)
        patch.setattr(SequenceDataModule, "test_dataloader", lambda self: reads.append("loader") or 1 / 0)
        patch.setattr(_registry, "_entry_points", with_third_party)
        search = {"folds": 2, "model": {"learning_rate": {"float": [0.001, 0.01], "log": True}},
                  "techniques": {"tiny_noise": True, "dropout": "optional"}}
        result = tune(BASE, search, n_trials=2, output=folder / "out", progress=False)
        import tiny_noise_module

        assert sorted(p.name for p in folder.iterdir() if p.name != "__pycache__") == ["out", "tiny_noise_module.py"]
        yield result, folder / "out", reads, list(tiny_noise_module.CONSTRUCTED)


@pytest.mark.slow
def test_tiny_study_lands_in_sqlite_with_fold_means(study):
    result, output, reads, _ = study
    assert reads == []  # the test split was never read
    stored = optuna.load_study(study_name="lstm_plugins_tune", storage=f"sqlite:///{output / 'study.db'}")
    trials = stored.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:
        folds = trial.user_attrs["fold_values"]
        assert len(folds) == 2 and trial.value == pytest.approx(sum(folds) / 2)
        # GunPoint's 50 training series, stratified in 2 folds of 25: an accuracy is a count / 25.
        assert all(abs(v * 25 - round(v * 25)) < 1e-4 for v in folds), folds
        assert trial.intermediate_values[0] == pytest.approx(folds[0])
    assert {"trials.csv", "best.yaml", "history.png"} <= {p.name for p in output.iterdir()}
    rows = (output / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("number,state,value,fold_values")


@pytest.mark.slow
def test_third_party_declared_space_is_sampled(study):
    result, _, _, constructed = study
    scales = [t.params["tiny_noise.scale"] for t in result.trials]
    assert all(0.01 <= s <= 0.1 for s in scales) and scales[0] != scales[1]
    # The sampled value is what the technique was built with (once per fold, and for the checks).
    assert set(scales) <= set(constructed)


@pytest.mark.slow
def test_best_config_runs_with_fit(study, capsys):
    from lstm_plugins.cli import main
    from lstm_plugins.tune import best_config

    result, output, _, _ = study
    config = best_config(result)
    best = result.best_trial.params
    assert config["model"]["learning_rate"] == best["model.learning_rate"]
    assert yaml.safe_load((output / "best.yaml").read_text()) == config
    capsys.readouterr()
    assert main(["fit", "--config", str(output / "best.yaml"), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["learning_rate"] == pytest.approx(best["model.learning_rate"])
    assert {"tiny_noise": {"scale": best["tiny_noise.scale"]}} in printed["model"]["techniques"]
    assert printed["data"]["dataset"] == "gun_point" and printed["model"]["hidden_size"] == 4


@pytest.mark.slow
def test_resuming_with_other_files_is_refused(study):
    from lstm_plugins.tune import tune

    _, output, _, _ = study
    with pytest.raises(ConfigError, match=r"Study `lstm_plugins_tune` in this storage was started with a different "
                                          r"search"):
        tune(BASE, {"folds": 2, "model": {"hidden_size": {"int": [4, 8]}}}, n_trials=1, output=output,
             progress=False)


@pytest.mark.slow
def test_a_trial_past_the_deadline_stops_at_its_next_fold():
    from lstm_plugins.tune import _training_data, parse_search
    from lstm_plugins.tune._study import Objective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = parse_search({"folds": 3, "model": {"learning_rate": {"float": [0.001, 0.01]}}})
    objective = Objective(search, BASE, _training_data(BASE), n_trials=1, seed=0, deadline=0.0)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "PRUNED" and trial.user_attrs["stopped"] == "timeout"
    assert len(trial.user_attrs["fold_values"]) == 1  # one fold of three ran


@pytest.mark.parametrize("name", ["search_archive.yaml", "search_archive_hybrids.yaml", "search_japanese_vowels.yaml"])
def test_the_example_searches_parse_and_build_at_both_ends(name):
    """The shipped search files are valid searches over the default `fit` config: parsed, and the
    configs at the low and high ends of every range build (what `tune` checks before a trial)."""
    from lstm_plugins.cli import build_run
    from lstm_plugins.tune import _Extreme, parse_search, sample_config
    from lstm_plugins.tune._study import load_config, quiet

    root = Path(__file__).resolve().parents[1]
    raw = load_config(root / "examples" / "configs" / name, "search config")
    search = parse_search(dict(raw.get("search", raw)))
    base = load_config(root / "examples" / "japanese_vowels.yaml", "base config")
    for high in (False, True):
        config = sample_config(_Extreme(high), search, base)
        with quiet():
            build_run(config)
        assert config["model"]["techniques"], config


def test_the_readme_tune_commands_parse_and_name_files_that_exist():
    """Every `lstm-plugins tune` command of the README parses as written, and its --config and
    --search files exist (running them takes minutes; the tiny study above runs the same path)."""
    import re
    import shlex

    from lstm_plugins.cli._tune import _parser

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    commands = [shlex.split(line) for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
                for line in block.replace("\\\n", " ").splitlines() if line.startswith("lstm-plugins tune")]
    assert commands
    for words in commands:
        arguments = _parser().parse_args(words[2:])
        assert (root / arguments.config).is_file() and (root / arguments.search).is_file(), words
