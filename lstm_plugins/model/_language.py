"""Language modelling with truncated backpropagation through time (TBPTT).

Batches are consecutive chunks of ``B`` parallel token streams (see
:class:`lstm_plugins.data.TextDataModule`); the head predicts the next token at every step, and
the model carries the LSTM's final ``(h, c)`` from a chunk to the next, detached, so gradients
stop at chunk boundaries while the state runs through the whole stream
(:meth:`SequenceModel.encode_carrying_state`). The LSTM runs on the fused kernel
(:func:`lstm_plugins.model._forward.run_lstm_from_state`), in training and in :func:`generate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from lstm_plugins import validation as check
from lstm_plugins.data._batch import IGNORE_INDEX
from lstm_plugins.data._text import LEVELS, Level, Vocabulary
from lstm_plugins.model._metrics import _collection
from lstm_plugins.model._module import SequenceModel
from lstm_plugins.model._tasks import Task
from lstm_plugins.techniques._registry import TechniqueSpec
from lstm_plugins.training._optimizers import OptimizerName

__all__ = [
    "BitsPerToken",
    "LSTMLanguageModel",
    "LanguageModelTask",
    "Perplexity",
    "generate",
    "language_model_metrics",
]


class _MeanTokenNLL(Metric):
    """Mean negative log-likelihood (nats) of the target tokens under ``(..., vocab)`` logits;
    sums in float64, reduced by summing across processes."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, targets: Tensor) -> None:
        targets = targets.reshape(-1)
        nll = F.cross_entropy(
            logits.reshape(targets.numel(), -1).float(), targets, ignore_index=IGNORE_INDEX, reduction="sum"
        )
        self.total += nll.double()
        self.count += (targets != IGNORE_INDEX).sum().double()

    def mean(self) -> Tensor:
        return self.total / self.count


class Perplexity(_MeanTokenNLL):
    """``exp(mean NLL)`` of the target tokens: a torchmetrics metric, synchronised across processes.

    Example:
        >>> metric = Perplexity()
        >>> metric.update(torch.zeros(1, 2, 4), torch.tensor([[0, 3]]))  # uniform over 4 tokens
        >>> round(metric.compute().item(), 4)
        4.0
    """

    def compute(self) -> Tensor:
        return self.mean().exp().float()


class BitsPerToken(_MeanTokenNLL):
    """``mean NLL / ln 2``: bits per character for a character model (bits per word for words).

    Example:
        >>> metric = BitsPerToken()
        >>> metric.update(torch.zeros(1, 2, 4), torch.tensor([[0, 3]]))
        >>> round(metric.compute().item(), 4)
        2.0
    """

    def compute(self) -> Tensor:
        return (self.mean() / math.log(2)).float()


def language_model_metrics(level: Level = "char", extra: Mapping[str, Metric] | None = None) -> MetricCollection:
    """``perplexity`` and ``bpc`` (``bits_per_word`` at word level), sharing one update.

    Example:
        >>> metrics = language_model_metrics()
        >>> metrics.update(torch.zeros(2, 3, 8), torch.zeros(2, 3, dtype=torch.long))
        >>> {name: round(value.item(), 4) for name, value in sorted(metrics.compute().items())}
        {'bpc': 3.0, 'perplexity': 8.0}
    """
    bits = "bpc" if check.choice("level", level, LEVELS) == "char" else "bits_per_word"
    return _collection({"perplexity": Perplexity(), bits: BitsPerToken()}, extra)


