"""2-process DDP on CPU (gloo) with length-aware batching, to check that the ranks split each
epoch's length-sorted batches between them: no sample on both ranks, every sample on one.

Run as a script (``python tests/ddp_length_batching.py OUT_DIR``; Lightning's ``ddp`` strategy
runs the same command again for the second process). Each rank writes ``OUT_DIR/rank{r}.json``:
per epoch, the batches its sampler hands out (dataset indices) and the lengths of the batches
the model was actually given.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import SequenceDataModule
from lstm_plugins.training import end_process_group

EPOCHS = 3
BATCH_SIZE = 4
TRAIN = 48  # 12 batches: an even count, so no rank repeats a batch to even out the steps


def build() -> SequenceDataModule:
    """Spread lengths (3-80 steps), 2 classes, no validation split."""
    rng = np.random.default_rng(7)
    lengths = rng.integers(3, 81, size=TRAIN)
    sequences = [rng.normal(size=(int(n), 3)).astype(np.float32) for n in lengths]
    labels = np.arange(TRAIN) % 2
    return SequenceDataModule(sequences, labels, sequences[:4], labels[:4], val_fraction=0.0,
                              batch_size=BATCH_SIZE, seed=3, length_batching=True)


class Record(pl.Callback):
    def __init__(self) -> None:
        self.planned: dict[int, list[list[int]]] = {}
        self.seen: dict[int, list[list[int]]] = defaultdict(list)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler = trainer.train_dataloader.batch_sampler
        self.sampler = (type(sampler).__name__, sampler.num_replicas, sampler.rank)
        self.planned[trainer.current_epoch] = [list(batch) for batch in sampler]

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self.seen[trainer.current_epoch].append(sorted(batch.lengths.tolist()))


def main(output: Path) -> None:
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    datamodule = build()
    record = Record()
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS, logger=False,
                         enable_checkpointing=False, callbacks=[record], limit_val_batches=0,
                         enable_progress_bar=False, enable_model_summary=False, deterministic=True)
    trainer.fit(LSTMClassifier(3, 2, hidden_size=4), datamodule=datamodule)
    result = {"sampler": record.sampler, "planned": record.planned, "seen": record.seen,
              "lengths": datamodule.train_dataset.lengths.tolist()}
    (output / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))
    end_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
