"""YAML as this project reads it: data of bounded size, every key once.

PyYAML keeps the last of two equal keys without a word (a second ``techniques:`` silently drops
the first stack), and an alias (``*name``) that repeats an anchor is cheap to parse but expands
exponentially wherever the value is copied or printed (an "alias bomb" took minutes of CPU and
then a ``MemoryError`` in an error message). :func:`check_yaml` composes the node graph without
constructing it, refuses a repeated key naming it and its lines, and bounds the size the aliases
expand to before anything is expanded. :func:`load_yaml` is ``yaml.safe_load`` after that check;
the CLI registers it with jsonargparse (parser mode :data:`PARSER_MODE`) so every config file and
flag value LightningCLI reads goes through it.

Example:
    >>> load_yaml("model: {hidden_size: 8}")
    {'model': {'hidden_size': 8}}
    >>> load_yaml("techniques: [l2]\\ntechniques: [dropout]\\n", "run.yaml")
    Traceback (most recent call last):
    ...
    lstm_plugins.cli._config.ConfigError: run.yaml, line 2: key `techniques` is given twice (first on line 1); give it once.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from lstm_plugins.cli._config import ConfigError

__all__ = ["MAX_NODES", "PARSER_MODE", "check_yaml", "load_yaml", "shorten"]

MAX_NODES = 100_000
"""The most values (scalars, lists, mappings) a config may hold once its aliases are expanded;
the largest real config is a few hundred."""

PARSER_MODE = "lstm_plugins_yaml"
"""The jsonargparse parser mode whose loader is :func:`load_yaml`."""

_MERGE = "tag:yaml.org,2002:merge"


class _Composer(yaml.SafeLoader):
    """A safe loader that records the line of every alias it meets (composing shares the
    anchor's node, so the alias's own line is otherwise lost)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_lines: list[int] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            self.alias_lines.append(self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


def shorten(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters (an error message never echoes an unbounded value).

    Example:
        >>> shorten("x" * 500, 10)
        'xxxxxxxxxx... (500 characters)'
    """
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _where(source: str, line: int) -> str:
    return f"{source}, line {line}" if source else f"line {line}"


def _check_keys(node: MappingNode, source: str) -> None:
    first: dict[str, int] = {}
    for key, _ in node.value:
        if key.tag == _MERGE or not hasattr(key, "value") or not isinstance(key.value, str):
            continue  # `<<: *base` merges are meant to be overridden; complex keys are rare
        line = key.start_mark.line + 1
        if key.value in first:
            raise ConfigError(f"{_where(source, line)}: key `{shorten(key.value, 80)}` is given twice "
                              f"(first on line {first[key.value]}); give it once.")
        first[key.value] = line


def _expanded_size(root: Node, source: str, alias_lines: list[int]) -> None:
    """Count the values ``root`` expands to, each shared node once per use, without expanding."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            line = alias_lines[0] if alias_lines else node.start_mark.line + 1
            raise ConfigError(f"{_where(source, line)}: an alias refers to the value that contains it "
                              "(a recursive anchor); a config is finite data.")
        open_nodes.add(id(node))
        total = 1
        if isinstance(node, MappingNode):
            _check_keys(node, source)
            total += sum(size(key) + size(value) for key, value in node.value)
        elif isinstance(node, SequenceNode):
            total += sum(size(item) for item in node.value)
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        if total > MAX_NODES:
            line = alias_lines[0] if alias_lines else node.start_mark.line + 1
            raise ConfigError(
                f"{_where(source, line)}: the aliases (`*name`) expand to more than {MAX_NODES} values; "
                "a config is data of bounded size: write the values out or use fewer aliases."
            )
        return total

    size(root)


def check_yaml(text: str, source: str = "") -> None:
    """Refuse a repeated key or aliases that expand beyond :data:`MAX_NODES` values, naming
    ``source`` (a file name) and the line. Text that is not YAML passes (the reader reports it).

    Example:
        >>> check_yaml("base: &b [1, 2]\\ncopy: *b\\n")
        >>> check_yaml("a: &a [1]\\nb: *c\\n")  # an undefined alias: left to the YAML reader
    """
    composer = _Composer(text)
    try:
        root = composer.get_single_node()
    except yaml.YAMLError:
        return
    finally:
        composer.dispose()
    if root is not None:
        _expanded_size(root, source, composer.alias_lines)


def load_yaml(text: str, source: str = "") -> Any:
    """``yaml.safe_load(text)`` once :func:`check_yaml` has passed.

    Example:
        >>> load_yaml("a: 1\\nb: [2, 3]")
        {'a': 1, 'b': [2, 3]}
    """
    check_yaml(text, source)
    return yaml.safe_load(text)


def register_parser_mode() -> str:
    """Register :data:`PARSER_MODE` with jsonargparse (jsonargparse's own YAML reading after
    :func:`check_yaml`); returns the mode's name.

    Example:
        >>> register_parser_mode()
        'lstm_plugins_yaml'
    """
    from jsonargparse import get_loader, set_loader

    yaml_load = get_loader("yaml")

    def load(value: str) -> Any:
        if isinstance(value, str):
            check_yaml(value)
        return yaml_load(value)

    set_loader(PARSER_MODE, load, exceptions=(yaml.YAMLError,))
    return PARSER_MODE
