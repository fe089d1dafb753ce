"""The network: optional embedding and input layers, the fused LSTM, sequence layers, the
summary (the last step by default), parallel branches, output layers and the head, with the slots
techniques fill at construction."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lstm_plugins import validation as check
from lstm_plugins.model._checks import check_lengths, check_token_ids
from lstm_plugins.model._forward import ForwardOutput, run_lstm, run_lstm_from_state
from lstm_plugins.model._layers import TokenEmbedding
from lstm_plugins.model._summaries import LastStepSummary


class SequenceNetwork(nn.Module):
    """The network half of :class:`lstm_plugins.SequenceModel` (a mixin: it defines no
    ``__init__``; the model calls :meth:`build_network` once).

    Parameter names are those of the parts (``lstm.weight_hh_l0``, ``head.bias``), so name
    patterns in techniques and ``state_dict`` keys stay the same whatever techniques are stacked.
    """

    input_size: int
    task: Any
    embedding: TokenEmbedding | None
    input_layers: nn.Sequential
    lstm: nn.LSTM
    weight_transforms: nn.ModuleDict
    recurrence: nn.Module | None
    sequence_layers: nn.Sequential
    sequence_view: nn.Module | None
    summary: nn.Module
    branches: nn.ModuleDict
    output_layers: nn.Sequential
    head: nn.Linear

    def build_network(
        self,
        input_size: int,
        output_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        num_embeddings: int | None,
    ) -> None:
        """Create every part; the slots techniques fill start empty and cost nothing."""
        self.input_size = check.positive_int("input_size", input_size)
        check.positive_int("hidden_size", hidden_size)
        check.positive_int("num_layers", num_layers)
        check.boolean("bidirectional", bidirectional)
        if num_embeddings is not None:
            check.positive_int("num_embeddings", num_embeddings)
        self.embedding = None if num_embeddings is None else TokenEmbedding(num_embeddings, input_size)
        self.input_layers = nn.Sequential()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)
        self.weight_transforms = nn.ModuleDict()
        self.recurrence = None
        self.sequence_view = None
        self.sequence_layers = nn.Sequential()
        self.summary = LastStepSummary()
        self.branches = nn.ModuleDict()
        self.output_layers = nn.Sequential()
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), output_size)

    def add_branch(self, name: str, module: nn.Module, output_size: int) -> None:
        """Run ``module`` beside the LSTM and feed its output to the head with the summary.

        ``module(features, lengths)`` reads the network's input (after the embedding, before
        ``input_layers``: ``(batch, time, features)`` zero-padded, ``(batch,)`` lengths on the
        CPU) and returns ``(batch, output_size)``; it must ignore padding. Its output is
        concatenated after the summary (and after earlier branches), before ``output_layers``,
        and the head is rebuilt, freshly initialised, with ``output_size`` more inputs; so a
        technique that re-initialises the head must come after. Parameters are named
        ``branches.<name>.*``. Call it while the model is built (``configure_network``): a
        model attached to a Trainer may already have an optimizer holding the old head.

        Example:
            >>> from lstm_plugins import LSTMClassifier
            >>> class Mean(nn.Module):
            ...     def forward(self, features, lengths):
            ...         return features.sum(1) / lengths.unsqueeze(1)
            >>> model = LSTMClassifier(3, 2, hidden_size=8)
            >>> model.add_branch("mean", Mean(), 3)
            >>> model.head, tuple(model.encode(torch.ones(2, 4, 3), torch.tensor([4, 2])).final_features.shape)
            (Linear(in_features=11, out_features=2, bias=True), (2, 11))
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Expected `name` to be an identifier, but got {name!r}.")
        if not isinstance(module, nn.Module):
            raise TypeError(f"Expected `module` to be a torch.nn.Module, but got {module!r}.")
        check.positive_int("output_size", output_size)
        if name in self.branches:
            raise ValueError(f"A branch named `{name}` exists already ({self.branches[name]!r}).")
        if getattr(self, "_trainer", None) is not None:
            raise RuntimeError(
                f"Cannot add branch `{name}`: the model is attached to a Trainer, whose optimizer may hold "
                "the head's parameters. Add branches while the model is built (in `configure_network`)."
            )
        if self.task.per_step:
            raise ValueError(
                f"Cannot add branch `{name}`: the `{self.task.name}` task reads every step's output, "
                "and a branch adds one vector per sequence."
            )
        self.branches[name] = module
        head = self.head
        self.head = nn.Linear(head.in_features + output_size, head.out_features, bias=head.bias is not None).to(
            head.weight.device, head.weight.dtype
        )

    def encode(
        self, features: Tensor, lengths: Tensor, initial_state: tuple[Tensor, Tensor] | None = None
    ) -> ForwardOutput:
        """Run the network on a padded batch; see :class:`lstm_plugins.ForwardOutput`.

        For a task that carries state (``task.carries_state``), the batch is a chunk of streams
        (every sequence full length), the LSTM starts from ``initial_state`` (zeros for ``None``)
        and the output holds the final state. For a per-step task (``task.per_step``) the head
        reads every step's output, else each sequence's ``model.summary`` followed by the
        ``model.branches`` outputs. A ``model.sequence_view`` (``(lstm_input, lengths) ->
        (lstm_input, lengths)``) changes what the LSTM reads as steps; the output's ``lengths``
        are then those the LSTM read.
        """
        if self.embedding is not None:
            if features.dim() != 2 or features.is_floating_point():
                raise ValueError(
                    "Expected `features` to be (batch, time) integer token ids for a model with "
                    f"`num_embeddings`, but got {tuple(features.shape)} of dtype {features.dtype}."
                )
            check_token_ids(features, self.embedding.num_embeddings)
            features = self.embedding(features)
        elif features.dim() != 3 or features.size(-1) != self.input_size:
            raise ValueError(
                f"Expected `features` of shape (batch, time, {self.input_size}), "
                f"but got {tuple(features.shape)}."
            )
        reads_lengths_first = self.recurrence is not None or self.sequence_view is not None or bool(self.branches)
        if reads_lengths_first and not self.task.carries_state and features.size(1) > 0:
            # Zoneout's recurrence, a sequence view and the branches read `lengths` before (or
            # without) run_lstm, which checks them on the plain path (once per step is enough).
            check_lengths(lengths, features.size(0), features.size(1))
        network_input, input_lengths = features, lengths
        lstm_input = self.input_layers(features)
        if self.sequence_view is not None:
            lstm_input, lengths = self.sequence_view(lstm_input, lengths)
        state = None
        if self.task.carries_state:
            raw_output, state = run_lstm_from_state(self.lstm, lstm_input, initial_state, self.lstm_weights())
        elif self.recurrence is None:
            raw_output = run_lstm(self.lstm, lstm_input, lengths, self.lstm_weights())
        else:
            raw_output = self.recurrence(lstm_input, lengths, self.lstm, self.lstm_weights())
        sequence_output = self.sequence_layers(raw_output)
        if self.task.per_step:
            final = self.output_layers(sequence_output)
        else:
            summary = self.summary(sequence_output, lengths, self.lstm.bidirectional)
            if self.branches:
                branch_outputs = [branch(network_input, input_lengths) for branch in self.branches.values()]
                summary = torch.cat((summary, *branch_outputs), dim=-1)
            final = self.output_layers(summary)
        return ForwardOutput(self.head(final), final, sequence_output, raw_output, lengths, state)

    def lstm_weights(self) -> list[Tensor] | None:
        """The LSTM's weights with ``weight_transforms`` applied, or ``None`` when there are none.

        ``weight_transforms`` maps a weight's name (``"weight_hh_l0"``) to a module that takes the
        weight and returns the one to use in this forward pass (DropConnect, for example); the
        stored parameter is unchanged, so ``state_dict`` keys stay those of a plain LSTM.
        """
        if not self.weight_transforms:
            return None
        transforms = self.weight_transforms
        return [
            transforms[name](weight) if name in transforms else weight
            for name, weight in zip(self.lstm._flat_weights_names, self.lstm._flat_weights)
        ]
