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
from pytorch_lightning.cli import LightningArgumentParser

from lstm_plugins.cli._config import ConfigError

__all__ = ["ExplainingParser", "keyed_error"]

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


def explain(parser: Any, message: str) -> str:
    """``message`` with the allowed keys where it names an unknown one."""
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
        message = explain(parser, message)
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
    if section == "model" and "echnique" in message:
        key = "model.techniques"
    else:
        found = re.search(r"`(\w+)`", message)
        key = f"{section}.{found.group(1)}" if found and not found.group(1).startswith(section) else section
    return ConfigError(f"{key}: {message}")
