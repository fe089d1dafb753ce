"""Language modelling with truncated backpropagation through time.

The loss and metrics against a hand computation; the chunked, state-carrying forward pass
against one long unrolled run; gradients stopping at chunk boundaries; the stream layout and its
split across processes; exact mid-epoch resume; the built-in stack; the fused kernel; text
generation; bad inputs. DDP runs this file as a script (``python tests/test_language_model.py
ddp MODE OUT [CHECKPOINT]``): Lightning's ``ddp`` strategy starts the second process by running
the same command again.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.profiler import ProfilerActivity, profile

from lstm_plugins.data._shakespeare import ShakespeareDataModule, load_shakespeare
from lstm_plugins.data._text import TextChunkLoader, TextDataModule, Vocabulary, stream_layout
from lstm_plugins.model._language import LanguageModelTask, LSTMLanguageModel, generate, language_model_metrics
from lstm_plugins.model._module import SequenceModel

ROOT = Path(__file__).resolve().parents[1]
TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 6
DETERMINISTIC = [  # no random masks: processes draw from different random streams
    {"gradient_clipping": {"threshold": 1.0}},
    {"activation_regularization": {"alpha": 1.0, "beta": 1.0}},
    {"weight_decay": {"weight_decay": 0.01}},
]
AWD = [
    {"gradient_clipping": {"threshold": 0.25}},
    {"embedding_dropout": {"probability": 0.1}},
    {"locked_dropout": {"input": 0.2, "output": 0.3}},
    {"weight_drop": {"probability": 0.3}},
    {"activation_regularization": {"alpha": 2.0, "beta": 1.0}},
    {"weight_decay": {"weight_decay": 0.01}},
]


def _trainer(**options):
    defaults = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, deterministic=True, num_sanity_val_steps=0, log_every_n_steps=5,
    )
    defaults.update(options)
    return pl.Trainer(**defaults)


def _small_data(batch_size=4, chunk_length=50, train_chars=3_000, eval_chars=1_500):
    return ShakespeareDataModule(
        train_plays=["othello"], max_train_chars=train_chars, max_eval_chars=eval_chars,
        batch_size=batch_size, chunk_length=chunk_length,
    )


def _model(vocabulary, techniques=(), **options):
    options = {"embedding_size": 8, "hidden_size": 16, "num_layers": 2, "optimizer": "adamw",
               "learning_rate": 0.01, **options}
    return LSTMLanguageModel(len(vocabulary), vocabulary=vocabulary, techniques=list(techniques), **options)


# --- loss and metrics ----------------------------------------------------------------------------


def test_loss_and_metrics_equal_a_hand_computation():
    logits = torch.tensor([[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [[2.0, 2.0, 2.0], [0.3, 0.1, -0.4]]])
    targets = torch.tensor([[1, 0], [2, 2]])
    nll = []
    for b in range(2):
        for t in range(2):
            row = logits[b, t].tolist()
            nll.append(-(row[targets[b, t]] - math.log(sum(math.exp(v) for v in row))))
    mean = sum(nll) / len(nll)
    task = LanguageModelTask(3)
    assert task.loss(logits, targets).item() == pytest.approx(mean, rel=1e-6)
    assert int(task.loss_weight(targets)) == 4
    metrics = task.metrics({})
    metrics.update(*task.metric_inputs(logits[:1], targets[:1]))  # two batches, weighted by their tokens
    metrics.update(*task.metric_inputs(logits[1:], targets[1:]))
    results = metrics.compute()
    assert results["perplexity"].item() == pytest.approx(math.exp(mean), rel=1e-6)
    assert results["bpc"].item() == pytest.approx(mean / math.log(2), rel=1e-6)
    assert set(language_model_metrics("word").keys()) == {"perplexity", "bits_per_word"}


def test_validation_metrics_are_those_of_each_stream_read_whole():
    """Validation cuts the streams into chunks and carries the state; the result is that of every
    stream read in one piece from a zero state (and the loss weighs every token the same)."""
    dm = TextDataModule(TEXT, TEXT[:300], batch_size=3, eval_batch_size=3, chunk_length=16)
    torch.manual_seed(0)
    model = _model(dm.vocabulary)
    metrics = _trainer().validate(model, datamodule=dm, verbose=False)[0]
    inputs, targets = stream_layout(dm.token_ids("val"), 3)
    model.eval()
    with torch.no_grad():
        logits = model.encode(inputs, torch.full((3,), inputs.size(1)), None).logits
    mean = torch.nn.functional.cross_entropy(logits.reshape(-1, dm.vocab_size), targets.reshape(-1)).item()
    assert len(dm.val_dataloader()) == 7  # 99 steps per stream: 6 chunks of 16 and one of 3
    assert metrics["val/loss"] == pytest.approx(mean, abs=1e-5)
    assert metrics["val/bpc"] == pytest.approx(mean / math.log(2), abs=1e-5)
    assert metrics["val/perplexity"] == pytest.approx(math.exp(mean), rel=1e-5)


# --- truncated backpropagation through time ------------------------------------------------------


@pytest.mark.parametrize("techniques", [[], AWD], ids=["plain", "awd"])
def test_carried_state_equals_one_long_unrolled_run(techniques):
    vocabulary = Vocabulary.build(TEXT)
    torch.manual_seed(0)
    model = _model(vocabulary, techniques).eval()
    tokens = vocabulary.encode(TEXT)[: 3 * 40].view(3, 40)
    with torch.no_grad():
        whole = model.encode(tokens, torch.full((3,), 40), None).logits
        chunks = [
            model.encode_carrying_state(_batch(tokens[:, start : start + 7]), index, "validate").logits
            for index, start in enumerate(range(0, 40, 7))
        ]
    assert torch.allclose(torch.cat(chunks, dim=1), whole, atol=1e-5)
    # A loader's first batch starts afresh, whatever the stage carried before.
    with torch.no_grad():
        again = model.encode_carrying_state(_batch(tokens[:, :7]), 0, "validate").logits
    assert torch.allclose(again, whole[:, :7], atol=1e-6)


def _batch(features):
    from lstm_plugins.data import SequenceBatch

    return SequenceBatch(features, torch.full((features.size(0),), features.size(1)), features)


def test_gradients_do_not_cross_chunk_boundaries():
    vocabulary = Vocabulary.build(TEXT)
    torch.manual_seed(0)
    model = _model(vocabulary, AWD).train()
    tokens = vocabulary.encode(TEXT)[:60].view(2, 30)
    first = model.encode_carrying_state(_batch(tokens[:, :15]), 0, "train")
    carried = model.carried_state["train"]
    assert not carried[0].requires_grad and not carried[1].requires_grad
    second = model.encode_carrying_state(_batch(tokens[:, 15:]), 1, "train")
    loss = second.logits.square().mean()
    assert torch.autograd.grad(loss, first.raw_sequence_output, allow_unused=True) == (None,)
    # The second chunk did start from the first one's state (not from zeros).
    model.eval()
    with torch.no_grad():
        from_zeros = model.encode(tokens[:, 15:], torch.full((2,), 15), None).logits
        from_state = model.encode(tokens[:, 15:], torch.full((2,), 15), carried).logits
    assert not torch.allclose(from_zeros, from_state, atol=1e-4)


class _RecordInitialStates(Callback):
    """Wraps the model's ``encode`` to record, per training batch, the state it started from."""

    def __init__(self):
        self.rows = []  # (epoch, batch_idx, initial state or None, final state)

    def on_fit_start(self, trainer, model):
        original = model.encode

        def encode(features, lengths, initial_state=None):
            output = original(features, lengths, initial_state)
            if model.training:
                self.rows.append((trainer.current_epoch, initial_state, output.state))
            return output

        model.encode = encode


