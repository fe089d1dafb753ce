"""Variable-length sequence data: ``.ts`` reading, padded batches and Lightning data modules.

Example:
    >>> from lstm_plugins.data import JapaneseVowelsDataModule
    >>> dm = JapaneseVowelsDataModule(batch_size=8)
    >>> batch = next(iter(dm.train_dataloader()))
    >>> batch.features.shape[0], batch.features.shape[2], batch.lengths.device.type
    (8, 12, 'cpu')
"""

from lstm_plugins.data._adding import MEAN_PREDICTOR_MSE, AddingProblemDataModule, adding_problem
from lstm_plugins.data._batch import PaddedSequenceDataset, SequenceBatch, collate_sequence_batch
from lstm_plugins.data._datamodule import SequenceDataModule
from lstm_plugins.data._japanese_vowels import JapaneseVowelsDataModule, load_japanese_vowels
from lstm_plugins.data._ts import TsData, read_ts

__all__ = [
    "MEAN_PREDICTOR_MSE",
    "AddingProblemDataModule",
    "JapaneseVowelsDataModule",
    "PaddedSequenceDataset",
    "SequenceBatch",
    "SequenceDataModule",
    "TsData",
    "adding_problem",
    "collate_sequence_batch",
    "load_japanese_vowels",
    "read_ts",
]
