"""Writing a file so that a kill, a full disk or an error never leaves a half-written one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replaced_atomically"]


@contextmanager
def replaced_atomically(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` (``os.replace``, atomic on
    one filesystem) only when the block ends without an error, and is removed otherwise, so a file
    that stood at ``path`` survives a failed write.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out.txt"
        >>> with replaced_atomically(target) as temporary:
        ...     _ = temporary.write_text("done")
        >>> target.read_text(), temporary.exists()
        ('done', False)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial{target.suffix}")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
