"""LSTM-FCN: a fully convolutional branch beside the LSTM (Karim et al. 2017, 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from lstm_plugins import Technique, hookimpl
from lstm_plugins import validation as check
from lstm_plugins.plugins._fcn_layers import DimensionShuffle, FullyConvolutionalBranch

BRANCH_NAME = "fcn"
"""The branch's name in ``model.branches``: its parameters are ``branches.fcn.*``."""


def _check_arguments(
    filters: Sequence[int], kernel_sizes: Sequence[int], dimension_shuffle: bool, sequence_length: int | None
) -> tuple[tuple[int, ...], tuple[int, ...], bool, int | None]:
    if isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence):
        raise TypeError(f"Expected `filters` to be a list of positive ints, but got {filters!r}.")
    if isinstance(kernel_sizes, (str, bytes)) or not isinstance(kernel_sizes, Sequence):
        raise TypeError(f"Expected `kernel_sizes` to be a list of positive ints, but got {kernel_sizes!r}.")
    filters = tuple(check.positive_int("filters", f) for f in filters)
    kernel_sizes = tuple(check.positive_int("kernel_sizes", k) for k in kernel_sizes)
    if not filters or len(filters) != len(kernel_sizes):
        raise ValueError(
            f"Expected `filters` and `kernel_sizes` of one equal, non-zero length, but got {list(filters)} "
            f"and {list(kernel_sizes)}."
        )
    dimension_shuffle = check.boolean("dimension_shuffle", dimension_shuffle)
    if dimension_shuffle:
        if sequence_length is None:
            raise ValueError(
                "Expected `sequence_length` (the fixed number of steps of every sequence) with "
                "dimension_shuffle=True, but got None: the shuffled LSTM reads the steps as features."
            )
        sequence_length = check.positive_int("sequence_length", sequence_length)
    elif sequence_length is not None:
        raise ValueError(
            f"Expected `sequence_length` to be None without the dimension shuffle, but got {sequence_length}."
        )
    return filters, kernel_sizes, dimension_shuffle, sequence_length


def _shuffled_lstm(lstm: nn.LSTM, sequence_length: int) -> nn.LSTM:
    """An LSTM like ``lstm`` reading ``sequence_length`` inputs per step; every weight whose shape
    is unchanged (all but the first layer's input weights) keeps its values, so an earlier
    initialisation survives."""
    shuffled = nn.LSTM(
        sequence_length, lstm.hidden_size, lstm.num_layers, bias=lstm.bias, batch_first=True,
        dropout=lstm.dropout, bidirectional=lstm.bidirectional,
    )
    fresh = shuffled.state_dict()
    kept = {name: value for name, value in lstm.state_dict().items() if fresh[name].shape == value.shape}
    shuffled.load_state_dict(kept, strict=False)
    return shuffled.to(lstm.weight_hh_l0.device)


