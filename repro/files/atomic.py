"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one.

Every file repro writes (manifests, checkpoints, reports, keys) goes through here: the bytes are
written to a temporary file (``.<name>.<random>.tmp``) in the target folder, flushed to disk, then
renamed over the target, and the folder is synced so the rename survives a power cut. A process
killed mid-write leaves at most such a temporary file, never a partial target; ``repro run``
removes its own leftovers. OS errors become :class:`~repro.errors.OutputError` with a one-line
message that says what to do; the target is left as it was.

What already sits at the target decides how it is written (docs/security.md, "Outputs"):

- nothing, or a regular file: written atomically as above;
- a symbolic link: followed; the file it points to is written atomically (the link stays a link);
- a character device (``/dev/null``, a terminal) or a FIFO: written to directly, never replaced by
  a regular file (there is nothing to rename over); a FIFO without a reader is refused rather than
  waited on;
- anything else (a folder, a block device, a socket): refused.

:func:`check_writable` probes a target the same way without writing it, so a command can refuse an
unwritable output before it computes anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
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
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


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


def _stream_kind(path: Path) -> str | None:
    """"device" or "fifo" if ``path`` (links followed) is one, None if absent or a regular file.

    Raises :class:`OutputError` for what repro never writes to: folders, block devices, sockets.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None  # absent, or a link to an absent file: created where the link points
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from exc
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISCHR(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    what = ("a folder" if stat.S_ISDIR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a socket or other special file")
    raise OutputError(f"cannot write {path}: it is {what}; choose a regular file path")


def is_stream(path: Path) -> bool:
    """Whether ``path`` (links followed) is a character device or FIFO, written to directly."""
    try:
        return _stream_kind(_target(Path(path))) is not None
    except OutputError:
        return False


def _target(path: Path) -> Path:
    """Where the bytes for ``path`` go: the file a symbolic link points to, else ``path`` itself."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else path


def _open_stream(path: Path, kind: str) -> int:
    """Open a device or FIFO for writing; a FIFO nobody reads is refused, not waited on."""
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | (os.O_NONBLOCK if kind == "fifo" else 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OutputError(f"cannot write {path}: it is a FIFO that no process is reading; "
                              "start the reader first or choose a file") from exc
        raise OutputError(describe_os_error(exc, path)) from exc
    if kind == "fifo":  # a reader is there: from now on, wait for it like any pipe writer
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


@contextmanager
def _stream_writer(path: Path, kind: str) -> Iterator[AtomicFile]:
    """Write straight to a device or FIFO: no temporary file, no mode change, no rename."""
    fd = _open_stream(path, kind)
    try:
        yield AtomicFile(fd)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from exc
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[AtomicFile]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was. ``mode`` is
    set on the temporary file before any byte is written, so secrets are never world-readable.
    A symbolic link is followed; a character device or FIFO is written to directly (see the
    module docstring).
    """
    path = _target(Path(path))
    kind = _stream_kind(path)
    if kind is not None:
        with _stream_writer(path, kind) as stream:
            yield stream
        return
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


def check_writable(path: Path, flag: str) -> None:
    """Refuse, before any compute, an output that :func:`atomic_writer` could not write.

    Follows the same rules as the writer; for a regular file the nearest existing folder on its
    path gets a real probe (a temporary file created and removed at once), because permission
    bits do not tell the whole story (root, read-only mounts, ``/proc``). Nothing is left behind:
    no file, no folder. ``flag`` names the option in the message (e.g. ``--json``).
    """
    path = _target(Path(path))
    try:
        kind = _stream_kind(path)
    except OutputError as exc:
        raise OutputError(f"{flag}: {exc}") from exc
    if kind is not None:
        if not os.access(path, os.W_OK):
            raise OutputError(f"{flag}: {describe_os_error(PermissionError(errno.EACCES, 'denied'), path)}")
        return
    folder = path.parent.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        fd, probe = tempfile.mkstemp(prefix=".repro-probe.", suffix=TMP_SUFFIX, dir=folder)
    except OSError as exc:
        if exc.errno == errno.ENOENT and folder.is_dir():  # e.g. /proc: a folder that takes no new files
            raise OutputError(f"{flag}: cannot write {path}: no file can be created in {folder}; "
                              "choose another path") from exc
        raise OutputError(f"{flag}: {describe_os_error(exc, path)}") from exc
    os.close(fd)
    _discard(Path(probe))


def write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, mode) as handle:
        handle.write(data)


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), mode)
