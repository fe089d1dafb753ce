"""Section ``stack``: the full built-in stack through ``Trainer.fit`` against a hand-written loop.

*small* is the default ``lstm-plugins fit`` configuration (JapaneseVowels, bidirectional LSTM,
hidden 128, batch 16, the default technique stack). Lightning runs the exact data module, model
and Trainer the CLI builds (``lstm_plugins.cli.build_run``) on the CPU; an epoch is timed from
one ``on_train_epoch_start`` to the next (training, validation with metrics, checkpoint). The
hand-written loop runs the same epoch on the same pre-padded tensors in the same order: one
index tensor per batch, no per-batch Python lists.

*medium* is a 2-layer LSTM, 32 inputs, hidden 128, batch 64, length 50, 10 classes, with the full
stack (clipping, dropout on input / between layers / output, L2, gradient-norm logging) and
validation metrics each epoch, on pre-built synthetic batches.

Before timing, each shape checks that both sides compute the same thing: same initial weights,
same random seed, and the per-step training losses must agree.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch

import _harness
from _hand import HandLightning, HandLoop, HandNet, Recipe, Shape, library_model, quiet_trainer, synthetic_batches
from _harness import Row, Table, TimedBatches, median, note_row, per_step_times, ratio_row, run_rounds

MEDIUM = Shape("medium", input_size=32, hidden_size=128, num_layers=2, bidirectional=False,
               num_classes=10, batch_size=64, length=50)
MEDIUM_STACK = Recipe(clip=1.0, input_dropout=0.1, between_dropout=0.1, output_dropout=0.3,
                      l2=1e-5, grad_norm_every=10)
LOG_EVERY = 10
LOSS_TOLERANCE = 1e-4  # relative, per step


# --- the default CLI configuration --------------------------------------------------------------


def default_config(**trainer: Any) -> dict[str, Any]:
    """``lstm-plugins fit``'s default config, on the CPU, with Trainer overrides."""
    import copy

    from lstm_plugins.cli import DEFAULT_CONFIG

    config = copy.deepcopy(DEFAULT_CONFIG)
    config["trainer"].update(accelerator="cpu", **trainer)
    return config


def recipe_from_config(config: dict[str, Any]) -> Recipe:
    """The hand-written equivalent of the config's technique stack."""
    fields: dict[str, Any] = {"learning_rate": config["model"].get("learning_rate", 1e-3)}
    for spec in config["model"]["techniques"]:
        name, arguments = (spec, {}) if isinstance(spec, str) else next(iter(spec.items()))
        arguments = dict(arguments or {})
        if name == "gradient_clipping" and set(arguments) <= {"threshold"}:
            fields["clip"] = float(arguments.get("threshold", 1.0))
        elif name == "dropout" and set(arguments) <= {"input", "between_layers", "output"}:
            fields["input_dropout"] = float(arguments.get("input", 0.0))
            fields["between_dropout"] = float(arguments.get("between_layers", 0.0))
            fields["output_dropout"] = float(arguments.get("output", 0.0))
        elif name == "l2" and set(arguments) <= {"weight"}:
            fields["l2"] = float(arguments.get("weight", 1e-4))
        elif name == "grad_norm" and set(arguments) <= {"log_every_n_steps"}:
            fields["grad_norm_every"] = int(arguments.get("log_every_n_steps") or 50)
        else:
            raise SystemExit(
                f"benchmarks: the default stack now has {spec!r}, which the hand-written loop does "
                "not implement; extend benchmarks/_hand.py and _stack.recipe_from_config."
            )
    return Recipe(**fields)


def shape_from_config(config: dict[str, Any], datamodule: Any) -> Shape:
    model = config["model"]
    return Shape(
        "small",
        input_size=datamodule.num_features,
        hidden_size=model.get("hidden_size", 64),
        num_layers=model.get("num_layers", 1),
        bidirectional=model.get("bidirectional", False),
        num_classes=datamodule.num_classes,
        batch_size=config["data"]["batch_size"],
        length=datamodule.max_length,
    )


