"""Timing, pairing and reporting shared by every section of the benchmark.

Absolute times on a shared machine mean little, so every comparison is *paired*: the variants
being compared run in the same process, one after the other, round after round, in an order
that rotates every round (A B, then B A, ...). Each round yields one ratio (or difference) of
the variants' per-round medians, and the reported figure is the median of those per-round
values, with their inter-quartile range as the spread.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

CLOCKS: dict[str, Callable[[], float]] = {
    "cpu": time.process_time,  # CPU time of this process: time slices lost to other processes don't count
    "wall": time.perf_counter,
}
clock: Callable[[], float] = time.process_time


def set_clock(name: str) -> None:
    """Choose the clock every time stamp uses: ``"cpu"`` (default) or ``"wall"``."""
    global clock
    clock = CLOCKS[name]


# --- environment --------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def environment_lines(threads: int, clock_name: str = "cpu") -> list[str]:
    """The header every run prints: machine, versions, threads, load."""
    import pytorch_lightning as pl
    import pluggy
    import torchmetrics

    try:
        from importlib.metadata import version

        library = version("lstm-plugins")
    except Exception:  # not installed: running from a checkout
        library = "checkout"
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    return [
        f"machine      {cpu_model()}, {cores} logical cores ({usable} usable), {platform.system()} {platform.release()}",
        f"versions     python {platform.python_version()}, torch {torch.__version__}, "
        f"pytorch-lightning {pl.__version__}, torchmetrics {torchmetrics.__version__}, "
        f"pluggy {pluggy.__version__}, lstm-plugins {library}",
        f"threads      torch.set_num_threads({threads}) (intra-op), interop {torch.get_num_interop_threads()}; "
        f"oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}; "
        f"deterministic algorithms {'on' if torch.are_deterministic_algorithms_enabled() else 'off'}"
        f"{', new buffers not filled' if not torch.utils.deterministic.fill_uninitialized_memory else ''}",
        f"clock        {'process CPU time (time.process_time)' if clock_name == 'cpu' else 'wall clock (time.perf_counter)'}",
        f"load         {load_average()} (1, 5, 15 min) at start",
    ]


def quiet_frameworks() -> None:
    """Silence Lightning's banners and the warnings that tiny synthetic loaders trigger."""
    import pytorch_lightning  # noqa: F401  (it sets its loggers' levels when imported)

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"pytorch_lightning\..*")
    warnings.filterwarnings("ignore", module=r"lightning_fabric\..*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


# --- time stamps from the data path ------------------------------------------------------------


class TimedBatches:
    """An iterable of pre-built batches that time-stamps every batch it hands out.

    The hand-written loop and Lightning pull batches from the same kind of object, so the
    stamps cost both sides the same (one clock read and one ``append`` per batch)
    and nothing is added to Lightning's hooks. Lightning fetches one batch ahead, which shifts
    its stamps by one step but keeps one stamp per step in the steady state.

    ``epochs`` holds one list of stamps per pass (``iter()`` call).
    """

    def __init__(self, batches: Sequence[Any], steps: int) -> None:
        if not batches or steps < 1:
            raise ValueError("TimedBatches needs at least one batch and one step.")
        self.batches = list(batches)
        self.steps = steps
        self.epochs: list[list[float]] = []

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Any]:
        stamps: list[float] = []
        self.epochs.append(stamps)
        batches, count, now = self.batches, len(self.batches), clock
        for index in range(self.steps):
            stamps.append(now())
            yield batches[index % count]

    def reset(self) -> None:
        self.epochs = []


def per_step_times(epochs: Sequence[Sequence[float]], window: int, skip_windows: int = 1) -> list[float]:
    """Mean step time of every full window of ``window`` consecutive steps, per epoch.

    A window of ``log_every_n_steps`` steps holds exactly one logging step, so its mean is the
    honest per-step cost (a median over single steps would hide the logging steps). The first
    ``skip_windows`` windows of the first epoch are warm-up and dropped.
    """
    times: list[float] = []
    for number, stamps in enumerate(epochs):
        start = window * skip_windows if number == 0 else 0
        for first in range(start, len(stamps) - window, window):
            times.append((stamps[first + window] - stamps[first]) / window)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        value = values[0] if values else math.nan
        return value, value
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


# --- paired rounds ------------------------------------------------------------------------------


@dataclass
class Series:
    """One variant's per-round medians."""

    name: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return median(self.values)


