"""A checkpoint checked before it is used: the file, then what it holds against the model.

Every way a checkpoint enters (``fit|validate|test|predict --ckpt_path``, ``generate``, a
resumed ``Trainer.fit(ckpt_path=...)``) goes through :func:`read_checkpoint` (a missing, empty,
truncated or foreign file is refused naming it, instead of ``EOFError ''`` or ``KeyError``) and
:func:`check_checkpoint` (weights that do not fit the model; for a resumed fit, a technique stack
or an optimizer that differs from the one the checkpoint was written with, which would otherwise
end in ``KeyError 'momentum'`` deep in the optimizer, or silently drop a technique's state).

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "empty.ckpt"
    >>> path.touch()
    >>> read_checkpoint(path)
    Traceback (most recent call last):
    ...
    ValueError: Checkpoint '...empty.ckpt' is empty (0 bytes): its write was interrupted; use an earlier checkpoint.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["check_checkpoint", "check_resume", "check_written_by", "name_checkpoint", "read_checkpoint"]

_VERSION_KEYS = frozenset({"foreach", "fused", "capturable", "differentiable", "maximize", "decoupled_weight_decay"})
"""Optimizer group keys whose presence depends on the torch version, not on the optimizer."""


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _listed(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(f"`{name}`" for name in list(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def name_checkpoint(exc: BaseException, path: Any) -> None:
    """Add "(checkpoint 'PATH')" to an error raised while a checkpoint was loaded.

    Example:
        >>> error = ValueError("bad state")
        >>> name_checkpoint(error, "last.ckpt")
        >>> error.__notes__
        ["(checkpoint 'last.ckpt')"]
    """
    note = f"(checkpoint {str(path)!r})"
    if path is not None and repr(str(path)) not in str(exc) and note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


def read_checkpoint(path: Any, *, map_location: Any = "cpu", weights_only: bool = True) -> dict[str, Any]:
    """The checkpoint dict in ``path``, read with ``torch.load(weights_only=True)``; a file that is
    missing, empty, truncated, not a torch file, holding code, or not a Lightning checkpoint is
    refused naming the file (``FileNotFoundError`` or ``ValueError``)."""
    where = repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else repr(path)
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"Checkpoint {where} does not exist.")
    if not file.is_file():
        raise ValueError(f"Checkpoint {where} is not a file.")
    size = file.stat().st_size
    if size == 0:
        raise ValueError(f"Checkpoint {where} is empty (0 bytes): its write was interrupted; use an earlier checkpoint.")
    try:
        checkpoint = torch.load(file, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:  # a class or function the file asks to import: what a crafted checkpoint does
            raise ValueError(
                f"Checkpoint {where} holds a pickled `{found.group(1)}`, not only tensors and plain data; a safe "
                "load refuses it (unpickling it could run code). Load only checkpoints you wrote."
            ) from None
        found = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        detail = found.group(1).strip() if found else str(exc)
        raise ValueError(f"Checkpoint {where} ({size} bytes) cannot be read: it is truncated or not a torch "
                         f"checkpoint ({_short(detail)}).") from None
    except (EOFError, RuntimeError, OSError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise ValueError(
            f"Checkpoint {where} ({size} bytes) cannot be read: it is truncated or not a torch checkpoint "
            f"({type(exc).__name__}: {_short(exc) or 'no message'})."
        ) from None
    _check_lightning(checkpoint, where)
    return checkpoint


def check_local_checkpoint(path: Any, *, weights_only: bool = True) -> None:
    """:func:`read_checkpoint` for a local file path (raising its refusal naming the file); any
    other source (a URL, a file object) is left to the caller's own loading.

    Example:
        >>> check_local_checkpoint("s3://bucket/run.ckpt")  # not local: nothing to check here
        >>> check_local_checkpoint("missing.ckpt")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Checkpoint 'missing.ckpt' does not exist.
    """
    if isinstance(path, (str, os.PathLike)) and "://" not in os.fspath(path):
        read_checkpoint(path, weights_only=weights_only)


def _check_lightning(checkpoint: Any, where: str) -> None:
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"Checkpoint {where} is not a Lightning checkpoint: it holds a {type(checkpoint).__name__}, "
                         "not a mapping.")
    if "state_dict" not in checkpoint:
        if checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
            raise ValueError(f"Checkpoint {where} is a bare state_dict (torch.save(model.state_dict())), not a "
                             "Lightning checkpoint: load it with model.load_state_dict(torch.load(path)).")
        raise ValueError(f"Checkpoint {where} is not a Lightning checkpoint: it has no `state_dict` "
                         f"(its keys: {_listed([str(key) for key in checkpoint])}).")
    if not isinstance(checkpoint["state_dict"], Mapping):
        raise ValueError(f"Checkpoint {where}: `state_dict` is a {type(checkpoint['state_dict']).__name__}, "
                         "not a mapping of tensors.")
    if "pytorch-lightning_version" not in checkpoint:
        raise ValueError(f"Checkpoint {where} is not a Lightning checkpoint: it has no `pytorch-lightning_version`.")


def check_checkpoint(checkpoint: Mapping[str, Any], model: Any, *, path: Any = None, resume: bool = False) -> None:
    """Refuse ``checkpoint`` when its weights do not fit ``model`` (keys and shapes), and, for a
    resumed fit (``resume=True``), when :func:`check_resume` does, naming ``path`` and what differs.

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> small, large = LSTMClassifier(12, 9, hidden_size=8), LSTMClassifier(12, 9, hidden_size=16)
        >>> check_checkpoint({"state_dict": small.state_dict()}, large, path="small.ckpt")
        Traceback (most recent call last):
        ...
        ValueError: Checkpoint 'small.ckpt' does not fit this model: ...
    """
    where = f"Checkpoint {str(path)!r}" if path is not None else "The checkpoint"
    saved, fresh = checkpoint.get("state_dict", {}), model.state_dict()
    if getattr(model, "strict_loading", True):
        missing = [key for key in fresh if key not in saved]
        unexpected = [key for key in saved if key not in fresh]
        if missing or unexpected:
            parts = ([f"it lacks {_listed(missing)}"] if missing else []) + (
                [f"it has {_listed(unexpected)}, which this model does not"] if unexpected else [])
            raise ValueError(f"{where} does not fit this model: {'; '.join(parts)} (was it written with other "
                             "techniques, layers or sizes?).")
    shapes = [(key, tuple(saved[key].shape), tuple(value.shape)) for key, value in fresh.items()
              if isinstance(saved.get(key), torch.Tensor) and saved[key].shape != value.shape]
    if shapes:
        key, had, needs = shapes[0]
        raise ValueError(f"{where} does not fit this model: `{key}` has shape {had} in the checkpoint but {needs} "
                         f"in the model ({len(shapes)} such weight(s); were the sizes different?).")
    if resume:
        check_resume(checkpoint, model, where=where)


def check_resume(checkpoint: Mapping[str, Any], model: Any, *, where: str = "The checkpoint") -> None:
    """Refuse to resume a fit of ``model`` from ``checkpoint`` when the technique stack or the
    optimizer differs from the one it was written with (names added and removed, or the
    optimizer, its parameter groups and their sizes).

    Example:
        >>> from lstm_plugins import LSTMClassifier
        >>> stored = {"lstm_plugins": {"techniques": ["gradient_clipping"]}}
        >>> check_resume(stored, LSTMClassifier(12, 9, techniques=["gradient_clipping", "l2"]))
        Traceback (most recent call last):
        ...
        ValueError: The checkpoint was written with techniques [gradient_clipping], but this model has [gradient_clipping, l2] (added: `l2`); ...
    """
    from lstm_plugins.techniques._technique import technique_name

    stored = checkpoint.get("lstm_plugins")
    names = [technique_name(technique) for technique in getattr(model, "techniques", ())]
    if isinstance(stored, Mapping) and isinstance(stored.get("techniques"), (list, tuple)):
        written = [str(name) for name in stored["techniques"]]
        if written != names:
            added = [name for name in names if name not in written]
            removed = [name for name in written if name not in names]
            change = ", ".join(([f"added: {_listed(added)}"] if added else []) +
                               ([f"removed: {_listed(removed)}"] if removed else [])) or "reordered"
            raise ValueError(
                f"{where} was written with techniques [{', '.join(written)}], but this model has "
                f"[{', '.join(names)}] ({change}); a resumed fit continues the same stack: use the checkpoint's "
                "techniques, or start a new fit (without ckpt_path) that loads only the weights."
            )
    _check_optimizer(checkpoint, model, where)


def _check_optimizer(checkpoint: Mapping[str, Any], model: Any, where: str) -> None:
    written_name = (checkpoint.get("hyper_parameters") or {}).get("optimizer")
    name = getattr(model, "optimizer_name", None)
    if isinstance(written_name, str) and name is not None and written_name != name:
        raise ValueError(f"{where} was written with optimizer {written_name!r}, but this model uses {name!r}; "
                         "a resumed fit continues the same optimizer (its state cannot be carried over).")
    states = checkpoint.get("optimizer_states")
    if not states or name is None or not hasattr(model, "_hook"):
        return
    from lstm_plugins.training._optimizers import build_optimizer

    fresh = build_optimizer(model, name, float(getattr(model, "learning_rate", 1e-3))).state_dict()["param_groups"]
    groups = states[0].get("param_groups", []) if isinstance(states[0], Mapping) else []
    if len(groups) != len(fresh):
        raise ValueError(f"{where} holds optimizer state for {len(groups)} parameter group(s), but this model's "
                         f"techniques make {len(fresh)} (a technique that shapes the groups, such as weight_decay, "
                         "was added or removed).")
    for index, (saved, new) in enumerate(zip(groups, fresh)):
        if len(saved.get("params", ())) != len(new["params"]):
            raise ValueError(f"{where}: optimizer parameter group {index} holds {len(saved.get('params', ()))} "
                             f"parameter(s) in the checkpoint but {len(new['params'])} in this model.")
        lacking = sorted(set(new) - set(saved) - _VERSION_KEYS - {"params"})
        if lacking:
            raise ValueError(f"{where}: the optimizer state lacks {_listed(lacking)}, which this model's optimizer "
                             f"{name!r} needs; it was written by a different optimizer.")


def check_written_by(checkpoint: Mapping[str, Any], model_class: type, *, path: Any = None) -> None:
    """Refuse a checkpoint whose hyperparameters are not ``model_class``'s (written by another
    task's model: a classifier given to ``generate``), naming the file and the differing keys.

    Example:
        >>> from lstm_plugins import LSTMClassifier, LSTMRegressor
        >>> check_written_by({"hyper_parameters": {"input_size": 3, "num_classes": 2}}, LSTMRegressor, path="c.ckpt")
        Traceback (most recent call last):
        ...
        ValueError: Checkpoint 'c.ckpt' was not written by model class LSTMRegressor: ...
    """
    import inspect

    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping):
        return
    parameters = inspect.signature(model_class.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    required = [name for name, p in parameters.items()
                if name != "self" and p.default is inspect.Parameter.empty and p.kind is not p.VAR_POSITIONAL]
    # A base class's argument (saved by its save_hyperparameters) is not foreign: Lightning drops it.
    known = {name for klass in model_class.__mro__ if "__init__" in vars(klass)
             for name in _parameters(klass.__init__)}
    lacking = [name for name in required if name not in hparams]
    foreign = [str(name) for name in hparams if name not in known and not str(name).startswith("_")]
    if lacking or foreign:
        where = f"Checkpoint {str(path)!r}" if path is not None else "The checkpoint"
        parts = ([f"it lacks {_listed(lacking)}"] if lacking else []) + (
            [f"it has {_listed(foreign)}, which {model_class.__name__} does not take"] if foreign else [])
        raise ValueError(f"{where} was not written by model class {model_class.__name__}: {'; '.join(parts)} "
                         "(a checkpoint of another task's model?).")


def _parameters(function: Any) -> list[str]:
    import inspect

    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return []