class EpochClock(pl.Callback):
    """Stamps the start of every training epoch and the end of training."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stamps.append(_harness.clock())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stamps.append(_harness.clock())


class LossRecorder(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.losses.append(float(outputs["loss"]))


def epoch_intervals(stamps: list[float], skip: int = 1) -> list[float]:
    return [b - a for a, b in zip(stamps[skip:], stamps[skip + 1 :])]


@contextlib.contextmanager
def silenced_output() -> Iterator[None]:
    """The progress bar still renders (its cost is measured), to /dev/null instead of the terminal."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


class PaddedEpochs:
    """The hand-written data path: slices of pre-padded tensors, one index tensor per batch."""

    def __init__(self, datamodule: Any) -> None:
        self.train = datamodule.train_dataset
        self.val = datamodule.val_dataset
        self.batch_size = datamodule.batch_size
        # The library's batches (seed, epoch): random or length-aware, so both sides see the same batches.
        self.batches = datamodule.train_dataloader().batch_sampler
        val = datamodule.val_dataloader()
        self.val_batch_sampler = None if isinstance(val, list) else val.batch_sampler

    def batch_indices(self, epoch: int) -> list[torch.Tensor]:
        set_epoch = getattr(self.batches, "set_epoch", None) or self.batches.sampler.set_epoch
        set_epoch(epoch)
        return [torch.tensor(indices, dtype=torch.int64) for indices in self.batches]

    @staticmethod
    def batch(dataset: Any, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = dataset.lengths.index_select(0, index)
        features = dataset.features.narrow(1, 0, int(lengths.max())).index_select(0, index)
        return features, lengths, dataset.targets.index_select(0, index)

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for index in self.batch_indices(epoch):
            yield self.batch(self.train, index)

    def val_batches(self) -> Iterator[Any]:
        from lstm_plugins.data import SequenceBatch

        for indices in self.val_batch_sampler or []:  # the library's validation order (by length)
            yield SequenceBatch(*self.batch(self.val, torch.tensor(indices, dtype=torch.int64)))


def hand_epochs(loop: HandLoop, data: PaddedEpochs, epochs: int, losses: list[float] | None = None) -> list[float]:
    stamps = []
    for epoch in range(epochs):
        stamps.append(_harness.clock())
        loop.net.train()
        for features, lengths, targets in data.train_batches(epoch):
            loss = loop.train_step(features, lengths, targets)
            if losses is not None:
                losses.append(float(loss))
        loop.validate(data.val_batches())
    stamps.append(_harness.clock())
    return stamps


def loss_agreement(library: list[float], hand: list[float]) -> tuple[float, bool]:
    if len(library) != len(hand) or not library:
        return float("inf"), False
    worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(library, hand))
    return worst, worst <= LOSS_TOLERANCE


# --- small: the default fit -----------------------------------------------------------------------


