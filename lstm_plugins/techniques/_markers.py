"""The pluggy markers of the project ``lstm_plugins``.

Techniques decorate their hook implementations with :data:`hookimpl`; the core decorates the
specifications in :mod:`lstm_plugins.techniques.hookspecs` with :data:`hookspec`.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "lstm_plugins"
"""The pluggy project name and the entry-point group that third-party techniques register under."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
