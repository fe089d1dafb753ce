"""The last call of every 2-process DDP script in the tests: the library's own
:func:`lstm_plugins.training.end_process_group` (Lightning leaves the process group to the
script; left alone, gloo's threads can abort a run that passed at the interpreter's exit)."""

from lstm_plugins.training import end_process_group

__all__ = ["end_process_group"]