def small(options: Any, workdir: str) -> tuple[list[Row], list[str]]:
    from lstm_plugins.cli import build_run

    epochs = 4 if options.quick else 6
    rounds = 2 if options.quick else 8

    # Equivalence: one epoch each, same weights, same seed; Trainer services off (no maths in them).
    config = default_config(max_epochs=1, enable_progress_bar=False, enable_checkpointing=False, logger=False,
                            enable_model_summary=False, default_root_dir=workdir)
    datamodule, model, trainer = build_run(config)
    shape, recipe = shape_from_config(config, datamodule), recipe_from_config(config)
    hand = HandLoop(HandNet(shape, recipe).copy_from(model), shape, recipe, LOG_EVERY)
    recorder = LossRecorder()
    trainer.callbacks.append(recorder)
    torch.manual_seed(1234)
    trainer.fit(model, datamodule=datamodule)
    hand_losses: list[float] = []
    torch.manual_seed(1234)
    hand_epochs(hand, PaddedEpochs(datamodule), 1, hand_losses)
    worst, same = loss_agreement(recorder.losses, hand_losses)
    equivalence = note_row(
        f"small: same losses, library vs hand ({len(hand_losses)} steps)",
        f"max relative difference {worst:.1e} (tolerance {LOSS_TOLERANCE:.0e})",
        "OK" if same else "FAIL",
    )

    # Timing. The default fit: the CLI's Trainer (progress bar, CSV logger, a checkpoint per epoch).
    default = default_config(max_epochs=epochs, default_root_dir=workdir)
    quiet = default_config(max_epochs=epochs, enable_progress_bar=False, enable_checkpointing=False, logger=False,
                           enable_model_summary=False, default_root_dir=workdir)

    def lightning(config: dict[str, Any]) -> Any:
        def run() -> float:
            datamodule, model, trainer = build_run(config)
            epoch_clock = EpochClock()
            trainer.callbacks.append(epoch_clock)
            with silenced_output():
                trainer.fit(model, datamodule=datamodule)
            return median(epoch_intervals(epoch_clock.stamps))

        return run

    def handwritten() -> float:
        datamodule, model, _ = build_run(quiet)
        loop = HandLoop(HandNet(shape, recipe).copy_from(model), shape, recipe, LOG_EVERY)
        return median(epoch_intervals(hand_epochs(loop, PaddedEpochs(datamodule), epochs)))

    def hand_in_lightning() -> float:
        # The same Trainer and data module as the quiet fit, the hand-written step as the module.
        datamodule, model, trainer = build_run(quiet)
        module = HandLightning(HandLoop(HandNet(shape, recipe).copy_from(model), shape, recipe, LOG_EVERY))
        epoch_clock = EpochClock()
        trainer.callbacks.append(epoch_clock)
        with silenced_output():
            trainer.fit(module, datamodule=datamodule)
        return median(epoch_intervals(epoch_clock.stamps))

    series = run_rounds(
        {"default fit": lightning(default), "quiet fit": lightning(quiet), "hand": handwritten,
         "hand in Lightning": hand_in_lightning},
        rounds,
    )
    rows = [
        ratio_row("small: default `fit` epoch / hand-written epoch", series["default fit"], series["hand"],
                  unit="/epoch", budget=1.10),
        ratio_row("small: same, Trainer without progress bar, logger, checkpoint", series["quiet fit"], series["hand"],
                  unit="/epoch"),
        ratio_row("small: Lightning services (progress bar, CSV logger, checkpoint)", series["default fit"],
                  series["quiet fit"], unit="/epoch"),
        ratio_row("small: Lightning alone: the hand-written step in a LightningModule / hand-written loop",
                  series["hand in Lightning"], series["hand"], unit="/epoch"),
        ratio_row("small: the library alone: quiet fit / the hand-written step in a LightningModule",
                  series["quiet fit"], series["hand in Lightning"], unit="/epoch"),
        equivalence,
    ]
    notes = [
        f"small = `lstm-plugins fit` defaults: JapaneseVowels, {len(datamodule.train_dataset)} training / "
        f"{len(datamodule.val_dataset)} validation sequences, batch {shape.batch_size}, bidirectional LSTM "
        f"{shape.input_size}→{shape.hidden_size}, {', '.join(_stack_names(config))}; accelerator forced to cpu",
        f"{rounds} rounds × {epochs} epochs per variant (the first epoch is warm-up); an epoch = training + validation "
        "(+ checkpoint for the default fit)",
    ]
    return rows, notes


def _stack_names(config: dict[str, Any]) -> list[str]:
    return [spec if isinstance(spec, str) else next(iter(spec)) for spec in config["model"]["techniques"]]


# --- medium ------------------------------------------------------------------------------------


