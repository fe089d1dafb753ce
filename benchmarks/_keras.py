"""Section ``keras``: Keras 3 ``fit`` on the torch backend, the peer a user would pick instead.

Optional: needs ``keras>=3`` installed (``pip install keras``); without it the section prints a
note and is skipped. Keras runs with ``KERAS_BACKEND=torch`` in this same process, so it uses the
same torch build and the same thread setting, alternated round by round with the library.

The Keras model is the medium shape with the same techniques: dropout on the input, between the
two LSTM layers and on the summary; L2 on every kernel (input, recurrent, head), biases excluded;
Adam with global-norm clipping at 1.0; accuracy as the metric; validation every epoch. Keras has
no gradient-norm logging built in, so that one technique is the library's alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

import numpy as np
import torch

import _harness
from _hand import HandLoop, HandNet, library_model, quiet_trainer, synthetic_batches
from _harness import Table, TimedBatches, median, note_row, ratio_row, run_rounds
from _stack import LOG_EVERY, MEDIUM, MEDIUM_STACK, epoch_intervals


def load_keras() -> tuple[Any, str]:
    """``(keras module or None, why not)``."""
    if importlib.util.find_spec("keras") is None:
        return None, "keras is not installed (optional: `pip install keras`, Keras 3)"
    previous = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = "torch"
    try:
        keras = importlib.import_module("keras")
    except Exception as error:  # a broken install must not break the suite
        return None, f"keras failed to import with KERAS_BACKEND=torch: {error!r}"
    finally:
        if previous is None:
            os.environ.pop("KERAS_BACKEND", None)
        else:
            os.environ["KERAS_BACKEND"] = previous
    version = getattr(keras, "__version__", "0")
    if int(version.split(".")[0]) < 3:
        return None, f"keras {version} is installed; this section needs Keras 3"
    if keras.backend.backend() != "torch":
        return None, f"keras was already imported with the {keras.backend.backend()!r} backend"
    return keras, ""


def keras_model(keras: Any) -> Any:
    from keras import layers, regularizers

    recipe, shape = MEDIUM_STACK, MEDIUM
    l2 = regularizers.L2(recipe.l2)
    model = keras.Sequential(
        [
            keras.Input((shape.length, shape.input_size)),
            layers.Dropout(recipe.input_dropout),
            layers.LSTM(shape.hidden_size, return_sequences=True, kernel_regularizer=l2, recurrent_regularizer=l2),
            layers.Dropout(recipe.between_dropout),
            layers.LSTM(shape.hidden_size, kernel_regularizer=l2, recurrent_regularizer=l2),
            layers.Dropout(recipe.output_dropout),
            layers.Dense(shape.num_classes, kernel_regularizer=l2),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(recipe.learning_rate, global_clipnorm=recipe.clip),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def run(options: Any) -> list[Table]:
    title = "4. Keras 3 (torch backend) fit vs the library, medium shape"
    keras, why = load_keras()
    if keras is None:
        return [Table(title, [note_row("Keras 3 fit, medium shape", f"skipped: {why}", "skipped")])]

    steps = LOG_EVERY  # per epoch
    epochs = 3 if options.quick else 4
    rounds = 1 if options.quick else 3
    train = synthetic_batches(MEDIUM, 4, seed=1)
    val = synthetic_batches(MEDIUM, 1, seed=2)
    epoch_batches = [train[i % len(train)] for i in range(steps)]
    x = np.concatenate([b.features.numpy() for b in epoch_batches])
    y = np.concatenate([b.targets.numpy() for b in epoch_batches])
    x_val, y_val = val[0].features.numpy(), val[0].targets.numpy()

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.stamps: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.stamps.append(_harness.clock())

        def on_train_end(self, logs: Any = None) -> None:
            self.stamps.append(_harness.clock())

    def keras_run() -> float:
        keras.utils.set_random_seed(0)
        model = keras_model(keras)
        epoch_clock = EpochClock()
        model.fit(x, y, batch_size=MEDIUM.batch_size, epochs=epochs, validation_data=(x_val, y_val),
                  shuffle=False, verbose=0, callbacks=[epoch_clock])
        return median(epoch_intervals(epoch_clock.stamps)) / steps

    library = library_model(MEDIUM, MEDIUM_STACK)
    library_data, library_val = TimedBatches(train, steps), TimedBatches(val, len(val))

    def library_run() -> float:
        library_data.reset()
        quiet_trainer(max_epochs=epochs, log_every_n_steps=LOG_EVERY).fit(
            library, train_dataloaders=library_data, val_dataloaders=library_val
        )
        starts = [stamps[0] for stamps in library_data.epochs]
        return median(epoch_intervals(starts)) / steps

    hand = HandLoop(HandNet(MEDIUM, MEDIUM_STACK).copy_from(library), MEDIUM, MEDIUM_STACK, LOG_EVERY)
    hand_data, hand_val = TimedBatches(train, steps), TimedBatches(val, len(val))

    def hand_run() -> float:
        hand_data.reset()
        stamps = []
        for _ in range(epochs):
            stamps.append(_harness.clock())
            hand.train_epoch(hand_data)
            hand.validate(hand_val)
        stamps.append(_harness.clock())
        return median(epoch_intervals(stamps)) / steps

    series = run_rounds({"Keras": keras_run, "library": library_run, "hand": hand_run}, rounds)
    rows = [
        ratio_row("library / Keras throughput (medium, full stack)", series["library"], series["Keras"],
                  invert=True, higher_is_better=True, budget=2.0),
        ratio_row("Keras / hand-written loop throughput", series["Keras"], series["hand"], invert=True),
    ]
    notes = [
        f"keras {keras.__version__} with KERAS_BACKEND=torch, torch {torch.__version__}; "
        "Sequential(Dropout, LSTM(return_sequences), Dropout, LSTM, Dropout, Dense), L2 1e-5 on kernels, "
        "Adam(global_clipnorm=1.0), accuracy metric",
        f"{rounds} round(s) × {epochs} epochs of {steps} steps + 1 validation batch; the first epoch (Keras builds "
        "its model and functions) is warm-up; time per step = epoch time / training steps",
    ]
    return [Table(title, rows, notes)]
