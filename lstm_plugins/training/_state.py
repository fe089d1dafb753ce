"""What a checkpoint holds besides the weights: technique states and the random streams.

Everything lives under ``checkpoint["lstm_plugins"]``::

    {"techniques": [names, in stack order],
     "state": {technique name: what its state_dict() returned},
     "rng": {"cpu": ..., "cuda": [...]},
     "carried_state": [h, c]}  # truncated BPTT only: (processes, layers, batch, hidden) each

as plain data, so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lstm_plugins.techniques._hookcalls import name_technique
from lstm_plugins.techniques._technique import technique_name

CHECKPOINT_KEY = "lstm_plugins"


def technique_state(technique: object) -> dict[str, Any]:
    """``technique.state_dict()``, or ``{}`` for a technique without one."""
    state_dict = getattr(technique, "state_dict", None)
    if not callable(state_dict):
        return {}
    state = state_dict()
    if not isinstance(state, Mapping):
        raise TypeError(
            f"Technique `{technique_name(technique)}`: expected state_dict() to return a dict, "
            f"but got {type(state).__name__}."
        )
    return dict(state)


def save_state(model: Any, checkpoint: dict[str, Any]) -> None:
    """Write every technique's state and the random streams into ``checkpoint``."""
    states = {}
    for technique in model.techniques:
        state = technique_state(technique)
        if state:
            _check_plain(state, technique_name(technique), "")
            states[technique_name(technique)] = state
    rng: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    # The random stream, so dropout masks after a resume are those of an uninterrupted run.
    checkpoint[CHECKPOINT_KEY] = {
        "techniques": [technique_name(t) for t in model.techniques],
        "state": states,
        "rng": rng,
    }
    carried = getattr(model, "carried_state", {}).get("train")
    if carried is not None:  # truncated BPTT: the state the next chunk of a resumed fit starts from
        checkpoint[CHECKPOINT_KEY]["carried_state"] = _per_process(model, carried)


def _per_process(model: Any, carried: tuple[Tensor, Tensor]) -> list[Tensor]:
    """``(h, c)`` of every process, each ``(processes, layers, batch, hidden)``: under DDP each
    process carries the state of its own streams, and every process builds the checkpoint (rank
    0 writes it), so the states are gathered here."""
    trainer = getattr(model, "_trainer", None)
    gather = trainer is not None and int(trainer.world_size) > 1
    return [(model.all_gather(t.detach()) if gather else t.detach().unsqueeze(0)).cpu() for t in carried]


