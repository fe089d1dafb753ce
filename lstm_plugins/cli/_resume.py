"""A resumed ``fit`` continues the checkpoint's model: a config that asks for another is refused.

``fit --ckpt_path`` rebuilds the model from the checkpoint's hyperparameters, so a value the
config gives on purpose (a technique added to ``model.techniques``, another ``hidden_size``) would
otherwise be dropped without a word. A value counts as given when it differs from the parser's
default; technique stacks are compared by name (their arguments are the checkpoint's to keep).

Example:
    >>> technique_names([{"gradient_clipping": {"threshold": 1.0}}, "l2", {"name": "dropout", "output": 0.3}])
    ['gradient_clipping', 'l2', 'dropout']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lstm_plugins.cli._config import ConfigError

__all__ = ["conflicting_model_values", "technique_names"]


def technique_names(stack: Any) -> list[str] | Any:
    """The names in a technique stack as a config or a checkpoint's hyperparameters give it
    (``name``, ``{name: arguments}`` or ``{"name": name, ...}``); anything else as it is."""
    if not isinstance(stack, (list, tuple)):
        return stack
    names = []
    for item in stack:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, Mapping) and "name" in item:
            names.append(str(item["name"]))
        elif isinstance(item, Mapping) and len(item) == 1:
            names.append(str(next(iter(item))))
        else:
            names.append(repr(item))
    return names


def _comparable(key: str, value: Any) -> Any:
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    return technique_names(value) if key == "techniques" else value


def conflicting_model_values(parser: Any, config: Any, hparams: Mapping[str, Any], ckpt_path: Any) -> None:
    """Refuse a ``model.*`` value that ``config`` gives (not the default) and that differs from
    the checkpoint's ``hparams``, naming the key, both values and the file."""
    given = config.get("model") if hasattr(config, "get") else None
    if given is None:
        return
    defaults = parser.get_defaults().get("model")
    for key, stored in hparams.items():
        value = _comparable(key, given.get(key)) if hasattr(given, "get") else None
        default = _comparable(key, defaults.get(key)) if defaults is not None and hasattr(defaults, "get") else None
        if value is None or value == default or value == _comparable(key, stored):
            continue
        raise ConfigError(
            f"`model.{key}` is {value!r} in the config, but the checkpoint {str(ckpt_path)!r} this fit resumes was "
            f"written with {_comparable(key, stored)!r}; a resumed fit continues the checkpoint's model: drop "
            f"`model.{key}` from the config, or start a new fit (without --ckpt_path)."
        )
