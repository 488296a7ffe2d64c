"""What `repro.files.atomic` does with what already sits at an output path.

A character device is written to and stays a device; a symbolic link is followed and stays a link;
a FIFO is written to when someone reads it and refused (never waited on) when nobody does; a
folder, a socket or a block device is refused. :func:`repro.files.atomic.check_writable` probes the same
way before compute and leaves nothing behind. All on real files, devices and FIFOs.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from repro.errors import OutputError
from repro.files import atomic


def test_a_character_device_is_written_to_not_replaced() -> None:
    before = os.stat("/dev/null")
    atomic.write_text(Path("/dev/null"), "report\n")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_mode, after.st_rdev) == (before.st_mode, before.st_rdev)
    assert not [p for p in Path("/dev").iterdir() if p.name.startswith(".null.")]  # no temporary file


def test_a_symbolic_link_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    target = tmp_path / "reports" / "2026.json"
    target.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(Path("reports") / "2026.json")
    atomic.write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == "reports/2026.json"
    assert target.read_text() == "new"
    dangling = tmp_path / "next.json"
    dangling.symlink_to(tmp_path / "reports" / "2027.json")
    atomic.write_text(dangling, "created where the link points")
    assert dangling.is_symlink() and (tmp_path / "reports" / "2027.json").read_text() == "created where the link points"


def test_a_fifo_is_written_to_when_read_and_refused_when_not(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="FIFO that no process is reading"):
        atomic.write_text(fifo, "nobody listens")  # refused at once: no reader, no hang
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    payload = b"x" * 200_000  # more than a pipe buffer: the writer must wait for the reader
    for _ in range(200):  # the reader opens its end in its own time
        try:
            atomic.write_bytes(fifo, payload)
            break
        except OutputError:
            threading.Event().wait(0.01)
    reader.join(timeout=30)
    assert received == [payload] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_folder_or_socket_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="it is a folder"):
        atomic.write_text(tmp_path, "x")
    sock_path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(sock_path))
        with pytest.raises(OutputError, match="socket"):
            atomic.write_text(sock_path, "x")
        with pytest.raises(OutputError, match=r"--json: cannot write .*socket"):
            atomic.check_writable(sock_path, "--json")
    finally:
        server.close()
    assert stat.S_ISSOCK(os.stat(sock_path).st_mode)


@pytest.mark.parametrize(("path", "why"), [
    ("/proc/x.json", "no file can be created in /proc"),
    ("/proc/self/x/y.json", "no file can be created in /proc/self"),
    ("/etc/hostname/x.json", "not a folder"),
])
def test_check_writable_refuses_what_cannot_be_written(path: str, why: str) -> None:
    with pytest.raises(OutputError, match=why):
        atomic.check_writable(Path(path), "--json")


def test_check_writable_leaves_nothing_behind(tmp_path: Path) -> None:
    atomic.check_writable(tmp_path / "new" / "deeper" / "r.json", "--json")
    atomic.check_writable(tmp_path / "r.json", "--json")
    atomic.check_writable(Path("/dev/null"), "--json")
    assert list(tmp_path.iterdir()) == []
