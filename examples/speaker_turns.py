"""Speaker turns: label every frame of a constructed recording with its speaker, over 5 seeds.

The data set is *constructed* (:class:`lstm_plugins.data.SpeakerTurnsDataModule`): each
recording is 2 to 4 Japanese Vowels utterances by different speakers, played one after the
other, every frame labelled with its speaker (9 classes). Training recordings use training
utterances only (a tenth of each speaker's held out for the validation recordings), test
recordings the test utterances only. The recordings are fixed (``recording_seed=0``); the seeds
vary the initialisation, dropout masks and batch order.

Rows: the majority class of the training frames (the baseline), then a bidirectional and a
unidirectional (causal) LSTM labeller, 64 units per direction, Adam at 3e-3, batches of 32,
gradient clipping at 1 and dropout 0.1 on the input, 0.3 on the output, a fixed number of
epochs. Each row reports per-frame test accuracy, macro recall and macro F1 as mean ± standard
deviation (n - 1) over seeds 0-4, and the mean wall time of one run (training and test) with one
intra-op thread.

Usage::

    python examples/speaker_turns.py            # 10 runs, about 3 minutes on one core
    python examples/speaker_turns.py --smoke    # 2 seeds x 1 epoch, small data and model
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from lstm_plugins.data._speaker_turns import SpeakerTurnsDataModule
from lstm_plugins.model._labelling import LSTMSequenceLabeller
from lstm_plugins.model._metrics import classification_metrics

TECHNIQUES: list[Any] = [
    {"gradient_clipping": {"threshold": 1.0}},
    {"dropout": {"input": 0.1, "output": 0.3}},
]
MODELS = {"bidirectional LSTM": True, "unidirectional LSTM": False}
METRICS = ("accuracy", "recall", "f1")


def majority_baseline(datamodule: SpeakerTurnsDataModule) -> dict[str, float]:
    """Every test frame labelled with the most frequent speaker of the training frames."""
    majority = int(datamodule.class_counts("train").argmax())
    targets = datamodule.test_dataset.targets
    frames = targets[targets >= 0]
    metrics = classification_metrics(datamodule.num_classes)
    metrics.update(torch.nn.functional.one_hot(torch.full_like(frames, majority), datamodule.num_classes).float(), frames)
    return {name: value.item() for name, value in metrics.compute().items() if name in METRICS}


def run(sizes: dict[str, Any], bidirectional: bool, seed: int, max_epochs: int, hidden_size: int) -> dict[str, Any]:
    """Train one labeller and test it: per-frame test metrics and seconds."""
    started = time.perf_counter()
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule = SpeakerTurnsDataModule(batch_size=32, seed=seed, **sizes)  # seed: the batch order
    model = LSTMSequenceLabeller(datamodule.num_features, datamodule.num_classes, hidden_size=hidden_size,
                                 bidirectional=bidirectional, learning_rate=3e-3, techniques=TECHNIQUES)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=max_epochs, deterministic=True, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    results = {name: model.test_results[f"test/{name}"].item() for name in METRICS}
    return {**results, "seed": seed, "seconds": time.perf_counter() - started}


def mean_std(values: Sequence[float]) -> str:
    mean = statistics.fmean(values) * 100
    std = statistics.stdev(values) * 100 if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def table(baseline: dict[str, float], rows: dict[str, list[dict[str, Any]]]) -> str:
    lines = [
        "| model | per-frame accuracy (%) | macro recall (%) | macro F1 (%) | time per run |",
        "| --- | --- | --- | --- | --- |",
        "| majority class (baseline) | " + " | ".join(f"{100 * baseline[m]:.2f}" for m in METRICS) + " | |",
    ]
    for name, runs in rows.items():
        cells = [mean_std([r[metric] for r in runs]) for metric in METRICS]
        seconds = statistics.fmean(r["seconds"] for r in runs)
        lines.append(f"| {name}, seeds {runs[0]['seed']}-{runs[-1]['seed']} | {' | '.join(cells)} | {seconds:.1f} s |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Speaker turns: per-frame speaker labelling, 5 seeds.")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--smoke", action="store_true", help="2 seeds, 1 epoch, small data and model")
    parser.add_argument("--length-batching", choices=["auto", "on", "off"], default="auto",
                        help="length-aware training batches (auto: the data module's default rule, on here)")
    arguments = parser.parse_args(argv)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(arguments.threads)
    seeds = 2 if arguments.smoke else arguments.seeds
    max_epochs = 1 if arguments.smoke else arguments.max_epochs
    hidden_size = 8 if arguments.smoke else 64
    sizes: dict[str, Any] = {"num_train": 32, "num_val": 8, "num_test": 16} if arguments.smoke else {}
    sizes["length_batching"] = {"auto": None, "on": True, "off": False}[arguments.length_batching]
    datamodule = SpeakerTurnsDataModule(batch_size=32, **sizes)
    frames = int((datamodule.test_dataset.targets >= 0).sum())
    print(f"{len(datamodule.train_dataset)} training, {len(datamodule.val_dataset)} validation and "
          f"{len(datamodule.test_dataset)} test recordings ({frames} test frames), 9 speakers")
    baseline = majority_baseline(datamodule)
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, bidirectional in MODELS.items():
        rows[name] = []
        for seed in range(seeds):
            result = run(sizes, bidirectional, seed, max_epochs, hidden_size)
            rows[name].append(result)
            print(f"{name}, seed {seed}: accuracy {result['accuracy']:.4f}  recall {result['recall']:.4f}  "
                  f"F1 {result['f1']:.4f}  ({result['seconds']:.1f} s)", flush=True)
    print()
    print(table(baseline, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
