"""Speaker turns: a sequence-labelling data set *constructed* from the embedded Japanese Vowels
utterances (UCI Machine Learning Repository, Kudo, Toyama and Shimbo 1999, CC BY 4.0).

A recording is 2 to 4 utterances of different speakers played one after the other; every frame
is labelled with its speaker. The recordings are built here, deterministically from a seed:
they are not recordings of real conversations, and the turn boundaries are the utterances'.
Training (and validation) recordings use training utterances only, test recordings test
utterances only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_plugins import validation as check
from lstm_plugins.data._japanese_vowels import load_japanese_vowels
from lstm_plugins.data._labelling import SequenceLabellingDataModule
from lstm_plugins.data._ts import TsData

__all__ = ["SpeakerTurnsDataModule", "speaker_turns"]


def speaker_turns(
    utterances: TsData, num_recordings: int, *, min_turns: int = 2, max_turns: int = 4, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Build ``num_recordings`` recordings of ``min_turns`` to ``max_turns`` utterances by
    different speakers, each frame labelled with its speaker (the utterance's class).

    For each recording, ``numpy.random.default_rng(seed)`` draws the number of turns uniformly,
    then that many distinct speakers in a random order, then one of each speaker's utterances
    (with replacement across recordings).

    Returns:
        ``(sequences, labels)``: float32 ``(length, features)`` arrays and int64 ``(length,)``
        speaker labels, one pair per recording.

    Example:
        >>> train, _ = load_japanese_vowels()
        >>> sequences, labels = speaker_turns(train, 2, seed=0)
        >>> [len(set(l.tolist())) for l in labels], sequences[0].shape[0] == labels[0].shape[0]
        ([4, 3], True)
    """
    check.positive_int("num_recordings", num_recordings)
    check.positive_int("min_turns", min_turns)
    check.int_at_least("seed", seed, 0)
    speakers = [np.flatnonzero(utterances.labels == speaker) for speaker in range(len(utterances.class_names))]
    present = [speaker for speaker, members in enumerate(speakers) if members.size]
    check.int_at_least("max_turns", max_turns, min_turns, f"an int >= min_turns ({min_turns})")
    if max_turns > len(present):
        raise ValueError(
            f"Expected `max_turns` to be at most the number of speakers ({len(present)}), but got {max_turns}."
        )
    rng = np.random.default_rng(seed)
    sequences, labels = [], []
    for _ in range(num_recordings):
        turns = int(rng.integers(min_turns, max_turns + 1))
        chosen = rng.choice(present, size=turns, replace=False)
        parts = [utterances.sequences[int(rng.choice(speakers[speaker]))] for speaker in chosen]
        sequences.append(np.concatenate(parts).astype(np.float32))
        labels.append(np.repeat(chosen.astype(np.int64), [part.shape[0] for part in parts]))
    return sequences, labels


def _hold_out(utterances: TsData, fraction: float, rng: np.random.Generator) -> tuple[TsData, TsData | None]:
    """Move ``fraction`` of every speaker's utterances (at least one, never all) to a second set."""
    if fraction == 0.0:
        return utterances, None
    held = []
    for speaker in range(len(utterances.class_names)):
        members = np.flatnonzero(utterances.labels == speaker)
        count = min(max(int(np.floor(fraction * members.size + 0.5)), 1), members.size - 1)
        held.extend(rng.permutation(members)[:count].tolist())
    mask = np.zeros(len(utterances), dtype=bool)
    mask[held] = True

    def subset(keep: np.ndarray) -> TsData:
        return TsData([s for s, k in zip(utterances.sequences, keep) if k], utterances.labels[keep],
                      utterances.class_names, utterances.problem_name)

    return subset(~mask), subset(mask)


class SpeakerTurnsDataModule(SequenceLabellingDataModule):
    """:class:`SequenceLabellingDataModule` over constructed speaker-turn recordings (12
    features, 9 speakers; see :func:`speaker_turns`; the recordings are built, not recorded).

    ``val_fraction`` of every speaker's training utterances is held out (stratified, at least
    one per speaker) and the validation recordings are built from those alone; the training
    recordings from the rest; the test recordings from the 370 test utterances. The utterance
    split and every recording follow from ``recording_seed`` alone, so runs with different
    ``seed`` (shuffle order) see the same data.

    Args:
        num_train, num_val, num_test: recordings per split (``num_val`` unused when
            ``val_fraction`` is 0).
        min_turns, max_turns: utterances per recording, each by a different speaker.
        val_fraction: share of each speaker's training utterances held out for validation.
        recording_seed: seed of the utterance split and the recordings.
        batch_size, standardize, seed, num_workers, length_batching: as for
            :class:`SequenceLabellingDataModule`.

    Example:
        >>> dm = SpeakerTurnsDataModule(num_train=40, num_val=8, num_test=10)
        >>> dm.num_features, dm.num_classes, len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)
        (12, 9, 40, 8, 10)
    """

    def __init__(
        self,
        *,
        num_train: int = 600,
        num_val: int = 100,
        num_test: int = 400,
        min_turns: int = 2,
        max_turns: int = 4,
        val_fraction: float = 0.1,
        recording_seed: int = 0,
        batch_size: int = 32,
        standardize: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        length_batching: bool | None = None,
    ) -> None:
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            check.positive_int(name, value)
        fraction = check.probability("val_fraction", val_fraction)
        self.recording_seed = check.int_at_least("recording_seed", recording_seed, 0)
        train, test = load_japanese_vowels()
        # One stream of seeds per use, so changing one split's size leaves the others unchanged.
        seeds = np.random.SeedSequence(self.recording_seed).generate_state(4)
        fit, held_out = _hold_out(train, fraction, np.random.default_rng(seeds[0]))
        turns: dict[str, Any] = {"min_turns": min_turns, "max_turns": max_turns}
        train_sequences, train_labels = speaker_turns(fit, num_train, seed=int(seeds[1]), **turns)
        test_sequences, test_labels = speaker_turns(test, num_test, seed=int(seeds[2]), **turns)
        validation: dict[str, Any] = {"val_fraction": 0.0}
        if held_out is not None:
            val_sequences, val_labels = speaker_turns(held_out, num_val, seed=int(seeds[3]), **turns)
            validation = {"val_sequences": val_sequences, "val_labels": val_labels}
        super().__init__(
            train_sequences, train_labels, test_sequences, test_labels, **validation,
            num_classes=len(train.class_names), class_names=train.class_names, batch_size=batch_size,
            standardize=standardize, seed=seed, num_workers=num_workers,
            length_batching=length_batching,
        )
