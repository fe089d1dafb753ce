"""L2 regularisation as a named loss term: lambda * sum of squared weights."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lstm_plugins import Technique, hookimpl, toolkit
from lstm_plugins import validation as check
from lstm_plugins.techniques import FloatRange, SearchValue


def select_parameters(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    include_biases: bool = False,
    patterns: Sequence[str] | None = None,
    *,
    technique: str = "l2",
) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters an L2 term covers, in order.

    Args:
        named_parameters: ``model.named_parameters()``.
        include_biases: also cover biases (excluded by default: penalising them rarely helps).
        patterns: shell-style patterns on qualified names (``"lstm.weight_*"``); ``None`` covers
            all. Each pattern must match a trainable parameter (:func:`lstm_plugins.toolkit.match_names`).
        technique: the name errors give.

    Raises:
        ValueError: a pattern matches no trainable parameter (a typo), or nothing is selected.

    Example:
        >>> lstm = torch.nn.LSTM(2, 3)
        >>> [name for name, _ in select_parameters(lstm.named_parameters())]
        ['weight_ih_l0', 'weight_hh_l0']
        >>> select_parameters(lstm.named_parameters(), patterns=["weight_hh_*", "wieght_ih_*"])
        Traceback (most recent call last):
        ...
        ValueError: Technique `l2`: `parameters` pattern(s) 'wieght_ih_*' match no parameter; parameter names are: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0.
    """
    trainable = [(name, parameter) for name, parameter in named_parameters if parameter.requires_grad]
    names = [name for name, _ in trainable]
    if patterns is not None:
        names = toolkit.match_names(names, patterns, technique=technique, argument="parameters")
    chosen = set(names)
    selected = [(n, p) for n, p in trainable if n in chosen and (include_biases or not toolkit.is_bias(n))]
    if not selected:
        reason = "every parameter it covers is a bias and `include_biases` is False" if chosen else (
            "the model has no trainable parameter"
        )
        raise ValueError(f"Technique `{technique}` selects no parameter: {reason}.")
    return selected


def l2_penalty(parameters: Iterable[Tensor], weight: float) -> Tensor:
    """``weight * sum(w ** 2)`` over every element of every parameter.

    Example:
        >>> l2_penalty([torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])], weight=0.1)
        tensor(1.4000)
    """
    squares = [p.square().sum() for p in parameters]
    if not squares:
        return torch.zeros(())
    return weight * torch.stack(squares).sum()


class L2Penalty(Technique):
    """Adds lambda * sum of squared weights to the loss, logged separately as train/l2.

    This is *coupled* L2 regularisation: the penalty's gradient ``2 * lambda * w`` passes through
    the optimizer, so with Adam it is rescaled per parameter by the adaptive step. Decoupled weight
    decay (AdamW, Loshchilov & Hutter 2019; the ``weight_decay`` technique) instead shrinks weights
    directly in the optimizer step and is not the same thing; with plain SGD the two coincide for
    ``weight_decay = 2 * lambda``.

    The parameters are chosen by :func:`select_parameters` when training starts (so modules other
    techniques add are covered); a pattern that matches no trainable parameter is refused then,
    naming the technique, as ``weight_decay`` refuses a misspelt ``exclude`` pattern.

    Args:
        weight: lambda, the penalty's coefficient.
        include_biases: also penalise biases (excluded by default).
        parameters: shell-style patterns on parameter names (``["lstm.weight_hh_*"]``);
            ``None`` covers every weight.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> technique = L2Penalty(1e-4, parameters=["lstm.*"])
        >>> technique
        L2Penalty(weight=0.0001, include_biases=False, parameters=['lstm.*'])
        >>> technique.penalized_parameter_names(LSTMClassifier(12, 9, techniques=[technique]))
        ['lstm.weight_ih_l0', 'lstm.weight_hh_l0']
    """

    name = "l2"

    # Coupled L2 on LSTMs is usually 1e-6-1e-3 (the default stack uses 1e-5).
    search_space: ClassVar[Mapping[str, SearchValue]] = {"weight": FloatRange(1e-6, 1e-3, log=True)}

    def __init__(
        self, weight: float = 1e-4, include_biases: bool = False, parameters: Sequence[str] | None = None
    ) -> None:
        self.weight = check.positive_float("weight", weight)
        self.include_biases = check.boolean("include_biases", include_biases)
        self.parameters = None if parameters is None else check.name_patterns("parameters", parameters)
        self._selected: list[nn.Parameter] | None = None

    def _select(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return select_parameters(model.named_parameters(), self.include_biases, self.parameters, technique=self.name)

    def penalized_parameter_names(self, model: nn.Module) -> list[str]:
        """Names of the parameters this term covers (other techniques check overlaps with it)."""
        return [name for name, _ in self._select(model)]

    @hookimpl
    def on_fit_setup(self, model: Any) -> None:
        # Resolved when training starts, so modules that other techniques added are covered.
        self._selected = [parameter for _, parameter in self._select(model)]

    @hookimpl
    def loss_terms(self, model: Any) -> dict[str, Tensor]:
        if self._selected is None:
            self._selected = [parameter for _, parameter in self._select(model)]
        return {"l2": l2_penalty(self._selected, self.weight)}
