"""A study in a real database: two workers share one SQLite file, and a worker killed mid-trial is
resumed to the budget, its lost trial failed by the heartbeat and run again."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

optuna = pytest.importorskip("optuna")

pytestmark = [pytest.mark.slow]

BASE = {"model": {"hidden_size": 4, "techniques": []}, "data": {"dataset": "gun_point", "batch_size": 32}}
SEARCH = {"search": {"folds": 2, "model": {"learning_rate": {"float": [0.001, 0.01], "log": True}},
                     "trainer": {"max_epochs": {"int": [1, 2]}}}}


def _files(tmp_path, epochs=None):
    base, search = tmp_path / "base.yaml", tmp_path / "search.yaml"
    config = {**BASE, "trainer": {"max_epochs": 1}}
    base.write_text(yaml.safe_dump(config))
    content = dict(SEARCH["search"])
    if epochs is not None:
        content["trainer"] = {"max_epochs": {"int": [epochs, epochs]}}
    search.write_text(yaml.safe_dump({"search": content}))
    return base, search


def _worker(base, search, output, n_trials, *extra):
    """A `lstm-plugins tune` process; its output goes to files beside the study (a pipe nobody
    reads until the end could fill and stall the worker)."""
    command = [sys.executable, "-m", "lstm_plugins", "tune", "--config", str(base), "--search", str(search),
               "--output", str(output), "--n_trials", str(n_trials), *extra]
    logs = output.parent / f"worker_{len(list(output.parent.glob('worker_*.out')))}"
    worker = subprocess.Popen(command, stdout=open(f"{logs}.out", "w"), stderr=open(f"{logs}.err", "w"), text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    worker.logs = logs
    return worker


def _output(worker):
    """The worker's stdout and stderr, once it has exited."""
    return (open(f"{worker.logs}.out").read(), open(f"{worker.logs}.err").read())


def _wait_for_running(output, worker):
    """Poll the study until ``worker`` runs a trial."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}) before running a trial: {_output(worker)[1][-3000:]}")
        if (output / "study.db").exists():
            try:
                _, states = _states(output)
            except Exception:  # the worker is still creating the tables
                continue
            if "RUNNING" in states:
                return
    worker.kill()
    worker.wait()
    pytest.fail(f"the worker never started a trial: {_output(worker)[1][-3000:]}")


def _states(output):
    study = optuna.load_study(study_name="lstm_plugins_tune", storage=f"sqlite:///{output / 'study.db'}")
    return study, [t.state.name for t in study.get_trials()]


def test_two_workers_share_one_sqlite_study(tmp_path):
    from lstm_plugins.tune import tune

    base, search = _files(tmp_path, epochs=8)
    output = tmp_path / "out"
    other = _worker(base, search, output, 5)
    _wait_for_running(output, other)  # then join its study
    tune(base, search, n_trials=5, output=output, progress=False)
    other.wait(timeout=300)
    out, err = _output(other)
    assert other.returncode == 0, err[-3000:]
    study, states = _states(output)
    counted = [t for t in study.get_trials() if not t.user_attrs.get("surplus")]
    # Exactly the budget ran, none lost or left running; a trial started past it is marked surplus.
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in counted) == len(counted) == 5, states
    assert "RUNNING" not in states and "WAITING" not in states
    assert all(t.state.name == "FAIL" for t in study.get_trials() if t.user_attrs.get("surplus"))
    # Both workers ran trials of the one study.
    workers = {t.user_attrs["worker"] for t in counted}
    assert len(workers) == 2 and f"{socket.gethostname()}:{os.getpid()}" in workers, workers
    assert "[tune] trial" in out
    # Workers that run side by side draw different values: no configuration is tried twice.
    drawn = [tuple(sorted(t.params.items())) for t in counted]
    assert len(set(drawn)) == len(drawn), drawn


def test_killed_worker_is_resumed_to_the_budget(tmp_path):
    from lstm_plugins.tune import tune

    base, search = _files(tmp_path, epochs=10)
    output = tmp_path / "out"
    worker = _worker(base, search, output, 3, "--heartbeat_interval", "1")
    _wait_for_running(output, worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    _, states = _states(output)
    assert "RUNNING" in states  # the killed worker's trial, left behind

    # A deadline, so that a trial nobody fails ends the test instead of hanging it.
    study = tune(base, search, n_trials=3, output=output, progress=False, heartbeat_interval=1, timeout=600)
    trials = study.get_trials()
    killed = [t for t in trials if t.state.name == "FAIL"]
    assert len(killed) == 1  # failed by the heartbeat...
    from optuna.storages import RetryFailedTrialCallback

    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        retries = [t for t in trials if RetryFailedTrialCallback.retried_trial_number(t) == killed[0].number]
    assert len(retries) == 1 and retries[0].state.name in ("COMPLETE", "PRUNED")  # ...and run again
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 3  # the budget, not more
    assert (output / "best.yaml").is_file()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_left_running_without_a_heartbeat_does_not_stall_the_budget(tmp_path):
    """A worker killed between Optuna's ``ask`` and its first heartbeat leaves a running trial
    that Optuna's stale check never fails; the next worker fails it after the grace period, runs
    its retry and ends with the budget instead of waiting forever."""
    from lstm_plugins.tune import tune

    base, search = _files(tmp_path)
    output = tmp_path / "out"
    output.mkdir()
    study = optuna.create_study(storage=f"sqlite:///{output / 'study.db'}", study_name="lstm_plugins_tune",
                                direction="maximize")
    orphan = study.ask()
    started = time.monotonic()
    study = tune(base, search, n_trials=2, output=output, progress=False, heartbeat_interval=1, timeout=600)
    assert time.monotonic() - started < 300
    trials = study.get_trials()
    assert [t.state.name for t in trials if t.number == orphan.number] == ["FAIL"]
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 2
    assert "RUNNING" not in [t.state.name for t in trials]
