"""Sequence labelling: a class per valid step; padding never counts; bad targets refused by name.

Run as a script (``python tests/test_sequence_labelling.py OUT_DIR``), this file is the 2-process
DDP fit the distributed test launches (Lightning's ``ddp`` strategy starts the second process by
running the same command again).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import quiet_trainer
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader

from lstm_plugins.data import SequenceBatch, load_japanese_vowels
from lstm_plugins.data._labelling import SequenceLabellingDataModule
from lstm_plugins.data._speaker_turns import SpeakerTurnsDataModule, speaker_turns
from lstm_plugins.data._step_labels import StepLabelledDataset, collate_step_batch
from lstm_plugins.model import SequenceModel
from lstm_plugins.model._labelling import IGNORE_INDEX, LSTMSequenceLabeller, SequenceLabellingTask

pytestmark = pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 4


def labelled_batch(lengths, num_features=3, num_classes=NUM_CLASSES, seed=0, pad_features=0.0, pad_target=IGNORE_INDEX):
    """A padded SequenceBatch with random features and per-step labels; padded steps hold
    ``pad_features`` (a value, or ``"random"``) and ``pad_target`` (a value, or ``"random"``)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    steps = int(lengths.max())
    features = torch.randn(len(lengths), steps, num_features, generator=generator)
    targets = torch.randint(0, num_classes, (len(lengths), steps), generator=generator)
    padded = torch.arange(steps) >= lengths[:, None]
    noise = torch.randn(features.shape, generator=torch.Generator().manual_seed(seed + 99)) * 100
    features[padded] = noise[padded] if pad_features == "random" else pad_features
    random_targets = torch.randint(0, num_classes, targets.shape, generator=torch.Generator().manual_seed(seed + 7))
    targets[padded] = random_targets[padded] if pad_target == "random" else pad_target
    return SequenceBatch(features, lengths, targets)


def batches_loader(batches):
    return DataLoader(batches, batch_size=None, collate_fn=lambda batch: batch)


def labeller(bidirectional=True, **options):
    torch.manual_seed(0)
    options = {"hidden_size": 8, **options}
    return LSTMSequenceLabeller(3, NUM_CLASSES, bidirectional=bidirectional, **options)


# --- loss and metrics by hand ----------------------------------------------------------------


def test_loss_and_metrics_equal_a_hand_computation():
    task = SequenceLabellingTask(3)
    logits = torch.tensor([
        [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]],
        [[0.0, 2.0, 0.0], [5.0, 5.0, 5.0], [9.0, 0.0, 0.0]],
    ])
    targets = torch.tensor([[0, 2, 2], [1, IGNORE_INDEX, IGNORE_INDEX]])
    # Valid steps: (0,0)->0, (0,1)->2, (0,2)->2, (1,0)->1.
    def nll(row, label):
        return -(row[label] - torch.logsumexp(row, 0)).item()

    hand = np.mean([nll(logits[0, 0], 0), nll(logits[0, 1], 2), nll(logits[0, 2], 2), nll(logits[1, 0], 1)])
    assert task.loss(logits, targets).item() == pytest.approx(hand, rel=1e-6)
    assert int(task.loss_weight(targets)) == 4

    metrics = task.metrics({})
    metrics.update(*task.metric_inputs(logits, targets))
    results = metrics.compute()
    # Predicted 0, 1, 2, 1 against 0, 2, 2, 1: three of four frames right.
    assert results["accuracy"].item() == pytest.approx(0.75)
    # Per class: 0 -> P1 R1 F1 1; 1 -> P 1/2 R1 F1 2/3; 2 -> P1 R 1/2 F1 2/3.
    assert results["f1_per_class"].tolist() == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert results["f1"].item() == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert results["recall_per_class"].tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert results["recall"].item() == pytest.approx(2.5 / 3)


def test_validation_loss_is_the_mean_over_every_valid_step_of_the_split():
    model = labeller().eval()
    batches = [labelled_batch([5, 2, 4], seed=1), labelled_batch([1, 6], seed=2)]
    results = quiet_trainer().validate(model, dataloaders=batches_loader(batches), verbose=False)[0]
    total, steps = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            logits = model(batch.features, batch.lengths)
            for row, length in enumerate(batch.lengths.tolist()):
                total += F.cross_entropy(logits[row, :length], batch.targets[row, :length], reduction="sum").item()
                steps += length
    assert results["val/loss"] == pytest.approx(total / steps, rel=1e-5)


