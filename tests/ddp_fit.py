"""Train with 2-process DDP on CPU (gloo), test, and save the weights and the test metrics.

Run as a script (``python tests/ddp_fit.py OUT_DIR``): Lightning's ``ddp`` strategy launches the
second process by running this same command again.
"""

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import JapaneseVowelsDataModule

STACK = [
    {"gradient_clipping": {"threshold": 1.0}},
    {"dropout": {"output": 0.2}},
    {"l2": {"weight": 1e-5}},
    {"grad_norm": {"log_every_n_steps": 2}},
]


def main(output: Path) -> None:
    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True, verbose=False)
    datamodule = JapaneseVowelsDataModule(batch_size=32, seed=0)
    model = LSTMClassifier(12, 9, hidden_size=32, bidirectional=True, learning_rate=0.005, techniques=STACK)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    results = {name: value.tolist() for name, value in model.test_results.items()}
    results["world_size"] = trainer.world_size
    (output / f"metrics_rank{trainer.global_rank}.json").write_text(json.dumps(results))
    if trainer.is_global_zero:
        torch.save(model.state_dict(), output / "weights.pt")


if __name__ == "__main__":
    from lstm_plugins.training import end_process_group

    main(Path(sys.argv[1]))
    end_process_group()
