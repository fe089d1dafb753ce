"""Property-based tests of the data path over random shapes, lengths and dtypes."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import SequenceDataModule

DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.int64])


@st.composite
def datasets(draw):
    num_features = draw(st.integers(1, 5))
    num_classes = draw(st.integers(2, 4))
    per_class = draw(st.integers(2, 5))
    dtype = draw(DTYPES)
    lengths = draw(st.lists(st.integers(1, 12), min_size=num_classes * per_class, max_size=num_classes * per_class))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    sequences = [(rng.normal(size=(n, num_features)) * 3).astype(dtype) for n in lengths]
    labels = np.repeat(np.arange(num_classes), per_class)
    return sequences, labels, num_features, num_classes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets(), batch_size=st.integers(1, 7), val_fraction=st.sampled_from([0.0, 0.25]))
def test_batches_are_exact_padded_copies_of_the_standardised_sequences(data, batch_size, val_fraction):
    sequences, labels, num_features, num_classes = data
    datamodule = SequenceDataModule(sequences, labels, batch_size=batch_size, val_fraction=val_fraction, seed=0)
    assert datamodule.num_features == num_features and datamodule.num_classes == num_classes
    seen = 0
    for batch in datamodule.train_dataloader():
        assert batch.features.dtype == torch.float32 and batch.lengths.dtype == torch.int64
        assert batch.features.shape[1] == int(batch.lengths.max())  # trimmed to the batch
        steps = torch.arange(batch.features.shape[1])
        padding = steps.unsqueeze(0) >= batch.lengths.unsqueeze(1)
        assert (batch.features[padding] == 0).all()  # padding is exactly zero
        assert ((batch.targets >= 0) & (batch.targets < num_classes)).all()
        seen += batch.targets.numel()
    assert seen == len(datamodule.train_dataset)
    # Every batch row is the standardised source sequence, value for value: the training split's
    # statistics computed here by hand, each sequence cast to float32 as the data module reads it.
    train_sources = [np.asarray(sequences[i], dtype=np.float32) for i in datamodule.train_indices]
    stacked = np.concatenate(train_sources).astype(np.float64)
    np.testing.assert_allclose(datamodule.feature_mean, stacked.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(datamodule.feature_std, np.maximum(stacked.std(0), 1e-8), rtol=1e-6, atol=1e-6)
    expected = sorted(((source - datamodule.feature_mean) / datamodule.feature_std).astype(np.float32).tobytes()
                      for source in train_sources)
    rows = []
    for batch in datamodule.train_dataloader():
        for row, length in zip(batch.features, batch.lengths):
            rows.append(row[: int(length)].numpy().tobytes())
    assert sorted(rows) == expected
    # Standardisation uses the training split's statistics only.
    train = datamodule.train_dataset
    valid = torch.arange(train.features.shape[1]).unsqueeze(0) < train.lengths.unsqueeze(1)
    values = train.features[valid].double()
    constant = values.std(0, unbiased=False) < 1e-6
    assert torch.allclose(values.mean(0), torch.zeros(num_features, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(values.std(0, unbiased=False)[~constant], torch.ones(int((~constant).sum()), dtype=torch.float64), atol=1e-2)


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 15), min_size=1, max_size=6),
    num_features=st.integers(1, 4),
    bidirectional=st.booleans(),
    num_layers=st.integers(1, 2),
    seed=st.integers(0, 1000),
)
def test_a_sample_output_never_depends_on_padding_or_batch_mates(lengths, num_features, bidirectional, num_layers, seed):
    torch.manual_seed(seed)
    model = LSTMClassifier(num_features, 3, hidden_size=5, num_layers=num_layers, bidirectional=bidirectional).eval()
    lengths_tensor = torch.tensor(lengths)
    features = torch.randn(len(lengths), max(lengths) + 2, num_features)  # extra garbage padding
    with torch.no_grad():
        batched = model(features, lengths_tensor)
        for index, length in enumerate(lengths):
            alone = model(features[index : index + 1, :length], torch.tensor([length]))
            torch.testing.assert_close(batched[index], alone[0], atol=1e-5, rtol=0)


@settings(max_examples=30, deadline=None)
@given(data=datasets(), where=st.integers(0, 10_000), value=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_a_non_finite_value_anywhere_is_named(data, where, value):
    sequences, labels, _, _ = data
    sequences = [s.astype(np.float32) for s in sequences]
    index = where % len(sequences)
    sequences[index][where % len(sequences[index]), 0] = value
    with pytest.raises(ValueError, match=rf"Expected `train_sequences\[{index}\]` to contain only finite"):
        SequenceDataModule(sequences, labels)
