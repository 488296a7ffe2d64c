"""Confined reads: every file a manifest names is opened here, and only inside its folder.

A manifest is input. The paths it records (checkpoints, tokenizer, SBOM, data files) could name
anything: ``../../home/me/.ssh/id_ed25519``, ``/dev/zero``, a FIFO nobody writes to, a symlink
out of the run folder, a folder. So a recorded path is read only if

- it is relative, with no empty, ``.`` or ``..`` component (repro writes no other kind);
- resolved (symlinks followed), it is still inside the folder it is relative to;
- every component is walked with ``O_NOFOLLOW`` from a descriptor of that folder, so a component
  swapped for a symlink between the check and the open is refused, not followed;
- it is a regular file, checked with ``lstat`` before it is opened (a device is never opened) and
  with ``fstat`` after (``O_NONBLOCK``, so a FIFO swapped in between cannot block the process).

A path that breaks these rules is an :class:`~repro.errors.UnsafePathError` (exit 3: the signed
record names something that is not an artifact of the run); a path that does not exist is
reported as missing (``None``), for the caller to say what that means.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from repro.errors import InputError, MissingArtifactError, UnsafePathError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def check_relative(relative: str, what: str) -> list[str]:
    """The components of a recorded relative path; refuse an absolute path or one that climbs."""
    if not relative or "\x00" in relative or relative.startswith("/"):
        raise UnsafePathError(
            f"{what} {relative!r} is not a relative path inside its folder; the manifest is not a valid record"
        )
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafePathError(
            f"{what} {relative!r} has an empty, '.' or '..' component; a recorded path must stay inside its folder"
        )
    return parts


def _inside(root: str, relative: str, what: str) -> list[str]:
    """Components of ``relative`` after resolving symlinks; refuse one that resolves outside ``root``."""
    resolved = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, resolved]) != root or resolved == root:
        raise UnsafePathError(
            f"{what} {relative!r} leads outside its folder {root} (through a symlink); refusing to read it"
        )
    return os.path.relpath(resolved, root).split(os.sep)


def _open_in(root: str, parts: list[str], what: str, relative: str) -> int | None:
    """Walk ``parts`` below ``root`` without following symlinks; a descriptor of a regular file."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError as exc:
        raise MissingArtifactError(f"{what} {relative} cannot be read ({exc.strerror}); check its permissions") from exc
    try:
        for part in parts[:-1]:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        before = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(before.st_mode):
            raise UnsafePathError(
                f"{what} {relative} is {_kind(before.st_mode)}, not a regular file; refusing to read it"
            )
        handle = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError as exc:  # not an attack: the check cannot be done (exit 4)
        raise MissingArtifactError(f"{what} {relative} cannot be read ({exc.strerror}); check its permissions") from exc
    except OSError as exc:  # ELOOP: a component became a symlink after it was resolved
        raise UnsafePathError(
            f"{what} {relative} cannot be opened safely ({exc.strerror}); refusing to read it"
        ) from exc
    finally:
        os.close(fd)
    return _checked(handle, before, what, relative)


def _checked(handle: int, before: os.stat_result, what: str, where: str) -> int:
    after = os.fstat(handle)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(handle)
        raise UnsafePathError(f"{what} {where} was replaced while it was opened; refusing to read it")
    return handle


@contextmanager
def open_recorded(root: Path, relative: str, what: str) -> Iterator[BinaryIO | None]:
    """Open the file a manifest records as ``relative`` to ``root``, or yield None if it is missing.

    ``root`` is the folder the path is relative to (the manifest's folder, or a data source's
    root). Raises :class:`UnsafePathError` for a path that leaves ``root`` or is not a regular file.
    """
    check_relative(relative, what)
    base = os.path.realpath(root)
    fd = _open_in(base, _inside(base, relative, what), what, relative)
    if fd is None:
        yield None
        return
    with os.fdopen(fd, "rb") as handle:
        yield handle


@contextmanager
def open_regular(path: Path, what: str) -> Iterator[BinaryIO]:
    """Open a file a user named (not one a manifest records): a regular file, never blocking.

    Symlinks are followed (the user chose the path), but a FIFO, device or folder is refused with
    :class:`InputError` without blocking, and a missing file raises :class:`FileNotFoundError`.
    """
    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}; check the path and its permissions") from exc
    if not stat.S_ISREG(before.st_mode):
        raise InputError(f"{what} {path} is {_kind(before.st_mode)}, not a regular file; name the file itself")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}; check the path and its permissions") from exc
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise InputError(f"{what} {path} was replaced while it was opened; try again")
    with os.fdopen(fd, "rb") as handle:
        yield handle


def read_recorded(root: Path, relative: str, what: str, max_bytes: int) -> bytes | None:
    """The bytes of a file under ``root`` (as :func:`open_recorded` opens it), or None if missing.

    A file larger than ``max_bytes`` is refused before it is read (:class:`UnsafePathError`:
    repro never writes one that large), so a planted huge or endless file costs nothing.
    """
    with open_recorded(root, relative, what) as handle:
        if handle is None:
            return None
        size = os.fstat(handle.fileno()).st_size
        data = handle.read(max_bytes + 1) if size <= max_bytes else b""
        if size > max_bytes or len(data) > max_bytes:
            raise UnsafePathError(
                f"{what} {relative} is {max(size, len(data))} bytes, more than the {max_bytes} repro reads; "
                "it is not a file repro wrote"
            )
        return data
