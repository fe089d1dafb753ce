"""The config format (LightningCLI's) and its default, and the error a config that cannot be used raises.

A config is what ``lstm-plugins fit --config FILE.yaml`` reads, and what :func:`lstm_plugins.cli.build_run`
takes as a dict::

    seed_everything: 0
    task: classification        # this project's keys: task, threads, checkpoint_every_n_epochs, early_stopping
    model:
      hidden_size: 64
      techniques:
        - gradient_clipping: {threshold: 1.0}
        - dropout: {output: 0.3}
    data: {dataset: japanese_vowels, batch_size: 32}
    trainer: {max_epochs: 60, accelerator: cpu, devices: 1}

Nothing in a config is evaluated or imported except technique names, which are looked up in the
``lstm_plugins`` entry-point registry, and Lightning's own callbacks and loggers.

Example:
    >>> DEFAULT_CONFIG["model"]["techniques"][0]
    {'gradient_clipping': {'threshold': 1.0}}
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_CONFIG", "ConfigError"]

DEFAULT_CONFIG: dict[str, Any] = {
    "seed_everything": 0,
    "task": "classification",
    # One intra-op thread: at these sizes a second oneDNN thread gains nothing on an idle
    # 2-core machine and, when anything else runs, makes each step many times slower.
    "threads": 1,
    # A checkpoint every 10 epochs, and last.ckpt at the end: saving every epoch of a 0.2 s
    # epoch costs about 7 % of the run. null keeps Lightning's checkpoint after every epoch.
    "checkpoint_every_n_epochs": 10,
    "model": {
        "hidden_size": 128,
        "num_layers": 1,
        "bidirectional": True,
        "optimizer": "adam",
        "learning_rate": 0.003,
        "techniques": [
            {"gradient_clipping": {"threshold": 1.0}},
            {"dropout": {"input": 0.1, "output": 0.3}},
            {"l2": {"weight": 1e-5}},
            {"grad_norm": {"log_every_n_steps": 10}},
        ],
    },
    "data": {"dataset": "japanese_vowels", "batch_size": 16, "val_fraction": 0.1},
    "trainer": {"deterministic": True, "max_epochs": 100, "devices": 1, "log_every_n_steps": 10},
}
"""The default of ``lstm-plugins fit`` (and of :func:`~lstm_plugins.cli.build_run`): the technique
stack it trains on JapaneseVowels. ``model`` and ``data`` are the classification defaults; ``trainer``,
``seed_everything``, ``threads`` and ``checkpoint_every_n_epochs`` are every task's."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key."""
