"""Decoupled weight decay through optimizer parameter groups, with exclusions."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check

DECOUPLED_OPTIMIZERS = ("adamw", "sgd")


def is_excluded(name: str, exclude_biases: bool, exclude: Sequence[str]) -> bool:
    """Whether weight decay skips a parameter: a bias (when ``exclude_biases``) or a name
    matching one of the shell-style ``exclude`` patterns."""
    if exclude_biases and name.rpartition(".")[2].startswith("bias"):
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)


def weight_decay_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    exclude_biases: bool = True,
    exclude: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Two optimizer parameter groups: decayed and excluded (``weight_decay=0``).

    Each group carries ``"names"`` beside ``"params"``; drop it before building a torch optimizer.

    Example:
        >>> import torch
        >>> groups = weight_decay_groups(torch.nn.Linear(2, 2).named_parameters(), 0.01)
        >>> [(g["names"], g["weight_decay"]) for g in groups]
        [(['weight'], 0.01), (['bias'], 0.0)]
    """
    decayed: dict[str, Any] = {"params": [], "names": [], "weight_decay": weight_decay}
    excluded: dict[str, Any] = {"params": [], "names": [], "weight_decay": 0.0}
    for name, parameter in named_parameters:
        group = excluded if is_excluded(name, exclude_biases, exclude) else decayed
        group["params"].append(parameter)
        group["names"].append(name)
    return [group for group in (decayed, excluded) if group["params"]]


class DecoupledWeightDecay(Technique):
    """Decoupled weight decay (Loshchilov & Hutter 2019) with exclusions, via parameter groups.

    The optimizer shrinks each weight directly, ``w <- w - lr * weight_decay * w``, separately
    from the adaptive gradient step, unlike an L2 term in the loss (the ``l2`` technique), whose
    gradient Adam rescales per parameter. Needs ``optimizer="adamw"`` (or ``"sgd"``, where the two
    coincide); with ``"adam"`` the model is refused, since Adam's ``weight_decay`` is coupled L2.
    Biases are excluded by default, and names can be excluded by pattern. Stacking it with ``l2``
    on the same parameters is refused unless ``allow_with_l2=True``.

    Suggested values: ``weight_decay=0.01``-``0.1`` with AdamW.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(12, 9, optimizer="adamw", plugins=[DecoupledWeightDecay(0.05, exclude=["head.*"])])
        >>> [g["weight_decay"] for g in model.configure_optimizers().param_groups]
        [0.05, 0.0]
    """

    name = "weight_decay"

    def __init__(
        self,
        weight_decay: float = 0.01,
        exclude_biases: bool = True,
        exclude: Sequence[str] = (),
        allow_with_l2: bool = False,
    ) -> None:
        self.weight_decay = check.positive_float("weight_decay", weight_decay)
        self.exclude_biases = check.boolean("exclude_biases", exclude_biases)
        if isinstance(exclude, (str, bytes)) or not all(isinstance(p, str) for p in exclude):
            raise TypeError(f"Expected `exclude` to be a list of name patterns, but got {exclude!r}.")
        self.exclude = list(exclude)
        self.allow_with_l2 = check.boolean("allow_with_l2", allow_with_l2)

    def decayed_names(self, model: nn.Module) -> set[str]:
        return {
            name
            for name, parameter in model.named_parameters()
            if parameter.requires_grad and not is_excluded(name, self.exclude_biases, self.exclude)
        }

    @hookimpl
    def configure_model(self, model: Any) -> None:
        if model.optimizer_name not in DECOUPLED_OPTIMIZERS:
            raise ValueError(
                f"Technique `{self.name}` needs optimizer 'adamw' (or 'sgd'), but the model uses "
                f"{model.optimizer_name!r}, whose weight_decay is coupled L2. "
                "Build the model with optimizer='adamw'."
            )
        if self.allow_with_l2:
            return
        decayed = self.decayed_names(model)
        for other in model.techniques:
            penalized = getattr(other, "penalized_parameter_names", None)
            if other is self or not callable(penalized):
                continue
            overlap = sorted(decayed & set(penalized(model)))
            if overlap:
                raise ValueError(
                    f"Techniques `{getattr(other, 'name', type(other).__name__)}` and `{self.name}` "
                    f"both regularise {', '.join(overlap[:3])}{', ...' if len(overlap) > 3 else ''}; "
                    "exclude those parameters from one of them, or pass allow_with_l2=True."
                )

    @hookimpl
    def configure_parameter_groups(self, parameter_groups: list[dict[str, Any]]) -> None:
        regrouped: list[dict[str, Any]] = []
        for group in parameter_groups:
            options = {k: v for k, v in group.items() if k not in ("params", "names")}
            for part in weight_decay_groups(zip(group["names"], group["params"]), self.weight_decay,
                                            self.exclude_biases, self.exclude):
                regrouped.append({**options, **part})
        parameter_groups[:] = regrouped
