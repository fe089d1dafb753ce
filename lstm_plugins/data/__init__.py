"""Variable-length sequence data: ``.ts`` reading, padded batches and Lightning data modules.

Example:
    >>> from lstm_plugins.data import JapaneseVowelsDataModule
    >>> dm = JapaneseVowelsDataModule(batch_size=8)
    >>> batch = next(iter(dm.train_dataloader()))
    >>> batch.features.shape[0], batch.features.shape[2], batch.lengths.device.type
    (8, 12, 'cpu')
"""

from lstm_plugins.data._archive import ARCHIVE_DATASETS, ArchiveDataModule, ArchiveName, load_archive
from lstm_plugins.data._adding import MEAN_PREDICTOR_MSE, AddingProblemDataModule, adding_problem
from lstm_plugins.data._buckets import LengthBucketBatchSampler, length_batching_pays, padding_fraction
from lstm_plugins.data._batch import PaddedSequenceDataset, SequenceBatch, collate_sequence_batch
from lstm_plugins.data._checks import ClassCoverageWarning, ConstantFeatureWarning, read_text_file
from lstm_plugins.data._datamodule import SequenceDataModule
from lstm_plugins.data._forecasting import ForecastingDataModule, ForecastStatistics
from lstm_plugins.data._japanese_vowels import JapaneseVowelsDataModule, load_japanese_vowels
from lstm_plugins.data._labelling import SequenceLabellingDataModule
from lstm_plugins.data._series import EMBEDDED_SERIES, SeriesTable, read_series_csv
from lstm_plugins.data._predict import PredictionLoaders, prediction_loader, restore_input_order
from lstm_plugins.data._shakespeare import SHAKESPEARE_SPLITS, ShakespeareDataModule, load_shakespeare
from lstm_plugins.data._speaker_turns import SpeakerTurnsDataModule, speaker_turns
from lstm_plugins.data._step_labels import StepLabelledDataset, collate_step_batch
from lstm_plugins.data._tecator import TecatorDataModule, load_tecator
from lstm_plugins.data._text import TextChunkLoader, TextDataModule, Vocabulary, stream_layout
from lstm_plugins.data._ts import TsData, read_ts

__all__ = [
    "ARCHIVE_DATASETS",
    "ArchiveDataModule",
    "ArchiveName",
    "ClassCoverageWarning",
    "ConstantFeatureWarning",
    "AddingProblemDataModule",
    "EMBEDDED_SERIES",
    "ForecastStatistics",
    "ForecastingDataModule",
    "JapaneseVowelsDataModule",
    "LengthBucketBatchSampler",
    "MEAN_PREDICTOR_MSE",
    "PaddedSequenceDataset",
    "PredictionLoaders",
    "SHAKESPEARE_SPLITS",
    "SequenceBatch",
    "SequenceDataModule",
    "SequenceLabellingDataModule",
    "SeriesTable",
    "ShakespeareDataModule",
    "SpeakerTurnsDataModule",
    "StepLabelledDataset",
    "TecatorDataModule",
    "TextChunkLoader",
    "TextDataModule",
    "TsData",
    "Vocabulary",
    "adding_problem",
    "collate_sequence_batch",
    "collate_step_batch",
    "length_batching_pays",
    "load_archive",
    "load_japanese_vowels",
    "load_shakespeare",
    "load_tecator",
    "padding_fraction",
    "prediction_loader",
    "read_series_csv",
    "read_text_file",
    "read_ts",
    "restore_input_order",
    "speaker_turns",
    "stream_layout",
]