def test_training_carries_the_state_through_an_epoch_and_restarts_it_every_epoch():
    dm = _small_data()
    model = _model(dm.vocabulary)
    recorder = _RecordInitialStates()
    _trainer(max_epochs=2, callbacks=[recorder]).fit(model, datamodule=dm)
    chunks = len(dm.train_dataloader())
    assert len(recorder.rows) == 2 * chunks
    for index, (epoch, initial, _) in enumerate(recorder.rows):
        if index % chunks == 0:
            assert initial is None, f"epoch {epoch} did not start from zeros"
        else:
            previous = recorder.rows[index - 1][2]
            assert torch.equal(initial[0], previous[0].detach()) and not initial[0].requires_grad


# --- the data --------------------------------------------------------------------------------------


def test_vocabularies_encode_decode_and_save_as_plain_data():
    chars = Vocabulary.build(TEXT)
    assert chars.decode(chars.encode(TEXT)) == TEXT
    assert Vocabulary.from_dict(json.loads(json.dumps(chars.to_dict()))) == chars
    words = Vocabulary.build(TEXT, level="word", min_count=6, unknown="<unk>")
    assert words.tokenize("Whether 'tis nobler,\nto") == ["Whether", "'", "tis", "nobler", ",", "\n", "to"]
    assert words.decode(words.encode("to be or not\nthe question")) == "to be or not\nthe question"
    assert words.decode(words.encode("to be a fish")) == "to be <unk> <unk>"
    with pytest.raises(ValueError, match=r"The word 'fish' in `prompt` \(line 2, column 4\)"):
        words.encode("to\nbe fish", name="prompt", strict=True)
    with pytest.raises(ValueError, match="leave out .* pass `unknown`"):
        Vocabulary.build(TEXT, level="word", min_count=7)
    with pytest.raises(ValueError, match="keys `level`, `tokens` and `unknown`"):
        Vocabulary.from_dict({"tokens": ["a"]})


