"""The baselines: a hand-written PyTorch loop and a bare Lightning module.

Both do exactly the maths of ``LSTMClassifier`` with the same techniques, written the way a
careful user would write them by hand: ``torch.nn.LSTM`` on zero-padded input (the fused oneDNN
kernel on CPU), each sequence read at its last valid step, the backward direction of a
bidirectional layer run on each sequence reversed within its own length, dropout modules,
an L2 term, ``clip_grad_norm_``, gradient norms on the logging interval, and fused Adam.
Nothing here imports the library's model code, so the loss trajectories the benchmark compares
are an independent check of the library's maths.

Dropout masks: the library draws its CPU masks from 16-bit lanes of 64-bit draws (about 5x
faster than torch's ``bernoulli_``). ``HandNet(masks="lanes")``, the default, writes the same
draw out by hand, so losses match the library's bit for bit and a ratio measures the rest of the
library; ``masks="torch"`` is what a user writes with ``nn.Dropout`` and ``nn.LSTM(dropout=...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall


@dataclass(frozen=True)
class Shape:
    """A model and batch shape."""

    name: str
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    num_classes: int
    batch_size: int
    length: int


@dataclass(frozen=True)
class Recipe:
    """The techniques a run uses; both the library stack and the hand loop are built from it."""

    clip: float | None = None
    input_dropout: float = 0.0
    between_dropout: float = 0.0
    output_dropout: float = 0.0
    l2: float | None = None
    grad_norm_every: int | None = None
    learning_rate: float = 3e-3

    def plugins(self) -> list[Any]:
        """The library's technique objects, in the default stack's order."""
        from lstm_plugins.plugins import Dropout, GradientClipping, GradientNorms, L2Penalty

        stack: list[Any] = []
        if self.clip is not None:
            stack.append(GradientClipping(threshold=self.clip))
        if self.input_dropout or self.between_dropout or self.output_dropout:
            stack.append(
                Dropout(input=self.input_dropout, between_layers=self.between_dropout, output=self.output_dropout)
            )
        if self.l2 is not None:
            stack.append(L2Penalty(weight=self.l2))
        if self.grad_norm_every is not None:
            stack.append(GradientNorms(log_every_n_steps=self.grad_norm_every))
        return stack


def library_model(shape: Shape, recipe: Recipe, extra_plugins: Sequence[Any] = ()) -> Any:
    from lstm_plugins import LSTMClassifier

    return LSTMClassifier(
        input_size=shape.input_size,
        num_classes=shape.num_classes,
        hidden_size=shape.hidden_size,
        num_layers=shape.num_layers,
        bidirectional=shape.bidirectional,
        optimizer="adam",
        learning_rate=recipe.learning_rate,
        techniques=[*recipe.plugins(), *extra_plugins],
    )


# --- the network, by hand -----------------------------------------------------------------------

DropoutMasks = Literal["lanes", "torch"]


def lane_dropout(values: Tensor, p: float) -> Tensor:
    """Dropout as the library draws it on the CPU, written out: each 64-bit draw of torch's
    generator gives four 16-bit lanes; an element survives when its lane is below
    ``round((1 - p) * 65536) - 32768`` and is scaled by ``1 / (1 - p)``. Tensors of fewer than
    2048 elements go to torch's dropout, as in the library. (Where the rounding moves the keep
    probability by more than 1e-4 of itself, the library uses torch's ``bernoulli_``; the
    benchmarks' probabilities are not such.)"""
    count = values.numel()
    if count < 2048:  # the library leaves small tensors to torch's dropout (faster there)
        return F.dropout(values, p, True)
    kept = round((1 - p) * 65536)
    assert abs(kept / 65536 - (1 - p)) <= 1e-4 * (1 - p), f"no lane draw for p = {p}"
    words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    lanes = words.view(torch.int16)[:count].view(values.shape).float()
    keep = lanes < kept - 32768
    return values * keep.float().div_(1 - p)


class LaneDropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, values: Tensor) -> Tensor:
        return lane_dropout(values, self.p) if self.training else values



def reverse_within_lengths(lengths: Tensor, steps: int) -> Tensor:
    """``(batch, time)`` index reversing each sequence within its length; padding stays put."""
    positions = torch.arange(steps)
    reversed_positions = lengths.unsqueeze(1) - 1 - positions
    return torch.where(reversed_positions >= 0, reversed_positions, positions)


def take_steps(values: Tensor, index: Tensor) -> Tensor:
    return values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.size(-1)))


class HandNet(nn.Module):
    """Input dropout → LSTM on padded input → last valid step → output dropout → linear head."""

    def __init__(self, shape: Shape, recipe: Recipe, masks: DropoutMasks = "lanes") -> None:
        super().__init__()
        self.bidirectional = shape.bidirectional
        self.between_dropout = recipe.between_dropout
        self.masks = masks
        dropout = nn.Dropout if masks == "torch" else LaneDropout
        self.input_dropout = dropout(recipe.input_dropout) if recipe.input_dropout else nn.Identity()
        self.output_dropout = dropout(recipe.output_dropout) if recipe.output_dropout else nn.Identity()
        if shape.bidirectional:
            # One single-layer LSTM per layer and direction: the backward one reads each sequence
            # reversed within its own length, so padding never reaches a valid step.
            sizes = [shape.input_size] + [2 * shape.hidden_size] * (shape.num_layers - 1)
            self.forward_layers = nn.ModuleList(nn.LSTM(s, shape.hidden_size, batch_first=True) for s in sizes)
            self.backward_layers = nn.ModuleList(nn.LSTM(s, shape.hidden_size, batch_first=True) for s in sizes)
        else:
            self.lstm = nn.LSTM(
                shape.input_size, shape.hidden_size, shape.num_layers, batch_first=True,
                dropout=recipe.between_dropout,
            )
        self.head = nn.Linear(shape.hidden_size * (2 if shape.bidirectional else 1), shape.num_classes)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        x = self.input_dropout(features)
        rows = torch.arange(x.size(0))
        if not self.bidirectional:
            if self.masks == "lanes" and self.between_dropout and self.training:
                output = self.layer_by_layer(x)
            else:
                output, _ = self.lstm(x)
            summary = output[rows, lengths - 1]
        else:
            index = reverse_within_lengths(lengths, x.size(1))
            for layer, (forward_lstm, backward_lstm) in enumerate(zip(self.forward_layers, self.backward_layers)):
                if layer > 0 and self.between_dropout and self.training:
                    x = self.drop_between(x)
                forward_output, _ = forward_lstm(x)
                backward_output, _ = backward_lstm(take_steps(x, index))
                x = torch.cat((forward_output, take_steps(backward_output, index)), dim=-1)
            hidden = x.size(-1) // 2
            summary = torch.cat((x[rows, lengths - 1, :hidden], x[:, 0, hidden:]), dim=-1)
        return self.head(self.output_dropout(summary))

    def drop_between(self, values: Tensor) -> Tensor:
        if self.masks == "torch":
            return F.dropout(values, self.between_dropout, training=True)
        return lane_dropout(values, self.between_dropout)

    def layer_by_layer(self, x: Tensor) -> Tensor:
        """The stacked LSTM one layer at a time (what it does inside), lane masks between."""
        lstm = self.lstm
        zeros = x.new_zeros(1, x.size(0), lstm.hidden_size)
        for layer in range(lstm.num_layers):
            if layer > 0:
                x = self.drop_between(x)
            weights = [getattr(lstm, f"{kind}_l{layer}") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            x = torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, True, False, True)[0]
        return x

    def copy_from(self, library: nn.Module) -> HandNet:
        """Take the library model's weights (same initialisation, for the equivalence check)."""
        source = dict(library.named_parameters())
        with torch.no_grad():
            self.head.weight.copy_(source["head.weight"])
            self.head.bias.copy_(source["head.bias"])
            if not self.bidirectional:
                for name, parameter in self.lstm.named_parameters():
                    parameter.copy_(source[f"lstm.{name}"])
            else:
                for layer, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
                    for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                        getattr(fwd, f"{kind}_l0").copy_(source[f"lstm.{kind}_l{layer}"])
                        getattr(bwd, f"{kind}_l0").copy_(source[f"lstm.{kind}_l{layer}_reverse"])
        return self

    def layer_groups(self) -> dict[str, list[int]]:
        """Parameter positions per layer and direction (for per-layer gradient norms)."""
        groups: dict[str, list[int]] = {}
        for position, (name, _) in enumerate(self.named_parameters()):
            if name.startswith("lstm."):
                suffix = name.rpartition("_l")[2]
                key = f"lstm.layer{suffix}"
            elif name.startswith(("forward_layers.", "backward_layers.")):
                direction, layer = name.split(".")[:2]
                key = f"lstm.layer{layer}{'_reverse' if direction == 'backward_layers' else ''}"
            else:
                key = name.rpartition(".")[0]
            groups.setdefault(key, []).append(position)
        return groups


