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


def sigkill_when_marked(process, marker, timeout, waiting_for, output):
    """SIGKILL ``process`` as soon as it has written the file ``marker`` (it has reached the moment
    a fault test kills it at); fail with ``output()`` if it exits first, or after ``timeout`` s.
    The marker counts once it holds something: a kill between its creation and its write would
    leave it empty."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    try:
        while not (marker.exists() and marker.stat().st_size > 0):
            assert process.poll() is None, output()[-4000:]
            assert time.monotonic() < deadline, f"the run never reached {waiting_for}"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL


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


class RecordingLogger:
    """A Lightning logger keeping every ``log_metrics`` call: ``rows`` is a list of (step, metrics)."""

    def __new__(cls):
        from pytorch_lightning.loggers import Logger

        class _Recording(Logger):
            def __init__(self):
                super().__init__()
                self.rows = []

            @property
            def name(self):
                return "recording"

            @property
            def version(self):
                return 0

            def log_metrics(self, metrics, step=None):
                self.rows.append((step, dict(metrics)))

            def log_hyperparams(self, params, *args, **kwargs):
                pass

            def steps_with(self, prefix):
                """The steps at which a metric starting with ``prefix`` was logged."""
                return [step for step, metrics in self.rows if any(k.startswith(prefix) for k in metrics)]

            def values(self, name):
                """``[(step, value)]`` of one metric."""
                return [(step, metrics[name]) for step, metrics in self.rows if name in metrics]

        return _Recording()
