"""Every file in a run folder is either signed or never read (issue 18, item 3).

A checkpoint's ``records.json`` is not signed. An audit takes the records up to a checkpoint from
the verified manifest instead, so whatever sits there — a symlink to a secret, a FIFO nobody
writes, a huge file, garbage — is never read: ``verify`` and ``audit --segments`` give their
usual answer, never the secret, never hang. A resume (one's own run) reads it through the
confinement layer: a symlink out, a FIFO or a huge file is refused in one line that quotes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repro.cli import main
from repro.errors import InputError, UnsafePathError
from repro.records.checkpoint import RECORDS_FILE, load_records
from repro.records.manifest_file import run_folder
from tests.helpers import read_report

SECRET = "TOP-SECRET-4f1c9e-do-not-print"


def _plant(run: Path, kind: str, tmp_path: Path) -> list[Path]:
    """Replace every checkpoint's records.json with ``kind``; return their paths."""
    secret = tmp_path / "secrets.txt"
    secret.write_text(SECRET + "\n")
    planted = []
    for folder in sorted((run_folder(run) / "checkpoints").iterdir()):
        records = folder / RECORDS_FILE
        records.unlink()
        if kind == "symlink":
            records.symlink_to(secret)
        elif kind == "fifo":
            os.mkfifo(records)
        elif kind == "huge":
            with open(records, "wb") as handle:
                handle.truncate(1 << 40)  # sparse: a terabyte that costs nothing on disk
        else:
            records.write_text('{"step": 10, "garbage": "' + SECRET + '"}')
        planted.append(records)
    return planted


SLOW = pytest.mark.slow


@pytest.mark.parametrize("kind", ["symlink", *(pytest.param(k, marks=SLOW) for k in ("fifo", "huge", "garbage"))])
def test_a_planted_records_file_is_never_read_by_verify_or_audit(kind: str, smoke_copy: Path, tmp_path: Path,
                                                                 capsys) -> None:
    _plant(smoke_copy, kind, tmp_path)
    assert main(["verify", str(smoke_copy)]) == 0
    report = tmp_path / "report.json"
    assert main(["audit", str(smoke_copy), "--segments", "2", "--json", str(report)]) == 0
    assert read_report(report).verdict == "bitwise"
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err + report.read_text()


@pytest.mark.parametrize("kind", ["symlink", "fifo", "huge", "garbage"])
def test_resume_reads_records_through_the_confinement_layer(kind: str, smoke_copy: Path, tmp_path: Path) -> None:
    folder = _plant(smoke_copy, kind, tmp_path)[0].parent
    expected = {"symlink": UnsafePathError, "fifo": UnsafePathError, "huge": UnsafePathError,
                "garbage": InputError}[kind]
    with pytest.raises(expected) as caught:
        load_records(folder)
    assert SECRET not in str(caught.value)