def run_rounds(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, Series]:
    """Run every variant once per round, rotating the order every round (A B, B A, ... for two;
    A B C, B C A, C A B, ... for three), so no variant always runs first.

    Each callable runs its variant and returns one number (a per-round median time).
    """
    names = list(variants)
    series = {name: Series(name) for name in names}
    for number in range(rounds):
        shift = number % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            series[name].values.append(variants[name]())
    return series


def paired_ratios(a: Series, b: Series) -> list[float]:
    return [x / y for x, y in zip(a.values, b.values) if y > 0]


def paired_differences(a: Series, b: Series) -> list[float]:
    return [x - y for x, y in zip(a.values, b.values)]


# --- reporting ----------------------------------------------------------------------------------


def format_time(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


@dataclass
class Row:
    case: str
    a: str  # what A is and its median
    b: str  # what B is and its median
    result: str  # the paired figure
    spread: str  # inter-quartile range of the per-round figures
    budget: str
    verdict: str  # PASS, GAP, info, OK, FAIL, skipped


def ratio_row(
    case: str,
    a: Series,
    b: Series,
    *,
    unit: str = "/step",
    budget: float | None = None,
    higher_is_better: bool = False,
    invert: bool = False,
) -> Row:
    """A row for the paired ratio of A's and B's times, or (``invert``) of their throughputs:
    A's throughput / B's throughput = B's time / A's time."""
    ratios = paired_ratios(b, a) if invert else paired_ratios(a, b)
    label = "throughput A/B" if invert else "time A/B"
    value = median(ratios)
    low, high = quartiles(ratios)
    if budget is None:
        verdict, budget_text = "info", "-"
    else:
        ok = value >= budget if higher_is_better else value <= budget
        verdict = ("PASS" if ok else "GAP") + ("?" if low < budget < high else "")
        budget_text = f"{'≥' if higher_is_better else '≤'} {budget:.2f}×"
    return Row(
        case,
        f"{a.name}: {format_time(a.median)}{unit}",
        f"{b.name}: {format_time(b.median)}{unit}",
        f"{label} = {value:.3f}×",
        f"{low:.3f}–{high:.3f}",
        budget_text,
        verdict,
    )


def difference_row(
    case: str, a: Series, b: Series, *, budget: float | None = None, unit: str = "/step"
) -> Row:
    """A row for the paired difference of A's and B's times (A − B), against an upper bound."""
    differences = paired_differences(a, b)
    value = median(differences)
    low, high = quartiles(differences)
    if budget is None:
        verdict, budget_text = "info", "-"
    else:
        verdict = ("PASS" if value <= budget else "GAP") + ("?" if low < budget < high else "")
        budget_text = f"≤ +{format_time(budget)}"
    return Row(
        case,
        f"{a.name}: {format_time(a.median)}{unit}",
        f"{b.name}: {format_time(b.median)}{unit}",
        f"A−B = {'+' if value >= 0 else '−'}{format_time(abs(value))}",
        f"{_signed(low)} … {_signed(high)}",
        budget_text,
        verdict,
    )


def _signed(seconds: float) -> str:
    return ("+" if seconds >= 0 else "−") + format_time(abs(seconds))


def note_row(case: str, text: str, verdict: str = "info") -> Row:
    return Row(case, text, "", "", "", "-", verdict)


HEADERS = ("case", "A (median)", "B (median)", "paired figure", "spread (IQR)", "budget", "verdict")


@dataclass
class Table:
    """What a section returns: a titled table, notes printed under it, and its column names."""

    title: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    headers: tuple[str, ...] = HEADERS


def render_table(table: Table, markdown: bool) -> str:
    title = table.title
    cells = [list(table.headers)] + [
        [r.case, r.a, r.b, r.result, r.spread, r.budget, r.verdict] for r in table.rows
    ]
    # Drop columns that no row fills.
    keep = [i for i in range(len(cells[0])) if any(row[i] for row in cells[1:])]
    cells = [[row[i] for i in keep] for row in cells]
    if markdown:
        lines = [f"**{title}**", ""]
        lines.append("| " + " | ".join(cells[0]) + " |")
        lines.append("|" + "|".join(" --- " for _ in cells[0]) + "|")
        for row in cells[1:]:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        return "\n".join(lines)
    # Plain text: drop empty columns of note rows gracefully, pad to the widest cell.
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    rule = "  ".join("-" * w for w in widths)
    lines = [title, rule, "  ".join(c.ljust(w) for c, w in zip(cells[0], widths)), rule]
    for row in cells[1:]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    lines.append(rule)
    return "\n".join(lines)


def emit(text: str = "") -> None:
    print(text, flush=True)


def eprint(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
