"""The Tecator regression data set (fat content of meat from its infrared spectrum), embedded.

215 meat samples, each a 100-channel near-infrared absorbance spectrum (850-1050 nm) read as a
univariate sequence of 100 steps; the target is the fat content in percent. 172 training and 43
test samples, the split of the Monash/UEA/UCR time-series extrinsic regression archive (Tan,
Bergmeir, Petitjean and Webb, 2021), converted by ``scripts/convert_regression_ts.py`` from the
``.ts`` files in the ``sktime`` 1.2.0 wheel (BSD-3-Clause). Original source: StatLib and OpenML
(data set 505); Borggaard and Thodberg, Analytical Chemistry 64 (1992) 545-551.

Statement of permission from Tecator (the original data source), which travels with the data
(also stored in ``tecator.npz`` as ``permission``): "These data are recorded on a Tecator
Infratec Food and Feed Analyzer working in the wavelength range 850 - 1050 nm by the Near
Infrared Transmission (NIT) principle. If results from these data are used in a publication we
want you to mention the instrument and company name (Tecator) in the publication. The data are
available in the public domain with no responsibility from the original data source. The data
can be redistributed as long as this permission note is attached."
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from lstm_plugins.data._datamodule import SequenceDataModule
from lstm_plugins.data._ts import TsData

__all__ = ["TecatorDataModule", "load_tecator"]

_RESOURCE = "tecator.npz"


def _split(npz: np.lib.npyio.NpzFile, prefix: str, problem_name: str) -> TsData:
    values = np.asarray(npz[f"{prefix}_values"], dtype=np.float32)
    lengths = np.asarray(npz[f"{prefix}_lengths"], dtype=np.int64)
    targets = np.asarray(npz[f"{prefix}_targets"], dtype=np.float32)
    sequences = [np.ascontiguousarray(s) for s in np.split(values, np.cumsum(lengths)[:-1])]
    return TsData(sequences, targets, (), problem_name)


def load_tecator() -> tuple[TsData, TsData]:
    """Load the embedded Tecator train and test splits (regression: ``labels`` are the fat
    contents in percent, float32).

    Example:
        >>> train, test = load_tecator()
        >>> len(train), len(test), train.num_features, int(train.lengths.max()), train.task
        (172, 43, 1, 100, 'regression')
        >>> round(float(train.labels.mean()), 1)
        18.1
    """
    with resources.files("lstm_plugins.data").joinpath(_RESOURCE).open("rb") as handle:
        with np.load(handle, allow_pickle=False) as npz:
            name = str(npz["problem_name"])
            return _split(npz, "train", name), _split(npz, "test", name)


class TecatorDataModule(SequenceDataModule):
    """:class:`SequenceDataModule` over the embedded Tecator data (``task="regression"``, one
    feature, one output). The validation split is a seeded random part of the 172 training
    samples; the 43 test samples form the test split.

    Example:
        >>> dm = TecatorDataModule(batch_size=16)
        >>> dm.num_features, dm.num_outputs, len(dm.train_dataset), len(dm.val_dataset)
        (1, 1, 155, 17)
        >>> [round(v, 2) for v in dm.target_mean + dm.target_std]
        [17.5, 12.27]
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
        train, test = load_tecator()
        super().__init__(
            train.sequences,
            train.labels,
            test.sequences,
            test.labels,
            task="regression",
            val_fraction=val_fraction,
            batch_size=batch_size,
            standardize=standardize,
            seed=seed,
            num_workers=num_workers,
            length_batching=length_batching,
        )