# --- padding never counts ---------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_per_step_outputs_do_not_depend_on_padding_or_batch_mates(bidirectional):
    model = labeller(bidirectional, num_layers=2).eval()
    batch = labelled_batch([7, 3, 5, 1, 7], pad_features="random")
    clean = labelled_batch([7, 3, 5, 1, 7])
    with torch.no_grad():
        together = model(batch.features, batch.lengths)
        zero_padded = model(clean.features, clean.lengths)
        for row, length in enumerate(batch.lengths.tolist()):
            alone = model(batch.features[row : row + 1, :length], batch.lengths[row : row + 1])
            torch.testing.assert_close(together[row, :length], alone[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(together[row, :length], zero_padded[row, :length], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_changing_padded_values_or_padded_targets_changes_nothing(bidirectional):
    lengths = [6, 2, 4, 1]
    clean = labelled_batch(lengths)
    dirty = labelled_batch(lengths, pad_features="random", pad_target="random")
    assert not torch.equal(clean.targets, dirty.targets)
    outcomes = []
    for batch in (clean, dirty):
        model = labeller(bidirectional).train()
        trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
        trainer.fit(model, train_dataloaders=batches_loader([batch]))
        # The gradient of the step taken: the change of the weights.
        weights = {name: value.detach().clone() for name, value in model.state_dict().items()}
        model.eval()
        validated = quiet_trainer().validate(model, dataloaders=batches_loader([batch]), verbose=False)[0]
        quiet_trainer().test(model, dataloaders=batches_loader([batch]), verbose=False)
        outcomes.append((weights, validated, {k: v.tolist() for k, v in model.test_results.items()}))
    (weights_a, val_a, test_a), (weights_b, val_b, test_b) = outcomes
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], atol=1e-6, rtol=1e-6)
    assert val_a == pytest.approx(val_b, rel=1e-6)
    assert test_a.keys() == test_b.keys()
    for name in test_a:
        assert test_a[name] == pytest.approx(test_b[name], rel=1e-6), name


def test_step_targets_mask_every_padded_step():
    batch = labelled_batch([3, 1], pad_target="random")
    masked = SequenceLabellingTask(NUM_CLASSES).step_targets(batch.targets, batch.lengths)
    assert masked[1, 1:].tolist() == [IGNORE_INDEX, IGNORE_INDEX]
    assert torch.equal(masked[0], batch.targets[0])


# --- bad targets: at the door, or at the first step ---------------------------------------------


def _sequences(lengths=(4, 2, 3)):
    rng = np.random.default_rng(0)
    return [rng.normal(size=(n, 3)) for n in lengths]


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        ([[0, 1, 1, 0], [1, 1], [0, 1]], ValueError, "`train_labels[2]` to have one label per step of `train_sequences[2]` (3), but got 2"),
        ([[0, 1, 1, 0], [1, 1], [0.0, 1.0, 1.0]], TypeError, "`train_labels[2]` to hold integer class indices, but got dtype float64"),
        ([0, 1, 1], ValueError, "`train_labels[0]` to be a 1-D array (one label per step)"),
        ([[0, 1, 1, 0], [1, 1]], ValueError, "one label array per sequence in `train_sequences` (3), but got 2"),
        ([[0, 1, 1, 0], [1, 5], [0, 1, 1]], ValueError, "`train_labels` in [0, 3), but `train_labels[1]` is 5 at step 1"),
        ([[0, 1, 1, 0], [1, 1], [0, -1, 1]], ValueError, "`train_labels` in [0, 3), but `train_labels[2]` is -1 at step 1"),
    ],
)
def test_bad_labels_are_refused_at_the_door(labels, error, message):
    with pytest.raises(error) as raised:
        SequenceLabellingDataModule(_sequences(), labels, num_classes=3, val_fraction=0)
    assert message in str(raised.value)


def test_a_test_label_outside_the_classes_is_named_by_split():
    with pytest.raises(ValueError, match=r"`test_labels\[0\]` is 3 at step 0"):
        SequenceLabellingDataModule(_sequences(), [[0, 1, 1, 0], [1, 1], [0, 1, 1]], _sequences((2,)), [[3, 0]],
                                    num_classes=3, val_fraction=0)