def test_streams_are_contiguous_and_chunks_come_in_order():
    ids = torch.arange(101)
    inputs, targets = stream_layout(ids, 4)
    assert inputs.shape == (4, 25) and torch.equal(targets, inputs + 1)
    assert torch.equal(inputs.reshape(-1), ids[:100])
    loader = TextChunkLoader(inputs, targets, chunk_length=10)
    batches = list(loader)
    assert [b.features.size(1) for b in batches] == [10, 10, 5]
    assert torch.equal(torch.cat([b.features for b in batches], 1), inputs)
    assert all(b.lengths.tolist() == [b.features.size(1)] * 4 for b in batches)
    assert batches[0].features.dtype == torch.int64


def test_each_process_takes_its_own_streams():
    """Two processes with batch size 2 read the streams one process with batch size 4 reads."""

    class FakeTrainer:
        def __init__(self, rank, world_size):
            self.global_rank, self.world_size = rank, world_size

    single = TextDataModule(TEXT, batch_size=4, chunk_length=8)
    expected = list(single.train_dataloader())
    for rank in (0, 1):
        dm = TextDataModule(TEXT, batch_size=2, chunk_length=8)
        dm.trainer = FakeTrainer(rank, 2)
        batches = list(dm.train_dataloader())
        assert len(batches) == len(expected)
        for got, want in zip(batches, expected):
            assert torch.equal(got.features, want.features[2 * rank : 2 * rank + 2])
            assert torch.equal(got.targets, want.targets[2 * rank : 2 * rank + 2])


def test_the_embedded_shakespeare_is_split_by_play():
    plays = load_shakespeare()
    assert len(plays) == 25 and all(text.endswith("\n") for text in plays.values())
    dm = ShakespeareDataModule(chunk_length=100)
    assert set(dm.plays["val_plays"]) == {"julius_caesar", "twelfth_night"}
    assert set(dm.plays["test_plays"]) == {"macbeth", "tempest"}
    assert len(dm.plays["train_plays"]) == 21 and "hamlet" in dm.plays["train_plays"]
    assert dm.vocab_size == 82 and dm.level == "char"
    assert (ROOT / "lstm_plugins" / "data" / "shakespeare.json.gz").stat().st_size <= 1_500_000
    words = ShakespeareDataModule(level="word", min_count=5, max_train_chars=50_000, max_eval_chars=10_000)
    assert words.vocabulary.unknown == "<unk>" and words.level == "word"


# --- checkpoints and resuming ----------------------------------------------------------------------


def _fit_with_checkpoints(directory, checkpoint=None):
    pl.seed_everything(0, verbose=False)
    dm = _small_data()
    model = _model(dm.vocabulary, AWD)
    callbacks = [ModelCheckpoint(dirpath=directory, every_n_train_steps=4, save_top_k=-1)] if directory else []
    trainer = _trainer(max_epochs=2, callbacks=callbacks, enable_checkpointing=bool(directory))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*callbacks used to create the checkpoint.*")
        trainer.fit(model, datamodule=dm, ckpt_path=checkpoint)
    return model, trainer


@pytest.mark.slow
def test_a_fit_resumed_mid_epoch_is_exact(tmp_path):
    expected, trainer = _fit_with_checkpoints(tmp_path)
    chunks = len(trainer.datamodule.train_dataloader())  # 15 chunks per epoch
    assert chunks == 15
    for step in (8, 20):  # mid-epoch 0 and mid-epoch 1
        path = next(tmp_path.glob(f"*step={step}.ckpt"))
        saved = torch.load(path, weights_only=True)
        assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"batches_handed_out": step % chunks}]
        h, c = saved["lstm_plugins"]["carried_state"]
        assert h.shape == c.shape == (1, 2, 4, 16)  # (processes, layers, streams, hidden)
        model, _ = _fit_with_checkpoints(None, path)
        for (name, want), got in zip(expected.state_dict().items(), model.state_dict().values()):
            assert torch.equal(want, got), f"{name} after resuming from step {step}"


