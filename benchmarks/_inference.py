"""Section ``inference``: prediction throughput against a hand-written evaluation loop.

The default model (bidirectional LSTM, hidden 128) predicts the test split of JapaneseVowels
(370 sequences of 7-29 steps) and of PLAID (537 of 100-1344 steps) from a list of arrays, three
ways, in rotating order every round:

* ``predict_sequences(model, arrays, batch_size=64)`` (sorts by length, pads per batch, returns
  class probabilities in input order);
* ``Trainer.predict`` over the data module's ``predict_dataloader`` (batches sorted by length);
* the hand-written loop a user would write: batches of 64 in input order, ``pad_sequence``,
  ``eval()``, ``torch.inference_mode()``, the same network written by hand (``_hand.HandNet``
  with the library's weights), softmax, one host copy per batch.

Before timing, the probabilities of ``predict_sequences`` and of the hand-written loop must agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

import _harness
from _hand import HandNet, Recipe, Shape, library_model, quiet_trainer
from _harness import Row, Table, note_row, ratio_row, run_rounds

BATCH = 64
RECIPE = Recipe(clip=1.0, input_dropout=0.1, output_dropout=0.3, l2=1e-5, grad_norm_every=10)


def hand_predict(net: HandNet, arrays: list[np.ndarray]) -> np.ndarray:
    net.eval()
    results = []
    with torch.inference_mode():
        for start in range(0, len(arrays), BATCH):
            chunk = [torch.from_numpy(a) for a in arrays[start : start + BATCH]]
            lengths = torch.tensor([len(a) for a in chunk], dtype=torch.int64)
            features = pad_sequence(chunk, batch_first=True)
            results.append(net(features, lengths).softmax(-1).numpy())
    return np.concatenate(results)


def dataset(name: str, smoke: bool) -> tuple[Any, list[np.ndarray]]:
    from lstm_plugins.data import ArchiveDataModule, JapaneseVowelsDataModule

    if name == "japanese_vowels":
        module = JapaneseVowelsDataModule(batch_size=BATCH)
    else:
        module = ArchiveDataModule(name, batch_size=BATCH)
    module.setup("test")
    test = module.test_dataset
    count = 24 if smoke else len(test)
    arrays = [test.features[i, : int(test.lengths[i])].numpy().copy() for i in range(count)]
    return module, arrays


def compare(name: str, options: Any) -> list[Row]:
    from lstm_plugins.model import predict_sequences

    smoke = getattr(options, "smoke", False)
    module, arrays = dataset(name, smoke)
    shape = Shape(name, module.num_features, 8 if smoke else 128, 1, True, module.num_classes, BATCH, 0)
    model = library_model(shape, RECIPE)
    net = HandNet(shape, RECIPE).copy_from(model)
    difference = float(np.abs(predict_sequences(model, arrays, batch_size=BATCH) - hand_predict(net, arrays)).max())
    loader = module.predict_dataloader(arrays)
    trainer = quiet_trainer(logger=False)

    def timed(work: Any) -> Any:
        def run() -> float:
            started = _harness.clock()
            work()
            return _harness.clock() - started

        return run

    series = run_rounds(
        {
            "predict_sequences": timed(lambda: predict_sequences(model, arrays, batch_size=BATCH)),
            "Trainer.predict": timed(lambda: trainer.predict(model, dataloaders=loader)),
            "hand": timed(lambda: hand_predict(net, arrays)),
        },
        1 if options.quick or smoke else 5,
    )
    lengths = [len(a) for a in arrays]
    label = f"{name} ({len(arrays)} sequences, {min(lengths)}-{max(lengths)} steps)"
    return [
        ratio_row(f"{label}: `predict_sequences` / hand-written evaluation loop, throughput",
                  series["predict_sequences"], series["hand"], unit="/pass", invert=True, budget=1.0,
                  higher_is_better=True),
        ratio_row(f"{label}: `Trainer.predict` / hand-written evaluation loop, throughput",
                  series["Trainer.predict"], series["hand"], unit="/pass", invert=True, budget=1.0,
                  higher_is_better=True),
        note_row(f"{label}: same probabilities, `predict_sequences` vs hand", f"max difference {difference:.1e}",
                 "OK" if difference <= 1e-5 else "FAIL"),
    ]


def run(options: Any) -> list[Table]:
    rows = compare("japanese_vowels", options) + compare("plaid", options)
    notes = [
        f"the default model (bidirectional LSTM, hidden 128), untrained; batches of {BATCH}; a pass = the whole test "
        "split from a list of arrays to probabilities (Trainer.predict: class scores, from its data loader)",
        "the hand-written loop batches in input order (no sorting): the library's gain on PLAID is mostly the "
        "padding its length-sorted batches leave out",
    ]
    return [Table("8. Inference: prediction throughput vs a hand-written evaluation loop", rows, notes)]