def classification_metrics(num_classes: int) -> MetricCollection:
    """What a user would track: accuracy, macro recall and F1, per-class recall and F1."""
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "recall_per_class": MulticlassRecall(num_classes, average=None),
            "f1_per_class": MulticlassF1Score(num_classes, average=None),
        }
    )


class HandLoop:
    """The hand-written training loop: same techniques, same order as the library's phases.

    Order per step: forward, task loss + L2 term, (log on the interval), zero grads, backward,
    gradient norms on their interval, clip, fused Adam step. "Logging" keeps detached device
    tensors in a list on the interval: no host synchronisation, as the library promises.
    """

    def __init__(self, net: HandNet, shape: Shape, recipe: Recipe, log_every: int = 10) -> None:
        self.net = net
        self.recipe = recipe
        self.log_every = log_every
        self.parameters = [p for p in net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.parameters, lr=recipe.learning_rate, fused=True)
        self.l2_parameters = [
            p for name, p in net.named_parameters() if not name.rpartition(".")[2].startswith("bias")
        ]
        self.groups = net.layer_groups()
        self.metrics = classification_metrics(shape.num_classes)
        self.val_loss = MeanMetric()
        self.step = 0
        self.logged: list[dict[str, Tensor]] = []

    def train_step(self, features: Tensor, lengths: Tensor, targets: Tensor) -> Tensor:
        log_now = self.step % self.log_every == 0
        loss = self.forward_and_loss(features, lengths, targets, log_now)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.before_optimizer_step(log_now)
        self.optimizer.step()
        self.step += 1
        return loss.detach()

    def forward_and_loss(self, features: Tensor, lengths: Tensor, targets: Tensor, log_now: bool) -> Tensor:
        """Forward, task loss, L2 term; the loss values kept (on the device) on logging steps."""
        recipe = self.recipe
        logits = self.net(features, lengths)
        task_loss = F.cross_entropy(logits, targets)
        loss = task_loss
        l2 = None
        if recipe.l2 is not None:
            l2 = recipe.l2 * torch.stack([p.square().sum() for p in self.l2_parameters]).sum()
            loss = loss + l2
        if log_now:
            entry = {"loss": loss.detach(), "task_loss": task_loss.detach()}
            if l2 is not None:
                entry["l2"] = l2.detach()
            self.logged.append(entry)
        return loss

    def before_optimizer_step(self, log_now: bool) -> None:
        """Gradient norms on the interval, then clipping (pre-clip norm kept on logging steps)."""
        recipe = self.recipe
        if recipe.grad_norm_every is not None and self.step % recipe.grad_norm_every == 0:
            norms = torch._foreach_norm([p.grad for p in self.parameters], 2.0)
            entry = {"total": torch.linalg.vector_norm(torch.stack(norms))}
            for key, positions in self.groups.items():
                entry[key] = torch.linalg.vector_norm(torch.stack([norms[i] for i in positions]))
            self.logged.append(entry)
        if recipe.clip is not None:
            pre_clip = torch.nn.utils.clip_grad_norm_(self.parameters, recipe.clip)
            if log_now:
                self.logged.append({"pre_clip_norm": pre_clip})

    def train_epoch(self, batches: Iterable[Any]) -> None:
        self.net.train()
        for batch in batches:
            self.train_step(batch.features, batch.lengths, batch.targets)

    def validate(self, batches: Iterable[Any]) -> dict[str, Tensor]:
        self.net.eval()
        with torch.inference_mode():
            for batch in batches:
                logits = self.net(batch.features, batch.lengths)
                self.val_loss.update(F.cross_entropy(logits, batch.targets), weight=batch.targets.size(0))
                self.metrics.update(logits, batch.targets)
            results = self.metrics.compute()
            results["loss"] = self.val_loss.compute()
        self.metrics.reset()
        self.val_loss.reset()
        self.net.train()
        return results


