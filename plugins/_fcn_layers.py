"""The layers of the LSTM-FCN branch (:mod:`lstm_plugins.plugins.fcn_branch`), masked for padding.

A sample's output never depends on padding or on its batch-mates' lengths: padded steps are
zeroed before every convolution (so a valid step near the end reads zeros there, exactly the
zero padding of a convolution over the sequence alone), batch-norm statistics are taken over the
valid steps only, and the global average runs over the valid steps only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from lstm_plugins import validation as check
from lstm_plugins.model import lengths_on, valid_step_mask

__all__ = ["DimensionShuffle", "FullyConvolutionalBranch", "MaskedBatchNorm1d"]


def _global_sum(values: Tensor) -> Tensor:
    """``values`` summed over the processes of a distributed run (differentiably: the gradient
    is summed back too, as ``torch.nn.SyncBatchNorm`` does), or ``values`` in one process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_reduce  # only where distributed exists

        return all_reduce(values)
    return values


class MaskedBatchNorm1d(nn.Module):
    """Batch normalisation of ``(batch, channels, time)`` values over the valid steps only.

    In training, each channel is normalised with the mean and (biased) variance of the valid
    steps of the batch, and the running statistics (unbiased variance, as
    ``torch.nn.BatchNorm1d`` keeps them) are updated with ``momentum``; in ``eval()`` mode the
    running statistics are used. Padded steps of the output are 0. In a distributed run the
    statistics are those of the global batch (summed over processes, as
    ``torch.nn.SyncBatchNorm`` does), so N processes compute what one would on their batches.

    Example:
        >>> norm = MaskedBatchNorm1d(1)
        >>> values = torch.tensor([[[1.0, 3.0, 50.0]], [[2.0, 2.0, 2.0]]])
        >>> mask = torch.tensor([[[True, True, False]], [[True, True, True]]])
        >>> norm(values, mask)  # mean 2, variance 0.4 over the 5 valid steps
        tensor([[[-1.5811,  1.5811,  0.0000]],
        <BLANKLINE>
                [[ 0.0000,  0.0000,  0.0000]]], grad_fn=<WhereBackward0>)
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = check.positive_int("num_features", num_features)
        self.eps = check.positive_float("eps", eps)
        if not check.positive_float("momentum", momentum) <= 1:
            raise ValueError(f"Expected `momentum` to be a float in (0, 1], but got {momentum}.")
        self.momentum = float(momentum)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, values: Tensor, mask: Tensor) -> Tensor:
        """Normalise ``values`` ``(batch, channels, time)``; ``mask`` ``(batch, 1, time)`` bool marks
        the valid steps."""
        dtype = values.dtype
        values = values.float()  # statistics in float32 under autocast too, as BatchNorm's
        zeros = torch.zeros_like(values)
        if self.training:
            count = _global_sum(mask.sum().to(values.dtype).reshape(1))[0]
            mean = _global_sum(torch.where(mask, values, zeros).sum((0, 2))) / count
            centred = values - mean[:, None]
            variance = _global_sum(torch.where(mask, centred * centred, zeros).sum((0, 2))) / count
            with torch.no_grad():  # on the device: no host synchronisation
                unbiased = variance * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
                self.num_batches_tracked.add_(1)
        else:
            mean, variance = self.running_mean, self.running_var
            centred = values - mean[:, None]
        scale = self.weight * torch.rsqrt(variance + self.eps)
        return torch.where(mask, centred * scale[:, None] + self.bias[:, None], zeros).to(dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class FullyConvolutionalBranch(nn.Module):
    """The FCN of Wang et al. (2017) as LSTM-FCN runs it (Karim et al. 2017): convolution blocks
    (``Conv1d`` with "same" zero padding, batch norm, ReLU) and global average pooling.

    Called as ``branch(features, lengths)`` on zero-padded ``(batch, time, input_size)``
    features, it returns ``(batch, filters[-1])``; masked as the module docs say, so it is exact
    on variable-length batches. Convolution kernels are He-uniform initialised, as in the paper.

    Args:
        input_size: features per step.
        filters: output channels of each block (the paper's 128, 256, 128).
        kernel_sizes: kernel length of each block (the paper's 8, 5, 3).

    Example:
        >>> branch = FullyConvolutionalBranch(2, filters=(4, 3), kernel_sizes=(3, 2))
        >>> tuple(branch(torch.randn(5, 7, 2), torch.tensor([7, 1, 3, 7, 2])).shape)
        (5, 3)
    """

    def __init__(
        self, input_size: int, filters: Sequence[int] = (128, 256, 128), kernel_sizes: Sequence[int] = (8, 5, 3)
    ) -> None:
        super().__init__()
        check.positive_int("input_size", input_size)
        filters = [check.positive_int("filters", f) for f in filters]
        kernel_sizes = [check.positive_int("kernel_sizes", k) for k in kernel_sizes]
        if not filters or len(filters) != len(kernel_sizes):
            raise ValueError(
                f"Expected `filters` and `kernel_sizes` of one equal, non-zero length, but got {filters} and {kernel_sizes}."
            )
        channels = [input_size, *filters]
        self.convolutions = nn.ModuleList(
            nn.Conv1d(channels[i], channels[i + 1], kernel_sizes[i]) for i in range(len(filters))
        )
        for convolution in self.convolutions:
            nn.init.kaiming_uniform_(convolution.weight, nonlinearity="relu")
        self.norms = nn.ModuleList(MaskedBatchNorm1d(f) for f in filters)
        self.output_size = filters[-1]

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        values = features.transpose(1, 2)
        mask = valid_step_mask(lengths_on(lengths, values.device), values.size(2)).unsqueeze(1)
        for convolution, norm in zip(self.convolutions, self.norms):
            # Zero padded steps first: the valid steps near a sequence's end read zeros there,
            # as its own "same" padding would give them (Keras pads (k-1)//2 left, the rest right).
            values = torch.where(mask, values, torch.zeros_like(values))
            kernel = convolution.kernel_size[0]
            values = convolution(F.pad(values, ((kernel - 1) // 2, kernel // 2)))
            values = torch.relu(norm(values, mask))  # padded steps are 0 after the norm
        return (values.float().sum(2) / mask.sum(2)).to(values.dtype)


class DimensionShuffle(nn.Module):
    """LSTM-FCN's "dimension shuffle": the LSTM reads the transposed input, one step per feature
    whose inputs are the ``sequence_length`` time steps (a univariate series is one step).

    Called as ``shuffle(lstm_input, lengths) -> (lstm_input, lengths)`` (the network's
    ``sequence_view`` slot). It needs fixed-length input: a batch whose time axis or any length
    differs from ``sequence_length`` is refused. The LSTM stays on its fused kernel (all
    sequences then have ``features`` steps, no padding).

    Example:
        >>> shuffle = DimensionShuffle(4)
        >>> values, lengths = shuffle(torch.randn(2, 4, 3), torch.tensor([4, 4]))
        >>> tuple(values.shape), lengths.tolist()
        ((2, 3, 4), [3, 3])
    """

    def __init__(self, sequence_length: int) -> None:
        super().__init__()
        self.sequence_length = check.positive_int("sequence_length", sequence_length)

    def forward(self, lstm_input: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        expected = self.sequence_length
        # Lengths live on the CPU (the batch contract), so this check costs no device sync.
        if lstm_input.size(1) != expected or bool((lengths != expected).any()):
            found = sorted(set(lengths.tolist()))
            raise ValueError(
                f"The dimension shuffle of technique `fcn_branch` needs every sequence to have exactly "
                f"{expected} steps (its `sequence_length`), but got a batch of {lstm_input.size(1)} steps "
                f"with lengths {found[:10]}. Use fixed-length data, or dimension_shuffle=False."
            )
        return lstm_input.transpose(1, 2).contiguous(), torch.full_like(lengths, lstm_input.size(2))

    def extra_repr(self) -> str:
        return f"sequence_length={self.sequence_length}"
