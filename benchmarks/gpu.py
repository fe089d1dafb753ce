"""GPU benchmark of lstm-plugins: cuDNN throughput and host synchronisations per step.

Usage::

    python benchmarks/gpu.py [--quick] [--markdown]

Needs a CUDA device; without one it says so and exits (status 0). It measures, on the medium
shape (2-layer LSTM, 32 inputs, hidden 128, batch 64, variable lengths up to 50, 10 classes) with
the full stack (clipping, dropout, L2, gradient-norm logging):

1. throughput of the library's training step through ``Trainer.fit`` against a raw cuDNN loop
   written by hand (``pack_padded_sequence`` → ``torch.nn.LSTM`` → ``h_n``, the same techniques,
   fused Adam), alternated round by round, wall clock with ``torch.cuda.synchronize()`` at the
   boundaries of each timed run;
2. host synchronisations per training step, counted with
   ``torch.cuda.set_sync_debug_mode("warn")`` (every synchronising CUDA call emits a warning,
   recorded with its Python call site), split into the steps of a logging interval (where
   syncs are expected: values move to the logger) and the steps between intervals (budget: 0).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

LOG_EVERY = 10
SYNC_MESSAGE = "synchronizing CUDA operation"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument(
        "--device",
        default="cuda",
        help=argparse.SUPPRESS,  # "cpu": a dry run of the code paths, not a measurement
    )
    return parser


def no_cuda_message() -> str:
    return (
        "gpu.py: no CUDA device is available (torch.cuda.is_available() is False), so there is "
        "nothing to measure here. Run `python benchmarks/gpu.py` on a machine with an NVIDIA GPU "
        "and a CUDA build of torch; the CPU benchmarks are `python benchmarks/run.py`."
    )


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    import torch

    if options.device == "cuda" and not torch.cuda.is_available():
        print(no_cuda_message())
        return 0
    if options.device == "cpu":
        torch.set_num_threads(1)  # the dry run only exercises the code paths

    from _harness import Table, emit, quiet_frameworks, render_table

    quiet_frameworks()
    device = torch.device(options.device)
    emit("lstm-plugins GPU benchmark" + (" (--quick)" if options.quick else ""))
    emit()
    for line in header(device):
        emit(line)
    emit()
    with tempfile.TemporaryDirectory(prefix="lstm-plugins-gpu-") as workdir:
        tables = [throughput(options, device, workdir), synchronisations(options, device, workdir)]
    for table in tables:
        emit(render_table(table, options.markdown))
        for note in table.notes:
            emit(f"* {note}" if options.markdown else f"  {note}")
        emit()
    return 0


def header(device: Any) -> list[str]:
    import platform

    import pytorch_lightning as pl
    import torch

    from _harness import cpu_model

    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        gpu = (f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
               f"cuDNN {torch.backends.cudnn.version()}")
    else:
        gpu = "none: DRY RUN ON CPU (code paths only; the numbers are not GPU measurements)"
    return [
        f"gpu          {gpu}",
        f"host         {cpu_model()}, {os.cpu_count()} logical cores",
        f"versions     python {platform.python_version()}, torch {torch.__version__}, pytorch-lightning {pl.__version__}",
        "clock        wall clock (time.perf_counter) with torch.cuda.synchronize() around each timed run",
    ]


# --- the raw cuDNN loop --------------------------------------------------------------------------


def packed_net(shape: Any, recipe: Any) -> Any:
    """The hand-written GPU network: packed input (cuDNN's native variable-length path), h_n."""
    from torch.nn.utils.rnn import pack_padded_sequence

    from _hand import HandNet

    class PackedNet(HandNet):
        def forward(self, features: Any, lengths: Any) -> Any:
            x = self.input_dropout(features)
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, (h_n, _) = self.lstm(packed)
            return self.head(self.output_dropout(h_n[-1]))

    return PackedNet(shape, recipe)


def medium_shape(device: Any) -> tuple[Any, Any]:
    from _hand import Recipe, Shape

    if device.type == "cuda":
        shape = Shape("medium", input_size=32, hidden_size=128, num_layers=2, bidirectional=False,
                      num_classes=10, batch_size=64, length=50)
    else:  # the dry run only exercises the code paths
        shape = Shape("dry-run", input_size=4, hidden_size=8, num_layers=2, bidirectional=False,
                      num_classes=3, batch_size=8, length=10)
    recipe = Recipe(clip=1.0, input_dropout=0.1, between_dropout=0.1, output_dropout=0.3, l2=1e-5,
                    grad_norm_every=LOG_EVERY)
    return shape, recipe


def device_batches(shape: Any, device: Any, count: int) -> list[Any]:
    """Pre-built batches already on the device; ``lengths`` stays on the host, as the library keeps it."""
    from _hand import synthetic_batches
    from lstm_plugins.data import SequenceBatch

    return [
        SequenceBatch(b.features.to(device), b.lengths, b.targets.to(device))
        for b in synthetic_batches(shape, count, seed=0, variable_length=True)
    ]


def trainer_for(device: Any, workdir: str, steps: int, callbacks: list[Any], logger: bool = True) -> Any:
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    return pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_steps=steps,
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=LOG_EVERY,
        logger=CSVLogger(workdir) if logger else False,
        enable_checkpointing=False,
        enable_progress_bar=True,
        enable_model_summary=False,
        callbacks=callbacks,
    )


