"""How each task prints its test results: the table ``fit`` and ``test`` print, by task name.

The task (``task:`` in a config; ``classification`` by default) picks the model class and the data
function (:data:`lstm_plugins.cli._lightning.TASK_CLASSES`) and, here, the printed table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["TASKS", "classification_table", "forecasting_table", "language_model_table", "regression_table",
           "scalar_table"]


def _value(results: Mapping[str, Any], name: str) -> float:
    return float(results[name].item() if hasattr(results[name], "item") else results[name])


def scalar_table(results: Mapping[str, Any], rows: Sequence[tuple[str, str]]) -> list[str]:
    """``Test results`` and one line per ``(label, metric name)`` present in ``results``."""
    lines = ["Test results"]
    for label, name in rows:
        if name in results:
            lines.append(f"  {label:<16}{_value(results, name):.4f}")
    return lines


def classification_table(results: Mapping[str, Any], datamodule: Any) -> str:
    """Accuracy, macro recall and macro F1, then recall and F1 per class."""
    lines = scalar_table(results, (("accuracy", "test/accuracy"), ("recall (macro)", "test/recall"),
                                   ("F1 (macro)", "test/f1")))
    lines += ["", f"  {'class':<16}{'recall':>8}{'F1':>8}"]
    recall, f1 = results["test/recall_per_class"], results["test/f1_per_class"]
    for index, name in enumerate(datamodule.class_names):
        lines.append(f"  {str(name):<16}{recall[index].item():>8.4f}{f1[index].item():>8.4f}")
    return "\n".join(lines)


def regression_table(results: Mapping[str, Any], datamodule: Any) -> str:
    """MAE, RMSE and R² (averaged over outputs), then one row per output when there are several."""
    lines = scalar_table(results, (("MAE", "test/mae"), ("RMSE", "test/rmse"), ("R²", "test/r2")))
    if "test/mae_per_output" in results:
        lines += ["", f"  {'output':<16}{'MAE':>8}{'RMSE':>8}{'R²':>8}"]
        for index in range(len(results["test/mae_per_output"])):
            row = [results[f"test/{name}_per_output"][index].item() for name in ("mae", "rmse", "r2")]
            lines.append(f"  {index:<16}" + "".join(f"{value:>8.4f}" for value in row))
    return "\n".join(lines)


def forecasting_table(results: Mapping[str, Any], datamodule: Any) -> str:
    """MAE, RMSE and MASE on the test span (in the series' units), beside the seasonal-naive
    forecast of the same windows."""
    lines = ["Test results", f"  {'':<16}{'model':>10}{'seasonal naive':>16}"]
    for label in ("MAE", "RMSE", "MASE"):
        name = label.lower()
        model, naive = _value(results, f"test/{name}"), _value(results, f"test/naive_{name}")
        lines.append(f"  {label:<16}{model:>10.4f}{naive:>16.4f}")
    lines.append(f"  (horizon {datamodule.horizon}, seasonality {datamodule.seasonality})")
    return "\n".join(lines)


def language_model_table(results: Mapping[str, Any], datamodule: Any) -> str:
    """Perplexity and bits per token (character or word) on the held-out text."""
    return "\n".join(scalar_table(results, (
        ("perplexity", "test/perplexity"), ("bits per char", "test/bpc"), ("bits per word", "test/bits_per_word"),
    )))


TASKS: dict[str, Callable[[Mapping[str, Any], Any], str]] = {
    "classification": classification_table,
    "regression": regression_table,
    "sequence_labelling": classification_table,
    "forecasting": forecasting_table,
    "language_model": language_model_table,
}
"""Every task the CLI runs, by the name a config gives in ``task:``: ``(model.test_results,
datamodule) -> printed table``."""
