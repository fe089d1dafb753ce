"""Two processes (CPU, gloo; ``ddp`` and ``ddp_spawn``) train, clip, log and test as one does.

Two processes with batch ``B`` each are compared with one process with batch ``2B`` on the same
samples in the same order (see ``parity_script.py``), with every deterministic built-in
technique stacked and each built-in clipper in turn. Also: the module and every built-in
technique pickle (spawn-based strategies), and only rank 0 prints and writes files.
"""

import json
import math
import os
import pickle
import subprocess
import sys
import warnings
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import pytest
import torch
from conftest import quiet_trainer
from torch.utils.data import DataLoader

import lstm_plugins.plugins
from lstm_plugins import LSTMClassifier, Technique
from lstm_plugins.data import SequenceBatch, collate_sequence_batch
from lstm_plugins.plugins import AdaptiveGradientClipping, AutoClipping, EmbeddingDropout, GradientClipping, L2Penalty, Zoneout
from stacks import full_stack

pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")

SCRIPT = Path(__file__).with_name("parity_script.py")
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
WEIGHT_TOLERANCE = 1e-5  # absolute, on every weight
NORM_TOLERANCE = 1e-5  # relative, on every logged norm

STACKS = ("norm", "auto", "agc")  # one run per built-in clipper
RUNS = [("ddp", stack) for stack in STACKS] + [("ddp_spawn", "auto")]
# Values that are global by construction, so two processes must log what one process logs.
# (train/loss, train/ar, gradient_reach/*, gate_saturation/* describe rank 0's own half-batch.)
GLOBAL_PREFIXES = ("grad_norm/", "exploding_gradients/", "nonfinite_guard/", "train/l2")
CLIPPER_NAMES = {"norm": "gradient_clipping", "auto": "auto_clipping", "agc": "adaptive_clipping"}


def _start_script(strategy, output, stacks):
    log = output / f"{strategy}.stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), strategy, str(output), ",".join(stacks)],
            env=ENVIRONMENT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return process, log


