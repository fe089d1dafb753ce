"""The ``lstm-plugins`` command, sent SIGTERM by itself at a known training step.

Run as a script::

    python tests/sigterm_cli.py STEP WHERE fit --config ...

It runs :func:`lstm_plugins.cli.main` with the remaining arguments and, once ``STEP`` optimizer
steps are done, sends the process a real ``SIGTERM`` (Lightning's handler receives it as it would
a scheduler's) from ``WHERE``: ``step`` (inside the next batch's ``training_step``, before the
callbacks see the batch's end) or ``batch_end`` (in the model's ``on_train_batch_end``, after the
callbacks: the SIGTERM is then noticed only when Lightning raises at the end of the batch).
"""

from __future__ import annotations

import os
import signal
import sys

from lstm_plugins.cli import main
from lstm_plugins.model._module import SequenceModel


def _arm(step: int, where: str) -> None:
    sent = []

    def send(trainer):
        if not sent and trainer.global_step == step:
            sent.append(step)
            os.kill(os.getpid(), signal.SIGTERM)

    if where == "step":
        original = SequenceModel.training_step

        def training_step(self, batch, batch_idx):
            send(self.trainer)
            return original(self, batch, batch_idx)

        SequenceModel.training_step = training_step
    else:
        original_end = SequenceModel.on_train_batch_end

        def on_train_batch_end(self, outputs, batch, batch_idx):
            original_end(self, outputs, batch, batch_idx)
            send(self.trainer)

        SequenceModel.on_train_batch_end = on_train_batch_end


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _arm(int(sys.argv[1]), sys.argv[2])
    raise SystemExit(main(sys.argv[3:]))
