"""Export for serving: an ONNX graph that takes ``(features, lengths)`` and reproduces
``model(features, lengths)`` on variable-length batches.

The graph is the model's own CPU forward pass, traced in ``eval()`` mode (every technique that
only acts in training is inactive): the fused LSTM becomes ONNX's ``LSTM`` operator on the padded
batch, each sequence is summarised over its valid steps (the network's ``summary`` and
``branches``), and a bidirectional layer's backward direction reads each sequence reversed
within its own length, so padding never reaches a valid result. Batch size and sequence length are free axes of the graph.

Why ONNX: ``torch.export`` (and the ``torch.export``-based ONNX exporter) fix the time axis of an
LSTM to the example's length (its decomposition loops over the steps), so a graph exported that
way refuses every other length; the TorchScript-based ONNX exporter keeps ``LSTM`` as one
operator with a free time axis. ONNX Runtime then serves the file from Python, C++, C#, Java or
JavaScript without PyTorch. Needs the ``export`` extra: ``pip install 'lstm-plugins[export]'``
(``onnx`` to write, ``onnxruntime`` to check and serve).
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lstm_plugins import validation as check
from lstm_plugins._files import replaced_atomically
from lstm_plugins.data._predict import resolve_standardization
from lstm_plugins.model._inference import is_classifying

__all__ = ["export_model", "exported_parity"]

_INSTALL_HINT = "pip install 'lstm-plugins[export]'"
# torch >= 2.5 takes `dynamo=` (True by default from 2.9); earlier versions only have this exporter.
_TORCHSCRIPT_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
INPUT_NAMES = ("features", "lengths")
OUTPUT_NAME = "predictions"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(
            f"Exporting to ONNX needs `{module}`, which is not installed; install it with: {_INSTALL_HINT}"
        ) from error


class _ServingGraph(nn.Module):
    """What is traced: optional standardisation, the model, optional softmax."""

    def __init__(self, model: nn.Module, statistics: tuple[np.ndarray, np.ndarray] | None, softmax: bool) -> None:
        super().__init__()
        self.model = model
        self.softmax = softmax
        self.standardize = statistics is not None
        if statistics is not None:  # in float64, as the data modules standardise
            self.register_buffer("mean", torch.from_numpy(statistics[0]).to(torch.float64))
            self.register_buffer("std", torch.from_numpy(statistics[1]).to(torch.float64))

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        if self.standardize:
            features = ((features.to(torch.float64) - self.mean) / self.std).to(torch.float32)
        predictions = self.model(features, lengths)
        return predictions.softmax(-1) if self.softmax else predictions


def _example(
    model: Any, batch: int, time: int, lengths: list[int], generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    embedding = getattr(model, "embedding", None)
    if embedding is not None:
        features = torch.randint(0, embedding.num_embeddings, (batch, time), generator=generator)
    else:
        features = torch.randn(batch, time, model.input_size, generator=generator)
    mask = torch.arange(time) < torch.tensor(lengths).unsqueeze(1)
    features = features * (mask if features.dim() == 2 else mask.unsqueeze(-1))
    return features.to(features.dtype), torch.tensor(lengths, dtype=torch.int64)


def _check_exportable(model: Any) -> None:
    recurrence = getattr(model, "recurrence", None)
    if recurrence is not None:
        raise ValueError(
            f"Cannot export a model whose `recurrence` slot is filled ({recurrence!r}): it steps "
            "through time in Python, which a traced graph would fix to one sequence length."
        )
    view = getattr(model, "sequence_view", None)
    if view is not None:
        raise ValueError(
            f"Cannot export a model whose `sequence_view` slot is filled ({view!r}): it needs one fixed "
            "sequence length, which a graph with a free time axis cannot enforce."
        )


def exported_parity(path: str | os.PathLike[str], model: Any, *, standardize: Any = None,
                    probabilities: bool = False, seed: int = 0) -> float:
    """The largest ``|exported - model|`` over variable-length batches of several sizes (valid
    steps only for a per-step task), the exported file run with ONNX Runtime on the CPU and the
    model in ``eval()`` mode on its device (its mode is restored)."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    graph = _ServingGraph(model, resolve_standardization(standardize), probabilities and is_classifying(model.task))
    generator = torch.Generator().manual_seed(seed)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    cases = ((5, 11, [11, 1, 4, 9, 3]), (1, 4, [4]), (4, 2, [2, 1, 2, 1]), (8, 30, [30, 29, 17, 1, 8, 30, 2, 12]))
    worst = 0.0
    was_training = model.training
    model.eval()
    try:
        for batch, time, lengths in cases:
            if model.task.carries_state:
                lengths = [time] * batch
            features, lengths_tensor = _example(model, batch, time, lengths, generator)
            with torch.no_grad():
                expected = graph.to(device)(features.to(device), lengths_tensor).float().cpu()
            inputs = {"features": features.numpy(), "lengths": lengths_tensor.numpy()}
            got = torch.from_numpy(session.run(None, inputs)[0])
            if got.shape != expected.shape:
                raise RuntimeError(
                    f"The exported graph returned shape {tuple(got.shape)} where the model returns "
                    f"{tuple(expected.shape)}."
                )
            difference = (got - expected).abs()
            if model.task.per_step:
                difference = difference[torch.arange(time) < lengths_tensor.unsqueeze(1)]
            worst = max(worst, float(difference.max()) if difference.numel() else 0.0)
    finally:
        model.train(was_training)
    return worst


