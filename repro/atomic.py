"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one.

Every file repro writes (manifests, checkpoints, reports, keys) goes through here: the bytes are
written to a temporary file in the target folder, flushed to disk, then renamed over the target.
OS errors become :class:`~repro.errors.OutputError` with a message that says what to do.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from repro.errors import OutputError

_HINTS = {
    errno.ENOSPC: "the disk is full; free space or choose another --out",
    errno.EDQUOT: "the disk quota is exceeded; free space or choose another --out",
    errno.EACCES: "permission denied; choose a writable --out",
    errno.EPERM: "permission denied; choose a writable --out",
    errno.EROFS: "the file system is read-only; choose a writable --out",
    errno.ENOENT: "the folder does not exist; create it or choose another --out",
    errno.ENOTDIR: "a parent of the path is not a folder; choose another --out",
}


def describe_os_error(exc: OSError, path: Path) -> str:
    """Return a one-line description of an OS error on ``path`` with advice."""
    hint = _HINTS.get(exc.errno or -1, exc.strerror or str(exc))
    return f"cannot write {path}: {hint}"


@contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was. ``mode`` is
    set on the temporary file before any byte is written, so secrets are never world-readable.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from exc
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(describe_os_error(exc, path)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, mode) as handle:
        handle.write(data)


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), mode)


def write_with(path: Path, produce: Callable[[Path], None], mode: int = 0o644) -> None:
    """Atomically create ``path`` with a writer that only accepts a file name (e.g. safetensors).

    ``produce`` writes a temporary path in the same folder; it is then fsynced and renamed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from exc
    tmp = Path(tmp_name)
    try:
        produce(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(describe_os_error(exc, path)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
