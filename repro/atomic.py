"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one.

Every file repro writes (manifests, checkpoints, reports, keys) goes through here: the bytes are
written to a temporary file (``.<name>.<random>.tmp``) in the target folder, flushed to disk, then
renamed over the target, and the folder is synced so the rename survives a power cut. A process
killed mid-write leaves at most such a temporary file, never a partial target; ``repro run``
removes its own leftovers. OS errors become :class:`~repro.errors.OutputError` with a one-line
message that says what to do; the target is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from repro.errors import OutputError

TMP_SUFFIX = ".tmp"
"""Suffix of the temporary files; one left behind means a process died mid-write (it is ignored)."""

_HINTS = {
    errno.ENOSPC: "the disk is full; free space or choose another --out",
    errno.EDQUOT: "the disk quota is exceeded; free space or choose another --out",
    errno.EACCES: "permission denied; choose a writable --out",
    errno.EPERM: "permission denied; choose a writable --out",
    errno.EROFS: "the file system is read-only; choose a writable --out",
    errno.ENOENT: "the folder does not exist; create it or choose another --out",
    errno.ENOTDIR: "a parent of the path is not a folder; choose another --out",
    errno.EEXIST: "a parent of the path is a file, not a folder; choose another --out",
    errno.EISDIR: "it is a folder; choose another --out",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter --out",
}


def describe_os_error(exc: OSError, path: Path) -> str:
    """Return a one-line description of an OS error on ``path`` with advice."""
    hint = _HINTS.get(exc.errno or -1, exc.strerror or str(exc))
    return f"cannot write {path}: {hint}"


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write fewer).

    The one place repro's output bytes reach the operating system, so a test can make the disk
    "full" here.
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a rename lives in the folder, not in the file)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # no directory handles here (e.g. some network or Windows file systems)
    try:
        # The rename already happened; durability across a power cut is best effort here.
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    """Remove a temporary file after a failure; the failure is what gets reported, not this."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def _temporary(path: Path) -> tuple[int, Path]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from exc
    return fd, Path(tmp_name)


class AtomicFile:
    """The writable end of :func:`atomic_writer`: bytes go to the temporary file."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> int:
        """Append ``data``; all of it is written or an ``OSError`` is raised."""
        write_all(self.fd, data)
        return len(data)


@contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[AtomicFile]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was. ``mode`` is
    set on the temporary file before any byte is written, so secrets are never world-readable.
    """
    path = Path(path)
    fd, tmp = _temporary(path)
    try:
        try:
            os.fchmod(fd, mode)
            yield AtomicFile(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise OutputError(describe_os_error(exc, path)) from exc
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, mode) as handle:
        handle.write(data)


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), mode)
