"""Section ``kernel``: for every technique combination, did the fused LSTM kernel run?

One real training step (``Trainer.fit``, forward, backward, optimizer step) is recorded with
``torch.profiler`` for every subset of the default stack's techniques, on the small shape
(bidirectional, variable-length JapaneseVowels batches) and the medium shape (2 layers, variable
lengths), and (without ``--quick``) for every other installed technique alone. The step counts
as fused when every ``aten::lstm`` call has a ``aten::mkldnn_rnn_layer`` child (oneDNN), every
layer and direction went through it, and the backward pass ran ``mkldnn_rnn_layer_backward``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch.profiler import ProfilerActivity, profile

from _hand import Shape, quiet_trainer, synthetic_batches
from _harness import Row, Table, TimedBatches

SMALL = Shape("small", input_size=12, hidden_size=128, num_layers=1, bidirectional=True,
              num_classes=9, batch_size=16, length=29)
MEDIUM = Shape("medium", input_size=32, hidden_size=128, num_layers=2, bidirectional=False,
               num_classes=10, batch_size=16, length=50)
DEFAULT_STACK = {
    "gradient_clipping": {"threshold": 1.0},
    "dropout": {"input": 0.1, "output": 0.3},
    "l2": {"weight": 1e-5},
    "grad_norm": {"log_every_n_steps": 1},
}
EXPECTED_UNFUSED = {"zoneout": "per-step recurrence by design; documented, warns once"}


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """The profiler's C++ side prints start/stop lines on file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class StepProfiler(pl.Callback):
    """Records the second training step (the first one warms up) with the profiler."""

    def __init__(self) -> None:
        self.profiler: Any = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == 1:
            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.start()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == 1 and self.profiler is not None:
            self.profiler.stop()


def fused_report(profiler: Any, model: Any) -> tuple[bool, str]:
    events = profiler.events()
    lstm_calls = [e for e in events if e.name == "aten::lstm"]
    fused_calls = [e for e in lstm_calls if any(c.name == "aten::mkldnn_rnn_layer" for c in e.cpu_children)]
    layers = sum(1 for e in events if e.name == "aten::mkldnn_rnn_layer")
    backward = sum(1 for e in events if e.name == "aten::mkldnn_rnn_layer_backward")
    cells = sum(1 for e in events if e.name in ("aten::lstm_cell", "aten::_thnn_fused_lstm_cell"))
    lstm = model.lstm
    expected_layers = lstm.num_layers * (2 if lstm.bidirectional else 1)
    fused = bool(lstm_calls) and len(fused_calls) == len(lstm_calls) and layers >= expected_layers and backward >= expected_layers and cells == 0
    detail = f"{len(fused_calls)}/{len(lstm_calls)} aten::lstm on oneDNN, {layers} fwd + {backward} bwd layer kernels"
    if cells:
        detail += f", {cells} unfused cell calls"
    return fused, detail


def token_batches(shape: Shape, vocabulary: int, count: int) -> list[Any]:
    from lstm_plugins.data import SequenceBatch

    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        lengths = torch.randint(1, shape.length + 1, (shape.batch_size,), generator=generator)
        lengths[0] = shape.length
        tokens = torch.randint(1, vocabulary, (shape.batch_size, shape.length), generator=generator)
        tokens = tokens * (torch.arange(shape.length) < lengths.unsqueeze(1))
        targets = torch.randint(0, shape.num_classes, (shape.batch_size,), generator=generator)
        batches.append(SequenceBatch(tokens, lengths, targets))
    return batches


def check(shape: Shape, plugins: list[Any], batches: list[Any], **model_options: Any) -> tuple[bool, str]:
    from lstm_plugins import LSTMClassifier

    recorder = StepProfiler()
    with quiet_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. zoneout's documented "runs off the fused kernel" warning
        torch.manual_seed(0)
        model = LSTMClassifier(
            input_size=shape.input_size, num_classes=shape.num_classes, hidden_size=shape.hidden_size,
            num_layers=shape.num_layers, bidirectional=shape.bidirectional, techniques=plugins, **model_options,
        )
        quiet_trainer(max_steps=2, limit_val_batches=0, log_every_n_steps=1, callbacks=[recorder]).fit(
            model, train_dataloaders=TimedBatches(batches, 2)
        )
    return fused_report(recorder.profiler, model)


def default_stack_plugins(names: tuple[str, ...], shape: Shape) -> list[Any]:
    plugins = []
    for name in names:
        arguments = dict(DEFAULT_STACK[name])
        if name == "dropout" and shape.num_layers > 1:
            arguments["between_layers"] = 0.1
        plugins.append({name: arguments})
    return plugins


def run(options: Any) -> list[Table]:
    from lstm_plugins import available_techniques

    shapes = [SMALL] if options.quick else [SMALL, MEDIUM]
    data = {shape.name: synthetic_batches(shape, 2, seed=3, variable_length=True) for shape in shapes}
    rows: list[Row] = []
    by_design: list[str] = []
    failures = 0
    names = tuple(DEFAULT_STACK)
    for shape in shapes:
        for size in range(len(names) + 1):
            for combination in itertools.combinations(names, size):
                fused, detail = check(shape, default_stack_plugins(combination, shape), data[shape.name])
                failures += not fused
                label = " + ".join(combination) or "(no technique)"
                rows.append(Row(label, shape.name, detail, "fused" if fused else "NOT fused", "", "fused", "OK" if fused else "FAIL"))

    if not options.quick:
        others = sorted(set(available_techniques()) - set(names))
        for name in others:
            for shape in shapes:
                model_options: dict[str, Any] = {}
                batches = data[shape.name]
                if name == "embedding_dropout":
                    model_options["num_embeddings"] = 100
                    batches = token_batches(shape, 100, 2)
                if name == "weight_decay":
                    model_options["optimizer"] = "adamw"
                try:
                    fused, detail = check(shape, [name], batches, **model_options)
                except Exception as error:  # report, keep going
                    rows.append(Row(name, shape.name, f"could not run: {error!r}"[:120], "", "", "fused", "ERROR"))
                    failures += 1
                    continue
                expected = EXPECTED_UNFUSED.get(name)
                if expected and not fused:
                    verdict, result = "expected", "not fused, by design"
                    by_design.append(f"{name}: {expected}")
                else:
                    verdict, result = ("OK" if fused else "FAIL"), ("fused" if fused else "NOT fused")
                    failures += not fused
                rows.append(Row(name, shape.name, detail, result, "", "fused", verdict))

    notes = [
        "one profiled training step per row (the second step of a Trainer.fit), CPU; every subset of "
        f"{', '.join(names)}" + ("" if options.quick else "; then every other installed technique alone"),
        ("every row fused" if failures == 0 else f"{failures} row(s) NOT fused")
        + (", except by design: " + "; ".join(dict.fromkeys(by_design)) if by_design else ""),
    ]
    headers = ("techniques", "shape", "profiler", "result", "", "expected", "verdict")
    return [Table("5. Fused-kernel check: technique combinations (oneDNN on CPU)", rows, notes, headers)]
