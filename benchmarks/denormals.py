"""Denormal floats in the fused LSTM's backward pass: kept, flushed in the main thread only, and
flushed in every intra-op thread.

Usage::

    python benchmarks/denormals.py [--steps 150,175,200,300,427] [--repeats 5]

A bidirectional LSTM (12 inputs, 128 units, batch 16, random inputs; the loss reads the last
step, so the gradient reaching the early steps vanishes into denormal numbers) runs forward and
backward; the backward pass is timed with the wall clock (median of ``--repeats``), for each
sequence length:

* 1 thread: denormals kept (PyTorch's default) and flushed (``torch.set_flush_denormal``);
* 2 threads: kept; ``torch.set_flush_denormal(True)`` after the OpenMP pool exists (only the
  main thread flushes); ``lstm_plugins.training.set_flush_denormal(True)`` (every thread).

Not part of ``run.py``: the wall clock on a shared machine is noisy; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from lstm_plugins.training._denormals import set_flush_denormal


def backward_time(lstm: torch.nn.LSTM, inputs: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first is warm-up
        lstm.zero_grad()
        output, _ = lstm(inputs)
        loss = output[:, -1].sum()
        started = time.perf_counter()
        loss.backward()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/denormals.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="150,175,200,300,427")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args(argv)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(12, 128, batch_first=True, bidirectional=True)
    print(f"torch {torch.__version__}; bidirectional LSTM 12→128, batch 16; backward pass, wall clock, median of "
          f"{options.repeats}; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| steps | 1 thread, kept | 1 thread, flushed | 2 threads, kept | 2 threads, main thread flushed "
          "| 2 threads, every thread flushed |")
    print("| --- | --- | --- | --- | --- | --- |")
    for steps in (int(s) for s in options.steps.split(",")):
        inputs = torch.randn(16, steps, 12)
        cells = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            set_flush_denormal(False)
            cells.append(backward_time(lstm, inputs, options.repeats))  # the pool now exists, unflushed
            if threads == 2:
                torch.set_flush_denormal(True)  # the main thread only
                cells.append(backward_time(lstm, inputs, options.repeats))
            set_flush_denormal(True)
            cells.append(backward_time(lstm, inputs, options.repeats))
        set_flush_denormal(False)
        print(f"| {steps} | " + " | ".join(f"{t * 1e3:.0f} ms" for t in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
