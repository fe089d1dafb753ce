"""Section ``long``: long sequences, where vanishing gradients become denormal floats.

300-step sequences, bidirectional LSTM 12→128, batch 16, the default technique stack (clipping,
dropout, L2, gradient norms), 9 classes, random inputs: the gradient reaching the early steps
decays below float32's normal range, and CPUs compute with denormal numbers many times slower.

* speed: the library's default ``fit`` (denormals flushed, as by default) against the
  hand-written loop, which keeps denormals as plain PyTorch does; an epoch of training steps,
  timed from one epoch start to the next, the first epoch being warm-up.
* equivalence: the same 2 epochs from the same weights and seed, the hand-written loop flushing
  too (``flushed_denormals``): the per-step losses must agree (and they are printed against the
  unflushed loop too: flushing changes nothing a float32 model resolves).
"""

from __future__ import annotations

from typing import Any

import torch

from _hand import HandLoop, HandNet, Recipe, Shape, library_model, quiet_trainer, synthetic_batches
from _harness import Row, Table, TimedBatches, clock, median, note_row, ratio_row, run_rounds
from _stack import EpochClock, LossRecorder, epoch_intervals, loss_agreement
from lstm_plugins.training._denormals import denormals_are_flushed, flushed_denormals

LONG = Shape("long", input_size=12, hidden_size=128, num_layers=1, bidirectional=True,
             num_classes=9, batch_size=16, length=300)
DEFAULT_STACK = Recipe(clip=1.0, input_dropout=0.1, output_dropout=0.3, l2=1e-5, grad_norm_every=10)
LOG_EVERY = 10


def hand_epochs(loop: HandLoop, data: TimedBatches, epochs: int, losses: list[float] | None = None) -> list[float]:
    stamps = []
    for _ in range(epochs):
        stamps.append(clock())
        loop.net.train()
        for batch in data:
            loss = loop.train_step(batch.features, batch.lengths, batch.targets)
            if losses is not None:
                losses.append(float(loss))
    stamps.append(clock())
    return stamps


def equivalence(shape: Shape, batches: list[Any], steps: int) -> list[Row]:
    library = library_model(shape, DEFAULT_STACK)
    weights = HandNet(shape, DEFAULT_STACK).copy_from(library).state_dict()
    recorder = LossRecorder()
    torch.manual_seed(7)
    quiet_trainer(max_epochs=2, limit_val_batches=0, callbacks=[recorder], log_every_n_steps=LOG_EVERY).fit(
        library, train_dataloaders=TimedBatches(batches, steps))
    results = {}
    for flush in (True, False):
        net = HandNet(shape, DEFAULT_STACK)
        net.load_state_dict(weights)
        losses: list[float] = []
        torch.manual_seed(7)
        with flushed_denormals(flush):
            assert denormals_are_flushed() == flush
            hand_epochs(HandLoop(net, shape, DEFAULT_STACK, LOG_EVERY), TimedBatches(batches, steps), 2, losses)
        results[flush] = losses
    worst, same = loss_agreement(recorder.losses, results[True])
    absolute = max((abs(a - b) for a, b in zip(recorder.losses, results[True])), default=float("inf"))
    kept, _ = loss_agreement(recorder.losses, results[False])
    return [
        note_row(f"long: same losses, library (flushed) vs hand flushing too ({len(results[True])} steps)",
                 f"max difference {absolute:.1e} (relative {worst:.1e})", "OK" if same else "FAIL"),
        note_row("long: library (flushed) vs hand keeping denormals", f"max relative difference {kept:.1e}"),
    ]


def run(options: Any) -> list[Table]:
    smoke = getattr(options, "smoke", False)
    shape = LONG if not smoke else Shape("long", 12, 8, 1, True, 9, 4, 300)
    steps = 2 if smoke else 4  # per epoch
    epochs = 2
    rounds = 1 if options.quick or smoke else 5
    batches = synthetic_batches(shape, steps, seed=3)
    rows = equivalence(shape, batches, steps)
    # Every run starts from the same initial weights: on these random batches the denormals fade
    # once the model has fitted them (after about 16 steps), so a model trained on from round to
    # round would measure something else than the first epochs.
    initial = library_model(shape, DEFAULT_STACK)
    weights = initial.state_dict()

    def library_fit() -> float:
        library = library_model(shape, DEFAULT_STACK)
        library.load_state_dict(weights)
        epoch_clock = EpochClock()
        quiet_trainer(max_epochs=epochs, limit_val_batches=0, callbacks=[epoch_clock],
                      log_every_n_steps=LOG_EVERY).fit(library, train_dataloaders=TimedBatches(batches, steps))
        return median(epoch_intervals(epoch_clock.stamps))

    def hand_loop() -> float:
        hand = HandLoop(HandNet(shape, DEFAULT_STACK).copy_from(initial), shape, DEFAULT_STACK, LOG_EVERY)
        return median(epoch_intervals(hand_epochs(hand, TimedBatches(batches, steps), epochs)))

    def hand_flushing() -> float:
        with flushed_denormals():
            return hand_loop()

    series = run_rounds({"default fit": library_fit, "hand": hand_loop, "hand, flushing": hand_flushing}, rounds)
    rows.insert(0, ratio_row(f"long ({shape.length} steps): default `fit` / hand-written loop keeping denormals, "
                             "throughput", series["default fit"], series["hand"], unit="/epoch", invert=True,
                             budget=5.0, higher_is_better=True))
    rows.insert(1, ratio_row("long: default `fit` / hand-written loop flushing too, throughput", series["default fit"],
                             series["hand, flushing"], unit="/epoch", invert=True))
    notes = [
        f"long = bidirectional LSTM {shape.input_size}→{shape.hidden_size}, batch {shape.batch_size}×{shape.length}, "
        f"{shape.num_classes} classes, random inputs; clipping 1.0, dropout 0.1/0.3, l2 1e-5, grad_norm every 10; "
        f"{steps} training steps per epoch, no validation",
        f"{rounds} round(s) × {epochs} epochs per variant from the same initial weights (the first epoch is warm-up, "
        "the second is timed: steps 5-8 of training); the library flushes denormals (its default), the hand-written "
        "loop does not (PyTorch's default). On these random batches the denormals fade once the model has fitted "
        "them (after about 16 steps); on real data they last (the issue: ArrowHead, 251 steps, whole runs 120-191 s "
        "against 21-25 s flushed)",
    ]
    return [Table("6. Long sequences: denormals flushed by default", rows, notes)]