def load_state(model: Any, checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """Restore every technique's state from ``checkpoint``; returns the saved random streams.

    When a Trainer resumes a fit, the checkpoint is first checked against the model
    (:func:`~lstm_plugins.training._checkpoint_check.check_checkpoint`: weights, technique
    stack, optimizer). Otherwise (an evaluation, ``load_from_checkpoint``) a technique the
    checkpoint was written without starts fresh. A stored state whose keys or value types differ
    from those of the fresh technique is refused before anything is loaded, naming the technique
    and the key; every error gains a note naming the checkpoint file when the Trainer knows it.
    """
    trainer = getattr(model, "_trainer", None)
    path = getattr(trainer, "ckpt_path", None) if trainer is not None else None
    try:
        if trainer is not None and getattr(trainer.state, "fn", None) == "fit":
            from lstm_plugins.training._checkpoint_check import check_checkpoint

            check_checkpoint(checkpoint, model, path=path, resume=True)
        return _load_state(model, checkpoint)
    except Exception as exc:
        from lstm_plugins.training._checkpoint_check import name_checkpoint

        name_checkpoint(exc, path)
        raise


def _load_state(model: Any, checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    stored = checkpoint.get(CHECKPOINT_KEY)
    if stored is None:  # written by plain Lightning: no technique state, no random streams
        return None
    if not isinstance(stored, Mapping) or not isinstance(stored.get("state", {}), Mapping):
        raise ValueError(f"Checkpoint section `{CHECKPOINT_KEY}` is not a mapping of technique states.")
    listed = stored.get("techniques") or []
    states = stored.get("state", {})
    loads = []
    for technique in model.techniques:
        name = technique_name(technique)
        fresh = technique_state(technique)
        saved = states.get(name)
        if saved is None:
            if fresh and name in listed:
                raise ValueError(
                    f"Checkpoint state of technique `{name}` is missing, although the checkpoint "
                    "was written with the technique."
                )
            continue
        _check_matches(fresh, saved, name, "")
        loads.append((technique, name, saved))
    for technique, name, saved in loads:
        try:
            technique.load_state_dict(saved)  # type: ignore[attr-defined]
        except Exception as exc:
            name_technique(exc, name, "load_state_dict")
            raise
    carried = stored.get("carried_state")
    if carried is not None:
        if not (isinstance(carried, (list, tuple)) and len(carried) == 2 and all(isinstance(t, Tensor) for t in carried)):
            raise ValueError("Checkpoint key `carried_state` must hold the LSTM's (h, c) tensors.")
        trainer = getattr(model, "_trainer", None)
        rank, world_size = (0, 1) if trainer is None else (int(trainer.global_rank), int(trainer.world_size))
        if carried[0].dim() == 3:  # written by one process without the process dimension
            carried = [tensor.unsqueeze(0) for tensor in carried]
        if carried[0].dim() == 4 and carried[0].size(0) == world_size:  # this process's own streams
            h, c = carried[0][rank], carried[1][rank]
            lstm = model.lstm
            expected = (lstm.num_layers * (2 if lstm.bidirectional else 1), lstm.hidden_size)
            if h.shape != c.shape or h.dim() != 3 or (h.shape[0], h.shape[2]) != expected:
                raise ValueError(
                    f"Checkpoint key `carried_state` holds (h, c) of shapes {tuple(h.shape)} and {tuple(c.shape)}, "
                    f"but this model's LSTM carries (layers * directions, streams, hidden) = ({expected[0]}, *, "
                    f"{expected[1]})."
                )
            model.carried_state["train"] = (h, c)
        elif carried[0].dim() == 4:
            warnings.warn(
                f"The checkpoint carries the LSTM state of {carried[0].size(0)} processes' streams, but "
                f"this run has {world_size}; a fit resumed mid-epoch starts its streams from zeros.",
                stacklevel=2,
            )
    rng = stored.get("rng")
    return rng if isinstance(rng, Mapping) else None


def restore_rng(rng: Mapping[str, Any]) -> None:
    """Set the random streams :func:`save_state` stored."""
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _where(technique: str, path: str) -> str:
    return f"Checkpoint state of technique `{technique}`" + (f", key `{path}`" if path else "")


def _check_plain(value: Any, technique: str, path: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{_where(technique, path)}: keys must be strings, but got {key!r}.")
            _check_plain(item, technique, f"{path}.{key}" if path else key)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, technique, f"{path}[{index}]")
    elif value is not None and not isinstance(value, (Tensor, bool, int, float, str)):
        raise TypeError(
            f"{_where(technique, path)}: expected plain data (tensors, numbers, strings, lists, "
            f"dicts) so the checkpoint loads with weights_only=True, but got {type(value).__name__}."
        )


def _kind(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor of {value.dtype}"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _check_matches(fresh: Any, saved: Any, technique: str, path: str) -> None:
    """``saved`` has the keys and value kinds of ``fresh`` (an empty dict or a ``None`` in
    ``fresh`` accepts anything plain: state that only exists once training has run)."""
    if fresh is None or (isinstance(fresh, Mapping) and not fresh and isinstance(saved, Mapping)):
        _check_plain(saved, technique, path)
        return
    if isinstance(fresh, Mapping):
        if not isinstance(saved, Mapping):
            raise ValueError(f"{_where(technique, path)}: expected a mapping, but got {_kind(saved)}.")
        missing = [key for key in fresh if key not in saved]
        if missing:
            raise ValueError(f"{_where(technique, _join(path, missing[0]))} is missing.")
        unexpected = [key for key in saved if key not in fresh]
        if unexpected:
            raise ValueError(f"{_where(technique, _join(path, str(unexpected[0])))} is not a key this technique stores.")
        for key in fresh:
            _check_matches(fresh[key], saved[key], technique, _join(path, key))
        return
    if _kind(fresh) != _kind(saved):
        raise ValueError(f"{_where(technique, path)}: expected a {_kind(fresh)}, but got a {_kind(saved)}.")
    _check_plain(saved, technique, path)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
