"""Three UCR archive classification problems, embedded: GunPoint, ArrowHead and PLAID.

They are univariate and longer than JapaneseVowels (150, 251 and 100-1344 steps), the shapes on
which a plain LSTM reading its last step struggles, and PLAID's lengths vary widely. Converted by
``scripts/convert_archive.py`` from the ``.ts`` files in the ``sktime`` 1.2.0 wheel
(BSD-3-Clause); from the UCR Time Series Classification Archive (Dau et al., 2018). Original
sources: GunPoint, Ratanamahatana and Keogh (2005); ArrowHead, Ye and Keogh (2009); PLAID, the
Plug Load Appliance Identification Dataset (Gao, Giri, Kara and Berges, 2014).
"""

from __future__ import annotations

from importlib import resources
from typing import Literal, get_args

import numpy as np

from lstm_plugins import validation as check
from lstm_plugins.data._datamodule import SequenceDataModule
from lstm_plugins.data._ts import TsData

__all__ = ["ARCHIVE_DATASETS", "ArchiveDataModule", "ArchiveName", "load_archive"]

ArchiveName = Literal["gun_point", "arrow_head", "plaid"]
ARCHIVE_DATASETS: tuple[str, ...] = get_args(ArchiveName)
"""The embedded archive problems, by the name ``load_archive`` and ``data.dataset`` take."""


def _split(npz: np.lib.npyio.NpzFile, prefix: str, class_names: tuple[str, ...], name: str) -> TsData:
    values = np.asarray(npz[f"{prefix}_values"], dtype=np.float32)
    lengths = np.asarray(npz[f"{prefix}_lengths"], dtype=np.int64)
    labels = np.asarray(npz[f"{prefix}_labels"], dtype=np.int64)
    sequences = [np.ascontiguousarray(s) for s in np.split(values, np.cumsum(lengths)[:-1])]
    return TsData(sequences, labels, class_names, name)


def load_archive(name: ArchiveName) -> tuple[TsData, TsData]:
    """Load an embedded archive problem's train and test splits.

    ========== ======= ====== ======= ========
    name       classes train  test    steps
    ========== ======= ====== ======= ========
    gun_point  2       50     150     150
    arrow_head 3       36     175     251
    plaid      11      537    537     100-1344
    ========== ======= ====== ======= ========

    Example:
        >>> train, test = load_archive("arrow_head")
        >>> len(train), len(test), train.num_features, int(train.lengths.max()), train.class_names
        (36, 175, 1, 251, ('0', '1', '2'))
    """
    name = check.choice("name", name, ARCHIVE_DATASETS)
    with resources.files("lstm_plugins.data").joinpath(f"archive_{name}.npz").open("rb") as handle:
        with np.load(handle, allow_pickle=False) as npz:
            class_names = tuple(str(c) for c in npz["class_names"])
            problem = str(npz["problem_name"])
            return _split(npz, "train", class_names, problem), _split(npz, "test", class_names, problem)


class ArchiveDataModule(SequenceDataModule):
    """:class:`SequenceDataModule` over an embedded archive problem (see :func:`load_archive`).

    The validation split is carved, stratified, from the training split; the archive's test split
    is the test split.

    Example:
        >>> dm = ArchiveDataModule("gun_point", batch_size=8)
        >>> dm.num_features, dm.num_classes, len(dm.train_dataset), len(dm.val_dataset)
        (1, 2, 45, 5)
    """

    def __init__(
        self,
        name: ArchiveName,
        *,
        val_fraction: float = 0.1,
        batch_size: int = 16,
        standardize: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        length_batching: bool | None = None,
    ) -> None:
        train, test = load_archive(name)
        self.problem_name = train.problem_name
        super().__init__(
            train.sequences, train.labels, test.sequences, test.labels,
            num_classes=len(train.class_names), class_names=train.class_names, val_fraction=val_fraction,
            batch_size=batch_size, standardize=standardize, seed=seed, num_workers=num_workers,
            length_batching=length_batching,
        )