@contextlib.contextmanager
def silenced_output() -> Any:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- 1. throughput ---------------------------------------------------------------------------------


def throughput(options: Any, device: Any, workdir: str) -> Any:
    import pytorch_lightning as pl

    from _hand import HandLoop, library_model
    from _harness import Table, TimedBatches, ratio_row, run_rounds

    shape, recipe = medium_shape(device)
    batches = device_batches(shape, device, 8)
    warmup = LOG_EVERY
    steps = warmup + (5 if options.quick else 20) * LOG_EVERY
    rounds = 3 if options.quick else 9

    class WallClock(pl.Callback):
        """Synchronised stamps at the first timed step and at the end of training."""

        def __init__(self) -> None:
            self.start = self.end = 0.0

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == warmup:
                synchronize(device)
                self.start = time.perf_counter()

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            synchronize(device)
            self.end = time.perf_counter()

    library = library_model(shape, recipe)

    def library_run() -> float:
        clock = WallClock()
        with silenced_output():
            trainer_for(device, workdir, steps, [clock]).fit(library, train_dataloaders=TimedBatches(batches, steps))
        return (clock.end - clock.start) / (steps - warmup)

    net = packed_net(shape, recipe).copy_from(library).to(device)
    loop = HandLoop(net, shape, recipe, LOG_EVERY)
    loop.metrics.to(device)
    loop.val_loss.to(device)

    def raw_run() -> float:
        net.train()
        start = 0.0
        for index in range(steps):
            if index == warmup:
                synchronize(device)
                start = time.perf_counter()
            batch = batches[index % len(batches)]
            loop.train_step(batch.features, batch.lengths, batch.targets)
        synchronize(device)
        return (time.perf_counter() - start) / (steps - warmup)

    series = run_rounds({"library": library_run, "raw cuDNN": raw_run}, rounds)
    rows = [
        ratio_row(f"training step throughput, library / raw {'cuDNN ' if device.type == 'cuda' else ''}loop", series["library"], series["raw cuDNN"],
                  invert=True),
        ratio_row("step time, library / raw cuDNN loop", series["library"], series["raw cuDNN"]),
    ]
    notes = [
        f"medium shape, variable lengths, full stack; {rounds} rounds × {steps - warmup} timed steps "
        f"(after {warmup} warm-up steps); Lightning with a CSV logger and progress bar, log_every_n_steps={LOG_EVERY}",
        "the library packs each batch for cuDNN and reads the last valid step of the padded output; "
        "the raw loop packs and reads h_n",
    ]
    return Table("6a. GPU: library training step vs a raw cuDNN loop (packed sequences)", rows, notes)


# --- 2. host synchronisations -------------------------------------------------------------------


