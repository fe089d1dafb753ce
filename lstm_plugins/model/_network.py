"""The network: optional embedding and input layers, the fused LSTM, sequence layers, the
last-step summary, output layers and the head, with the slots techniques fill at construction."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lstm_plugins import validation as check
from lstm_plugins.model._forward import ForwardOutput, last_step_summary, run_lstm, run_lstm_from_state
from lstm_plugins.model._layers import TokenEmbedding


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
        self.sequence_layers = nn.Sequential()
        self.output_layers = nn.Sequential()
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), output_size)

    def encode(
        self, features: Tensor, lengths: Tensor, initial_state: tuple[Tensor, Tensor] | None = None
    ) -> ForwardOutput:
        """Run the network on a padded batch; see :class:`lstm_plugins.ForwardOutput`.

        For a task that carries state (``task.carries_state``), the batch is a chunk of streams
        (every sequence full length), the LSTM starts from ``initial_state`` (zeros for ``None``)
        and the output holds the final state. For a per-step task (``task.per_step``) the head
        reads every step's output, else each sequence's summary.
        """
        if self.embedding is not None:
            if features.dim() != 2 or features.is_floating_point():
                raise ValueError(
                    "Expected `features` to be (batch, time) integer token ids for a model with "
                    f"`num_embeddings`, but got {tuple(features.shape)} of dtype {features.dtype}."
                )
            features = self.embedding(features)
        elif features.dim() != 3 or features.size(-1) != self.input_size:
            raise ValueError(
                f"Expected `features` of shape (batch, time, {self.input_size}), "
                f"but got {tuple(features.shape)}."
            )
        lstm_input = self.input_layers(features)
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
            final = self.output_layers(last_step_summary(sequence_output, lengths, self.lstm.bidirectional))
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