def test_a_checkpoint_loads_with_its_vocabulary_and_generates(tmp_path):
    dm = _small_data()
    model = _model(dm.vocabulary, AWD)
    trainer = _trainer(max_steps=3, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "lm.ckpt")
    loaded = LSTMLanguageModel.load_from_checkpoint(tmp_path / "lm.ckpt")  # weights_only=True
    assert loaded.vocabulary == dm.vocabulary
    assert [t.name for t in loaded.techniques] == [t.name for t in model.techniques]
    assert loaded.generate("OTHELLO.\n", 40, seed=3) == model.generate("OTHELLO.\n", 40, seed=3)
    other = TextDataModule(TEXT, batch_size=2, chunk_length=8)
    with pytest.raises(ValueError, match="another vocabulary"):
        other.load_state_dict(dm.state_dict())


# --- techniques and the fused kernel -------------------------------------------------------------


def test_every_built_in_technique_trains_a_language_model_by_name():
    stack = [
        "initialization", {"dropout": {"input": 0.1, "between_layers": 0.1, "output": 0.1}},
        "embedding_dropout", {"locked_dropout": {"input": 0.1, "output": 0.2}}, "weight_drop",
        {"l2": {"weight": 1e-5, "parameters": ["head.*"]}}, {"weight_decay": {"exclude": ["head.*"]}},
        "activation_regularization", {"grad_norm": {"log_every_n_steps": 2}},
        {"exploding_gradients": {"warmup_steps": 3, "log_every_n_steps": 2}},
        {"gradient_reach": {"log_every_n_steps": 2}}, {"gate_saturation": {"log_every_n_steps": 2}},
        "nonfinite_guard", {"auto_clipping": {"percentile": 50, "history_size": 8}},
    ]
    dm = _small_data()
    model = _model(dm.vocabulary, stack)
    trainer = _trainer(max_epochs=1, limit_train_batches=6, limit_val_batches=3, log_every_n_steps=2)
    trainer.fit(model, datamodule=dm)
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["val/bpc"])) and math.isfinite(float(metrics["train/loss"]))
    assert {"train/ar", "train/tar", "train/l2"} <= set(metrics)
    assert any(name.startswith("gradient_reach/") for name in metrics)
    for clipper in ("gradient_clipping", "adaptive_clipping"):
        _trainer(max_steps=2).fit(_model(dm.vocabulary, [clipper]), datamodule=dm)


@pytest.mark.filterwarnings("ignore:Zoneout runs the LSTM as a per-step loop")
def test_zoneout_is_refused_naming_the_task():
    with pytest.raises(ValueError, match="`language_model` task carries the LSTM's state"):
        _model(Vocabulary.build(TEXT), ["zoneout"])


def _lstm_events(run):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = prof.events()
    return [e for e in events if e.name == "aten::lstm"]


@pytest.mark.parametrize("techniques", [[], AWD], ids=["plain", "awd"])
def test_the_training_step_and_generation_run_the_fused_kernel(techniques):
    dm = _small_data()
    model = _model(dm.vocabulary, techniques).train()
    batches = iter(dm.train_dataloader())

    def two_training_steps():
        for index in range(2):
            batch = next(batches)
            output = model.encode_carrying_state(batch, index, "train")
            model.task.loss(model.task.predictions(output.logits), batch.targets).backward()

    for run in (two_training_steps, lambda: model.generate("OTHELLO.\n", 3, seed=0)):
        calls = _lstm_events(run)
        assert calls, "no LSTM call was profiled"
        for call in calls:
            children = {child.name for child in call.cpu_children}
            assert "aten::mkldnn_rnn_layer" in children, f"an LSTM call left the fused kernel: {children}"


# --- generation ------------------------------------------------------------------------------------