@pytest.mark.parametrize(
    ("targets", "error", "message"),
    [
        (lambda b: b.targets[:, 0].clamp(min=0), ValueError, "one label per sequence: sequence labelling needs one label per step"),
        (lambda b: b.targets[:, :-1], ValueError, "Expected per-step targets of shape (batch, time) = (3, 5)"),
        (lambda b: b.targets.float(), TypeError, "integer class indices"),
        (lambda b: torch.where(b.targets == 2, NUM_CLASSES, b.targets), ValueError, f"in [0, {NUM_CLASSES})"),
    ],
)
def test_bad_targets_are_refused_at_the_first_step(targets, error, message):
    batch = labelled_batch([5, 3, 4])
    batch = batch._replace(targets=targets(batch))
    with pytest.raises(error) as raised:
        quiet_trainer(max_steps=1, limit_val_batches=0).fit(labeller(), train_dataloaders=batches_loader([batch]))
    assert message in str(raised.value)


def test_a_given_validation_split_excludes_val_fraction():
    labels = [[0, 1, 1, 0], [1, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match="either `val_sequences` or `val_fraction`"):
        SequenceLabellingDataModule(_sequences(), labels, val_sequences=_sequences((2,)), val_labels=[[0, 1]],
                                    val_fraction=0.1)
    datamodule = SequenceLabellingDataModule(_sequences(), labels, val_sequences=_sequences((2,)), val_labels=[[0, 1]])
    assert (len(datamodule.train_dataset), len(datamodule.val_dataset)) == (3, 1)


def test_the_model_and_the_data_must_agree_on_the_classes():
    datamodule = SequenceLabellingDataModule(_sequences(), [[0, 1, 1, 0], [1, 1], [0, 2, 1]], val_fraction=0)
    with pytest.raises(ValueError, match="`num_classes`=4 but the data module has `num_classes`=3"):
        quiet_trainer(max_steps=1).fit(labeller(), datamodule=datamodule)


# --- the data ----------------------------------------------------------------------------------


def test_dataset_pads_targets_with_the_ignore_index_and_trims_them_with_the_features():
    dataset = StepLabelledDataset(_sequences((4, 2, 3)), [[0, 1, 1, 0], [1, 1], [0, 2, 1]])
    batch = collate_step_batch(dataset.__getitems__([1, 2]))
    assert batch.features.shape[:2] == batch.targets.shape == (2, 3)
    assert batch.targets.tolist() == [[1, 1, IGNORE_INDEX], [0, 2, 1]]
    assert dataset[1].targets.tolist() == [[1, 1]]
    concatenated = collate_step_batch([dataset[1], dataset[0]])
    assert concatenated.targets.tolist() == [[1, 1, IGNORE_INDEX, IGNORE_INDEX], [0, 1, 1, 0]]


def test_standardisation_is_fitted_on_the_training_split_only():
    rng = np.random.default_rng(0)
    train = [rng.normal(5.0, 2.0, size=(int(n), 3)) for n in rng.integers(2, 9, size=30)]
    test = [rng.normal(-50.0, 9.0, size=(6, 3))]
    labels = [np.zeros(len(s), dtype=np.int64) + (i % 2) for i, s in enumerate(train)]
    datamodule = SequenceLabellingDataModule(train, labels, test, [np.array([0, 1, 0, 1, 0, 1])], val_fraction=0.2)
    kept = np.setdiff1d(np.arange(30), np.sort(np.random.default_rng(0).permutation(30)[:6]))
    values = np.concatenate([train[i] for i in kept])
    np.testing.assert_allclose(datamodule.feature_mean, values.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(datamodule.feature_std, values.std(axis=0), rtol=1e-5)
    assert len(datamodule.train_dataset) == 24 and len(datamodule.val_dataset) == 6


def test_speaker_turns_are_built_from_their_own_split_and_deterministic():
    train, test = load_japanese_vowels()
    sequences, labels = speaker_turns(test, 20, seed=3)
    again, again_labels = speaker_turns(test, 20, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(sequences, again))
    assert all(np.array_equal(a, b) for a, b in zip(labels, again_labels))
    known = {u.tobytes() for u in test.sequences}
    train_known = {u.tobytes() for u in train.sequences}
    for sequence, label in zip(sequences, labels):
        changes = np.flatnonzero(np.diff(label)) + 1
        turns = np.split(np.arange(len(label)), changes)
        assert 2 <= len(turns) <= 4
        assert len({int(label[t[0]]) for t in turns}) == len(turns)  # different speakers
        for turn in turns:
            utterance = sequence[turn].tobytes()
            assert utterance in known and utterance not in train_known


def test_speaker_turns_data_module_keeps_validation_utterances_out_of_training():
    datamodule = SpeakerTurnsDataModule(num_train=60, num_val=10, num_test=12, recording_seed=1)
    assert (datamodule.num_features, datamodule.num_classes) == (12, 9)
    assert (len(datamodule.train_dataset), len(datamodule.val_dataset), len(datamodule.test_dataset)) == (60, 10, 12)
    again = SpeakerTurnsDataModule(num_train=60, num_val=10, num_test=12, recording_seed=1, seed=5)
    assert torch.equal(datamodule.test_dataset.features, again.test_dataset.features)
    train_frames = {tuple(np.round(r, 4)) for r in datamodule._train.values}
    val_frames = {tuple(np.round(r, 4)) for r in datamodule._val.values}
    assert not train_frames & val_frames


# --- the fused kernel, techniques, checkpoints ---------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_labelling_training_step_runs_the_fused_kernel(bidirectional):
    model = labeller(bidirectional, num_layers=2).train()
    batch = labelled_batch([7, 3, 5, 1, 7])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.training_step(batch, 0).backward()
    events = prof.events()
    lstm_calls = [e for e in events if e.name == "aten::lstm"]
    assert lstm_calls
    for call in lstm_calls:
        assert "aten::mkldnn_rnn_layer" in {child.name for child in call.cpu_children}
    fused = [e for e in events if e.name == "aten::mkldnn_rnn_layer"]
    assert len(fused) == 2 * (2 if bidirectional else 1)


STACK = [
    "initialization",
    {"dropout": {"input": 0.1, "between_layers": 0.1, "output": 0.2}},
    {"locked_dropout": {"input": 0.1, "output": 0.2}},
    {"weight_drop": {"probability": 0.2}},
    {"l2": {"weight": 1e-4, "parameters": ["head.*"]}},
    {"weight_decay": {"weight_decay": 0.01, "exclude": ["head.*"]}},
    {"activation_regularization": {"alpha": 0.5, "beta": 0.5}},
    {"grad_norm": {"log_every_n_steps": 2}},
    {"exploding_gradients": {"warmup_steps": 3, "log_every_n_steps": 2}},
    {"gradient_reach": {"log_every_n_steps": 2}},
    {"gate_saturation": {"log_every_n_steps": 2}},
    "nonfinite_guard",
]


@pytest.mark.filterwarnings("ignore:Zoneout runs the LSTM")
@pytest.mark.parametrize(
    "extra",
    [[{"auto_clipping": {"percentile": 50, "history_size": 16}}], [{"gradient_clipping": {"threshold": 1.0}}],
     ["adaptive_clipping", {"zoneout": {"cell": 0.1, "hidden": 0.05}}]],
    ids=["auto_clipping", "gradient_clipping", "adaptive_clipping+zoneout"],
)
def test_the_built_in_stack_trains_a_labeller(extra):
    datamodule = SpeakerTurnsDataModule(num_train=24, num_val=6, num_test=6, batch_size=8)
    model = LSTMSequenceLabeller(12, 9, hidden_size=8, num_layers=2, bidirectional=True, optimizer="adamw",
                                 techniques=[*STACK, *extra])
    trainer = quiet_trainer(max_epochs=2, log_every_n_steps=1)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 6
    assert np.isfinite(trainer.callback_metrics["val/loss"].item())


def test_token_labeller_with_embedding_dropout():
    rng = np.random.default_rng(0)
    tokens = [rng.integers(0, 20, size=int(n)) for n in rng.integers(3, 9, size=8)]
    labels = torch.tensor([[int(t % 2) for t in seq] + [IGNORE_INDEX] * (8 - len(seq)) for seq in tokens])
    ids = torch.tensor([[int(t) for t in seq] + [0] * (8 - len(seq)) for seq in tokens])
    batch = SequenceBatch(ids, torch.tensor([len(s) for s in tokens]), labels)
    model = LSTMSequenceLabeller(6, 2, hidden_size=8, num_embeddings=20, techniques=[{"embedding_dropout": {"probability": 0.1}}])
    quiet_trainer(max_steps=3, limit_val_batches=0).fit(model, train_dataloaders=batches_loader([batch] * 3))
    assert model(ids, batch.lengths).shape == (*ids.shape, 2)


def test_a_labelling_checkpoint_loads_back(tmp_path):
    datamodule = SpeakerTurnsDataModule(num_train=16, num_val=4, num_test=4, batch_size=8)
    model = LSTMSequenceLabeller(12, 9, hidden_size=8, bidirectional=True, techniques=["gradient_clipping"])
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, datamodule=datamodule)
    trainer.save_checkpoint(tmp_path / "labeller.ckpt")
    loaded = LSTMSequenceLabeller.load_from_checkpoint(tmp_path / "labeller.ckpt")
    assert isinstance(loaded.task, SequenceLabellingTask) and loaded.num_classes == 9
    batch = next(iter(datamodule.test_dataloader()))
    torch.testing.assert_close(loaded.eval()(batch.features, batch.lengths), model.eval()(batch.features, batch.lengths))


def test_a_plain_sequence_model_runs_the_task():
    model = SequenceModel(3, SequenceLabellingTask(NUM_CLASSES), hidden_size=8)
    batch = labelled_batch([4, 2])
    assert model(batch.features, batch.lengths).shape == (2, 4, NUM_CLASSES)
    assert torch.isfinite(model.training_step(batch, 0))


# --- DDP: two processes report what one process computes ------------------------------------------

DDP_DATA = {"num_train": 64, "num_val": 16, "num_test": 40, "batch_size": 8}
DDP_MODEL = {"hidden_size": 16, "bidirectional": True, "learning_rate": 0.01, "techniques": [{"gradient_clipping": {"threshold": 1.0}}]}


def ddp_main(output: Path) -> None:
    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True, verbose=False)
    datamodule = SpeakerTurnsDataModule(**DDP_DATA)
    model = LSTMSequenceLabeller(12, 9, **DDP_MODEL)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         deterministic=True)
    trainer.fit(model, datamodule=datamodule)
    validated = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
    trainer.test(model, datamodule=datamodule, verbose=False)
    results = {name: value.tolist() for name, value in model.test_results.items()}
    results.update(world_size=trainer.world_size, val_loss=validated["val/loss"])
    (output / f"metrics_rank{trainer.global_rank}.json").write_text(json.dumps(results))
    if trainer.is_global_zero:
        torch.save(model.state_dict(), output / "weights.pt")


