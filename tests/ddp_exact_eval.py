"""2-process DDP on CPU (gloo) with evaluation splits of 3 sequences, to check that every sequence
is scored exactly once (no padded duplicates) and that checkpoints go through the atomic IO.

Run as a script (``python tests/ddp_exact_eval.py OUT_DIR``; Lightning's ``ddp`` strategy runs the
same command again for the second process). Each rank writes ``OUT_DIR/rank{r}.json``: the test
metrics of the untrained model, the validation metrics after one epoch, its predictions of the
test split, the checkpoint IO's class; rank 0 also writes the trained weights. The test imports :func:`build`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import SequenceDataModule


VAL_FRACTION = 0.25  # 3 of the 10 training sequences (split per class)


def build() -> tuple[LSTMClassifier, SequenceDataModule]:
    """The model (seeded) and the data: 7 training, 3 validation and 3 test sequences. The test
    labels are the untrained model's predictions with the first one changed: its accuracy over
    the 3 is exactly 2/3, and a scored duplicate would make it 1/2 or 3/4."""
    from parity_script import _sequences

    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    model = LSTMClassifier(3, 3, hidden_size=8)
    test, labels = _sequences(3, seed=5)

    def data(labels):
        return SequenceDataModule(*_sequences(10, seed=4), test, labels, num_classes=3,
                                  val_fraction=VAL_FRACTION, batch_size=1, seed=0)

    unlabelled = data(labels)
    unlabelled.setup("test")  # the features as the model sees them (standardised)
    with torch.no_grad():
        predicted = [int(model(item.features, item.lengths).argmax()) for item in unlabelled.test_dataset]
    labels = np.array(predicted)
    labels[0] = (labels[0] + 1) % 3
    return model, data(labels)


def main(output: Path) -> None:
    model, datamodule = build()
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                         callbacks=[ModelCheckpoint(dirpath=output / "checkpoints", save_last=True)],
                         enable_progress_bar=False, enable_model_summary=False, deterministic=True)
    trainer.test(model, datamodule=datamodule, verbose=False)
    tested = {name: value.tolist() for name, value in model.test_results.items()}
    test_batches = list(trainer.num_test_batches)
    trainer.fit(model, datamodule=datamodule)
    validated = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
    predicted = torch.cat(trainer.predict(model, datamodule=datamodule))  # Lightning's unpadded shards
    record = {"test": tested, "validate": validated, "world_size": trainer.world_size,
              "checkpoint_io": type(trainer.strategy.checkpoint_io).__name__,
              "test_batches": test_batches, "val_batches": list(trainer.num_val_batches),
              "predictions": predicted.tolist()}
    (output / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
    if trainer.is_global_zero:
        torch.save(model.state_dict(), output / "weights.pt")


if __name__ == "__main__":
    from lstm_plugins.training import end_process_group

    main(Path(sys.argv[1]))
    end_process_group()
