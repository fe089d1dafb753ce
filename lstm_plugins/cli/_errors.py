"""Config errors that name the key and list the allowed ones.

jsonargparse's messages for an unknown key (``Group 'trainer' does not accept option 'epochs'``)
gain the list of allowed keys; an error raised while the model or the data is built (a value the
constructor refuses, an unknown technique) is prefixed with its key (``model.techniques: ...``).
"""

from __future__ import annotations

import re
import sys
import traceback
from typing import Any, NoReturn

from jsonargparse import ArgumentError
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.cli import LightningArgumentParser

from lstm_plugins.cli._config import ConfigError

__all__ = ["INPUT_ERRORS", "ExplainingParser", "error_report", "exit_status", "keyed_error"]

_GROUP = re.compile(r"Group '(?P<group>[\w.]+)' does not accept option '(?P<key>[\w.]+)'")
_SUBCOMMAND = re.compile(
    r"(?:Subcommand '\w+' does not accept option '|unrecognized arguments: --)(?P<key>[\w.]+)"
)
_OPTION = re.compile(r"(?:Option|Key) '(?P<key>[\w.]+)' is not (?:accepted|expected)")


def allowed_keys(parser: Any, group: str = "") -> list[str]:
    """The keys a parser accepts directly below ``group`` (``""``: the top level)."""
    prefix = f"{group}." if group else ""
    keys = set()
    for action in parser._actions:
        dest = getattr(action, "dest", "")
        if dest.startswith(prefix) and dest not in ("help", "print_config", "config"):
            keys.add(dest[len(prefix):].split(".")[0])
    return sorted(key for key in keys if key and not key.startswith("__"))


_NESTED = re.compile(r"Parser key \"(?P<group>[\w.]+)\":[\s\S]*?Unknown key '(?P<key>[\w.]+)' in the config\. "
                     r"Allowed keys: (?P<allowed>[^\n]+)")


def explain(parser: Any, message: str) -> str:
    """``message`` with the allowed keys where it names an unknown one."""
    found = _NESTED.search(message)  # a dataclass section (`early_stopping`): jsonargparse nests the error
    if found:
        return f"Unknown key '{found['key']}' in `{found['group']}`. Allowed keys: {found['allowed']}"
    found = _GROUP.search(message)
    if found:
        group, key = found["group"], found["key"]
        return f"Unknown key '{key}' in `{group}`. Allowed keys: {', '.join(allowed_keys(parser, group))}."
    found = _SUBCOMMAND.search(message)
    if found:
        group, _, key = found["key"].rpartition(".")
        where = f"`{group}`" if group else "the config"
        return f"Unknown key '{key}' in {where}. Allowed keys: {', '.join(allowed_keys(parser, group))}."
    found = _OPTION.search(message)
    if found:
        return f"Unknown key '{found['key']}' in the config. Allowed keys: {', '.join(allowed_keys(parser))}."
    return message


class ExplainingParser(LightningArgumentParser):
    """``LightningArgumentParser`` whose errors are one line that names the key (and the
    allowed keys), without the usage."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        parser = getattr(ex, "subcommand_parser", None) or self
        from lstm_plugins.cli._yaml import shorten

        message = shorten(explain(parser, message), 2000)  # jsonargparse echoes values, however large
        if not self.exit_on_error:
            raise ArgumentError(None, message) from ex
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"lstm-plugins: error: {message}\n  (`{prog} --help` lists every option)\n")
        self.exit(2)


def keyed_error(exc: Exception, data_function: str) -> ConfigError:
    """An error raised while building the data module or the model, prefixed with its key."""
    names = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    section = "data" if data_function in names else "trainer" if "_instantiate_trainer" in names else "model"
    message = str(exc)
    technique = _raising_technique(exc) if section == "model" else None
    if technique is not None and "echnique" not in message:  # a technique's argument: say which
        key, message = "model.techniques", f"Technique `{technique}`: {message}"
    elif section == "model" and "echnique" in message:
        key = "model.techniques"
    else:
        found = re.search(r"`(\w+)`", message)
        key = f"{section}.{found.group(1)}" if found and not found.group(1).startswith(section) else section
    error = ConfigError(f"{key}: {message}")
    for note in getattr(exc, "__notes__", ()):  # "(raised by technique `x` in hook `y`)"
        error.add_note(note)
    return error


def _raising_technique(exc: BaseException) -> str | None:
    """The name of the technique whose method raised ``exc`` (its constructor's argument check), if any."""
    from lstm_plugins.techniques import Technique

    name = None
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, Technique) and isinstance(getattr(type(owner), "name", None), str):
            name = type(owner).name
        tb = tb.tb_next
    return name


INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, ImportError,
                                                 MisconfigurationException)
"""Errors that report a bad input (exit status 2); anything else is unexpected (exit status 1)."""


def _notes(exc: BaseException) -> list[str]:
    """The notes of ``exc`` and of the errors it was raised from, each once."""
    notes: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        notes += [str(note) for note in getattr(current, "__notes__", ()) if str(note) not in notes]
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return notes


def error_report(exc: BaseException) -> str:
    """What the CLI prints for an error: ``lstm-plugins: error: MESSAGE``, then each note
    (the technique and hook that raised), then, for an unexpected error (neither a bad input nor
    one of this library's own), how to see the traceback.

    Example:
        >>> error = ValueError("Expected `threshold` to be a positive float, but got -1.")
        >>> error.add_note("(raised by technique `gradient_clipping` in hook `on_fit_setup`)")
        >>> print(error_report(error))
        lstm-plugins: error: Expected `threshold` to be a positive float, but got -1.
          (raised by technique `gradient_clipping` in hook `on_fit_setup`)
        >>> print(error_report(KeyError("momentum")))
        lstm-plugins: error: KeyError: 'momentum'
          (unexpected: run again with --traceback, or LSTM_PLUGINS_TRACEBACK=1, for the full traceback to report)
    """
    from lstm_plugins.cli._yaml import shorten

    message = str(exc).strip()
    if not isinstance(exc, INPUT_ERRORS) or not message:
        message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    lines = [f"lstm-plugins: error: {shorten(message, 2000)}"]
    lines += [f"  {shorten(note, 500)}" for note in _notes(exc)]
    if not isinstance(exc, INPUT_ERRORS) and not type(exc).__module__.startswith("lstm_plugins"):
        lines.append("  (unexpected: run again with --traceback, or LSTM_PLUGINS_TRACEBACK=1, "
                     "for the full traceback to report)")
    return "\n".join(lines)


def exit_status(exc: BaseException) -> int:
    """2 for a bad input (:data:`INPUT_ERRORS`), 1 for anything else.

    Example:
        >>> exit_status(ValueError()), exit_status(RuntimeError())
        (2, 1)
    """
    return 2 if isinstance(exc, INPUT_ERRORS) else 1
