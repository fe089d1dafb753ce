"""Real training: the default stack learns JapaneseVowels; binary classification works."""

import numpy as np
import pytest
import torch
from conftest import quiet_trainer

from lstm_plugins import LSTMClassifier
from lstm_plugins.cli import DEFAULT_CONFIG
from lstm_plugins.data import JapaneseVowelsDataModule, SequenceDataModule

pytestmark = [pytest.mark.slow]


def test_default_stack_learns_japanese_vowels():
    torch.manual_seed(0)
    datamodule = JapaneseVowelsDataModule(batch_size=16, seed=0)
    model = LSTMClassifier(12, 9, hidden_size=32, bidirectional=True, learning_rate=0.005,
                           techniques=DEFAULT_CONFIG["model"]["techniques"])
    trainer = quiet_trainer(max_epochs=12)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.logged_metrics["val/accuracy"].item() > 0.8
    trainer.test(model, datamodule=datamodule, verbose=False)
    results = model.test_results
    assert results["test/accuracy"].item() > 0.85  # chance is 0.11
    assert results["test/recall_per_class"].shape == (9,)
    # Macro recall is the unweighted mean of the per-class recalls.
    assert results["test/recall"].item() == pytest.approx(results["test/recall_per_class"].mean().item(), abs=1e-6)


def test_binary_classification_with_variable_lengths():
    """Label = whether the sequence's mean is positive; lengths 3..40."""
    generator = np.random.default_rng(0)
    sequences, labels = [], []
    for _ in range(300):
        label = int(generator.integers(2))
        length = int(generator.integers(3, 41))
        values = generator.normal(0.6 if label else -0.6, 1.0, size=(length, 3)).astype(np.float32)
        sequences.append(values)
        labels.append(label)
    labels = np.array(labels)
    datamodule = SequenceDataModule(sequences[:200], labels[:200], sequences[200:], labels[200:], batch_size=32)
    torch.manual_seed(0)
    model = LSTMClassifier(3, 2, hidden_size=16, learning_rate=0.01, techniques=["gradient_clipping"])
    trainer = quiet_trainer(max_epochs=8)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert model.test_results["test/accuracy"].item() > 0.9