def _finish(process, log):
    try:
        process.wait(timeout=400)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()[-4000:]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Train every run once: the two-process runs in subprocesses and, meanwhile, the
    single-process references in this process."""
    import parity_script

    output = tmp_path_factory.mktemp("parity")
    processes = [_start_script("ddp", output, STACKS), _start_script("ddp_spawn", output, ["auto"])]
    try:
        for stack in STACKS:
            parity_script.train("single", output, stack)
    finally:
        for process, log in processes:
            _finish(process, log)
    return output


def _load(output, strategy, stack, rank=0):
    directory = output / strategy / stack
    loaded = {"fit": json.loads((directory / f"fit_rank{rank}.json").read_text())}
    loaded["weights"] = torch.load(directory / f"weights_rank{rank}.pt", weights_only=True)
    test = directory / f"test_rank{rank}.json"
    loaded["test"] = json.loads(test.read_text()) if test.exists() else None
    return loaded


def _relative_difference(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


@pytest.mark.distributed
@pytest.mark.parametrize("strategy, stack", RUNS)
def test_two_processes_train_the_same_weights_as_one(results, strategy, stack):
    one = _load(results, "single", stack)
    rank0, rank1 = _load(results, strategy, stack, 0), _load(results, strategy, stack, 1)
    assert rank0["fit"]["world_size"] == 2 and one["fit"]["world_size"] == 1
    assert rank0["fit"]["global_step"] == one["fit"]["global_step"] == 12
    assert one["weights"].keys() == rank0["weights"].keys()
    for name, expected in one["weights"].items():
        assert (rank0["weights"][name] - expected).abs().max() <= WEIGHT_TOLERANCE, name
        assert torch.equal(rank0["weights"][name], rank1["weights"][name]), name  # replicas in sync
    # The weights moved well beyond the tolerance, so the comparison is not between two idle models.
    from parity_script import make_model

    initial = make_model(stack).state_dict()
    assert max((one["weights"][n] - initial[n]).abs().max() for n in initial) > 1e-2


@pytest.mark.distributed
@pytest.mark.parametrize("strategy, stack", RUNS)
def test_logged_global_values_equal_one_process_at_every_step(results, strategy, stack):
    one, two = _load(results, "single", stack)["fit"], _load(results, strategy, stack)["fit"]
    clipper = CLIPPER_NAMES[stack]
    compared = 0
    assert two["logged"].keys() == one["logged"].keys()
    for step, expected in one["logged"].items():
        for name, value in expected.items():
            is_global = name.startswith(GLOBAL_PREFIXES) or name in (
                f"{clipper}/pre_clip_norm", f"{clipper}/threshold"
            )
            if is_global:
                assert _relative_difference(two["logged"][step][name], value) <= NORM_TOLERANCE, (step, name)
                compared += 1
    assert {"grad_norm/total", f"{clipper}/pre_clip_norm"} <= set(one["logged"]["11"])
    assert compared >= 12 * 8  # every step: total and per-layer norms, pre-clip norm, ...


@pytest.mark.distributed
@pytest.mark.parametrize("strategy, stack", RUNS)
def test_clipping_acts_once_on_reduced_gradients(results, strategy, stack):
    """After each step, rank 0's gradients are the reduced ones, clipped once: their norm is the
    single process's, and the same on both ranks. Clipping each rank's gradients before the
    reduction would give a different norm; clipping twice would count two steps."""
    one = _load(results, "single", stack)["fit"]
    rank0, rank1 = _load(results, strategy, stack, 0)["fit"], _load(results, strategy, stack, 1)["fit"]
    assert len(rank0["post_clip"]) == len(one["post_clip"]) == 12
    for step, (expected, actual) in enumerate(zip(one["post_clip"], rank0["post_clip"])):
        assert _relative_difference(actual, expected) <= NORM_TOLERANCE, step
    assert rank0["post_clip"] == rank1["post_clip"]
    assert rank0["clipper_steps"] == one["clipper_steps"] == 12  # one clipping per optimizer step
    if stack == "norm":
        from parity_script import CLIP_THRESHOLD

        # Every step was clipped, to the threshold: the average of two per-rank gradients clipped
        # separately would have a smaller norm unless they pointed the same way.
        pre_clip = [one["logged"][str(step)]["gradient_clipping/pre_clip_norm"] for step in range(12)]
        assert min(pre_clip) > 1.2 * CLIP_THRESHOLD
        assert rank0["post_clip"] == pytest.approx([CLIP_THRESHOLD] * 12, rel=1e-5)


@pytest.mark.distributed
@pytest.mark.parametrize("strategy, stack", RUNS)
def test_clipping_statistics_count_each_step_once(results, strategy, stack):
    one, two = _load(results, "single", stack)["fit"], _load(results, strategy, stack)["fit"]
    assert two["clipper_clipped_steps"] == one["clipper_clipped_steps"] > 0
    name = f"{CLIPPER_NAMES[stack]}/clipped_fraction"
    assert [two["logged"][s][name] for s in one["logged"] if name in one["logged"][s]] == pytest.approx(
        [one["logged"][s][name] for s in one["logged"] if name in one["logged"][s]], abs=1e-6
    )


@pytest.mark.distributed
@pytest.mark.parametrize("strategy, stack", RUNS)
def test_evaluation_metrics_equal_one_process(results, strategy, stack):
    one = _load(results, "single", stack)
    rank0, rank1 = _load(results, strategy, stack, 0), _load(results, strategy, stack, 1)
    last = one["fit"]["logged"][max(one["fit"]["logged"], key=int)]
    last_two = rank0["fit"]["logged"][max(rank0["fit"]["logged"], key=int)]
    # The end-of-fit validation pass over the test split, reduced across processes.
    for name in ("val/accuracy", "val/recall", "val/f1", "val/loss"):
        assert last_two[name] == pytest.approx(last[name], abs=1e-6), name
    assert last["val/accuracy"] > 0.6  # trained: chance is 1/3
    if strategy == "ddp":  # Trainer.test, per-class values included
        assert rank0["test"] == rank1["test"]
        for name, expected in one["test"].items():
            assert rank0["test"][name] == pytest.approx(expected, abs=1e-6), name


# --- pickling (spawn-based strategies) -------------------------------------------------------


def _feature_stack(clipper):
    return full_stack(clipper, log_every_n_steps=1)


CLIPPER_FACTORIES = {
    "gradient_clipping": lambda: GradientClipping(0.5),
    "auto_clipping": lambda: AutoClipping(percentile=50, history_size=4),
    "adaptive_clipping": lambda: AdaptiveGradientClipping(0.05),
}


def _feature_data():
    from parity_script import ParityData

    return ParityData(batch_size=16, merged_order=False)


def _token_loader():
    """Three fixed batches of token ids, one per step."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(3):
        lengths = torch.randint(2, 9, (6,), generator=generator)
        tokens = torch.randint(1, 30, (6, 8), generator=generator)
        tokens[torch.arange(8) >= lengths.unsqueeze(1)] = 0
        batches.append(SequenceBatch(tokens, lengths, torch.randint(0, 2, (6,), generator=generator)))
    return DataLoader(batches, batch_size=None, collate_fn=collate_sequence_batch)


def _one_step(model, loader=None):
    """One optimizer step from a fixed random state; returns the trained weights."""
    torch.manual_seed(1)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, log_every_n_steps=1)
    if loader is None:
        trainer.fit(model, datamodule=_feature_data())
    else:
        trainer.fit(model, train_dataloaders=loader)
    return {name: value.clone() for name, value in model.state_dict().items()}