def test_generation_is_reproducible_and_leaves_the_model_as_it_was():
    vocabulary = Vocabulary.build(TEXT)
    torch.manual_seed(0)
    model = _model(vocabulary, AWD).train()
    state = torch.get_rng_state()
    text = generate(model, "To be", 30, seed=7, temperature=0.8)
    assert len(text) == 30 and set(text) <= set(vocabulary.tokens)
    assert text == model.generate("To be", 30, seed=7, temperature=0.8)
    assert torch.equal(torch.get_rng_state(), state)  # a seeded generator of its own
    assert model.training and model.evaluating is None
    greedy = model.generate("To be", 10, temperature=0)
    assert greedy == model.generate("To be", 10, temperature=0)
    # The continuation is the chunked forward pass of prompt + text, token by token.
    model.eval()
    ids = vocabulary.encode("To be" + greedy).view(1, -1)
    with torch.no_grad():
        logits = model.encode(ids, torch.tensor([ids.size(1)]), None).logits[0, 4:-1]
    assert vocabulary.decode(logits.argmax(-1)) == greedy
    words = Vocabulary.build(TEXT, level="word")
    assert len(words.tokenize(_model(words).generate("to be", 5, seed=0))) == 5


# --- bad inputs ------------------------------------------------------------------------------------


def test_bad_inputs_get_clear_errors():
    vocabulary = Vocabulary.build(TEXT)
    model = _model(vocabulary)
    with pytest.raises(ValueError, match=r"The character 'Z' in `prompt` \(line 1, column 4\) is not in the"):
        model.generate("To Zee", 5)
    with pytest.raises(ValueError, match="`prompt` to hold at least one token"):
        model.generate("", 5)
    with pytest.raises(ValueError, match="at least one token"):
        _model(Vocabulary.build(TEXT, level="word")).generate("  ", 5)
    with pytest.raises(ValueError, match="Expected `length` to be a positive int, but got 0"):
        model.generate("To", 0)
    with pytest.raises(ValueError, match="`temperature` to be a non-negative float"):
        model.generate("To", 3, temperature=-1.0)
    with pytest.raises(ValueError, match="needs the vocabulary"):
        generate(LSTMLanguageModel(len(vocabulary), hidden_size=8), "To", 3)
    task = LanguageModelTask(len(vocabulary))
    with pytest.raises(ValueError, match="bidirectional LSTM reads the tokens after it"):
        SequenceModel(8, task, bidirectional=True, num_embeddings=len(vocabulary))
    with pytest.raises(ValueError, match="reads token ids; build the model with num_embeddings"):
        SequenceModel(8, task)
    with pytest.raises(ValueError, match="predicts .* tokens but the model embeds 5"):
        SequenceModel(8, task, num_embeddings=5)
    with pytest.raises(ValueError, match="`vocabulary` to hold `vocab_size`=10"):
        LSTMLanguageModel(10, vocabulary=vocabulary)
    with pytest.raises(ValueError, match=r"stream 1 has 99 at step 0"):
        task.loss(torch.zeros(2, 1, len(vocabulary)), torch.tensor([[0], [99]]))
    with pytest.raises(ValueError, match=r"The character 'x' in `val_text` \(line 2, column 2\)"):
        TextDataModule(TEXT, "To be\nexit")
    with pytest.raises(ValueError, match="`val_text` has 5 tokens: too few for 8 streams"):
        TextDataModule(TEXT, "To be", batch_size=8)
    with pytest.raises(ValueError, match="'hamlett' is not one"):
        ShakespeareDataModule(train_plays=["hamlett"])
    with pytest.raises(ValueError, match="'macbeth' is in `train_plays` and `test_plays`"):
        ShakespeareDataModule(train_plays=["macbeth"])
    with pytest.raises(ValueError, match="`num_embeddings`=23 but the data module has `vocab_size`=26"):
        _trainer(max_steps=1).fit(model, datamodule=TextDataModule(TEXT + "XYZ", batch_size=2, chunk_length=8))
    same_size = TextDataModule(TEXT.replace("T", "Q"), batch_size=2, chunk_length=8)  # other ids
    with pytest.raises(ValueError, match="differs from the data module's"):
        _trainer(max_steps=1).fit(model, datamodule=same_size)


# --- the results example -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_results_example_runs_in_smoke_mode(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "char_language_model.py"), "--smoke"], cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| stack | train bpc | validation bpc | gap (val - train) |")
    assert rows[1].startswith("| plain LSTM | ") and rows[2].startswith("| AWD-style stack | ")
    number = r"\d+\.\d{3} ± \d+\.\d{3}"
    assert re.fullmatch(rf"\| AWD-style stack \| {number} \| {number} \| -?{number} \| {number} \(1-1\) \| {number} \| \d+ s \|", rows[2])
    assert "'OTHELLO.\\n' continued" in completed.stdout