def fcn_branch(
    model: Any,
    filters: Sequence[int] = (128, 256, 128),
    kernel_sizes: Sequence[int] = (8, 5, 3),
    dimension_shuffle: bool = False,
    sequence_length: int | None = None,
) -> None:
    """Add LSTM-FCN's fully convolutional branch to ``model``, in place.

    The branch (:class:`~lstm_plugins.plugins._fcn_layers.FullyConvolutionalBranch`: convolution
    blocks with batch norm and ReLU, then global average pooling) reads the model's input beside
    the LSTM; its ``filters[-1]`` features are concatenated after the LSTM's summary, before
    ``output_layers`` and the head (``model.add_branch``, which rebuilds the head). Padded steps
    are masked everywhere, so variable-length batches stay exact.

    With ``dimension_shuffle=True`` the LSTM reads the transposed input (one step per feature,
    whose inputs are the ``sequence_length`` time steps; a univariate series is one step), as in
    the paper; ``model.lstm`` is rebuilt for ``sequence_length`` inputs (its other weights kept),
    and batches must hold sequences of exactly ``sequence_length`` steps: any other length is
    refused with a ``ValueError``. The LSTM stays on its fused kernel either way.

    Refused for per-step tasks. Call it before making an optimizer from the model's parameters.
    This is what :class:`FCNBranch` does when the model is built.

    Example:
        >>> import torch
        >>> from lstm_plugins import LSTMClassifier
        >>> model = LSTMClassifier(1, 3, hidden_size=8)
        >>> fcn_branch(model, filters=(16, 32, 16))
        >>> model.head
        Linear(in_features=24, out_features=3, bias=True)
        >>> tuple(model(torch.randn(2, 20, 1), torch.tensor([20, 9])).shape)
        (2, 3)
    """
    filters, kernel_sizes, dimension_shuffle, sequence_length = _check_arguments(
        filters, kernel_sizes, dimension_shuffle, sequence_length
    )
    if model.task.per_step:
        raise ValueError(
            f"The `fcn_branch` technique cannot work with the `{model.task.name}` task: it reads every "
            "step's output, and the branch gives one vector per sequence."
        )
    if dimension_shuffle:
        if model.sequence_view is not None:
            raise ValueError(
                f"The `fcn_branch` dimension shuffle needs the network's `sequence_view` slot, which holds "
                f"{model.sequence_view!r} already."
            )
        model.lstm = _shuffled_lstm(model.lstm, sequence_length)
        model.sequence_view = DimensionShuffle(sequence_length)
    features = model.embedding.embedding_dim if model.embedding is not None else model.input_size
    branch = FullyConvolutionalBranch(features, filters, kernel_sizes)
    model.add_branch(BRANCH_NAME, branch.to(model.head.weight.device), branch.output_size)


class FCNBranch(Technique):
    """LSTM-FCN: a fully convolutional branch beside the LSTM, joined before the head.

    Karim et al. (2017, 2019): three convolution blocks (128, 256, 128 filters; kernels 8, 5, 3;
    batch norm; ReLU) and global average pooling run on the input beside the LSTM, and their
    output is concatenated with the LSTM's summary before the head (:func:`fcn_branch`). Masked
    for padding (zeroed before every convolution, batch-norm statistics and the average over
    valid steps only), so a sample's output never depends on padding, nor, in eval mode, on its
    batch-mates (in training, batch norm uses the batch's statistics). Stacks with the
    dropout and clipping families (``dropout(output=...)`` then drops the joined features).
    Under DDP the batch-norm statistics are those of the global batch (synchronised, as
    ``torch.nn.SyncBatchNorm``); running statistics are model buffers (``branches.fcn.*``), so
    they live in checkpoints.

    Args:
        filters: output channels of each convolution block.
        kernel_sizes: kernel length of each block.
        dimension_shuffle: the LSTM reads the transposed input (one step per feature, the time
            steps as its inputs), as the paper does; needs fixed-length data.
        sequence_length: the fixed number of steps (``dimension_shuffle=True`` only).

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> FCNBranch(filters=[64, 128, 64])
        FCNBranch(filters=[64, 128, 64], kernel_sizes=(8, 5, 3), dimension_shuffle=False, sequence_length=None)
        >>> model = LSTMClassifier(1, 2, hidden_size=8, techniques=[FCNBranch(dimension_shuffle=True, sequence_length=150)])
        >>> model.lstm, model.head
        (LSTM(150, 8, batch_first=True), Linear(in_features=136, out_features=2, bias=True))
    """

    name = "fcn_branch"
    # No `search_space`: its arguments are lists (filters, kernel sizes) and a shuffle that needs
    # the data's length; a search tries the branch on or off, with the paper's layers.

    def __init__(
        self,
        filters: Sequence[int] = (128, 256, 128),
        kernel_sizes: Sequence[int] = (8, 5, 3),
        dimension_shuffle: bool = False,
        sequence_length: int | None = None,
    ) -> None:
        self.filters, self.kernel_sizes, self.dimension_shuffle, self.sequence_length = _check_arguments(
            filters, kernel_sizes, dimension_shuffle, sequence_length
        )

    @hookimpl
    def configure_network(self, model: Any) -> None:
        fcn_branch(model, self.filters, self.kernel_sizes, self.dimension_shuffle, self.sequence_length)