def _assert_round_trip_trains_like_the_original(model, loader=None):
    _one_step(model, loader)  # techniques now hold state: histories, counters, selections
    copy = pickle.loads(pickle.dumps(model))
    for original, restored in zip(model.techniques, copy.techniques):
        assert type(restored) is type(original) and repr(restored) == repr(original)
    expected, actual = _one_step(model, loader), _one_step(copy, loader)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    return copy


@pytest.mark.parametrize("clipper", sorted(CLIPPER_FACTORIES))
def test_the_module_and_every_feature_technique_pickle_and_train_on(clipper):
    torch.manual_seed(0)
    model = LSTMClassifier(3, 3, hidden_size=8, num_layers=2, bidirectional=True, optimizer="adamw",
                           techniques=_feature_stack(CLIPPER_FACTORIES[clipper]()))
    copy = _assert_round_trip_trains_like_the_original(model)
    # The L2 term still points at the copy's own parameters, not at the original's.
    l2 = next(t for t in copy.techniques if isinstance(t, L2Penalty))
    assert all(any(p is q for q in copy.parameters()) for p in l2._selected)


def test_a_token_model_with_zoneout_and_embedding_dropout_pickles_and_trains_on():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Zoneout runs the LSTM as a per-step loop")
        torch.manual_seed(0)
        model = LSTMClassifier(4, 2, hidden_size=8, bidirectional=True, num_embeddings=30,
                               techniques=[EmbeddingDropout(0.2), Zoneout(cell=0.2, hidden=0.1)])
        _assert_round_trip_trains_like_the_original(model, _token_loader())


def test_a_learning_rate_schedule_pickles_and_trains_on():
    from lstm_plugins.plugins import LRSchedule

    torch.manual_seed(0)
    model = LSTMClassifier(3, 3, hidden_size=8, techniques=[LRSchedule("cosine", warmup_steps=2, total_steps=20)])
    copy = _assert_round_trip_trains_like_the_original(model)
    assert repr(copy.techniques[0]) == repr(model.techniques[0])


def test_a_summary_and_the_fcn_branch_pickle_and_train_on():
    from lstm_plugins.plugins import FCNBranch, SequenceSummary

    torch.manual_seed(0)
    model = LSTMClassifier(3, 3, hidden_size=8, techniques=[SequenceSummary("attention"),
                                                            FCNBranch(filters=(4, 4, 4))])
    _assert_round_trip_trains_like_the_original(model)


def test_every_builtin_technique_is_covered_by_the_pickling_tests():
    from lstm_plugins.plugins import FCNBranch, LRSchedule, SequenceSummary

    builtin = {
        obj for name in lstm_plugins.plugins.__all__
        if isinstance(obj := getattr(lstm_plugins.plugins, name), type) and issubclass(obj, Technique)
    }
    covered = {type(t) for t in _feature_stack(None)[:-1]} | {EmbeddingDropout, Zoneout, LRSchedule,
                                                               SequenceSummary, FCNBranch}
    covered |= {type(factory()) for factory in CLIPPER_FACTORIES.values()}
    assert builtin == covered


def test_spawn_pickling_gives_each_process_its_own_technique_state():
    """What ``ddp_spawn`` on CPU does to the model: pickle it with torch's shared-memory
    reducers, then unshare ``nn.Module`` parameters and buffers (Lightning's step). Whatever a
    technique keeps in tensors must not be shared with the other processes either."""
    from lightning_fabric.strategies.launchers.multiprocessing import _disable_module_memory_sharing

    model = LSTMClassifier(3, 3, hidden_size=8, num_layers=2, optimizer="adamw",
                           techniques=_feature_stack(AutoClipping(percentile=50, history_size=4)))
    _one_step(model)
    copy = _disable_module_memory_sharing(pickle.loads(bytes(ForkingPickler.dumps(model))))
    clipper, clipper_copy = model.techniques[-1], copy.techniques[-1]
    before = int(clipper.clipped_steps), clipper.history.values().clone()
    clipper_copy.clipped_steps.add_(5)
    clipper_copy.history.buffer.fill_(math.pi)
    assert (int(clipper.clipped_steps), clipper.history.values().tolist()) == (before[0], before[1].tolist())


# --- only rank 0 prints and writes ------------------------------------------------------------


@pytest.mark.distributed
def test_only_rank_zero_prints_and_writes(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "lstm_plugins", "fit", "--trainer.devices", "2", "--trainer.strategy", "ddp",
         "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--model.hidden_size", "8"],
        cwd=tmp_path,
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.count("Test results") == 1
    assert completed.stdout.count("test sequences,") == 1
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file())
    # One logger version and one checkpoint: rank 1 opened no log directory of its own.
    assert written and all(path.startswith("lightning_logs/version_0/") for path in written), written
    checkpoints = [path for path in written if path.endswith(".ckpt")]
    # One epoch of the CLI's every-10-epochs policy: only last.ckpt, with the final weights.
    assert checkpoints == ["lightning_logs/version_0/checkpoints/last.ckpt"], written
