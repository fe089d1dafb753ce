"""Writing a file so that a kill, a full disk or an error never leaves a half-written one.

The temporary file lives beside its target (same folder, so the same filesystem): ``os.replace``
is then one atomic rename, never the "truncate, then copy" a move across filesystems becomes.
Files are synced before the rename and the folder after it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["replaced_atomically", "write_atomically"]

_PARTIAL = ".partial"


def _host() -> str:
    # In the name so that a process never removes what another machine writes to a shared folder.
    return socket.gethostname().replace("/", "_") or "host"


def _temporary_path(target: Path, pid: int) -> Path:
    # Keeps the target's suffix last (np.savez and friends append theirs otherwise); hidden, so
    # globs such as Lightning's ``last*.ckpt`` never pick it up.
    return target.with_name(f".{target.name}.{_host()}.{pid}{_PARTIAL}{target.suffix}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove_orphans(target: Path) -> None:
    """Remove temporary files of ``target`` left by processes of this machine that were killed
    mid-write."""
    prefix = f".{target.name}.{_host()}."
    ending = f"{_PARTIAL}{target.suffix}"
    with suppress(OSError):
        for entry in os.scandir(target.parent):
            name = entry.name
            if name.startswith(prefix) and name.endswith(ending):
                pid = name[len(prefix): len(name) - len(ending)]
                if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
                    with suppress(OSError):
                        os.unlink(entry.path)


def _sync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_folder(folder: Path) -> None:
    # The rename itself is durable only once the folder's entry is on disk; not every platform or
    # filesystem lets a folder be opened or synced, and the rename has happened either way.
    with suppress(OSError):
        _sync_file(folder)


@contextmanager
def replaced_atomically(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` only when the block ends
    without an error, and is removed otherwise, so a file that stood at ``path`` survives a failed
    write (an exception, a full disk, a signal that raises).

    The temporary file is flushed to disk (``fsync``) before the atomic ``os.replace``, and the
    folder after it, so a crash of the machine right after the block leaves either the old file
    or the complete new one. Temporary files of the same target left by killed processes
    (``SIGKILL`` cannot be caught) are removed by the next write.

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
    _remove_orphans(target)
    temporary = _temporary_path(target, os.getpid())
    try:
        yield temporary
        _sync_file(temporary)
        os.replace(temporary, target)
        _sync_folder(target.parent)
    finally:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)


def _sync_descriptor(descriptor: int) -> None:
    os.fsync(descriptor)


def _anonymous_file(folder: Path) -> int | None:
    """An unnamed file in ``folder`` (Linux ``O_TMPFILE``): a process killed while writing it
    leaves nothing behind, since the kernel frees a file that never got a name. ``None`` where
    the platform or the filesystem has none (macOS, NFS, ...)."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY, 0o666)  # less the umask, as a named file
    except OSError:
        return None


def _write_all(descriptor: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(descriptor, view):]


def write_atomically(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path``: all of it, or nothing (the previous file stays, and no
    temporary file is left).

    On Linux the data goes to an unnamed file in the target's folder (``O_TMPFILE``), synced, then
    given a temporary name and renamed over the target: a ``SIGKILL`` during the write leaves no
    file at all, only one in the instant between naming and renaming. Elsewhere it goes through
    :func:`replaced_atomically`.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "weights.bin"
        >>> write_atomically(target, b"abc"); target.read_bytes(), sorted(p.name for p in target.parent.iterdir())
        (b'abc', ['weights.bin'])
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor = _anonymous_file(target.parent)
    if descriptor is not None:
        temporary = _temporary_path(target, os.getpid())
        try:
            _write_all(descriptor, data)
            _sync_descriptor(descriptor)
            _remove_orphans(target)
            with suppress(FileNotFoundError):
                temporary.unlink()
            try:
                os.link(f"/proc/self/fd/{descriptor}", temporary)
                linked = True
            except OSError:  # no linking of unnamed files here: written the named way below
                linked = False
        finally:
            os.close(descriptor)
        if linked:
            try:
                os.replace(temporary, target)
            finally:
                with suppress(OSError):
                    temporary.unlink(missing_ok=True)
            _sync_folder(target.parent)
            return
    with replaced_atomically(target) as temporary, temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