class SyncLog:
    """Collects sync warnings and splits them by training step."""

    def __init__(self) -> None:
        self.caught: list[warnings.WarningMessage] = []
        self.boundaries: list[tuple[int, int]] = []  # (step, index into caught at its start)

    def mark(self, step: int) -> None:
        self.boundaries.append((step, len(self.caught)))

    def per_step(self) -> list[tuple[int, list[warnings.WarningMessage]]]:
        marks = self.boundaries + [(-1, len(self.caught))]
        result = []
        for (step, start), (_, end) in zip(marks, marks[1:]):
            syncs = [w for w in self.caught[start:end] if SYNC_MESSAGE in str(w.message)]
            result.append((step, syncs))
        return result


def is_logging_step(step: int) -> bool:
    # The library copies the interval's values to the host once, after the optimizer step of
    # steps 0, N, 2N, ...; every other step must not synchronise.
    return step % LOG_EVERY == 0


def summarise(per_step: list[tuple[int, list[Any]]], skip: int) -> tuple[float, float, list[str]]:
    between = [len(s) for step, s in per_step if step >= skip and not is_logging_step(step)]
    logging_steps = [len(s) for step, s in per_step if step >= skip and is_logging_step(step)]
    sites = collections.Counter(
        f"{Path(w.filename).name}:{w.lineno}" for step, s in per_step if step >= skip and not is_logging_step(step) for w in s
    )
    top = [f"{site} ×{count}" for site, count in sites.most_common(4)]
    mean = lambda values: sum(values) / len(values) if values else 0.0  # noqa: E731
    return mean(between), mean(logging_steps), top


def synchronisations(options: Any, device: Any, workdir: str) -> Any:
    import pytorch_lightning as pl
    import torch

    from _hand import HandLoop, library_model
    from _harness import Row, Table, TimedBatches

    shape, recipe = medium_shape(device)
    batches = device_batches(shape, device, 8)
    steps = (3 if options.quick else 6) * LOG_EVERY
    skip = 2  # the first steps allocate optimizer state and register logged keys

    class StepMarks(pl.Callback):
        def __init__(self, sync_log: SyncLog) -> None:
            self.sync_log = sync_log

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.sync_log.mark(trainer.global_step)

    def counted(run: Any) -> SyncLog:
        log = SyncLog()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            try:
                run(log)
            finally:
                if device.type == "cuda":
                    torch.cuda.set_sync_debug_mode("default")
            log.caught = list(caught)
        return log

    def library_run(log: SyncLog) -> None:
        model = library_model(shape, recipe)
        with silenced_output():
            trainer_for(device, workdir, steps, [StepMarks(log)]).fit(model, train_dataloaders=TimedBatches(batches, steps))

    net = packed_net(shape, recipe).to(device)
    loop = HandLoop(net, shape, recipe, LOG_EVERY)

    def raw_run(log: SyncLog) -> None:
        net.train()
        for index in range(steps):
            log.mark(loop.step)
            batch = batches[index % len(batches)]
            loop.train_step(batch.features, batch.lengths, batch.targets)
        synchronize(device)

    rows = []
    for name, run in (("library (Trainer.fit)", library_run), ("raw cuDNN loop", raw_run)):
        log = counted(run)
        between, at_logging, sites = summarise(log.per_step(), skip)
        budget = 0.0 if name.startswith("library") else None
        verdict = "info" if budget is None else ("PASS" if between == 0 else "GAP")
        if device.type != "cuda":
            verdict = "dry run"
        rows.append(Row(name, f"{between:.2f} syncs/step between intervals", f"{at_logging:.2f} syncs/step at logging steps",
                        "; ".join(sites) or "-", "", "0 between intervals" if budget is not None else "-", verdict))
    notes = [
        f"{steps} steps, log_every_n_steps={LOG_EVERY}; steps s with s % {LOG_EVERY} == 0 (the library logs) or "
        f"(s + 1) % {LOG_EVERY} == 0 (Lightning writes to the logger) are logging steps; the first {skip} steps are skipped",
        "torch.cuda.set_sync_debug_mode('warn') flags device-to-host copies, stream synchronisations and "
        "blocking host-to-device copies from pageable memory; call sites are the Python frames that triggered them",
    ]
    headers = ("run", "between logging intervals", "at logging steps", "call sites between intervals", "", "budget", "verdict")
    return Table("6b. GPU: host synchronisations per training step", rows, notes, headers)


if __name__ == "__main__":
    raise SystemExit(main())