def medium(options: Any) -> tuple[list[Row], list[str]]:
    steps = 2 * LOG_EVERY  # per epoch
    epochs = 3 if options.quick else 4
    rounds = 1 if options.quick else 8
    train = synthetic_batches(MEDIUM, 4, seed=1)
    val = synthetic_batches(MEDIUM, 2, seed=2)

    # Equivalence: 10 steps from the same weights and seed.
    library = library_model(MEDIUM, MEDIUM_STACK)
    hand = HandLoop(HandNet(MEDIUM, MEDIUM_STACK).copy_from(library), MEDIUM, MEDIUM_STACK, LOG_EVERY)
    recorder = LossRecorder()
    torch.manual_seed(99)
    quiet_trainer(max_steps=LOG_EVERY, limit_val_batches=0, callbacks=[recorder]).fit(
        library, train_dataloaders=TimedBatches(train, LOG_EVERY)
    )
    torch.manual_seed(99)
    hand_losses = [float(hand.train_step(b.features, b.lengths, b.targets)) for b in (train * 3)[:LOG_EVERY]]
    worst, same = loss_agreement(recorder.losses, hand_losses)
    equivalence = note_row(
        f"medium: same losses, library vs hand ({LOG_EVERY} steps)",
        f"max relative difference {worst:.1e} (tolerance {LOSS_TOLERANCE:.0e})",
        "OK" if same else "FAIL",
    )

    library = library_model(MEDIUM, MEDIUM_STACK)
    hand = HandLoop(HandNet(MEDIUM, MEDIUM_STACK).copy_from(library), MEDIUM, MEDIUM_STACK, LOG_EVERY)
    # What most hand-written loops draw masks with: nn.Dropout and nn.LSTM(dropout=...).
    torch_masks = HandLoop(HandNet(MEDIUM, MEDIUM_STACK, "torch").copy_from(library), MEDIUM, MEDIUM_STACK, LOG_EVERY)
    library_data, hand_data = TimedBatches(train, steps), TimedBatches(train, steps)
    library_val, hand_val = TimedBatches(val, len(val)), TimedBatches(val, len(val))
    step_times: dict[str, list[float]] = {"library": [], "hand": [], "hand, torch's masks": []}

    def library_run() -> float:
        library_data.reset()
        quiet_trainer(max_epochs=epochs, log_every_n_steps=LOG_EVERY).fit(
            library, train_dataloaders=library_data, val_dataloaders=library_val
        )
        step_times["library"].append(median(per_step_times(library_data.epochs, LOG_EVERY)))
        return median(_epoch_starts(library_data.epochs)) / steps

    def hand_runner(loop: HandLoop, name: str) -> Any:
        def run() -> float:
            hand_data.reset()
            for _ in range(epochs):
                loop.train_epoch(hand_data)
                loop.validate(hand_val)
            step_times[name].append(median(per_step_times(hand_data.epochs, LOG_EVERY)))
            return median(_epoch_starts(hand_data.epochs)) / steps

        return run

    series = run_rounds({"library": library_run, "hand": hand_runner(hand, "hand"),
                         "hand, torch's masks": hand_runner(torch_masks, "hand, torch's masks")}, rounds)
    train_only = {name: _harness.Series(name, values) for name, values in step_times.items()}
    rows = [
        ratio_row("medium: full stack throughput, library / hand (training + validation)", series["library"],
                  series["hand"], invert=True, higher_is_better=True, budget=0.98),
        ratio_row("medium: training steps only, library / hand throughput", train_only["library"],
                  train_only["hand"], invert=True),
        ratio_row("medium: full stack throughput, library / hand with torch's dropout masks",
                  series["library"], series["hand, torch's masks"], invert=True, higher_is_better=True),
        equivalence,
    ]
    notes = [
        f"medium = 2-layer LSTM {MEDIUM.input_size}→{MEDIUM.hidden_size}, batch {MEDIUM.batch_size}×{MEDIUM.length}, "
        f"{MEDIUM.num_classes} classes; clipping 1.0, dropout 0.1/0.1/0.3, l2 1e-5, grad_norm every 10, "
        "validation metrics every epoch",
        f"{rounds} rounds × {epochs} epochs of {steps} steps + {len(val)} validation batches; time per step = "
        "epoch time / training steps (the first epoch is warm-up)",
    ]
    return rows, notes


def _epoch_starts(epochs: list[list[float]]) -> list[float]:
    """Whole-epoch times from consecutive epochs' first stamps (training + validation between them),
    the first epoch being warm-up."""
    starts = [stamps[0] for stamps in epochs if stamps]
    return [b - a for a, b in zip(starts[1:], starts[2:])]


def run(options: Any) -> list[Table]:
    with tempfile.TemporaryDirectory(prefix="lstm-plugins-bench-") as workdir:
        small_rows, small_notes = small(options, workdir)
    medium_rows, medium_notes = medium(options)
    return [
        Table("1a. Full stack through Trainer.fit vs a hand-written loop: small (the default fit)", small_rows, small_notes),
        Table("1b. Full stack through Trainer.fit vs a hand-written loop: medium", medium_rows, medium_notes),
    ]