# --- DDP -------------------------------------------------------------------------------------------

DDP_CHECKPOINT_STEP = 20  # epoch 1, chunk 5 of 15


def _ddp_main(mode: str, output: Path, checkpoint: str | None = None) -> None:
    """One process of a 2-process DDP run (this file run as a script)."""
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    dm = _small_data(batch_size=2)
    model = _model(dm.vocabulary, DETERMINISTIC)
    first = {}

    class FirstBatch(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            first.setdefault("features", batch.features.tolist())

    callbacks = [FirstBatch()]
    if mode == "fit":
        callbacks.append(ModelCheckpoint(dirpath=output / "checkpoints", every_n_train_steps=4, save_top_k=-1))
    trainer = _trainer(devices=2, strategy="ddp", max_epochs=2, callbacks=callbacks, enable_checkpointing=mode == "fit")
    trainer.fit(model, datamodule=dm, ckpt_path=checkpoint)
    metrics = trainer.validate(model, datamodule=dm, verbose=False)[0]
    record = {"world_size": trainer.world_size, "first_batch": first.get("features"), "val": metrics}
    (output / f"{mode}_rank{trainer.global_rank}.json").write_text(json.dumps(record))
    if trainer.is_global_zero:
        torch.save(model.state_dict(), output / f"{mode}_weights.pt")


def _run_ddp(output, mode, checkpoint=None):
    command = [sys.executable, str(Path(__file__).resolve()), "ddp", mode, str(output)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    completed = subprocess.run(command + ([str(checkpoint)] if checkpoint else []), env=environment,
                               capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-4000:]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("lm_ddp")
    _run_ddp(output, "fit")
    return output


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_equals_one_process_reading_all_the_streams(ddp_run):
    pl.seed_everything(0, verbose=False)
    dm = _small_data(batch_size=4)
    model = _model(dm.vocabulary, DETERMINISTIC)
    trainer = _trainer(max_epochs=2)
    trainer.fit(model, datamodule=dm)
    expected = trainer.validate(model, datamodule=dm, verbose=False)[0]
    first = next(iter(dm.train_dataloader())).features
    ranks = [json.loads((ddp_run / f"fit_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for rank, record in enumerate(ranks):
        assert record["first_batch"] == first[2 * rank : 2 * rank + 2].tolist()  # its own streams
        for name, value in expected.items():
            assert record["val"][name] == pytest.approx(value, abs=1e-5), name
    weights = torch.load(ddp_run / "fit_weights.pt", weights_only=True)
    for name, value in model.state_dict().items():
        assert torch.allclose(weights[name], value, atol=1e-5), name


@pytest.mark.distributed
@pytest.mark.slow
def test_a_ddp_fit_resumed_mid_epoch_is_exact(ddp_run):
    checkpoint = next((ddp_run / "checkpoints").glob(f"*step={DDP_CHECKPOINT_STEP}.ckpt"))
    h, _ = torch.load(checkpoint, weights_only=True)["lstm_plugins"]["carried_state"]
    assert h.shape[0] == 2 and not torch.equal(h[0], h[1])  # each process's own streams
    _run_ddp(ddp_run, "resume", checkpoint)
    expected = torch.load(ddp_run / "fit_weights.pt", weights_only=True)
    resumed = torch.load(ddp_run / "resume_weights.pt", weights_only=True)
    for name, value in expected.items():
        assert torch.equal(resumed[name], value), name


if __name__ == "__main__" and len(sys.argv) >= 4 and sys.argv[1] == "ddp":
    warnings.filterwarnings("ignore")
    _ddp_main(sys.argv[2], Path(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
    from lstm_plugins.training import end_process_group

    end_process_group()


def test_a_carried_state_of_the_wrong_shape_is_refused_naming_the_key():
    from lstm_plugins.model import LSTMLanguageModel

    model = LSTMLanguageModel(11, embedding_size=4, hidden_size=8)
    model.carried_state["train"] = (torch.zeros(1, 3, 8), torch.zeros(1, 3, 8))
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    other = LSTMLanguageModel(11, embedding_size=4, hidden_size=16)
    with pytest.raises(ValueError, match="`carried_state` holds"):
        other.on_load_checkpoint(checkpoint)
    same = LSTMLanguageModel(11, embedding_size=4, hidden_size=8)
    same.on_load_checkpoint(checkpoint)
    assert same.carried_state["train"][0].shape == (1, 3, 8)
