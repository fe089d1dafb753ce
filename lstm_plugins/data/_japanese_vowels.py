"""The UCI Japanese Vowels speaker-classification data set, embedded in the package."""

from __future__ import annotations

from importlib import resources

import numpy as np

from lstm_plugins.data._datamodule import SequenceDataModule
from lstm_plugins.data._ts import TsData

__all__ = ["JapaneseVowelsDataModule", "load_japanese_vowels"]

_RESOURCE = "japanese_vowels.npz"


def _split(npz: np.lib.npyio.NpzFile, prefix: str, class_names: tuple[str, ...]) -> TsData:
    values = np.asarray(npz[f"{prefix}_values"], dtype=np.float32)
    lengths = np.asarray(npz[f"{prefix}_lengths"], dtype=np.int64)
    labels = np.asarray(npz[f"{prefix}_labels"], dtype=np.int64)
    offsets = np.cumsum(lengths)[:-1]
    sequences = [np.ascontiguousarray(s) for s in np.split(values, offsets)]
    return TsData(sequences, labels, class_names, "JapaneseVowels")


def load_japanese_vowels() -> tuple[TsData, TsData]:
    """Load the embedded Japanese Vowels train and test splits.

    Nine speakers each utter the vowels "ae"; every utterance is 7 to 29 frames of 12 LPC
    cepstrum coefficients. 270 training and 370 test utterances; labels 0-8 stand for speakers
    ``"1"`` to ``"9"``. Source: UCI Machine Learning Repository (Kudo, Toyama and Shimbo, 1999),
    CC BY 4.0, in the ``.ts`` form distributed with aeon.

    Example:
        >>> train, test = load_japanese_vowels()
        >>> len(train), len(test), train.num_features, train.class_names[0]
        (270, 370, 12, '1')
    """
    with resources.files("lstm_plugins.data").joinpath(_RESOURCE).open("rb") as handle:
        with np.load(handle, allow_pickle=False) as npz:
            class_names = tuple(str(name) for name in npz["class_names"])
            return _split(npz, "train", class_names), _split(npz, "test", class_names)


class JapaneseVowelsDataModule(SequenceDataModule):
    """:class:`SequenceDataModule` over the embedded Japanese Vowels data (12 features, 9 classes).

    The validation split is carved from the 270 training utterances; the 370 test utterances
    form the test split.

    Example:
        >>> dm = JapaneseVowelsDataModule(batch_size=16)
        >>> dm.num_features, dm.num_classes, len(dm.train_dataset), len(dm.val_dataset)
        (12, 9, 243, 27)
    """

    def __init__(
        self,
        *,
        val_fraction: float = 0.1,
        batch_size: int = 32,
        standardize: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        length_batching: bool | None = None,
    ) -> None:
        train, test = load_japanese_vowels()
        super().__init__(
            train.sequences,
            train.labels,
            test.sequences,
            test.labels,
            num_classes=len(train.class_names),
            class_names=train.class_names,
            val_fraction=val_fraction,
            batch_size=batch_size,
            standardize=standardize,
            seed=seed,
            num_workers=num_workers,
            length_batching=length_batching,
        )