def export_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    standardize: Any = None,
    probabilities: bool = False,
    class_names: Sequence[str] | None = None,
    opset_version: int = 17,
    check_parity: bool = True,
    tolerance: float = 1e-5,
) -> Path:
    """Export a model to ONNX for serving: ``(features, lengths) -> predictions``.

    The graph's inputs are ``features``, float32 ``(batch, time, input_size)`` zero-padded (int64
    ``(batch, time)`` token ids for a token model), and ``lengths``, int64 ``(batch,)``; its
    output ``predictions`` is what ``model(features, lengths)`` returns: ``(batch, outputs)``,
    ``(batch,)`` for one output, ``(batch, time, outputs)`` for a per-step task (padded steps
    unspecified). Batch and time are free. The model is traced on the CPU in ``eval()`` mode,
    between the ``on_evaluation_start`` / ``on_evaluation_end`` hooks of stage ``"predict"``
    (averaged weights, for example, are the ones exported); its device and mode are restored.

    Args:
        model: a :class:`lstm_plugins.SequenceModel`. A model whose ``recurrence`` slot is filled
            (zoneout) is refused: it steps through time in Python.
        path: the ``.onnx`` file; parent folders are created.
        standardize: bake the feature standardisation into the graph, so it takes raw features:
            a data module (its training statistics) or a ``(mean, std)`` pair.
        probabilities: for a classifying task, output class probabilities (softmax) instead of
            the scores ``model(...)`` returns.
        class_names: stored in the file's metadata (``lstm_plugins.class_names``, JSON).
        opset_version: the ONNX opset.
        check_parity: run the file with ONNX Runtime on variable-length batches of several
            sizes and raise ``RuntimeError`` when it differs from the model by more than
            ``tolerance``.
        tolerance: the largest absolute difference accepted.

    Returns:
        The path written.

    Raises:
        ImportError: ``onnx`` (or, to check, ``onnxruntime``) is not installed.
    """
    check.boolean("probabilities", probabilities)
    check.boolean("check_parity", check_parity)
    check.positive_float("tolerance", tolerance)
    _check_exportable(model)
    statistics = resolve_standardization(standardize)
    if statistics is not None and getattr(model, "embedding", None) is not None:
        raise ValueError("Expected `standardize=None` for a token model: token ids are not standardised.")
    if statistics is not None and statistics[0].shape[0] != model.input_size:
        raise ValueError(
            f"Expected standardisation statistics for {model.input_size} features, but got {statistics[0].shape[0]}."
        )
    onnx = _require("onnx")
    if check_parity:
        _require("onnxruntime")
    softmax = probabilities and is_classifying(model.task)
    path = Path(path)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.to("cpu").eval()
    start = getattr(model, "start_evaluation", None)
    if callable(start):
        start("predict")
    try:
        with replaced_atomically(path) as temporary:
            lengths = [7] * 3 if model.task.carries_state else [7, 2, 5]
            example = _example(model, 3, 7, lengths, torch.Generator().manual_seed(0))
            output_axes = {0: "batch", 1: "time"} if model.task.per_step else {0: "batch"}
            graph = _ServingGraph(model, statistics, softmax)
            with warnings.catch_warnings(), torch.no_grad():
                # Known and harmless here (parity is checked below): the forward pass's shape checks
                # trace as constants (the input size is fixed); the last-step index is never negative
                # (lengths >= 1); the LSTM's zero initial state is built from the batch's own size; and
                # the TorchScript-based exporter announces its deprecation.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
                warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
                warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
                warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")  # a branch's padding
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
                torch.onnx.export(
                    graph, example, os.fspath(temporary), input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                    dynamic_axes={"features": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, OUTPUT_NAME: output_axes},
                    opset_version=opset_version, do_constant_folding=True, **_TORCHSCRIPT_EXPORTER,
                )
            exported = onnx.load(os.fspath(temporary))
            output = "probabilities" if softmax else ("scores" if is_classifying(model.task) else "values")
            metadata = {
                "lstm_plugins.task": str(getattr(model.task, "name", type(model.task).__name__)),
                "lstm_plugins.output": output,
                "lstm_plugins.standardized_inside": json.dumps(statistics is not None),
            }
            if class_names is not None:
                metadata["lstm_plugins.class_names"] = json.dumps([str(name) for name in class_names])
            for key, value in metadata.items():
                exported.metadata_props.add(key=key, value=value)
            onnx.save(exported, os.fspath(temporary))
            if check_parity:
                worst = exported_parity(temporary, model, standardize=standardize, probabilities=probabilities)
                if not worst <= tolerance:
                    raise RuntimeError(
                        f"The exported graph differs from the model by up to {worst:.3g} (> {tolerance:g}); "
                        "a technique's forward pass may not trace to a graph with free sequence lengths."
                    )
    finally:
        end = getattr(model, "end_evaluation", None)
        if callable(end):
            end()
        model.to(device).train(was_training)
    return path