class LanguageModelTask(Task):
    """Next-token prediction at every step of chunks of streams, the state carried between chunks.

    Predictions are ``(batch, time, vocab_size)`` logits, targets ``(batch, time)`` int64 next-token
    ids. The loss is the cross-entropy averaged over every step of the batch; a batch weighs its
    number of steps in the epoch's validation loss, which is therefore the mean NLL per token of
    the split (nats). Metrics: :class:`Perplexity` and :class:`BitsPerToken` (``bpc``, or
    ``bits_per_word`` at word level). The network must read tokens (``num_embeddings`` equal to
    ``vocab_size``) and be unidirectional.

    Example:
        >>> task = LanguageModelTask(5)
        >>> round(task.loss(torch.zeros(2, 3, 5), torch.ones(2, 3, dtype=torch.long)).item(), 4)
        1.6094
    """

    name = "language_model"
    per_step = True
    carries_state = True

    def __init__(self, vocab_size: int, *, level: Level = "char") -> None:
        self.vocab_size = check.int_at_least("vocab_size", vocab_size, 2)
        self.level: Level = check.choice("level", level, LEVELS)
        self.output_size = self.vocab_size

    def check_network(self, model: Any) -> None:
        if model.lstm.bidirectional:
            raise ValueError(
                f"The `{self.name}` task predicts each token from the tokens before it, but a "
                "bidirectional LSTM reads the tokens after it too; build the model with bidirectional=False."
            )
        embedding = getattr(model, "embedding", None)
        if embedding is None:
            raise ValueError(
                f"The `{self.name}` task reads token ids; build the model with num_embeddings={self.vocab_size}."
            )
        if embedding.num_embeddings != self.vocab_size:
            raise ValueError(
                f"The `{self.name}` task predicts {self.vocab_size} tokens but the model embeds "
                f"{embedding.num_embeddings}; build it with num_embeddings={self.vocab_size}."
            )

    def check_targets(self, predictions: Tensor, targets: Tensor) -> None:
        """Refuse targets that are not ``(batch, time)`` next-token ids in ``[0, vocab_size)``.

        The value range is checked on the CPU only (on an accelerator it would cost a host
        synchronisation every step; the loss's own check then applies).
        """
        if predictions.dim() != 3 or predictions.size(-1) != self.vocab_size:
            raise ValueError(
                f"Expected per-step logits of shape (batch, time, {self.vocab_size}), but got {tuple(predictions.shape)}."
            )
        if targets.is_floating_point() or targets.dtype == torch.bool or tuple(targets.shape) != tuple(predictions.shape[:2]):
            raise ValueError(
                f"Expected targets to be (batch, time) = {tuple(predictions.shape[:2])} int64 next-token ids, "
                f"but got shape {tuple(targets.shape)} of dtype {targets.dtype}."
            )
        if targets.device.type == "cpu":
            bad = (targets != IGNORE_INDEX) & ((targets < 0) | (targets >= self.vocab_size))
            if bool(bad.any()):
                stream, step = (int(i) for i in bad.nonzero()[0])
                raise ValueError(
                    f"Expected next-token ids in [0, {self.vocab_size}), but stream {stream} has "
                    f"{int(targets[stream, step])} at step {step}."
                )

    def loss(self, predictions: Tensor, targets: Tensor) -> Tensor:
        self.check_targets(predictions, targets)
        return F.cross_entropy(
            predictions.reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )

    def loss_weight(self, targets: Tensor) -> Tensor:
        """The batch's number of predicted tokens."""
        return (targets != IGNORE_INDEX).sum()

    def metrics(self, extra: Mapping[str, Metric]) -> MetricCollection:
        return language_model_metrics(self.level, extra)


