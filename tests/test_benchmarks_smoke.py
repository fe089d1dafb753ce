"""The benchmark suite runs (a smoke test, not a timing assertion)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(*arguments, timeout=120):
    environment = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / arguments[0]), *arguments[1:]],
        capture_output=True, text=True, timeout=timeout, env=environment, cwd=BENCHMARKS.parent,
    )


@pytest.mark.slow
def test_the_cheapest_section_runs_and_prints_its_table():
    result = _run("run.py", "--quick", "--only", "kernel")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "torch.set_num_threads(1)" in out and torch.__version__ in out  # the header
    assert "5. Fused-kernel check" in out
    assert "gradient_clipping + dropout + l2 + grad_norm" in out
    assert "FAIL" not in out and "every row fused" in out


@pytest.mark.slow
def test_the_new_sections_run_with_tiny_models_and_their_equivalence_checks_pass():
    sections = "long,lengths,inference,profile,threads"
    result = _run("run.py", "--smoke", "--only", sections, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for title in ("6. Long sequences", "7. Length-aware batching", "8. Inference", "9. Where a medium-shape",
                  "10. Intra-op threads"):
        assert title in out
    # The correctness rows: same losses with flushing on both sides, same probabilities.
    assert "long: same losses, library (flushed) vs hand flushing too" in out
    assert out.count("OK") >= 3 and "FAIL" not in out and "ERROR" not in out
    assert "plaid: padding in training batches" in out and "2 threads / 1 thread" in out


def test_an_unknown_section_is_refused_by_name():
    result = _run("run.py", "--only", "nope")
    assert result.returncode == 2 and "nope" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without CUDA")
def test_the_gpu_script_says_politely_that_it_needs_cuda():
    result = _run("gpu.py")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no CUDA device is available" in result.stdout


def test_the_timed_step_work_runs_the_models_own_step_and_logs_on_the_interval():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import _techniques
        from _hand import Recipe, synthetic_batches
    finally:
        sys.path.remove(str(BENCHMARKS))
    batch = synthetic_batches(_techniques.TINY, 1, seed=0)[0]
    recipe = _techniques.TECHNIQUES["grad_norm(every 10)"]
    library, hand = _techniques.library_step_work(recipe, batch), _techniques.hand_step_work(recipe, batch)
    for _ in range(10):
        library()
        hand()
    assert {"train/loss", "grad_norm/total"} <= set(library.model.trainer.callback_metrics)
