"""L2 regularisation as a named loss term: lambda * sum of squared weights."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check


def is_bias(parameter_name: str) -> bool:
    """Whether a parameter is a bias (``head.bias``, ``lstm.bias_hh_l0``, ...)."""
    return parameter_name.rpartition(".")[2].startswith("bias")


def select_parameters(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    include_biases: bool = False,
    patterns: Sequence[str] | None = None,
) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters an L2 term covers.

    Args:
        named_parameters: ``model.named_parameters()``.
        include_biases: also cover biases (excluded by default: penalising them rarely helps).
        patterns: shell-style patterns on qualified names (``"lstm.weight_*"``); ``None`` covers all.

    Example:
        >>> lstm = torch.nn.LSTM(2, 3)
        >>> [name for name, _ in select_parameters(lstm.named_parameters())]
        ['weight_ih_l0', 'weight_hh_l0']
    """
    selected = []
    for name, parameter in named_parameters:
        if not parameter.requires_grad or (not include_biases and is_bias(name)):
            continue
        if patterns is not None and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        selected.append((name, parameter))
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
    decay (AdamW, Loshchilov & Hutter 2019) instead shrinks weights directly in the optimizer step
    and is not the same thing; with plain SGD the two coincide for ``weight_decay = 2 * lambda``.

    Args:
        weight: lambda, the penalty's coefficient.
        include_biases: also penalise biases (excluded by default).
        parameters: shell-style patterns on parameter names (``["lstm.weight_hh_*"]``);
            ``None`` covers every weight.

    Example:
        >>> L2Penalty(1e-4, parameters=["lstm.*"])
        L2Penalty(weight=0.0001, include_biases=False, parameters=['lstm.*'])
    """

    name = "l2"

    def __init__(
        self, weight: float = 1e-4, include_biases: bool = False, parameters: Sequence[str] | None = None
    ) -> None:
        self.weight = check.positive_float("weight", weight)
        self.include_biases = check.boolean("include_biases", include_biases)
        if parameters is not None:
            if isinstance(parameters, str) or not all(isinstance(p, str) for p in parameters):
                raise TypeError(
                    f"Expected `parameters` to be a list of name patterns, but got {parameters!r}."
                )
            parameters = list(parameters)
        self.parameters = parameters
        self._selected: list[nn.Parameter] | None = None

    def _select(self, model: nn.Module) -> list[nn.Parameter]:
        selected = select_parameters(model.named_parameters(), self.include_biases, self.parameters)
        if not selected:
            raise ValueError(
                f"Technique `{self.name}` selects no parameter (patterns {self.parameters!r}); "
                f"parameter names are: {', '.join(n for n, _ in model.named_parameters())}."
            )
        return [p for _, p in selected]

    def penalized_parameter_names(self, model: nn.Module) -> list[str]:
        """Names of the parameters this term covers (other techniques check overlaps with it)."""
        return [name for name, _ in select_parameters(model.named_parameters(), self.include_biases, self.parameters)]

    @hookimpl
    def on_fit_setup(self, model: Any) -> None:
        # Resolved when training starts, so modules that other techniques added are covered.
        self._selected = self._select(model)

    @hookimpl
    def loss_terms(self, model: Any) -> dict[str, Tensor]:
        if self._selected is None:
            self._selected = self._select(model)
        return {"l2": l2_penalty(self._selected, self.weight)}