class LSTMLanguageModel(SequenceModel):
    """A token-level LSTM language model: embedding, fused LSTM, a head over the vocabulary.

    :class:`LanguageModelTask` on :class:`SequenceModel`, trained with truncated
    backpropagation through time on :class:`lstm_plugins.data.TextDataModule` chunks. The
    ``vocabulary`` is saved in the hyper-parameters (as plain data), so a model loaded with
    ``load_from_checkpoint`` can :meth:`generate` text; a data module with another vocabulary
    is refused when a run starts.

    Args:
        vocab_size: tokens in the vocabulary.
        embedding_size: features of a token's embedding (the LSTM's input size).
        hidden_size, num_layers, optimizer, learning_rate, techniques: as for :class:`SequenceModel`.
        vocabulary: a :class:`lstm_plugins.data.Vocabulary` (or its ``to_dict()``) of ``vocab_size`` tokens.
        level: ``"char"`` or ``"word"``: names the bits metric; defaults to the vocabulary's.

    Example:
        >>> vocabulary = Vocabulary.build("to be or not to be")
        >>> model = LSTMLanguageModel(len(vocabulary), hidden_size=16, vocabulary=vocabulary)
        >>> len(model.generate("to b", 12, seed=0))
        12
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        embedding_size: int = 64,
        hidden_size: int = 256,
        num_layers: int = 1,
        optimizer: OptimizerName = "adam",
        learning_rate: float = 2e-3,
        techniques: Sequence[TechniqueSpec] = (),
        vocabulary: Vocabulary | Mapping[str, Any] | None = None,
        level: Level | None = None,
        stop_on_nonfinite_loss: bool = True,
    ) -> None:
        self_vocabulary = None if vocabulary is None else Vocabulary.from_dict(vocabulary)
        if self_vocabulary is not None:
            if len(self_vocabulary) != vocab_size:
                raise ValueError(
                    f"Expected `vocabulary` to hold `vocab_size`={vocab_size} tokens, but it holds {len(self_vocabulary)}."
                )
            if level is not None and level != self_vocabulary.level:
                raise ValueError(f"Expected `level` {level!r} to be the vocabulary's ({self_vocabulary.level!r}).")
        task_level = level if level is not None else (self_vocabulary.level if self_vocabulary is not None else "char")
        super().__init__(
            embedding_size, LanguageModelTask(vocab_size, level=task_level), hidden_size=hidden_size,
            num_layers=num_layers, bidirectional=False, optimizer=optimizer, learning_rate=learning_rate,
            techniques=techniques, num_embeddings=vocab_size, stop_on_nonfinite_loss=stop_on_nonfinite_loss,
        )
        # The hyper-parameters are this class's arguments (load_from_checkpoint calls it with
        # them); the vocabulary as plain data, so the checkpoint loads with weights_only=True.
        for name in ("input_size", "num_embeddings", "bidirectional"):
            self.hparams.pop(name, None)
        self.hparams["vocabulary"] = None if self_vocabulary is None else self_vocabulary.to_dict()
        self.hparams["level"] = task_level
        self.vocab_size = vocab_size
        self.vocabulary = self_vocabulary

    def setup(self, stage: str) -> None:
        super().setup(stage)
        found = getattr(getattr(self.trainer, "datamodule", None), "vocabulary", None)
        if self.vocabulary is not None and isinstance(found, Vocabulary) and found != self.vocabulary:
            raise ValueError(
                f"The model's vocabulary ({self.vocabulary!r}) differs from the data module's "
                f"({found!r}): the same ids would mean other tokens."
            )

    def generate(self, prompt: str, length: int = 200, *, temperature: float = 1.0, seed: int | None = None) -> str:
        """:func:`generate` with this model and its vocabulary."""
        return generate(self, prompt, length, temperature=temperature, seed=seed)


def _check_generation(model: Any, vocabulary: Any, prompt: Any, length: Any, temperature: Any, seed: Any) -> Vocabulary:
    if not isinstance(getattr(model, "task", None), LanguageModelTask):
        raise TypeError(f"Expected a language model (a SequenceModel with a LanguageModelTask), but got {type(model).__name__}.")
    vocabulary = vocabulary if vocabulary is not None else getattr(model, "vocabulary", None)
    if vocabulary is None:
        raise ValueError(
            "Generating text needs the vocabulary: build the model with `vocabulary=` (it is then "
            "saved in checkpoints) or pass `vocabulary=`."
        )
    vocabulary = Vocabulary.from_dict(vocabulary)
    if len(vocabulary) != model.task.vocab_size:
        raise ValueError(f"Expected a vocabulary of {model.task.vocab_size} tokens, like the model's, but got {len(vocabulary)}.")
    if not isinstance(prompt, str):
        raise TypeError(f"Expected `prompt` to be a str, but got {type(prompt).__name__}.")
    if not vocabulary.tokenize(prompt):
        raise ValueError(f"Expected `prompt` to hold at least one token to start from, but got {prompt!r}.")
    check.positive_int("length", length)
    check.non_negative_float("temperature", temperature)
    if seed is not None:
        check.int_at_least("seed", seed, 0, "a non-negative int or None")
    return vocabulary


@torch.no_grad()
def generate(
    model: Any,
    prompt: str,
    length: int = 200,
    *,
    temperature: float = 1.0,
    seed: int | None = None,
    vocabulary: Vocabulary | Mapping[str, Any] | None = None,
) -> str:
    """Continue ``prompt`` with ``length`` tokens sampled from a language model; returns the continuation.

    The prompt is read in one fused call from a zero state, then each sampled token is fed back
    one step at a time from the carried state (:func:`run_lstm_from_state`, on the fused kernel).
    The model runs in eval mode (dropout-like techniques off; the evaluation hooks fire with
    stage ``"predict"``) and is put back in its mode afterwards. Sampling draws from
    ``softmax(logits / temperature)``; with a ``seed``, from a generator of its own (the same
    text every time, the global random stream untouched), else from the global stream.
    ``temperature=0`` takes the most likely token. Every token of
    the prompt must be in the vocabulary (an unknown one is refused, named with its line and
    column).

    Example:
        >>> vocabulary = Vocabulary.build("abcabc")
        >>> model = LSTMLanguageModel(3, hidden_size=8, vocabulary=vocabulary)
        >>> generate(model, "ab", 5, seed=1) == generate(model, "ab", 5, seed=1)
        True
        >>> generate(model, "abd", 5)
        Traceback (most recent call last):
        ...
        ValueError: The character 'd' in `prompt` (line 1, column 3) is not in the 3-token vocabulary; build the vocabulary with an `unknown` token, or from text that holds it.
    """
    vocabulary = _check_generation(model, vocabulary, prompt, length, temperature, seed)
    ids = vocabulary.encode(prompt, name="prompt", strict=True)
    device = next(model.parameters()).device
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    was_training, started = model.training, model.evaluating is None
    model.eval()
    if started:
        model.start_evaluation("predict")
    try:
        tokens = ids.view(1, -1).to(device)
        output = model.encode(tokens, torch.tensor([tokens.size(1)]), None)
        generated: list[int] = []
        for _ in range(length):
            logits = output.logits[0, -1].float().cpu()
            if temperature == 0:
                token = int(logits.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator))
            generated.append(token)
            step = torch.tensor([[token]], device=device)
            output = model.encode(step, torch.tensor([1]), output.state)
    finally:
        if started:
            model.end_evaluation()
        model.train(was_training)
    return vocabulary.decode(generated)
