"""Benchmark suite of lstm-plugins: paired A/B timings against a hand-written loop.

Usage::

    python benchmarks/run.py [--quick] [--only NAME[,NAME...]] [--markdown] [--threads N]

Sections (``--only``): ``stack``, ``overhead``, ``techniques``, ``keras``, ``kernel``, ``long``,
``lengths``, ``inference``, ``profile``, ``threads``.
See ``benchmarks/README.md`` for what each measures and how to read the ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SECTIONS = ("stack", "overhead", "techniques", "keras", "kernel", "long", "lengths", "inference", "profile", "threads")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description="Paired A/B benchmarks of lstm-plugins against a hand-written PyTorch loop.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps (about a minute)")
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME...]",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny models and one round: checks that the sections run (for the test suite); measures nothing",
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default 1: see benchmarks/README.md)",
    )
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time stamps from this process's CPU time (default; robust to time slices lost to "
        "other processes on a shared machine) or from the wall clock (time.perf_counter)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    options.quick = options.quick or options.smoke
    selected = SECTIONS
    if options.only:
        selected = tuple(name.strip() for name in options.only.split(",") if name.strip())
        unknown = [name for name in selected if name not in SECTIONS]
        if unknown:
            print(f"run.py: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
            return 2

    import torch

    options.threads = options.threads or 1
    torch.set_num_threads(options.threads)
    # What `lstm-plugins fit` does (Trainer(deterministic=True), without filling new buffers with
    # NaN); set once for every variant alike (`build_run` would otherwise change it midway).
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    # glibc serves large blocks with mmap (page faults on every use) until the process frees a
    # large block, which raises its threshold; loading a real data set does that, synthetic
    # batches do not (the medium step: 44 ms before, 33 ms after). Free one first, so every
    # section and round runs in the state a real run is in.
    torch.empty(30 << 20, dtype=torch.uint8).fill_(0)

    from _harness import Row, emit, environment_lines, quiet_frameworks, render_table, set_clock

    quiet_frameworks()
    set_clock(options.clock)
    started = time.perf_counter()
    title = "lstm-plugins benchmark" + (" (--quick)" if options.quick else "")
    emit(f"## {title}" if options.markdown else title)
    emit()
    header = environment_lines(options.threads, options.clock)
    if options.markdown:
        emit("```")
    for line in header:
        emit(line)
    if options.markdown:
        emit("```")
    emit()

    import importlib

    modules = {
        "stack": "_stack",
        "overhead": "_overhead",
        "techniques": "_techniques",
        "keras": "_keras",
        "kernel": "_kernel",
        "long": "_long",
        "lengths": "_lengths",
        "inference": "_inference",
        "profile": "_profile",
        "threads": "_threads",
    }
    budget_rows = []
    for name in SECTIONS:
        if name not in selected:
            continue
        section_started = time.perf_counter()
        module = importlib.import_module(modules[name])
        tables = module.run(options)
        for table in tables:
            number = table.title.split(".")[0]
            checked = [
                row for row in table.rows
                if row.verdict != "info" and (row.budget not in ("-", "") or row.verdict in ("OK", "FAIL", "ERROR"))
            ]
            if len(checked) > 6:  # the kernel check: one line for all its rows
                verdicts = [row.verdict for row in checked]
                counts = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
                failed = any(v in ("FAIL", "ERROR") for v in verdicts)
                budget_rows.append(Row(f"{number}. {table.title.split('. ', 1)[-1]}", f"{len(checked)} rows: {counts}",
                                       "", "", "", checked[0].budget, "FAIL" if failed else "OK"))
            else:
                budget_rows.extend(
                    Row(f"{number}. {row.case}", row.result or row.a, "", "", row.spread, row.budget, row.verdict)
                    for row in checked
                )
            emit(render_table(table, options.markdown))
            if options.markdown:
                emit()
            for note in table.notes:
                emit(f"* {note}" if options.markdown else f"  {note}")
            emit()
        emit(f"({name}: {time.perf_counter() - section_started:.0f} s)")
        emit()
    from _harness import Table, load_average

    if budget_rows:
        headers = ("budget row", "paired figure", "", "", "spread (IQR)", "budget", "verdict")
        emit(render_table(Table("Summary: every budget and check", budget_rows, headers=headers), options.markdown))
        emit()
    emit(f"total {time.perf_counter() - started:.0f} s; load {load_average()} (1, 5, 15 min) at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
