import os
import warnings

import pytest
import torch

# Two cores: keep each test process to one intra-op thread so DDP workers don't oversubscribe.
torch.set_num_threads(1)
os.environ.setdefault("PYTHONHASHSEED", "0")
warnings.filterwarnings("ignore", ".*does not have many workers.*")


def make_batch(lengths, num_features=12, num_classes=9, seed=0):
    """A zero-padded SequenceBatch with random features and labels."""
    from lstm_plugins.data import SequenceBatch

    generator = torch.Generator().manual_seed(seed)
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    features = torch.randn(len(lengths), int(lengths.max()), num_features, generator=generator)
    for index, length in enumerate(lengths):
        features[index, length:] = 0
    targets = torch.randint(0, num_classes, (len(lengths),), generator=generator)
    return SequenceBatch(features, lengths, targets)


@pytest.fixture
def batch():
    return make_batch([29, 7, 15, 22, 9, 29, 12, 18])


def quiet_trainer(**options):
    import pytorch_lightning as pl

    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    defaults.update(options)
    return pl.Trainer(**defaults)
