"""What ``fit`` prints after training (the test table, the checkpoint tested, notes) and what
``predict`` writes (a CSV of the predictions on the data's test split)."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["report_fit", "write_predictions"]


def _monitored_checkpoint(trainer: Any) -> Any:
    callback = getattr(trainer, "checkpoint_callback", None)
    if callback is not None and getattr(callback, "monitor", None) and callback.best_model_path:
        return callback
    return None


def report_fit(cli: Any) -> None:
    """After ``fit``: test (the best checkpoint when one is monitored) and print the task's table,
    which checkpoint was tested, a note on a tiny validation split, and the plot path."""
    from lstm_plugins.cli._tasks import TASKS

    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    notes = []
    validation = getattr(datamodule, "val_dataset", None) if getattr(datamodule, "has_validation", False) else None
    if validation is not None and hasattr(validation, "__len__") and len(validation) < cli_tiny():
        notes.append(f"  note: the validation split holds only {len(validation)} sequences; validation metrics"
                     " (and early stopping, the best checkpoint) rest on few samples.")
    if getattr(datamodule, "has_test", False):
        best = _monitored_checkpoint(trainer)
        trainer.test(model, datamodule=datamodule, ckpt_path=best.best_model_path if best else None, verbose=False)
        if trainer.is_global_zero:
            print(TASKS[cli.task](model.test_results, datamodule))
            if best is not None:
                score = float(best.best_model_score) if best.best_model_score is not None else float("nan")
                tested = f"the best checkpoint ({best.monitor} = {score:.4f}): {best.best_model_path}"
            else:
                tested = f"the final weights (epoch {trainer.current_epoch}, step {trainer.global_step})"
            print(f"  tested: {tested}")
            test_set = getattr(datamodule, "test_dataset", None)
            count = f"{len(test_set)} test sequences, " if hasattr(test_set, "__len__") else ""
            print(f"  ({count}{time.perf_counter() - cli.started:.1f} s in all)")
    if trainer.is_global_zero:
        for note in notes:
            print(note)
    plot = cli._config_value("plot")
    if plot and trainer.is_global_zero:
        from pytorch_lightning.loggers import CSVLogger

        from lstm_plugins.cli._plotting import plot_from_log

        logger = next((logger for logger in trainer.loggers if isinstance(logger, CSVLogger)), None)
        if logger is None:
            raise ValueError("`--plot` draws the CSV logger's metrics.csv: keep the default logger or add a CSVLogger.")
        logger.save()
        path = plot_from_log(logger.log_dir, plot, title=f"seed {cli._config_value('seed_everything')}")
        print(f"  plot written to {path} (from {logger.log_dir}/metrics.csv)")


def cli_tiny() -> int:
    from lstm_plugins.cli._lightning import TINY_VALIDATION

    return TINY_VALIDATION


def _test_sequences(datamodule: Any) -> list[Any]:
    """The test split's sequences as the model sees them (standardised), each cut to its length."""
    datamodule.setup("predict")
    dataset = getattr(datamodule, "test_dataset", None)
    features, lengths = getattr(dataset, "features", None), getattr(dataset, "lengths", None)
    if features is None or lengths is None:
        raise ValueError("`predict` needs a data module with a test split of sequences; "
                         f"{type(datamodule).__name__} has none.")
    return [features[index, : int(lengths[index])] for index in range(len(lengths))]


def write_predictions(
    cli: Any, model: Any, datamodule: Any, ckpt_path: str | None, output: str, input_path: str | None = None
) -> None:
    """Predict with the checkpoint's weights (or the model as configured) and write the CSV: an id
    per sequence (its index in the input), the predicted class with its name and the class
    probabilities, or the predicted values; per step for per-step tasks.

    The input is a ``.ts`` file of series (labelled or not: ``@classLabel false``), standardised
    with the training data's statistics, or else the data's test split."""
    from lstm_plugins.model._inference import is_classifying, predict_sequences, write_predictions_csv

    if getattr(model.task, "carries_state", False):
        raise ValueError("`predict` labels sequences; for a language model, continue a text with "
                         "`lstm-plugins generate --ckpt_path FILE.ckpt --prompt TEXT`.")
    if ckpt_path:
        from lstm_plugins.training._checkpoint_check import name_checkpoint

        try:
            model = type(model).load_from_checkpoint(ckpt_path, map_location="cpu")
        except Exception as exc:  # tampered technique state: say which file
            name_checkpoint(exc, ckpt_path)
            raise
    batch_size = getattr(datamodule, "batch_size", 64)
    if input_path is not None:
        from lstm_plugins.data import read_ts

        datamodule.setup("predict")
        sequences = read_ts(input_path, labels_required=False).sequences
        predictions = predict_sequences(model, sequences, batch_size=batch_size, standardize=datamodule)
    else:
        sequences = _test_sequences(datamodule)
        predictions = predict_sequences(model, sequences, batch_size=batch_size)
    names = list(datamodule.class_names) if is_classifying(model.task) else None
    path = write_predictions_csv(output, range(len(sequences)), predictions, names)
    if cli.trainer.is_global_zero:
        print(f"{len(sequences)} predictions written to {path}")
