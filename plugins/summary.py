"""Sequence summaries: the last valid step, mean or max over valid steps, or attention pooling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check
from lstm_plugins.techniques import Choice, SearchValue
from lstm_plugins.model import LastStepSummary
from lstm_plugins.model._summaries import SUMMARY_MODES, SummaryMode, build_summary


def sequence_summary(model: Any, mode: SummaryMode = "mean", attention_size: int | None = None) -> None:
    """Set how ``model`` summarises each sequence before the head (``model.summary``), in place.

    * ``"last"``: the last valid step's output (the backward direction's at step 0): the default
      of every model, the LSTM's final hidden state;
    * ``"mean"`` / ``"max"``: mean / maximum of each output unit over the valid steps;
    * ``"attention"``: a learned score per step, softmax over the valid steps, and the weighted
      mean of the outputs (:class:`lstm_plugins.model._summaries.AttentionSummary`).

    Padded steps never count, and for a bidirectional LSTM mean, max and attention read both
    directions at every valid step. The LSTM stays on its fused kernel. Refused for a task that
    reads every step's output (sequence labelling, language modelling). This is what
    :class:`SequenceSummary` does when the model is built.

    Example:
        >>> import torch
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(3, 2, hidden_size=4)
        >>> sequence_summary(model, "max")
        >>> model.summary
        MaxSummary()
    """
    mode = check.choice("mode", mode, SUMMARY_MODES)
    if attention_size is not None:
        check.positive_int("attention_size", attention_size)
    if model.task.per_step:
        raise ValueError(
            f"The `summary` technique cannot work with the `{model.task.name}` task: it reads every "
            "step's output, and a summary gives one vector per sequence."
        )
    if type(model.summary) is not LastStepSummary:
        raise ValueError(
            f"The model's summary is set already ({model.summary!r}); at most one technique sets it."
        )
    features = model.lstm.hidden_size * (2 if model.lstm.bidirectional else 1)
    model.summary = build_summary(mode, features, attention_size)


class SequenceSummary(Technique):
    """How each sequence is summarised before the head: last step, mean, max or attention.

    Set once when the model is built (:func:`sequence_summary`), in the network's ``summary``
    slot; padding never counts, and the LSTM stays on its fused kernel. At most one technique of a
    model sets the summary (the ``summary`` slot). Refused for per-step tasks.

    Args:
        mode: ``"last"`` (the models' default: the final hidden state), ``"mean"``, ``"max"`` or
            ``"attention"`` (learned attention pooling over the valid steps).
        attention_size: units of the attention's scoring layer (``"attention"`` only); ``None``
            for the LSTM's output width.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> SequenceSummary("attention")
        SequenceSummary(mode='attention', attention_size=None)
        >>> LSTMClassifier(12, 9, hidden_size=8, techniques=[SequenceSummary("mean")]).summary
        MeanSummary()
    """

    name = "summary"
    exclusive = "summary"
    search_space: ClassVar[Mapping[str, SearchValue]] = {"mode": Choice(*SUMMARY_MODES)}

    def __init__(self, mode: SummaryMode = "mean", attention_size: int | None = None) -> None:
        self.mode = check.choice("mode", mode, SUMMARY_MODES)
        if attention_size is not None and self.mode != "attention":
            raise ValueError(
                f"Expected `attention_size` to be None for the `{self.mode}` summary, but got {attention_size}."
            )
        self.attention_size = None if attention_size is None else check.positive_int("attention_size", attention_size)

    @hookimpl
    def configure_network(self, model: Any) -> None:
        sequence_summary(model, self.mode, self.attention_size)
