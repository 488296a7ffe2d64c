"""Atomic writes: a failed or interrupted write never leaves a partial file, and the file
it would have replaced keeps its old bytes.

A full disk is simulated at the one place repro's bytes reach the OS (``repro.files.atomic.write_all``):
filling a real file system is not possible in a test without root-only mounts. Half the bytes are
written before the error, as a real ENOSPC would leave them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from repro.errors import OutputError
from repro.files import atomic
from repro.records.checkpoint import CheckpointRecords, checkpoint_dir, latest_checkpoint, load_state, save_checkpoint
from tests.helpers import REAL_WRITE_ALL


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".partial"))]


def failing(code: int, keep: int = 0) -> Callable[..., None]:
    """A stand-in for an OS call that fails with ``code``; as ``write_all``, it first writes
    ``keep`` bytes (a real full disk stores what fits)."""

    def fail(*args: object, **kwargs: object) -> None:
        if keep and len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], (bytes, memoryview)):
            REAL_WRITE_ALL(args[0], bytes(args[1][:keep]))
        raise OSError(code, os.strerror(code))

    return fail


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write through repro.files.atomic stores a few bytes, then fails with ENOSPC."""
    monkeypatch.setattr(atomic, "write_all", failing(errno.ENOSPC, keep=7))


def test_full_disk_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    atomic.write_text(target, "old and whole\n")
    monkeypatch.setattr(atomic, "write_all", failing(errno.ENOSPC, keep=3))
    with pytest.raises(OutputError, match="disk is full; free space or choose another --out") as info:
        atomic.write_bytes(target, b"new content that does not fit")
    assert str(target) in str(info.value) and "\n" not in str(info.value)
    assert target.read_text() == "old and whole\n"
    assert _leftovers(tmp_path) == [] and sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "permission denied"),
        (errno.EROFS, "read-only"),
        (errno.EDQUOT, "quota"),
        (errno.ENOSPC, "disk is full"),
    ],
)
@pytest.mark.parametrize("stage", ["create", "write", "rename"])
def test_os_errors_at_every_stage_give_one_line_and_keep_the_old_file(
    code: int, hint: str, stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "run.json"
    atomic.write_text(target, "old")
    if stage == "create":
        monkeypatch.setattr("repro.files.atomic.tempfile.mkstemp", failing(code))
    elif stage == "write":
        monkeypatch.setattr(atomic, "write_all", failing(code, keep=1))
    else:
        monkeypatch.setattr("repro.files.atomic.os.replace", failing(code))
    with pytest.raises(OutputError, match=hint):
        atomic.write_bytes(target, b"new")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_an_interrupted_write_leaves_no_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or any exception) mid-write: the temporary file is removed, the target not made."""
    def interrupted(fd: int, data: bytes) -> None:
        REAL_WRITE_ALL(fd, data[:2])
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "write_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_bytes(tmp_path / "key.pem", b"secret")
    assert list(tmp_path.iterdir()) == []


def test_mode_is_set_before_the_first_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with umask 000, a 0600 file is never readable by others, not even while written."""
    seen = []

    def spy(fd: int, data: bytes) -> None:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        REAL_WRITE_ALL(fd, data)

    monkeypatch.setattr(atomic, "write_all", spy)
    old = os.umask(0)
    try:
        atomic.write_bytes(tmp_path / "secret", b"x" * 10, mode=0o600)
        atomic.write_bytes(tmp_path / "public", b"y", mode=0o644)
    finally:
        os.umask(old)
    assert seen == [0o600, 0o644]
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


def _tensors(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((64, 64), value), "step": torch.tensor(3)}


def _records(step: int) -> CheckpointRecords:
    return CheckpointRecords(step=step, config_sha256="c", steps=[], validation=[])


def test_checkpoint_on_a_full_disk_leaves_no_partial_folder(tmp_path: Path, full_disk: None) -> None:
    root = tmp_path / "checkpoints"
    with pytest.raises(OutputError, match="disk is full"):
        save_checkpoint(root, 10, _tensors(1.0), _records(10))
    assert latest_checkpoint(root) is None and _leftovers(tmp_path) == []


def test_checkpoint_failure_keeps_earlier_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "checkpoints"
    first = save_checkpoint(root, 10, _tensors(1.0), _records(10))
    monkeypatch.setattr(atomic, "write_all", failing(errno.ENOSPC, keep=7))
    with pytest.raises(OutputError, match=r"step-000020.*: the disk is full"):
        save_checkpoint(root, 20, _tensors(2.0), _records(20))
    assert latest_checkpoint(root) == checkpoint_dir(root, 10)
    assert load_state(Path(first.path), first.sha256)["w"].equal(_tensors(1.0)["w"])
    assert _leftovers(tmp_path) == []
