"""``lstm-plugins explain``: attribution heatmaps (one PNG per sequence, and a CSV) or the gate
plot of one sequence, for a checkpoint's classifier or regressor.

The series come from a ``.ts`` file (``--input``) or an embedded set's test split (``--dataset``),
read as raw features and standardised with the statistics the checkpoint's data module saved, as
``predict --input`` does. Captum and matplotlib (the ``explain`` extra) are imported here only.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["explain"]

DATASETS = ("japanese_vowels", "gun_point", "arrow_head", "plaid")
TASKS = ("classification", "regression")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstm-plugins explain",
        description="Which time steps and features drove a checkpoint's predictions: one attribution heatmap PNG "
        "per sequence and attributions.csv; or, with --gates, the LSTM's gates over one sequence "
        "(needs pip install 'lstm-plugins[explain]').",
    )
    parser.add_argument("--ckpt_path", required=True, metavar="FILE.ckpt",
                        help="a classifier's or regressor's checkpoint")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="FILE.ts", help="a .ts file of series (labels optional), raw features")
    source.add_argument("--dataset", choices=DATASETS, help="an embedded set: its test split")
    parser.add_argument("--task", choices=TASKS, default="classification", help="the checkpoint's task")
    parser.add_argument("--method", default="integrated_gradients",
                        choices=("integrated_gradients", "saliency", "input_x_gradient"), help="the attribution method")
    parser.add_argument("--target", type=int, default=None,
                        help="the class (or output) explained; default: the predicted class (a regressor's output)")
    parser.add_argument("--n_steps", type=int, default=50, help="integrated gradients' steps (default 50)")
    parser.add_argument("--limit", type=int, default=10, help="explain the first N sequences (default 10; 0: all)")
    parser.add_argument("--batch_size", type=int, default=16, help="sequences per attribution batch")
    parser.add_argument("--output", default="explanations", metavar="FOLDER", help="where the files go")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op CPU threads (torch.set_num_threads), 1 by default as for fit; 0 keeps torch's")
    parser.add_argument("--gates", action="store_true", help="plot the gates over sequence --index instead")
    parser.add_argument("--index", type=int, default=0, help="the sequence whose gates --gates plots (default 0)")
    return parser


def _statistics(checkpoint: dict[str, Any], input_size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The standardisation statistics a data module saved in the checkpoint (Lightning stores its
    ``state_dict`` under the class name), or ``None`` when it saved none or standardised nothing."""
    for value in checkpoint.values():
        if isinstance(value, dict) and {"standardize", "feature_mean", "feature_std"} <= value.keys():
            if not value["standardize"]:
                return None
            mean = np.asarray(value["feature_mean"], dtype=np.float64)
            std = np.asarray(value["feature_std"], dtype=np.float64)
            if mean.shape != (input_size,) or std.shape != (input_size,) or (std <= 0).any():
                raise ValueError(f"The checkpoint's standardisation statistics do not fit {input_size} features.")
            return mean, std
    print("  note: the checkpoint holds no standardisation statistics; the features are used as given.")
    return None


def _load(arguments: argparse.Namespace) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    from lstm_plugins.model import LSTMClassifier, LSTMRegressor
    from lstm_plugins.training._checkpoint_check import read_checkpoint

    path = Path(arguments.ckpt_path)
    # Missing, empty, truncated or crafted files, and files that are not Lightning checkpoints,
    # are refused naming the file, as for every other --ckpt_path.
    checkpoint = read_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters", {})
    expected = "num_classes" if arguments.task == "classification" else "num_outputs"
    if expected not in hparams or "input_size" not in hparams:
        found = ("a regressor (--task regression)" if "num_outputs" in hparams
                 else "a classifier (--task classification)" if "num_classes" in hparams else "another task's model")
        raise ValueError(
            f"`--task {arguments.task}` needs a checkpoint with `{expected}`, but {path} holds {found}; "
            "explain reads classifiers and regressors."
        )
    model_class = LSTMClassifier if arguments.task == "classification" else LSTMRegressor
    model = model_class.load_from_checkpoint(path, map_location="cpu")
    return model, _statistics(checkpoint, model.input_size)


def _series(arguments: argparse.Namespace) -> Any:
    from lstm_plugins.data import load_archive, load_japanese_vowels, read_ts

    if arguments.input is not None:
        return read_ts(arguments.input, labels_required=False)
    _, test = load_japanese_vowels() if arguments.dataset == "japanese_vowels" else load_archive(arguments.dataset)
    return test


def _label(data: Any, index: int) -> str:
    if data.labels.size == 0:
        return ""
    value = data.labels[index]
    return f", true {data.class_names[int(value)]}" if data.class_names else f", true {float(value):.4g}"


def _prediction(model: Any, data: Any, predictions: np.ndarray, target: int) -> str:
    num_classes = getattr(model.task, "num_classes", None)
    if num_classes is not None:
        names = data.class_names
        name = names[target] if len(names) == num_classes else str(target)
        return f"class {name} (p = {predictions[target]:.2f})"
    return f"output {target} = {float(np.ravel(predictions)[target]):.4g}"


