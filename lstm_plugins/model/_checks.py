"""Checks at the fused LSTM's door: features, lengths and token ids it cannot take are refused
with a message naming the first offending sample, never deep inside the kernel."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["check_features", "check_lengths", "check_token_ids"]


_LENGTH_DTYPES = (torch.int64, torch.int32)
_LENGTHS_EXPECTED = "Expected every entry of `lengths` in [1, {}] (the batch's time steps)"


def _autocast_enabled(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4 takes no device type
        return bool(torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled())


def _compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


def check_features(features: Tensor, lstm: nn.LSTM) -> None:
    """Refuse features the fused LSTM cannot take: not a ``(batch, time, input_size)`` tensor, or
    of a dtype other than the LSTM's weights' (unless autocast casts them).

    Example:
        >>> lstm = torch.nn.LSTM(3, 4, batch_first=True)
        >>> check_features(torch.zeros(2, 5, 3, dtype=torch.float64), lstm)
        Traceback (most recent call last):
        ...
        TypeError: Expected `features` of dtype torch.float32 like the LSTM's weights, but got torch.float64; \
convert them with `features.to(torch.float32)` (the data modules hand out float32).
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"Expected `features` to be a (batch, time, features) tensor, but got {type(features).__name__}.")
    if features.dim() != 3 or features.size(-1) != lstm.input_size:
        raise ValueError(
            f"Expected `features` of shape (batch, time, {lstm.input_size}), but got {tuple(features.shape)}."
        )
    if features.size(1) == 0:
        raise ValueError(f"Expected `features` with at least one time step, but got shape {tuple(features.shape)}.")
    weight_dtype = lstm._flat_weights[0].dtype  # a plain attribute: no Module.__getattr__ per call
    if features.dtype != weight_dtype and not (
        features.is_floating_point() and _autocast_enabled(features.device.type)
    ):
        raise TypeError(
            f"Expected `features` of dtype {weight_dtype} like the LSTM's weights, but got {features.dtype}; "
            f"convert them with `features.to({weight_dtype})` (the data modules hand out float32)."
        )


def check_lengths(lengths: Tensor, batch_size: int, max_length: int) -> None:
    """Refuse ``lengths`` that are not ``(batch_size,)`` integers in ``[1, max_length]``.

    The message names the first offending sample. Lengths on the CPU are checked on the host
    (microseconds, no synchronisation); lengths on an accelerator are checked there with
    ``torch._assert_async``, which fails at the next synchronisation instead of stalling this one.

    Example:
        >>> check_lengths(torch.tensor([5, 0, 3]), 3, 5)
        Traceback (most recent call last):
        ...
        ValueError: Expected every entry of `lengths` in [1, 5] (the batch's time steps), but `lengths[1]` is 0.
        >>> check_lengths(torch.tensor([5, 7]), 2, 5)
        Traceback (most recent call last):
        ...
        ValueError: Expected every entry of `lengths` in [1, 5] (the batch's time steps), but `lengths[1]` is 7.
    """
    if not isinstance(lengths, Tensor):
        raise TypeError(
            f"Expected `lengths` to be a (batch,) int64 tensor, but got {type(lengths).__name__}; "
            "build it with torch.tensor(lengths)."
        )
    if lengths.dtype not in _LENGTH_DTYPES:
        raise TypeError(f"Expected `lengths` to be an int64 (or int32) tensor, but got dtype {lengths.dtype}.")
    if lengths.shape != (batch_size,):
        raise ValueError(
            f"Expected `lengths` of shape ({batch_size},), one per sequence of `features`, "
            f"but got {tuple(lengths.shape)}."
        )
    if lengths.device.type != "cpu":
        if not _compiling():
            valid = ((lengths >= 1) & (lengths <= max_length)).all()
            torch._assert_async(valid, _LENGTHS_EXPECTED.format(max_length) + ".")
        return
    if _compiling():
        return  # a host read would break the compiled graph; the eager path checks the same batches
    values = lengths.tolist()  # the cheapest host read at batch sizes (a few microseconds)
    if values and (min(values) < 1 or max(values) > max_length):
        bad = next(i for i, value in enumerate(values) if not 1 <= value <= max_length)
        raise ValueError(f"{_LENGTHS_EXPECTED.format(max_length)}, but `lengths[{bad}]` is {values[bad]}.")


def check_token_ids(tokens: Tensor, num_embeddings: int) -> None:
    """Refuse ``(batch, time)`` token ids outside ``[0, num_embeddings)`` (an embedding lookup
    would fail with a bare ``IndexError``, or a device-side assert on CUDA), naming the first.

    Same cost model as :func:`check_lengths`: read on the host for CPU ids (a few microseconds
    at chunk sizes), ``torch._assert_async`` on an accelerator.

    Example:
        >>> check_token_ids(torch.tensor([[1, 2], [3, 9]]), 5)
        Traceback (most recent call last):
        ...
        ValueError: Expected token ids in [0, 5) (`num_embeddings`), but `features[1, 1]` is 9.
    """
    if tokens.numel() == 0 or _compiling():
        return
    expected = f"Expected token ids in [0, {num_embeddings}) (`num_embeddings`)"
    if tokens.device.type != "cpu":
        torch._assert_async(((tokens >= 0) & (tokens < num_embeddings)).all(), expected + ".")
        return
    low, high = torch.aminmax(tokens)
    if int(low) < 0 or int(high) >= num_embeddings:
        place = ((tokens < 0) | (tokens >= num_embeddings)).nonzero()[0].tolist()
        raise ValueError(f"{expected}, but `features[{', '.join(map(str, place))}]` is {int(tokens[tuple(place)])}.")
