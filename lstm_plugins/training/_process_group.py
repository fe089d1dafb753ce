"""Ending the default process group when a distributed run is over.

Lightning creates the process group for ``strategy="ddp"`` and leaves it to the script. Left
alone, gloo's background threads meet the interpreter's exit, and a run that succeeded can
abort with "terminate called without an active exception" (exit status -6; seen twice in the
test suite on a loaded 2-core machine). :func:`end_process_group` ends it first; the CLI calls
it after every successful command.

Example:
    >>> end_process_group()  # without a process group: nothing to do
    False
"""

from __future__ import annotations

from datetime import timedelta

import torch.distributed as dist

__all__ = ["end_process_group"]


def end_process_group(timeout: timedelta = timedelta(seconds=60)) -> bool:
    """Wait for every process, then destroy the default process group; ``True`` if it did.

    Call it last in every process of a distributed script. The processes meet at a barrier
    first, so none closes its connections while another still uses them. With gloo the barrier
    is ``monitored_barrier``: when another process does not arrive within ``timeout`` (it
    failed), the group is left as it is and ``False`` returned, rather than waiting for the
    backend's 30-minute default.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return False
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timeout)
        else:
            dist.barrier()
    except RuntimeError:
        return False
    dist.destroy_process_group()
    return True
