"""Look inside a trained LSTM: attributions over time and gate activations.

Trains a small LSTM classifier on an embedded set (Japanese Vowels by default, or the univariate
GunPoint), then, on test sequences:

* times each attribution method per sequence (integrated gradients, input × gradient, saliency)
  and checks integrated gradients' completeness (the largest convergence delta);
* writes an attribution heatmap of one test sequence (``--heatmap``) and the gate plot of the same
  sequence (``--gates``).

Usage::

    python examples/attributions.py                       # Japanese Vowels, about a minute
    python examples/attributions.py --dataset gun_point --heatmap docs/attribution_heatmap.png \\
        --gates docs/gate_activations.png
    python examples/attributions.py --smoke               # a few steps, to check that it runs

Needs the ``explain`` extra (``pip install 'lstm-plugins[explain]'``: Captum and matplotlib).
One CPU thread; times are wall-clock on the machine it runs on.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import ArchiveDataModule, JapaneseVowelsDataModule
from lstm_plugins.explain import (
    METHODS, ConvergenceWarning, attribute, gate_activations, plot_attributions, plot_gates,
)


def train(dataset: str, epochs: int, seed: int, smoke: bool) -> tuple[LSTMClassifier, object, float]:
    """A trained classifier, its data module and its test accuracy."""
    pl.seed_everything(seed, verbose=False)
    if dataset == "japanese_vowels":
        datamodule = JapaneseVowelsDataModule(batch_size=16, seed=seed)
    else:
        datamodule = ArchiveDataModule(dataset, batch_size=16, seed=seed)
    model = LSTMClassifier(datamodule.num_features, datamodule.num_classes, hidden_size=32, bidirectional=True,
                           learning_rate=3e-3, techniques=[{"gradient_clipping": {"threshold": 1.0}}])
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_train_batches=2 if smoke else None,
        limit_val_batches=1 if smoke else None, limit_test_batches=2 if smoke else None,
    )
    trainer.fit(model, datamodule)
    trainer.test(model, datamodule, verbose=False)
    return model, datamodule, float(model.test_results["test/accuracy"])


def time_methods(model: LSTMClassifier, features: torch.Tensor, lengths: torch.Tensor,
                 n_steps: Sequence[int]) -> list[tuple[str, float, torch.Tensor | None]]:
    """Per method (integrated gradients at each number of steps): milliseconds per sequence on one
    batch and, for integrated gradients, each sequence's |convergence delta|."""
    runs: list[tuple[str, dict]] = [
        (f"integrated_gradients, {n} steps", {"method": "integrated_gradients", "n_steps": n,
                                               "return_convergence_delta": True,
                                               "internal_batch_size": 50 * len(lengths)})  # bounded memory
        for n in n_steps]
    runs += [(method, {"method": method}) for method in METHODS if method != "integrated_gradients"]
    results = []
    for name, options in runs:
        attribute(model, features[:2], lengths[:2], **options)  # warm up
        started = time.perf_counter()
        output = attribute(model, features, lengths, **options)
        milliseconds = 1000 * (time.perf_counter() - started) / len(lengths)
        results.append((name, milliseconds, output[1].abs() if isinstance(output, tuple) else None))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("japanese_vowels", "gun_point"), default="japanese_vowels")
    parser.add_argument("--epochs", type=int, default=None, help="default: 40 (Japanese Vowels), 60 (GunPoint)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequences", type=int, default=16, help="test sequences to time the methods on")
    parser.add_argument("--n_steps", type=int, nargs="+", default=[50, 200, 800],
                        help="integrated gradients' steps: each is timed; the pictures use the last")
    parser.add_argument("--index", type=int, default=0, help="the test sequence to draw")
    parser.add_argument("--heatmap", default="attribution_heatmap.png", help="the heatmap PNG to write")
    parser.add_argument("--gates", default="gate_activations.png", help="the gate plot PNG to write")
    parser.add_argument("--smoke", action="store_true", help="a few steps and sequences, to check that it runs")
    arguments = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.simplefilter("ignore", ConvergenceWarning)  # the deltas are printed instead
    epochs = 1 if arguments.smoke else arguments.epochs or (40 if arguments.dataset == "japanese_vowels" else 60)
    count = 3 if arguments.smoke else arguments.sequences
    n_steps = [4] if arguments.smoke else arguments.n_steps

    started = time.perf_counter()
    model, datamodule, accuracy = train(arguments.dataset, epochs, arguments.seed, arguments.smoke)
    seconds = time.perf_counter() - started
    print(f"{arguments.dataset}: bidirectional LSTM (32 units), {epochs} epochs in {seconds:.0f} s, "
          f"test accuracy {accuracy:.3f}")
    test = datamodule.test_dataset
    features, lengths, labels = test.features[:count], test.lengths[:count], test.targets[:count]
    features = features[:, : int(lengths.max())]
    print(f"per sequence, {count} test sequences in one batch (1 thread):")
    for name, milliseconds, delta in time_methods(model, features, lengths, n_steps):
        note = "" if delta is None else (
            f"   |convergence delta| median {float(delta.median()):.1e}, max {float(delta.max()):.1e}")
        print(f"  {name:<36}{milliseconds:8.1f} ms{note}")

    index = min(arguments.index, count - 1)
    one, length = features[index : index + 1], lengths[index : index + 1]
    scores = attribute(model, one, length, n_steps=n_steps[-1])
    with torch.no_grad():
        probabilities = model.eval()(one, length).softmax(-1)[0]
    names = datamodule.class_names
    predicted = int(probabilities.argmax())
    title = (f"{arguments.dataset} test sequence {index}: predicted {names[predicted]} "
             f"(p = {probabilities[predicted]:.2f}), true {names[int(labels[index])]}; "
             f"integrated gradients, {n_steps[-1]} steps")
    heatmap = Path(arguments.heatmap)
    plot_attributions(scores, one, length, heatmap.parent, ids=[heatmap.stem], titles=[title], prefix="")
    valid = one[0, : int(length[0])]
    gates = plot_gates(gate_activations(model, valid), arguments.gates, features=valid,
                       title=f"{arguments.dataset} test sequence {index}: LSTM gates (forward and backward)")
    print(f"heatmap written to {heatmap}, gate plot to {gates} ({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
