"""Length-aware batching: LengthBucketBatchSampler, the data modules' automatic rule, resuming."""

import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from lstm_plugins.data import (
    collate_sequence_batch,
    ForecastingDataModule,
    LengthBucketBatchSampler,
    SequenceDataModule,
    SpeakerTurnsDataModule,
    length_batching_pays,
    padding_fraction,
)
from lstm_plugins.data._loaders import ResumableDataLoader
from lstm_plugins.data._predict import LengthSortedSampler

LENGTHS = np.random.default_rng(3).integers(5, 60, size=203)


def flat(batches):
    return sorted(i for batch in batches for i in batch)


def epoch(sampler, number):
    sampler.set_epoch(number)
    return list(sampler)


@pytest.mark.parametrize("batch_size, bucket_size", [(16, 8), (7, 1), (32, 100), (500, 4)])
def test_each_sample_once_per_epoch_last_partial_kept(batch_size, bucket_size):
    sampler = LengthBucketBatchSampler(LENGTHS, batch_size, seed=1, bucket_size=bucket_size)
    for number in range(3):
        batches = epoch(sampler, number)
        assert flat(batches) == list(range(len(LENGTHS)))
        assert len(batches) == len(sampler) == -(-len(LENGTHS) // batch_size)
        assert sum(len(b) < batch_size for b in batches) <= 1


def test_drop_last_drops_only_the_partial_batch():
    sampler = LengthBucketBatchSampler(LENGTHS, 16, drop_last=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(LENGTHS) // 16
    assert all(len(b) == 16 for b in batches) and len(set(flat(batches))) == len(flat(batches))


def test_deterministic_from_seed_and_epoch_only():
    a, b = LengthBucketBatchSampler(LENGTHS, 16, seed=5), LengthBucketBatchSampler(LENGTHS, 16, seed=5)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = epoch(a, 2)
    assert torch.equal(state, torch.get_rng_state())  # nothing drawn from the global stream
    torch.manual_seed(123)
    assert epoch(b, 2) == first
    assert epoch(a, 3) != first  # a new order every epoch
    assert epoch(LengthBucketBatchSampler(LENGTHS, 16, seed=6), 2) != first


def test_batches_pad_less_than_random_batches():
    sampler = LengthBucketBatchSampler(LENGTHS, 16, seed=0)
    order = np.random.default_rng(0).permutation(len(LENGTHS))
    random = [order[i : i + 16] for i in range(0, len(order), 16)]
    bucketed = padding_fraction(LENGTHS, list(sampler))
    assert bucketed < 0.5 * padding_fraction(LENGTHS, random)
    # Batch composition still changes between epochs (not one fixed set of batches).
    assert {tuple(sorted(b)) for b in epoch(sampler, 0)} != {tuple(sorted(b)) for b in epoch(sampler, 1)}


@pytest.mark.parametrize("replicas, drop_last", [(2, False), (3, False), (4, True), (5, False)])
def test_ranks_split_without_overlap_and_cover_everything(replicas, drop_last):
    ranks = [
        LengthBucketBatchSampler(LENGTHS, 16, seed=2, num_replicas=replicas, rank=r, drop_last=drop_last)
        for r in range(replicas)
    ]
    for number in range(2):
        shares = [epoch(s, number) for s in ranks]
        assert len({len(share) for share in shares}) == 1  # same number of steps on every rank
        assert all(len(share) == len(s) for share, s in zip(shares, ranks))
        batches = [b for share in shares for b in share]
        distinct = {tuple(b) for b in batches}
        total = -(-len(LENGTHS) // 16)
        if drop_last:
            assert len(distinct) == len(batches) == (len(LENGTHS) // 16) // replicas * replicas
        else:
            # Every sample is covered; only the padding batches (repeats of the first) recur.
            assert set(flat(batches)) == set(range(len(LENGTHS)))
            assert len(distinct) == total and len(batches) - total < replicas
        if not drop_last and total % replicas == 0:
            assert flat(batches) == list(range(len(LENGTHS)))


def test_reads_a_distributed_sampler_as_lightning_injects_it():
    injected = torch.utils.data.DistributedSampler(range(10), num_replicas=3, rank=2, shuffle=True)
    sampler = LengthBucketBatchSampler(LENGTHS, 16, sampler=injected)
    assert (sampler.num_replicas, sampler.rank) == (3, 2)
    sampler.sampler.set_epoch(4)  # what Lightning's _set_sampler_epoch calls
    assert sampler.epoch == 4
    with pytest.raises(ValueError, match="rank"):
        LengthBucketBatchSampler(LENGTHS, 16, num_replicas=2, rank=2)


def test_loader_resumes_mid_epoch_with_the_same_batches():
    dataset = _module(length_batching=True).train_dataset
    def loader():
        return ResumableDataLoader(dataset, batch_sampler=LengthBucketBatchSampler(dataset.lengths, 8, seed=4),
                                   collate_fn=collate_sequence_batch)

    full = loader()
    full.batch_sampler.set_epoch(3)
    reference = [batch.targets.tolist() for batch in full]
    partial = loader()
    partial.batch_sampler.set_epoch(3)
    iterator = iter(partial)
    for _ in range(5):
        next(iterator)
    state = partial.state_dict()
    assert state == {"batches_handed_out": 5, "length_aware": True}
    resumed = loader()
    resumed.load_state_dict(state)
    resumed.batch_sampler.set_epoch(3)
    assert [batch.targets.tolist() for batch in resumed] == reference[5:]
    resumed.batch_sampler.set_epoch(4)  # the next epoch starts from its first batch
    assert len(list(resumed)) == len(reference)


def _sequences(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(n), 3)).astype(np.float32) for n in lengths]


def _module(lengths=LENGTHS, **kwargs):
    sequences = _sequences(lengths)
    labels = np.arange(len(sequences)) % 2
    return SequenceDataModule(sequences, labels, sequences[:40], labels[:40], batch_size=8, **kwargs)


def test_automatic_rule_on_for_spread_lengths_off_for_equal_ones():
    assert length_batching_pays(LENGTHS, 8) and not length_batching_pays([20] * 100, 8)
    assert not length_batching_pays(LENGTHS, 1000)  # one batch: nothing to reorder
    assert not length_batching_pays([20, 21, 22] * 30, 8)  # under 10% padding
    on = _module()  # automatic by default: lengths 5-59 in batches of 8 pay
    assert on.length_batching is None
    assert on.uses_length_batching
    assert isinstance(on.train_dataloader().batch_sampler, LengthBucketBatchSampler)
    assert isinstance(on.val_dataloader().sampler, LengthSortedSampler)
    assert isinstance(on.test_dataloader().sampler, LengthSortedSampler)
    off = _module([20] * 100)
    assert not off.uses_length_batching
    assert isinstance(off.train_dataloader().batch_sampler, torch.utils.data.BatchSampler)
    assert isinstance(off.test_dataloader().sampler, torch.utils.data.SequentialSampler)
    forced = _module(length_batching=False)
    assert not forced.uses_length_batching and forced.train_dataloader().batch_sampler.batch_size == 8
    assert _module([20] * 100, length_batching=True).uses_length_batching
    forecasting = ForecastingDataModule(np.sin(np.arange(200) / 3), lookback=12, horizon=4, seasonality=19)
    assert not forecasting.uses_length_batching
    assert SpeakerTurnsDataModule(num_train=60, num_val=8, num_test=8, batch_size=8).uses_length_batching
    with pytest.raises(TypeError, match="length_batching"):
        _module(length_batching="yes")


def test_automatic_rule_wants_many_padded_steps_not_only_a_padding_share():
    short = np.tile(np.arange(7, 30), 20)  # JapaneseVowels-like: 7-29 steps
    rng = np.random.default_rng(0)
    order = rng.permutation(short.size)  # the rule's own estimate: one permutation from seed 0
    batches = [order[i : i + 16] for i in range(0, short.size, 16)]
    share = padding_fraction(short, batches)
    steps = sum(short[b].max() * b.size for b in batches) / short.size - short.mean()
    assert share > 0.10 and steps < 16  # a large share of few steps
    assert not length_batching_pays(short, 16)
    longer = short * 4  # the same share of padding, four times the padded steps
    assert padding_fraction(longer, batches) == pytest.approx(share) and 4 * steps > 16
    assert length_batching_pays(longer, 16)


def test_evaluation_batches_sorted_by_length():
    dm = _module(length_batching=True)
    lengths = [batch.lengths for batch in dm.test_dataloader()]
    flat_lengths = torch.cat(lengths).tolist()
    assert flat_lengths == sorted(flat_lengths, reverse=True) and len(flat_lengths) == 40


def test_fit_with_length_batching():
    from lstm_plugins.model import LSTMClassifier

    dm = _module(length_batching=True)
    model = LSTMClassifier(3, 2, hidden_size=8)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 * len(dm.train_dataloader())
    assert trainer.train_dataloader.batch_sampler.epoch == 1  # Lightning set the epoch
    assert np.isfinite(trainer.test(model, datamodule=dm, verbose=False)[0]["test/accuracy"])


def test_the_cli_turns_length_batching_on_for_a_config(tmp_path, monkeypatch):
    from lstm_plugins import cli

    monkeypatch.chdir(tmp_path)
    datamodule, _, _ = cli.build_run({"model": {"hidden_size": 8}, "data": {"length_batching": True}})
    assert datamodule.uses_length_batching
    datamodule, _, _ = cli.build_run({"model": {"hidden_size": 8}})
    assert datamodule.length_batching is None  # automatic by default ...
    assert not datamodule.uses_length_batching  # ... and off for JapaneseVowels' short sequences
    datamodule, _, _ = cli.build_run({"model": {"hidden_size": 8}, "data": {"dataset": "plaid"}})
    assert datamodule.uses_length_batching  # PLAID: 100-1344 steps
    datamodule, _, _ = cli.build_run({"model": {"hidden_size": 8},
                                      "data": {"dataset": "plaid", "length_batching": False}})
    assert not datamodule.uses_length_batching
    labelling, _, _ = cli.build_run({"task": "sequence_labelling", "model": {"hidden_size": 8},
                                     "data": {"num_train": 40, "num_val": 8, "num_test": 8}})
    assert labelling.uses_length_batching  # automatic: speaker turns vary in length


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_ranks_split_each_epochs_length_sorted_batches(tmp_path):
    """A real 2-process gloo fit: Lightning rebuilds the batch sampler for each rank; the ranks'
    batches are the single-process batches of the epoch, dealt out alternately."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("ddp_length_batching.py")
    completed = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [rank["sampler"] for rank in ranks] == [["LengthBucketBatchSampler", 2, 0],
                                                   ["LengthBucketBatchSampler", 2, 1]]
    lengths = np.array(ranks[0]["lengths"])
    single = LengthBucketBatchSampler(lengths, 4, seed=3, num_replicas=1, rank=0)
    orders = []
    for number in range(3):
        key = str(number)
        reference = epoch(single, number)
        assert len(reference) == 12
        for rank, record in enumerate(ranks):
            assert record["planned"][key] == reference[rank::2]
            # the model was given those batches
            assert record["seen"][key] == [sorted(lengths[batch].tolist()) for batch in record["planned"][key]]
        first, second = ({i for batch in record["planned"][key] for i in batch} for record in ranks)
        assert not first & second and first | second == set(range(len(lengths)))
        orders.append(ranks[0]["planned"][key])
    assert orders[0] != orders[1] != orders[2]
    random_batches = [list(range(start, start + 4)) for start in range(0, len(lengths), 4)]
    assert padding_fraction(lengths, reference) < padding_fraction(lengths, random_batches) / 2


def test_the_cli_regression_data_takes_length_batching(tmp_path, monkeypatch):
    """Regression `.ts` files with spread lengths: automatic by default, `false` turns it off."""
    from lstm_plugins import cli
    from test_regression import REGRESSION_HEADER

    rng = np.random.default_rng(0)
    sequences = [rng.normal(size=(int(n), 2)) for n in rng.integers(20, 300, size=64)]
    rows = "".join(":".join(",".join(repr(float(v)) for v in column) for column in s.T) + f":{float(s[0, 0])!r}\n"
                   for s in sequences)
    (tmp_path / "train.ts").write_text(REGRESSION_HEADER + rows)
    monkeypatch.chdir(tmp_path)

    def data(**options):
        config = {"task": "regression", "model": {"hidden_size": 4}, "data": {"train": "train.ts", **options}}
        return cli.build_run(config)[0]

    assert data().uses_length_batching  # 20-300 steps: pays
    assert not data(length_batching=False).uses_length_batching
    assert not data(dataset="tecator", train=None).uses_length_batching  # equal lengths


def test_resuming_mid_epoch_in_another_batching_mode_warns():
    dataset = _module(length_batching=True).train_dataset
    bucketed = ResumableDataLoader(dataset, batch_sampler=LengthBucketBatchSampler(dataset.lengths, 8),
                                   collate_fn=collate_sequence_batch)
    random = ResumableDataLoader(dataset, batch_size=8, shuffle=True, collate_fn=collate_sequence_batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bucketed.load_state_dict({"batches_handed_out": 5, "length_aware": True})
        random.load_state_dict({"batches_handed_out": 5, "length_aware": False})
        random.load_state_dict({"batches_handed_out": 5})  # written before the record: random batches then
        bucketed.load_state_dict({"batches_handed_out": 0})  # at an epoch boundary nothing is skipped
    for loader, state in ((bucketed, {"batches_handed_out": 5, "length_aware": False}),
                          (random, {"batches_handed_out": 5, "length_aware": True}),
                          (bucketed, {"batches_handed_out": 5})):
        with pytest.warns(UserWarning, match="length_batching"):
            loader.load_state_dict(state)


def test_tuning_folds_decide_length_batching_once_for_all_folds():
    from lstm_plugins.tune._folds import fold_datamodules

    module = _module(length_batching=None)
    folds = fold_datamodules(module, 3, 0, 8)
    assert [fold.length_batching for fold in folds] == [True] * 3  # resolved, not left to each fold
    assert [fold.length_batching for fold in fold_datamodules(module, 3, 0, 8, length_batching=False)] == [False] * 3
    equal = fold_datamodules(_module([20] * 100, length_batching=None), 3, 0, 8)
    assert [fold.length_batching for fold in equal] == [False] * 3
