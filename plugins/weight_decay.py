"""Decoupled weight decay through optimizer parameter groups, with exclusions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from torch import nn

from lstm_plugins import Technique, hookimpl, toolkit
from lstm_plugins import validation as check
from lstm_plugins.techniques import FloatRange, SearchValue

DECOUPLED_OPTIMIZERS = ("adamw", "sgd")


def excluded_names(
    names: Sequence[str], exclude_biases: bool = True, exclude: Sequence[str] = (), *, technique: str = "weight_decay"
) -> set[str]:
    """The names weight decay skips: biases (when ``exclude_biases``) and names matching one of
    the shell-style ``exclude`` patterns. Each pattern must match a name
    (:func:`lstm_plugins.toolkit.match_names`): a misspelt one is refused, naming ``technique``.

    Example:
        >>> sorted(excluded_names(["lstm.weight_ih_l0", "lstm.bias_ih_l0", "head.weight"], exclude=["head.*"]))
        ['head.weight', 'lstm.bias_ih_l0']
    """
    excluded = set(toolkit.match_names(names, exclude, technique=technique, argument="exclude"))
    if exclude_biases:
        excluded.update(name for name in names if toolkit.is_bias(name))
    return excluded


def decoupled_weight_decay(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    exclude_biases: bool = True,
    exclude: Sequence[str] = (),
    *,
    technique: str = "weight_decay",
) -> list[dict[str, Any]]:
    """Two optimizer parameter groups: decayed, and excluded (``weight_decay=0``), in that order;
    an empty one is left out.

    Each group carries ``"names"`` beside ``"params"``; drop it before building a torch
    optimizer. A pattern in ``exclude`` that matches no name is refused (a typo, not a no-op).

    Example:
        >>> import torch
        >>> groups = decoupled_weight_decay(torch.nn.Linear(2, 2).named_parameters(), 0.01)
        >>> [(g["names"], g["weight_decay"]) for g in groups]
        [(['weight'], 0.01), (['bias'], 0.0)]
        >>> decoupled_weight_decay(torch.nn.Linear(2, 2).named_parameters(), 0.01, exclude=["wieght"])
        Traceback (most recent call last):
        ...
        ValueError: Technique `weight_decay`: `exclude` pattern(s) 'wieght' match no parameter; parameter names are: weight, bias.
    """
    weight_decay = check.positive_float("weight_decay", weight_decay)
    exclude_biases = check.boolean("exclude_biases", exclude_biases)
    exclude = check.name_patterns("exclude", exclude)
    named = list(named_parameters)
    excluded = excluded_names([name for name, _ in named], exclude_biases, exclude, technique=technique)
    decayed: dict[str, Any] = {"params": [], "names": [], "weight_decay": weight_decay}
    skipped: dict[str, Any] = {"params": [], "names": [], "weight_decay": 0.0}
    for name, parameter in named:
        group = skipped if name in excluded else decayed
        group["params"].append(parameter)
        group["names"].append(name)
    return [group for group in (decayed, skipped) if group["params"]]


class DecoupledWeightDecay(Technique):
    """Decoupled weight decay (Loshchilov & Hutter 2019) with exclusions, via parameter groups.

    The optimizer shrinks each weight directly, ``w <- w - lr * weight_decay * w``, separately
    from the adaptive gradient step, unlike an L2 term in the loss (the ``l2`` technique), whose
    gradient Adam rescales per parameter. Needs ``optimizer="adamw"`` (or ``"sgd"``, where the two
    coincide); with ``"adam"`` the model is refused, since Adam's ``weight_decay`` is coupled L2.
    Biases are excluded by default, and names can be excluded by pattern; a pattern that matches
    no trainable parameter is refused when the model is built, naming the technique, as ``l2``
    refuses a misspelt ``parameters`` pattern. Stacking it with ``l2`` on the same parameters is
    refused unless ``allow_with_l2=True``. These checks run after every other technique has
    changed the network (``trylast``); the groups are made by :func:`decoupled_weight_decay`.

    Suggested values: ``weight_decay=0.01``-``0.1`` with AdamW.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(12, 9, optimizer="adamw", techniques=[DecoupledWeightDecay(0.05, exclude=["head.*"])])
        >>> [g["weight_decay"] for g in model.configure_optimizers().param_groups]
        [0.05, 0.0]
    """

    name = "weight_decay"

    # Loshchilov & Hutter (2019); the README's typical 0.01-0.1, widened down to 1e-3.
    search_space: ClassVar[Mapping[str, SearchValue]] = {"weight_decay": FloatRange(1e-3, 0.1, log=True)}

    def __init__(
        self,
        weight_decay: float = 0.01,
        exclude_biases: bool = True,
        exclude: Sequence[str] = (),
        allow_with_l2: bool = False,
    ) -> None:
        self.weight_decay = check.positive_float("weight_decay", weight_decay)
        self.exclude_biases = check.boolean("exclude_biases", exclude_biases)
        self.exclude = check.name_patterns("exclude", exclude)
        self.allow_with_l2 = check.boolean("allow_with_l2", allow_with_l2)

    def decayed_names(self, model: nn.Module) -> set[str]:
        """Names of the trainable parameters this technique decays."""
        names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
        return set(names) - excluded_names(names, self.exclude_biases, self.exclude, technique=self.name)

    @hookimpl(trylast=True)
    def configure_network(self, model: Any) -> None:
        if model.optimizer_name not in DECOUPLED_OPTIMIZERS:
            raise ValueError(
                f"Technique `{self.name}` needs optimizer 'adamw' (or 'sgd'), but the model uses "
                f"{model.optimizer_name!r}, whose weight_decay is coupled L2. "
                "Build the model with optimizer='adamw'."
            )
        decayed = self.decayed_names(model)  # refuses a misspelt `exclude` pattern now
        if self.allow_with_l2:
            return
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
        # Decided once over every parameter (so a pattern may match in any group), then each
        # existing group is split, keeping its own options.
        named = [pair for group in parameter_groups for pair in zip(group["names"], group["params"])]
        decay = {
            name: part["weight_decay"]
            for part in decoupled_weight_decay(named, self.weight_decay, self.exclude_biases, self.exclude, technique=self.name)
            for name in part["names"]
        }
        regrouped: list[dict[str, Any]] = []
        for group in parameter_groups:
            options = {k: v for k, v in group.items() if k not in ("params", "names")}
            for value in (self.weight_decay, 0.0):
                part = [(n, p) for n, p in zip(group["names"], group["params"]) if decay[n] == value]
                if part:
                    regrouped.append({**options, "params": [p for _, p in part], "names": [n for n, _ in part],
                                      "weight_decay": value})
        parameter_groups[:] = regrouped
