"""Plot the gradient reach of an LSTM before and after it learns a long dependency.

The task: the label is the sign of feature 0 at the *first* time step; every later step is noise.
Training sequences are 1 to 40 steps long (the short ones teach the network what to keep), the
evaluation sequences are all 40 steps long. Before training, the gradient of the loss with
respect to the LSTM's input fades within about ten steps (forget gates near 0.5); after training
it reaches back to step 0, where the label is decided.

The model trains with Lightning and the ``gradient_reach`` technique, which logs the reach of
the training batches every 50 steps (on steps 49, 99, ...); the plot compares the untrained and
trained networks on one evaluation batch with
:func:`lstm_plugins.plugins.gradient_reach.measure_gradient_reach`.

Usage::

    python examples/gradient_reach_plot.py --output gradient_reach.png
    python examples/gradient_reach_plot.py --smoke        # a few steps, to check that it runs

Needs matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import copy
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lstm_plugins import LSTMClassifier
from lstm_plugins.data import PaddedSequenceDataset, SequenceBatch, collate_sequence_batch
from lstm_plugins.plugins.gradient_reach import GradientReach, GradientReachResult, measure_gradient_reach

MAX_LENGTH = 40
NUM_FEATURES = 3


def first_step_task(count: int, seed: int, min_length: int, noise: float = 0.5) -> SequenceBatch:
    """``count`` zero-padded sequences whose label is the sign of feature 0 at step 0."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_length, MAX_LENGTH + 1, (count,), generator=generator)
    features = noise * torch.randn(count, MAX_LENGTH, NUM_FEATURES, generator=generator)
    features[:, 0] = torch.randn(count, NUM_FEATURES, generator=generator)
    targets = (features[:, 0, 0] > 0).long()
    features *= (torch.arange(MAX_LENGTH) < lengths.unsqueeze(1)).unsqueeze(-1)
    return SequenceBatch(features, lengths, targets)


def train(steps: int, seed: int, fraction: float) -> tuple[LSTMClassifier, LSTMClassifier, GradientReach]:
    """The untrained network (a copy) and the network after ``steps`` optimizer steps."""
    pl.seed_everything(seed, verbose=False)
    # Measured on optimizer steps 49, 99, ... (Lightning's logging rows); a shorter run, at its last step.
    monitor = GradientReach(log_every_n_steps=min(50, steps), fraction=fraction)
    model = LSTMClassifier(NUM_FEATURES, 2, hidden_size=32, learning_rate=2e-2, techniques=[monitor])
    untrained = copy.deepcopy(model)
    data = first_step_task(64 * steps, seed=seed + 1, min_length=1)
    sequences = [data.features[i, : int(n)] for i, n in enumerate(data.lengths)]
    loader = DataLoader(
        PaddedSequenceDataset(sequences, data.targets),
        batch_size=64,
        shuffle=True,
        collate_fn=collate_sequence_batch,
        generator=torch.Generator().manual_seed(seed),
    )
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*no `val_dataloader`.*|.*does not have many workers.*")
        trainer.fit(model, train_dataloaders=loader)
    return untrained, model, monitor


def plot(results: dict[str, GradientReachResult], fraction: float, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    colours = {"untrained": "tab:orange", "trained": "tab:blue"}
    for label, result in results.items():
        relative = (result.profile / result.profile[0]).cpu()
        reach = int(result.reach)
        colour = colours[label]
        axes.semilogy(range(len(relative)), relative, marker="o", markersize=3, color=colour,
                      label=f"{label}: reach {reach} steps")
        axes.axvline(reach, color=colour, linestyle=":", linewidth=1.5)
    axes.axhline(fraction, color="grey", linestyle="--", linewidth=1, label=f"fraction = {fraction:g}")
    axes.set_xlabel("steps before the last step (39 = step 0, which decides the label)")
    axes.set_ylabel("mean input-gradient norm / its value at the last step")
    axes.set_title("Gradient reach of an LSTM on a first-step task (40 steps)")
    axes.legend(loc="lower left")
    axes.grid(True, which="major", alpha=0.3)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> dict[str, GradientReachResult]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("gradient_reach.png"), help="where to write the PNG")
    parser.add_argument("--steps", type=int, default=500, help="training steps (batches of 64)")
    parser.add_argument("--fraction", type=float, default=0.01, help="the reach's level, relative to the last step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="train for a few steps only, to check the script runs")
    arguments = parser.parse_args(argv)
    steps = 20 if arguments.smoke else arguments.steps

    untrained, trained, monitor = train(steps, arguments.seed, arguments.fraction)
    evaluation = first_step_task(512, seed=arguments.seed + 2, min_length=MAX_LENGTH)
    results = {}
    for label, model in (("untrained", untrained), ("trained", trained)):
        model.eval()
        results[label] = measure_gradient_reach(model, *evaluation, fraction=arguments.fraction)
        with torch.no_grad():
            logits = model(evaluation.features, evaluation.lengths)
        accuracy = (logits.argmax(-1) == evaluation.targets).float().mean().item()
        print(f"{label:>9}: accuracy {accuracy:.3f}, gradient reach {int(results[label].reach)} of {MAX_LENGTH - 1} steps")
    print(f"gradient_reach/steps on the last logged training batch (step {monitor.last_step}): {monitor.last_reach}")
    plot(results, arguments.fraction, arguments.output)
    print(f"wrote {arguments.output}")
    return results


if __name__ == "__main__":
    main()
