"""Unwritable outputs: a full disk, permission denied or a read-only file system end
`repro run` with one clear line and exit 2, and leave earlier results intact.

These tests run as root here, and root ignores permission bits, so a chmod'd folder cannot show
"permission denied"; nor can a test mount a full or read-only file system. The OS error is
therefore raised where repro meets the OS — creating the temporary file (``tempfile.mkstemp``, as
EROFS/EACCES would) or writing its bytes (``repro.files.atomic.write_all``, as ENOSPC would) — for
paths in the output folder only. One test uses a real OS error in the training child (a file
where a folder must go), and a real chmod test runs wherever the tests do not run as root.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from repro.cli import main
from repro.files import atomic
from repro.records.hashing import sha256_file
from repro.records.manifest_file import incomplete_marker, load_manifest
from tests.helpers import REAL_WRITE_ALL

REAL_MKSTEMP = tempfile.mkstemp


def _snapshot(folder: Path) -> dict[Path, str]:
    return {p: sha256_file(p) for p in folder.rglob("*") if p.is_file()}


def _one_error_line(text: str) -> str:
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in text, text
    return errors[0]


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (errno.ENOSPC, "the disk is full; free space or choose another --out"),
        (errno.EACCES, "permission denied; choose a writable --out"),
        (errno.EROFS, "the file system is read-only; choose a writable --out"),
    ],
)
def test_unwritable_output_folder_fails_before_training(
    code: int, hint: str, smoke_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder = smoke_copy.parent
    before = _snapshot(folder)

    def mkstemp(**kwargs: object) -> tuple[int, str]:
        if Path(str(kwargs["dir"])).resolve().is_relative_to(folder.resolve()):
            raise OSError(code, os.strerror(code))
        return REAL_MKSTEMP(**kwargs)  # type: ignore[call-overload]  # the keywords atomic passes

    monkeypatch.setattr("repro.files.atomic.tempfile.mkstemp", mkstemp)
    assert main(["run", "smoke", "--out", str(smoke_copy)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert hint in line and str(incomplete_marker(smoke_copy)) in line
    monkeypatch.undo()
    assert _snapshot(folder) == before  # nothing added, nothing changed: no marker, no temp file
    assert main(["verify", str(smoke_copy)]) == 0


def test_full_disk_at_the_manifest_keeps_the_old_one_and_resume_finishes(
    smoke_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Training finished, the disk is full when the manifest is written: the old manifest and
    its files are untouched, the new run is marked incomplete, and once there is space again
    `--resume` writes the manifest without training again."""
    before = _snapshot(smoke_copy.parent)

    def write_all(fd: int, data: bytes) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(smoke_copy.parent / f".{smoke_copy.name}.")) \
                and ".incomplete." not in os.readlink(f"/proc/self/fd/{fd}"):
            REAL_WRITE_ALL(fd, data[:1000])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        REAL_WRITE_ALL(fd, data)

    monkeypatch.setattr(atomic, "write_all", write_all)
    assert main(["run", "smoke", "--out", str(smoke_copy)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"cannot write {smoke_copy}: the disk is full" in line
    monkeypatch.undo()
    assert {p: sha256_file(p) for p in before} == before
    assert incomplete_marker(smoke_copy).exists()
    assert not [p for p in smoke_copy.parent.iterdir() if p.name.endswith(".tmp")]
    assert main(["verify", str(smoke_copy)]) == 0

    assert main(["run", "smoke", "--out", str(smoke_copy), "--resume"]) == 0
    assert load_manifest(smoke_copy).manifest.timing.resumed_from_step == 20
    assert not incomplete_marker(smoke_copy).exists()
    assert main(["verify", str(smoke_copy)]) == 0


def test_an_os_error_in_the_training_child_is_one_line(
    smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A real OS error in the child: the run folder holds a *file* named ``checkpoints``."""
    out = tmp_path / "run.json"
    config = load_manifest(smoke_run).manifest.run.config_sha256
    incomplete_marker(out).write_text(f'{{"started_at": "2026-01-01T00:00:00+00:00", "config_sha256": "{config}"}}')
    staging = tmp_path / "run.incomplete"
    staging.mkdir()
    (staging / ".repro-run").write_text("a repro run folder\n")  # repro's own (unmarked ones are refused)
    (staging / "checkpoints").write_text("in the way")
    assert main(["run", "smoke", "--out", str(out), "--resume"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "cannot write" in line and "checkpoints/step-000010" in line and "not a folder" in line
    assert not out.exists() and incomplete_marker(out).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits; see the module docstring")
def test_read_only_folder_for_real(smoke_copy: Path, capsys: pytest.CaptureFixture) -> None:
    folder = smoke_copy.parent
    before = _snapshot(folder)
    folder.chmod(0o555)
    try:
        assert main(["run", "smoke", "--out", str(smoke_copy)]) == 2
    finally:
        folder.chmod(0o755)
    assert "permission denied" in _one_error_line(capsys.readouterr().err)
    assert _snapshot(folder) == before