@pytest.mark.distributed
def test_ddp_metrics_equal_one_process(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    completed = subprocess.run([sys.executable, __file__, str(tmp_path)], env=environment, capture_output=True,
                               text=True, timeout=300, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-4000:]
    rank0 = json.loads((tmp_path / "metrics_rank0.json").read_text())
    rank1 = json.loads((tmp_path / "metrics_rank1.json").read_text())
    assert rank0["world_size"] == 2 and rank0 == rank1
    model = LSTMSequenceLabeller(12, 9, **DDP_MODEL)
    model.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    datamodule = SpeakerTurnsDataModule(**DDP_DATA)
    validated = quiet_trainer().validate(model, datamodule=datamodule, verbose=False)[0]
    quiet_trainer().test(model, datamodule=datamodule, verbose=False)
    assert validated["val/loss"] == pytest.approx(rank0["val_loss"], rel=1e-5)
    for name in ("test/accuracy", "test/recall", "test/f1", "test/recall_per_class", "test/f1_per_class"):
        assert model.test_results[name].tolist() == pytest.approx(rank0[name], abs=1e-6), name
    assert rank0["test/accuracy"] > 0.3  # trained: well above the 1/9 chance level


# --- the results script -------------------------------------------------------------------------


@pytest.mark.slow
def test_speaker_turns_results_example_smoke(tmp_path):
    completed = subprocess.run([sys.executable, str(ROOT / "examples" / "speaker_turns.py"), "--smoke"],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "majority class" in completed.stdout and "| bidirectional LSTM" in completed.stdout


if __name__ == "__main__":
    from lstm_plugins.training import end_process_group

    ddp_main(Path(sys.argv[1]))
    end_process_group()
