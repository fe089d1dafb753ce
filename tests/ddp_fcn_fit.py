"""Train an LSTM-FCN with 2-process DDP on CPU (gloo), test, and save the weights and metrics.

Run as a script (``python tests/ddp_fcn_fit.py OUT_DIR``): Lightning's ``ddp`` strategy launches
the second process by running this same command again.
"""

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import ArchiveDataModule
from lstm_plugins.plugins._fcn_layers import MaskedBatchNorm1d

STACK = [
    {"fcn_branch": {"filters": [6, 10, 6]}},
    {"summary": {"mode": "mean"}},
    {"dropout": {"output": 0.2}},
    {"gradient_clipping": {"threshold": 1.0}},
]


def norm_case() -> tuple[MaskedBatchNorm1d, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A masked batch norm, a variable-length batch of 6, its mask and per-output loss weights."""
    torch.manual_seed(0)
    values = (torch.randn(6, 3, 9) * 2 + 1).requires_grad_()
    mask = (torch.arange(9) < torch.tensor([9, 2, 5, 1, 9, 4]).unsqueeze(1)).unsqueeze(1)
    return MaskedBatchNorm1d(3), values, mask, torch.arange(54.0).reshape(6, 1, 9)


def synchronised_norm(rank: int) -> dict:
    """This process's half of the batch through the masked batch norm, in the process group."""
    norm, values, mask, weights = norm_case()
    rows = slice(3 * rank, 3 * rank + 3)
    (norm(values[rows], mask[rows]) * weights[rows]).sum().backward()
    return {"grad": values.grad[rows].tolist(), "weight_grad": norm.weight.grad.tolist(),
            "running_mean": norm.running_mean.tolist()}


def main(output: Path) -> None:
    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True, verbose=False)
    datamodule = ArchiveDataModule("gun_point", batch_size=16, seed=0)
    model = LSTMClassifier(1, 2, hidden_size=8, learning_rate=0.01, techniques=STACK)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         deterministic=True)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    results = {"test/accuracy": model.test_results["test/accuracy"].item(), "world_size": trainer.world_size,
               "stack": STACK}
    (output / f"metrics_rank{trainer.global_rank}.json").write_text(json.dumps(results))
    norm = synchronised_norm(trainer.global_rank)
    (output / f"norm_rank{trainer.global_rank}.json").write_text(json.dumps(norm))
    if trainer.is_global_zero:
        torch.save(model.state_dict(), output / "weights.pt")


if __name__ == "__main__":
    from lstm_plugins.training import end_process_group

    main(Path(sys.argv[1]))
    end_process_group()