class BareLightning(pl.LightningModule):
    """Minimal Lightning module: the same network, loss and fused Adam; no plugins, no metrics,
    no logging. What "Lightning alone" costs."""

    def __init__(self, net: HandNet, learning_rate: float) -> None:
        super().__init__()
        self.net = net
        self.learning_rate = learning_rate

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return F.cross_entropy(self.net(batch.features, batch.lengths), batch.targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate, fused=True)


class HandLightning(pl.LightningModule):
    """The hand-written loop's own step inside a minimal LightningModule (same network,
    techniques, fused Adam and validation metrics; nothing of the library). Against the
    hand-written loop it shows what Lightning itself costs at a given shape; against the
    library, what the library adds on top of Lightning."""

    def __init__(self, loop: HandLoop) -> None:
        super().__init__()
        self.loop = loop
        self.net = loop.net
        self._log_now = False

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        self._log_now = self.loop.step % self.loop.log_every == 0
        return self.loop.forward_and_loss(batch.features, batch.lengths, batch.targets, self._log_now)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.loop.before_optimizer_step(self._log_now)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.loop.step += 1

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.loop.optimizer

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        logits = self.net(batch.features, batch.lengths)
        self.loop.val_loss.update(F.cross_entropy(logits, batch.targets), weight=batch.targets.size(0))
        self.loop.metrics.update(logits, batch.targets)

    def on_validation_epoch_end(self) -> None:
        self.loop.metrics.compute()
        self.loop.val_loss.compute()
        self.loop.metrics.reset()
        self.loop.val_loss.reset()


def quiet_trainer(**options: Any) -> pl.Trainer:
    """The Trainer of the step-level sections: no logger output, checkpoint or progress bar."""
    settings: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
        log_every_n_steps=10,
    )
    settings.update(options)
    return pl.Trainer(**settings)


def synthetic_batches(shape: Shape, count: int, seed: int, variable_length: bool = False) -> list[Any]:
    """Pre-built, zero-padded batches (made once, reused by every variant)."""
    from lstm_plugins.data import SequenceBatch

    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        features = torch.randn(shape.batch_size, shape.length, shape.input_size, generator=generator)
        if variable_length:
            lengths = torch.randint(1, shape.length + 1, (shape.batch_size,), generator=generator)
            lengths[0] = shape.length
            features = features * (torch.arange(shape.length) < lengths.unsqueeze(1)).unsqueeze(-1)
        else:
            lengths = torch.full((shape.batch_size,), shape.length, dtype=torch.int64)
        targets = torch.randint(0, shape.num_classes, (shape.batch_size,), generator=generator)
        batches.append(SequenceBatch(features, lengths, targets))
    return batches
