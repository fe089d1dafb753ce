"""The examples in docstrings run and print what they show."""

import doctest
import importlib
import pkgutil

import pytest

import lstm_plugins
import lstm_plugins.plugins


def _modules():
    for package in (lstm_plugins, lstm_plugins.plugins):
        yield package.__name__
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.startswith("lstm_plugins.plugins") and package is lstm_plugins:
                continue
            yield info.name


MODULES = sorted(set(_modules()) - {"lstm_plugins.__main__"})


def test_every_module_is_checked():
    assert "lstm_plugins.model" in MODULES and "lstm_plugins.plugins.dropout" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0
