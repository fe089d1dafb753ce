"""The optional base class of techniques."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from lstm_plugins.techniques._search_space import SearchValue


class Technique:
    """Base class for techniques: records constructor arguments and declares exclusivity.

    Subclassing is optional (any object with :data:`lstm_plugins.hookimpl` methods is a
    technique), but it gives a technique six things:

    * ``config``: the arguments it was constructed with, so a model can save its stack as
      hyper-parameters and rebuild it from a checkpoint or a YAML file;
    * ``exclusive``: a slot name; two techniques of one model claiming the same slot are refused
      at construction (``"gradient_clipping"`` for clippers);
    * ``state_dict()`` / ``load_state_dict(state)``: state that survives a checkpoint. The core
      stores what ``state_dict()`` returns under the technique's name, checks on loading that the
      stored keys and value types are those a fresh technique returns (a tampered or mismatched
      state is refused, naming the technique and the key), then calls ``load_state_dict``;
    * ``search_space``: the ranges of its arguments worth searching (:class:`FloatRange`,
      :class:`IntRange`, :class:`Choice`, keyed by ``__init__`` argument name), which
      ``lstm-plugins tune`` samples when the technique is a candidate of a search;
    * ``skips_nonfinite_steps``: set it when the technique handles non-finite losses itself
      (as ``nonfinite_guard`` does), so the model's default stop on a NaN loss steps aside;
    * a readable ``repr``.

    Example:
        >>> from lstm_plugins import Technique, hookimpl
        >>> from lstm_plugins.techniques import FloatRange
        >>> class GradientNoise(Technique):
        ...     '''Adds Gaussian noise to gradients.'''
        ...     name = "gradient_noise"
        ...     search_space = {"scale": FloatRange(1e-3, 1.0, log=True)}
        ...     def __init__(self, scale: float = 0.01) -> None:
        ...         self.scale = scale
        ...     @hookimpl
        ...     def transform_gradients(self, optimizer):
        ...         ...
        >>> GradientNoise(scale=0.1)
        GradientNoise(scale=0.1)
        >>> GradientNoise().state_dict()
        {}
    """

    name: ClassVar[str | None] = None
    """Registry name; set it to the entry-point name so saved configs can be rebuilt by name."""

    exclusive: ClassVar[str | None] = None
    """A slot that at most one technique of a model may occupy."""

    search_space: ClassVar[Mapping[str, SearchValue]] = {}
    """Ranges worth searching per ``__init__`` argument (from the technique's paper); the tuner
    checks that every key is an argument, naming the technique and the key."""

    skips_nonfinite_steps: ClassVar[bool] = False
    """Whether the technique skips steps with a non-finite loss itself; the model then does not
    stop training on one (``stop_on_nonfinite_loss``)."""

    _config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        original_init = cls.__dict__["__init__"]
        signature = inspect.signature(original_init)

        @functools.wraps(original_init)
        def __init__(self: Technique, *args: Any, **kwargs: Any) -> None:
            # Only the outermost __init__ of the instance's own class records the arguments.
            if type(self).__dict__.get("__init__") is __init__ and "_config" not in self.__dict__:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop(next(iter(signature.parameters)))  # self
                self._config = arguments
            original_init(self, *args, **kwargs)

        cls.__init__ = __init__  # type: ignore[method-assign]

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments, defaults included."""
        return dict(self.__dict__.get("_config", {}))

    def state_dict(self) -> dict[str, Any]:
        """State to keep in checkpoints: plain data (tensors, numbers, strings, lists, dicts).

        The default is stateless (``{}``). Return the same keys before and after training: the
        core compares a stored state's keys and value types with a fresh technique's."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; raise ``ValueError`` for values that cannot
        be right (the core adds the technique's name)."""

    @classmethod
    def description(cls) -> str:
        """The first line of the class docstring."""
        doc = inspect.getdoc(cls) or ""
        return doc.splitlines()[0] if doc else ""

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.config.items())
        return f"{type(self).__name__}({arguments})"


def technique_name(technique: object) -> str:
    """The name a technique is known by: its registry name, else its class name."""
    name = getattr(technique, "name", None)
    return name if isinstance(name, str) and name else type(technique).__name__