def _write_csv(path: Path, sequences: Sequence[np.ndarray], attributions: Sequence[np.ndarray],
               targets: Sequence[int]) -> Path:
    from lstm_plugins._files import replaced_atomically

    width = sequences[0].shape[1]
    header = ["id", "target", "step", *(f"feature_{j}" for j in range(width)),
              *(f"attribution_{j}" for j in range(width))]
    with replaced_atomically(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for index, (values, scores, target) in enumerate(zip(sequences, attributions, targets)):
            for step in range(values.shape[0]):
                writer.writerow([index, target, step, *(format(float(v), ".7g") for v in values[step]),
                                 *(format(float(v), ".7g") for v in scores[step])])
    return path


def _gates(arguments: argparse.Namespace, model: Any, sequences: Sequence[np.ndarray], data: Any) -> int:
    from lstm_plugins.explain import gate_activations, plot_gates

    if not 0 <= arguments.index < len(sequences):
        raise ValueError(f"Expected `--index` in [0, {len(sequences)}) (the series read), but got {arguments.index}.")
    values = sequences[arguments.index]
    # Under a sequence view (a dimension shuffle) the LSTM's steps are not the series' steps.
    shown = values if getattr(model, "sequence_view", None) is None else None
    path = plot_gates(gate_activations(model, values), Path(arguments.output) / f"gates_{arguments.index:04d}.png",
                      features=shown, title=f"sequence {arguments.index}{_label(data, arguments.index)}")
    print(f"gate plot written to {path}")
    return 0


def explain(argv: Sequence[str]) -> int:
    """Run ``lstm-plugins explain`` with ``argv`` (the words after ``explain``); returns the exit status.

    Example:
        >>> explain(["--ckpt_path", "missing.ckpt", "--dataset", "gun_point"])
        Traceback (most recent call last):
        ...
        FileNotFoundError: Checkpoint 'missing.ckpt' does not exist.
    """
    arguments = _parser().parse_args(list(argv))
    if arguments.threads < 0:
        raise ValueError(
            f"Expected `--threads` to be 0 (torch's default) or a positive int, but got {arguments.threads}."
        )
    for name in ("n_steps", "batch_size"):
        if getattr(arguments, name) < 1:
            raise ValueError(f"Expected `--{name}` to be a positive int, but got {getattr(arguments, name)}.")
    if arguments.limit < 0:
        raise ValueError(f"Expected `--limit` to be 0 (all) or a positive int, but got {arguments.limit}.")
    from lstm_plugins.explain._mode import require_captum
    from lstm_plugins.explain._plots import _figure

    if not arguments.gates:
        require_captum()  # before any work: a missing extra is named at once
    _figure(1, 1)  # likewise for matplotlib
    import torch

    from lstm_plugins.data._predict import standardize_values

    if arguments.threads:
        torch.set_num_threads(arguments.threads)

    model, statistics = _load(arguments)
    data = _series(arguments)
    if data.num_features != model.input_size:
        raise ValueError(
            f"Expected series with {model.input_size} features (the model's `input_size`), but got {data.num_features}."
        )
    sequences = [standardize_values(values, statistics) for values in data.sequences]
    if arguments.gates:
        return _gates(arguments, model, sequences, data)
    return _attributions(arguments, model, sequences, data, torch)


def _attributions(arguments: argparse.Namespace, model: Any, sequences: list[np.ndarray], data: Any, torch: Any) -> int:
    from lstm_plugins.explain import attribute, plot_attributions
    from lstm_plugins.explain._attributions import model_outputs
    from lstm_plugins.explain._mode import explained
    from lstm_plugins.model._inference import _pad

    count = len(sequences) if arguments.limit == 0 else min(arguments.limit, len(sequences))
    sequences = sequences[:count]
    folder = Path(arguments.output)
    attributed: list[np.ndarray] = []
    targets: list[int] = []
    titles: list[str] = []
    started = time.perf_counter()
    for start in range(0, count, arguments.batch_size):
        features, lengths = _pad(sequences[start : start + arguments.batch_size])
        scores = attribute(model, features, lengths, method=arguments.method, target=arguments.target,
                           n_steps=arguments.n_steps, internal_batch_size=50 * arguments.batch_size)
        with explained(model), torch.no_grad():
            outputs = model_outputs(model, features, lengths)
            if getattr(model.task, "num_classes", None) is not None:
                outputs = outputs.softmax(-1)
        for row in range(features.size(0)):
            index, length = start + row, int(lengths[row])
            row_outputs = outputs[row].numpy()
            target = arguments.target if arguments.target is not None else (
                int(row_outputs.argmax()) if getattr(model.task, "num_classes", None) is not None else 0)
            attributed.append(scores[row, :length].numpy())
            targets.append(target)
            titles.append(f"sequence {index}: {_prediction(model, data, row_outputs, target)}{_label(data, index)}"
                          f" — {arguments.method.replace('_', ' ')}")
    seconds = time.perf_counter() - started
    for index, (values, scores) in enumerate(zip(sequences, attributed)):
        plot_attributions(scores[None], values[None], [values.shape[0]], folder, ids=[f"{index:04d}"],
                          titles=[titles[index]])
    path = _write_csv(folder / "attributions.csv", sequences, attributed, targets)
    print(f"{count} attribution heatmaps ({arguments.method}: {seconds:.1f} s) and {path.name} written to {folder}")
    return 0
