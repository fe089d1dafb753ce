"""Text for language modelling: vocabularies, the corpus as parallel streams cut into chunks, and
the data module for truncated backpropagation through time.

A split's token ids are laid out as ``S`` parallel streams (stream ``s`` is the ``s``-th
contiguous slice of the text, ``L = (tokens - 1) // S`` tokens long; the last ``tokens - 1 - S L``
tokens are left out), and each batch is the next chunk of at most ``T`` steps of every stream:
batch ``k`` of stream ``s`` continues batch ``k - 1`` of stream ``s``, so a model that carries
the LSTM's final state from a batch to the next (``Task.carries_state``) reads every stream
from its start. Targets are the next tokens.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from lstm_plugins import validation as check
from lstm_plugins.data._batch import SequenceBatch

__all__ = ["TextChunkLoader", "TextDataModule", "Vocabulary", "stream_layout"]

Level = Literal["char", "word"]
LEVELS = ("char", "word")
_WORD = re.compile(r"\n|[^\W_]+(?:'[^\W_]+)*|\S")
"""Word-level tokens: a newline, a word (letters and digits, inner apostrophes kept: ``o'er``),
or any other single non-blank character (punctuation)."""


def _line_and_column(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"line {line}, column {column}"


class Vocabulary:
    """Tokens and their ids, character- or word-level; saved as plain data (:meth:`to_dict`).

    Character level: every character is a token. Word level: words, single punctuation marks
    and newlines are tokens; blanks separate them and are not tokens (:meth:`decode` joins words
    with one space). ``unknown`` names a token that stands for every token outside the
    vocabulary; without one, :meth:`encode` refuses such a token, naming its line and column.

    Args:
        tokens: the tokens, in id order, each once.
        level: ``"char"`` or ``"word"``.
        unknown: the unknown token (one of ``tokens``), or ``None``.

    Example:
        >>> vocabulary = Vocabulary.build("to be, or not to be", level="char")
        >>> len(vocabulary), vocabulary.encode("be").tolist(), vocabulary.decode([7, 5])
        (8, [2, 3], 'to')
        >>> Vocabulary.build("To be, or not\\nto be", level="word", unknown="<unk>").tokenize("to be?")
        ['to', 'be', '?']
    """

    def __init__(self, tokens: Sequence[str], *, level: Level = "char", unknown: str | None = None) -> None:
        self.level: Level = check.choice("level", level, LEVELS)
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
            raise TypeError(f"Expected `tokens` to be a list of str, but got {check.describe(tokens)}.")
        self.tokens = tuple(tokens)
        if not self.tokens:
            raise ValueError("Expected `tokens` to hold at least one token, but got none.")
        for index, token in enumerate(self.tokens):
            if not isinstance(token, str) or not token:
                raise TypeError(f"Expected `tokens[{index}]` to be a non-empty str, but got {check.describe(token)}.")
            if level == "char" and len(token) != 1 and token != unknown:
                raise ValueError(f"Expected `tokens[{index}]` to be one character for a character vocabulary, but got {token!r}.")
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            duplicate = next(t for t, n in Counter(self.tokens).items() if n > 1)
            raise ValueError(f"Expected every token once in `tokens`, but {duplicate!r} occurs twice.")
        if unknown is not None and unknown not in self.index:
            raise ValueError(f"Expected `unknown` ({unknown!r}) to be one of the tokens.")
        self.unknown = unknown

    @classmethod
    def build(
        cls, text: str, *, level: Level = "char", min_count: int = 1, max_size: int | None = None,
        unknown: str | None = None,
    ) -> Vocabulary:
        """The vocabulary of ``text``: tokens seen at least ``min_count`` times (the
        ``max_size`` most frequent, when given), plus ``unknown`` (id 0) when given.

        Characters are in code-point order; words from most to least frequent (ties in
        alphabetical order). Dropping tokens needs an ``unknown`` token to stand for them.
        """
        if not isinstance(text, str) or not text:
            raise ValueError(f"Expected `text` to be a non-empty str, but got {check.describe(text)}.")
        check.choice("level", level, LEVELS)
        min_count = check.positive_int("min_count", min_count)
        max_size = check.optional_positive_int("max_size", max_size)
        counts = Counter(text) if level == "char" else Counter(_WORD.findall(text))
        counts.pop(unknown, None)
        kept = [token for token, count in counts.items() if count >= min_count]
        if max_size is not None:
            kept = sorted(kept, key=lambda t: (-counts[t], t))[:max_size]
        kept.sort(key=(lambda t: t) if level == "char" else (lambda t: (-counts[t], t)))
        if len(kept) < len(counts) and unknown is None:
            raise ValueError(
                f"`min_count`={min_count} and `max_size`={max_size} leave out {len(counts) - len(kept)} "
                "tokens; pass `unknown` (for example '<unk>') to stand for them."
            )
        return cls(([unknown] if unknown is not None else []) + kept, level=level, unknown=unknown)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} {self.level} tokens, unknown={self.unknown!r})"

    def tokenize(self, text: str) -> list[str]:
        """``text`` as tokens (characters, or words, punctuation and newlines)."""
        return list(text) if self.level == "char" else _WORD.findall(text)

    def encode(self, text: str, *, name: str = "text", strict: bool = False) -> Tensor:
        """The int64 ids of ``text``'s tokens.

        A token outside the vocabulary becomes the unknown token; with ``strict=True``, or
        without an unknown token, it is refused (``ValueError`` naming ``name``, the token, its
        line and column).
        """
        if not isinstance(text, str):
            raise TypeError(f"Expected `{name}` to be a str, but got {type(text).__name__}.")
        fallback = None if strict else (None if self.unknown is None else self.index[self.unknown])
        if self.level == "char":
            codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
            table = np.full(max(ord(t) for t in self.tokens if len(t) == 1) + 1, -1, dtype=np.int64)
            for token, index in self.index.items():
                if len(token) == 1:
                    table[ord(token)] = index
            ids = np.where(codes < table.size, table[np.minimum(codes, table.size - 1)], -1)
            missing = np.flatnonzero(ids < 0)
            if missing.size and fallback is not None:
                ids[missing] = fallback
            elif missing.size:
                self._refuse(text, name, int(missing[0]), text[int(missing[0])])
            return torch.from_numpy(ids)
        spans = list(_WORD.finditer(text))
        ids_list = []
        for match in spans:
            index = self.index.get(match.group(), fallback)
            if index is None:
                self._refuse(text, name, match.start(), match.group())
            ids_list.append(index)
        return torch.tensor(ids_list, dtype=torch.int64)

    def _refuse(self, text: str, name: str, position: int, token: str) -> None:
        kind = "character" if self.level == "char" else "word"
        raise ValueError(
            f"The {kind} {token!r} in `{name}` ({_line_and_column(text, position)}) is not in the "
            f"{len(self)}-token vocabulary"
            + ("; build the vocabulary with an `unknown` token, or from text that holds it." if self.unknown is None else ".")
        )

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The text of ``ids``: characters joined, or words joined by one space (none around newlines)."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        for value in values:
            if not isinstance(value, int) or not 0 <= value < len(self):
                raise ValueError(f"Expected token ids in [0, {len(self)}), but got {value!r}.")
        tokens = [self.tokens[value] for value in values]
        if self.level == "char":
            return "".join(tokens)
        pieces: list[str] = []
        for token in tokens:
            if token != "\n" and pieces and pieces[-1] != "\n":
                pieces.append(" ")
            pieces.append(token)
        return "".join(pieces)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (safe in checkpoints loaded with ``weights_only=True``)."""
        return {"level": self.level, "tokens": list(self.tokens), "unknown": self.unknown}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        """The vocabulary :meth:`to_dict` described (keys ``level``, ``tokens``, ``unknown``)."""
        if isinstance(data, Vocabulary):
            return data
        if not isinstance(data, Mapping) or set(data) != {"level", "tokens", "unknown"}:
            raise ValueError(
                "Expected a vocabulary as a mapping with keys `level`, `tokens` and `unknown`, "
                f"but got {check.describe(data)}."
            )
        return cls(data["tokens"], level=data["level"], unknown=data["unknown"])


def stream_layout(ids: Tensor, num_streams: int, *, name: str = "text") -> tuple[Tensor, Tensor]:
    """``(inputs, targets)``, each ``(num_streams, L)``: ``ids`` cut into ``num_streams``
    contiguous streams of ``L = (len(ids) - 1) // num_streams`` tokens, targets shifted by one.

    Example:
        >>> inputs, targets = stream_layout(torch.arange(11), 2)
        >>> inputs.tolist(), targets.tolist()
        ([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    """
    length = (ids.numel() - 1) // num_streams
    if length < 1:
        raise ValueError(
            f"`{name}` has {ids.numel()} tokens: too few for {num_streams} streams (each needs at "
            "least 2 tokens); lower the batch size or give more text."
        )
    used = num_streams * length
    return ids[:used].view(num_streams, length), ids[1 : used + 1].view(num_streams, length)


class TextChunkLoader:
    """The batches of a split: chunk ``k`` of every stream, in order, as a :class:`SequenceBatch`.

    ``features`` and ``targets`` are ``(streams, t)`` int64 ids (``t = chunk_length``, or fewer
    for the last chunk), ``lengths`` is ``t`` for every stream. Chunks come in order (never
    shuffled: the state carried from a chunk is the start of the next). Lightning checkpoints
    its position (``state_dict``): a fit resumed mid-epoch continues at the next chunk. Not a
    ``DataLoader``, so Lightning never puts a ``DistributedSampler`` in front of it (streams are
    split across processes by :class:`TextDataModule` instead).

    Example:
        >>> loader = TextChunkLoader(*stream_layout(torch.arange(11), 2), chunk_length=2)
        >>> [batch.features.tolist() for batch in loader]
        [[[0, 1], [5, 6]], [[2, 3], [7, 8]], [[4], [9]]]
    """

    def __init__(self, inputs: Tensor, targets: Tensor, chunk_length: int) -> None:
        self.inputs, self.targets = inputs, targets
        self.chunk_length = check.positive_int("chunk_length", chunk_length)
        self._handed_out = 0
        self._skip_next = 0

    @property
    def num_streams(self) -> int:
        """Streams per batch (on this process)."""
        return int(self.inputs.size(0))

    def __len__(self) -> int:
        return -(-int(self.inputs.size(1)) // self.chunk_length)

    def __iter__(self) -> Iterator[SequenceBatch]:
        skip, self._skip_next = self._skip_next, 0
        self._handed_out = skip
        for index in range(skip, len(self)):
            start = index * self.chunk_length
            features = self.inputs[:, start : start + self.chunk_length].contiguous()
            targets = self.targets[:, start : start + self.chunk_length].contiguous()
            lengths = torch.full((features.size(0),), features.size(1), dtype=torch.int64)
            self._handed_out += 1
            yield SequenceBatch(features, lengths, targets)

    def state_dict(self) -> dict[str, Any]:
        return {"batches_handed_out": self._handed_out}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        handed_out = int(state_dict.get("batches_handed_out", 0))
        # A checkpoint from the epoch's last chunk resumes at the next epoch: skip nothing.
        self._skip_next = handed_out if 0 < handed_out < len(self) else 0


class TextDataModule(pl.LightningDataModule):
    """Language-modelling data: train/validation/test texts as parallel streams of chunks.

    Each split is encoded with one :class:`Vocabulary` (given, or built from ``train_text``) and
    laid out as ``batch_size * world_size`` streams (``eval_batch_size * world_size`` for
    validation and test; see :func:`stream_layout`); process ``r`` of a distributed run takes
    streams ``r * batch_size`` to ``(r + 1) * batch_size - 1``, so two processes with batch size
    ``B`` read exactly the streams one process with batch size ``2 B`` reads. Batches are the
    chunks of :class:`TextChunkLoader`, ``chunk_length`` steps each.

    Args:
        train_text: the training text.
        val_text, test_text: held-out texts (optional).
        level: ``"char"`` or ``"word"`` (ignored when ``vocabulary`` is given).
        vocabulary: a :class:`Vocabulary` (or its :meth:`~Vocabulary.to_dict`); by default built
            from ``train_text`` with ``min_count``, ``max_size`` and ``unknown``.
        unknown: the token standing for tokens outside the vocabulary (``"<unk>"``, for example;
            needed at word level for held-out text). Without one, a held-out token outside the
            vocabulary is refused, naming the split, line and column.
        batch_size: training streams per process. eval_batch_size: validation and test streams
            per process (``batch_size`` by default). chunk_length: steps per chunk (``T``).

    Example:
        >>> dm = TextDataModule("to be or not to be, " * 20, "or not to be, to be", batch_size=4,
        ...                     eval_batch_size=2, chunk_length=8)
        >>> batch = next(iter(dm.train_dataloader()))
        >>> dm.vocab_size, tuple(batch.features.shape), batch.lengths.tolist(), len(dm.train_dataloader())
        (8, (4, 8), [8, 8, 8, 8], 13)
        >>> dm.vocabulary.decode(batch.features[0]), dm.vocabulary.decode(batch.targets[0])
        ('to be or', 'o be or ')
    """

    def __init__(
        self,
        train_text: str,
        val_text: str | None = None,
        test_text: str | None = None,
        *,
        level: Level = "char",
        vocabulary: Vocabulary | Mapping[str, Any] | None = None,
        unknown: str | None = None,
        min_count: int = 1,
        max_size: int | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        chunk_length: int = 64,
    ) -> None:
        super().__init__()
        self.batch_size = check.positive_int("batch_size", batch_size)
        self.eval_batch_size = check.optional_positive_int("eval_batch_size", eval_batch_size) or self.batch_size
        self.chunk_length = check.positive_int("chunk_length", chunk_length)
        texts = {"train_text": train_text, "val_text": val_text, "test_text": test_text}
        for name, text in texts.items():
            if text is None and name != "train_text":
                continue
            if not isinstance(text, str) or not text:
                error = ValueError if isinstance(text, str) else TypeError
                raise error(f"Expected `{name}` to be a non-empty str, but got {check.describe(text)}.")
        if vocabulary is None:
            vocabulary = Vocabulary.build(train_text, level=level, min_count=min_count, max_size=max_size, unknown=unknown)
        self.vocabulary = Vocabulary.from_dict(vocabulary)
        self._ids = {
            name[: -len("_text")]: self.vocabulary.encode(text, name=name)
            for name, text in texts.items() if text is not None
        }
        for split, size in (("train", self.batch_size), ("val", self.eval_batch_size), ("test", self.eval_batch_size)):
            if split in self._ids:
                stream_layout(self._ids[split], size, name=f"{split}_text")  # refuses too short a text now

    @property
    def vocab_size(self) -> int:
        """Tokens in the vocabulary (the model's ``num_embeddings``)."""
        return len(self.vocabulary)

    @property
    def level(self) -> Level:
        return self.vocabulary.level

    @property
    def has_validation(self) -> bool:
        return "val" in self._ids

    @property
    def has_test(self) -> bool:
        return "test" in self._ids

    def token_ids(self, split: str) -> Tensor:
        """All token ids of a split (``"train"``, ``"val"`` or ``"test"``), in text order."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"Expected `split` to be one of 'train', 'val', 'test', but got {split!r}.")
        if split not in self._ids:
            raise ValueError(f"Expected {split} text, but the data module was built without `{split}_text`.")
        return self._ids[split]

    def _process(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def loader(self, split: str) -> TextChunkLoader:
        """This process's chunks of a split (its own ``batch_size`` streams under DDP)."""
        ids = self.token_ids(split)
        per_process = self.batch_size if split == "train" else self.eval_batch_size
        rank, world_size = self._process()
        inputs, targets = stream_layout(ids, per_process * world_size, name=f"{split}_text")
        rows = slice(rank * per_process, (rank + 1) * per_process)
        return TextChunkLoader(inputs[rows], targets[rows], self.chunk_length)

    def train_dataloader(self) -> TextChunkLoader:
        return self.loader("train")

    def val_dataloader(self) -> TextChunkLoader | list[Any]:
        """Validation chunks, or ``[]`` (no validation) without ``val_text``."""
        return self.loader("val") if self.has_validation else []

    def test_dataloader(self) -> TextChunkLoader:
        return self.loader("test")

    def state_dict(self) -> dict[str, Any]:
        """The vocabulary, as plain data: a checkpoint says which ids mean which tokens."""
        return {"vocabulary": self.vocabulary.to_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Refuse a checkpoint written with another vocabulary (its ids mean other tokens)."""
        saved = Vocabulary.from_dict(state_dict.get("vocabulary"))  # type: ignore[arg-type]
        if saved != self.vocabulary:
            raise ValueError(
                f"The checkpoint was written with another vocabulary ({saved!r}) than this data "
                f"module's ({self.vocabulary!r}); its token ids would mean other tokens."
            )
