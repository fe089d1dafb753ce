"""Pictures: an attribution heatmap per sequence and a gate plot, written atomically as PNG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from lstm_plugins._files import replaced_atomically
from lstm_plugins.explain._gates import GateActivations
from lstm_plugins.explain._mode import INSTALL_HINT

__all__ = ["plot_attributions", "plot_gates"]

_MAX_LINES = 12  # more feature lines than this are unreadable; the heatmap still shows all
_GATES = (("input", "input gate", 0.0, 1.0), ("forget", "forget gate", 0.0, 1.0),
          ("cell_candidate", "cell candidate", -1.0, 1.0), ("output", "output gate", 0.0, 1.0))


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            f"Plots need matplotlib, which is not installed; install the extra: {INSTALL_HINT}"
        ) from error
    # A bare Figure draws with Agg and never touches pyplot's global state or backend.
    return Figure(figsize=(width, height), layout="constrained")


def _save(figure: Any, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    for axis in figure.axes:
        if axis.get_xlabel() == "time step":
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    with replaced_atomically(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    return path


def _array(name: str, value: Any, dims: int) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if isinstance(value, Tensor) else value, dtype=np.float64)
    if array.ndim != dims:
        raise ValueError(f"Expected `{name}` with {dims} dimensions, but got shape {array.shape}.")
    return array


def _signal(axis: Any, values: np.ndarray, names: Sequence[str]) -> None:
    steps = np.arange(values.shape[0])
    for column in range(min(values.shape[1], _MAX_LINES)):
        axis.plot(steps, values[:, column], linewidth=1.0, label=names[column])
    if 1 < values.shape[1] <= _MAX_LINES:
        axis.legend(fontsize=6, ncol=min(values.shape[1], 6), loc="upper right")
    axis.set_ylabel("features")
    axis.margins(x=0)


def plot_attributions(
    attributions: Tensor | np.ndarray,
    features: Tensor | np.ndarray,
    lengths: Tensor | Sequence[int],
    folder: str | os.PathLike[str],
    *,
    ids: Sequence[Any] | None = None,
    titles: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    prefix: str = "attribution",
) -> list[Path]:
    """Write one heatmap PNG per sequence: its features over its valid steps above, the
    attributions (feature × time, red positive, blue negative, white zero) below.

    For univariate data the signal's points are also coloured by their attribution.

    Args:
        attributions: ``(batch, time, features)``, as :func:`attribute` returns them.
        features: the ``(batch, time, features)`` inputs they explain.
        lengths: ``(batch,)`` valid lengths (only valid steps are drawn).
        folder: where the files go (created); each is written atomically.
        ids: one id per sequence, for the file names ``{prefix}_{id}.png`` (default: the index,
            zero-padded to 4 digits); ``{id}.png`` when ``prefix`` is empty.
        titles: one title per sequence (the predicted and true class, say).
        feature_names: names for the feature axis.
        prefix: the start of each file name.

    Returns:
        The paths written, in order.

    Example:
        >>> import tempfile, torch
        >>> paths = plot_attributions(torch.randn(2, 6, 1), torch.randn(2, 6, 1), [6, 4], tempfile.mkdtemp())
        >>> [p.name for p in paths]
        ['attribution_0000.png', 'attribution_0001.png']
    """
    values = _array("attributions", attributions, 3)
    inputs = _array("features", features, 3)
    if values.shape != inputs.shape:
        raise ValueError(f"Expected `attributions` of the features' shape {inputs.shape}, but got {values.shape}.")
    counts = np.asarray(lengths.cpu() if isinstance(lengths, Tensor) else lengths, dtype=np.int64).reshape(-1)
    if counts.shape[0] != values.shape[0] or (counts.size and (counts.min() < 1 or counts.max() > values.shape[1])):
        raise ValueError(f"Expected {values.shape[0]} lengths in [1, {values.shape[1]}], but got {counts.tolist()}.")
    width = values.shape[2]
    names = [str(n) for n in feature_names] if feature_names is not None else [f"feature {i}" for i in range(width)]
    if len(names) != width:
        raise ValueError(f"Expected {width} `feature_names`, but got {len(names)}.")
    labels = [f"{i:04d}" for i in range(len(counts))] if ids is None else [str(i) for i in ids]
    for given, name in ((labels, "ids"), (titles, "titles")):
        if given is not None and len(given) != len(counts):
            raise ValueError(f"Expected one of `{name}` per sequence ({len(counts)}), but got {len(given)}.")
    folder = Path(folder)
    paths = []
    for row, length in enumerate(counts.tolist()):
        shown, signal = values[row, :length], inputs[row, :length]
        limit = float(np.abs(shown).max()) or 1.0  # symmetric: zero is white
        figure = _figure(9.0, 3.2 + 0.18 * min(width, 40))
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(1.0, 1.0 + 0.05 * min(width, 40)))
        _signal(top, signal, names)
        if width == 1:  # a coloured halo under the line: the attribution of each point
            top.lines[0].set(color="0.2", zorder=4)
            top.scatter(np.arange(length), signal[:, 0], c=shown[:, 0], cmap="RdBu_r", vmin=-limit, vmax=limit, s=28,
                        zorder=3, linewidths=0)
        image = bottom.imshow(shown.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        bottom.set_yticks(range(width) if width <= 20 else [])
        if width <= 20:
            bottom.set_yticklabels(names, fontsize=7)
        bottom.set_xlabel("time step")
        figure.colorbar(image, ax=bottom, label="attribution", shrink=0.9)
        top.set_title(titles[row] if titles is not None else f"sequence {labels[row]}", fontsize=9)
        paths.append(_save(figure, folder / (f"{prefix}_{labels[row]}.png" if prefix else f"{labels[row]}.png")))
    return paths


def plot_gates(
    gates: Sequence[GateActivations],
    path: str | os.PathLike[str],
    *,
    features: Tensor | np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Write one PNG of the gates over time: a column per layer and direction, a row per gate
    (input, forget, cell candidate, output; units × time heatmaps), the sequence's features
    above when given.

    Args:
        gates: what :func:`gate_activations` returns for one sequence.
        path: the PNG to write (atomically; parent folders are created).
        features: the sequence's ``(time, features)`` inputs, drawn on top.
        title: a title over the figure.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib, torch
        >>> from lstm_plugins import LSTMClassifier
        >>> from lstm_plugins.explain import gate_activations
        >>> model = LSTMClassifier(1, 2, hidden_size=4)
        >>> path = plot_gates(gate_activations(model, torch.randn(7, 1)), pathlib.Path(tempfile.mkdtemp()) / "g.png")
        >>> path.stat().st_size > 0
        True
    """
    gates = list(gates)
    if not gates or not all(isinstance(g, GateActivations) for g in gates):
        raise ValueError("Expected `gates` to be what `gate_activations` returns (GateActivations, at least one).")
    signal = None if features is None else _array("features", features, 2)[: gates[0].input.shape[0]]
    rows = len(_GATES) + (signal is not None)
    figure = _figure(4.5 * len(gates) + 1.0, 1.6 * rows + 0.6)
    axes = np.asarray(figure.subplots(rows, len(gates), sharex=True, squeeze=False))
    for column, activation in enumerate(gates):
        if signal is not None:
            _signal(axes[0, column], signal, [f"feature {i}" for i in range(signal.shape[1])])
            axes[0, column].set_title(f"layer {activation.layer}, {activation.direction}", fontsize=9)
        for offset, (field, label, low, high) in enumerate(_GATES):
            axis = axes[offset + (signal is not None), column]
            values = getattr(activation, field).detach().cpu().numpy().T
            image = axis.imshow(values, aspect="auto", cmap="viridis" if low == 0 else "RdBu_r", vmin=low, vmax=high,
                                interpolation="nearest")
            if signal is None and offset == 0:
                axis.set_title(f"layer {activation.layer}, {activation.direction}", fontsize=9)
            if column == 0:
                axis.set_ylabel(f"{label}\nunit", fontsize=8)
            if column == len(gates) - 1:
                figure.colorbar(image, ax=axis, shrink=0.9)
        axes[-1, column].set_xlabel("time step")
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, Path(path))
