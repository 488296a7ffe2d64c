"""`repro run` deletes and replaces only what it made, one run per `--out` at a time, and a run
that never started leaves nothing that asks to be resumed.

Real folders, real subprocesses: the concurrency test starts two `repro run` processes on the
same `--out` and kills the first with SIGKILL to show the OS releases its lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro.cli import main
from repro.errors import UsageError
from repro.records.manifest_file import incomplete_marker, load_manifest, run_folder
from repro.running.layout import RUN_FOLDER_MARKER, RunLayout


def _error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _user_folder(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    (folder / "thesis.tex").write_bytes(b"\\chapter{Years of work}\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.csv").write_bytes(b"a,b\n1,2\n")
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("suffix", ["", ".incomplete", ".replaced"])
def test_a_folder_repro_did_not_make_is_left_alone(
    suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--out X/data.json` beside the user's own `X/data/` (or `data.incomplete/`, `data.replaced/`)."""
    out = tmp_path / "X" / "data.json"
    theirs = tmp_path / "X" / f"data{suffix}"
    before = _user_folder(theirs)
    assert main(["run", "smoke", "--out", str(out)]) == 2
    line = _error(capsys)
    assert f"{theirs} is in the way" in line and "left alone" in line and "choose another --out" in line
    assert {str(p.relative_to(theirs)): p.read_bytes() for p in theirs.rglob("*") if p.is_file()} == before
    # Refused before anything was written: no marker, no lock, no staging folder, no manifest.
    assert sorted(p.name for p in (tmp_path / "X").iterdir()) == [f"data{suffix}"]


def test_a_file_or_a_link_in_the_way_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run.json"
    (tmp_path / "run").write_text("a file, not a folder")
    assert main(["run", "smoke", "--out", str(out)]) == 2
    assert "it is a file that repro did not make" in _error(capsys)
    (tmp_path / "run").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / RUN_FOLDER_MARKER).write_text("a marker does not make a link repro's")
    (tmp_path / "run").symlink_to(elsewhere)
    assert main(["run", "smoke", "--out", str(out)]) == 2
    assert "it is a symbolic link" in _error(capsys)
    assert (elsewhere / RUN_FOLDER_MARKER).exists() and (tmp_path / "run").is_symlink()


def test_a_run_folder_is_marked_and_only_the_marker_counts(smoke_copy: Path) -> None:
    layout = RunLayout(smoke_copy)
    assert (run_folder(smoke_copy) / RUN_FOLDER_MARKER).is_file()
    layout.check_owned()
    (run_folder(smoke_copy) / RUN_FOLDER_MARKER).unlink()
    # The manifest beside it names files inside it, but that can be planted: no marker, not repro's.
    with pytest.raises(UsageError, match="is in the way"):
        layout.check_owned()
    (run_folder(smoke_copy) / RUN_FOLDER_MARKER).symlink_to(smoke_copy)  # a link is not the marker
    with pytest.raises(UsageError, match="is in the way"):
        layout.check_owned()


@pytest.mark.parametrize("planted", ["incomplete marker", "manifest naming it", "both"])
def test_a_planted_marker_never_makes_repro_delete_the_users_folder(planted: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """X/data.json.incomplete (left over or planted) beside the user's X/data/: never removed."""
    x = tmp_path / "X"
    data = x / "data"
    data.mkdir(parents=True)
    (data / "precious.txt").write_text("the user's data\n")
    if planted in ("incomplete marker", "both"):
        (x / "data.json.incomplete").write_text('{"started_at": "2026-01-01T00:00:00Z", "config_sha256": "00"}\n')
    if planted in ("manifest naming it", "both"):
        (x / "data.json").write_text('{"checkpoints": [{"path": "data/precious.txt"}], "artifacts": []}')
    for extra in ([], ["--resume"]):
        assert main(["run", "smoke", "--out", str(x / "data.json"), *extra]) == 2
        assert (data / "precious.txt").read_text() == "the user's data\n"
    err = capsys.readouterr().err
    assert "is in the way" in err and "left alone" in err


def _popen(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "repro", *args], cwd=cwd, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_run_to_the_same_out_is_refused_at_start(tmp_path: Path) -> None:
    out = tmp_path / "m" / "run.json"
    layout = RunLayout(out)
    # Long enough that the second process starts while the first trains.
    first = _popen(["run", "smoke", "--set", "steps=400", "--set", "checkpoint_every=400",
                    "--set", "eval_every=400", "--out", str(out)], tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (layout.staging / "train.log").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "repro", "run", "smoke", "--out", str(out)],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run must still be training for this test to mean anything"
        assert second.returncode == 2, second.stderr
        assert f"another repro run is writing {out}" in second.stderr and "Traceback" not in second.stderr
        # The refused run touched nothing of the first one's.
        assert layout.lock_path.exists() and incomplete_marker(out).exists() and layout.staging.is_dir()
        os.killpg(first.pid, signal.SIGKILL)  # a crash: the OS releases the lock
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    with layout.locked():  # free again, though the dead run's lock file is still there
        pass
    assert not layout.lock_path.exists()


def test_a_run_that_never_started_leaves_no_marker(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out" / "run.json"
    out.parent.mkdir()
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("not a key\n")
    bad_key.chmod(0o600)
    assert main(["run", "smoke", "--key", str(bad_key), "--out", str(out)]) == 2
    capsys.readouterr()
    if not _cuda_available():
        assert main(["run", "smoke", "--device", "cuda", "--out", str(out)]) == 4
        assert "no CUDA device" in _error(capsys)
    assert main(["run", "smoke", "--out", "/proc/repro-run.json"]) == 2
    assert "cannot write /proc/repro-run.json" in _error(capsys)
    assert list(out.parent.iterdir()) == []
    assert main(["verify", str(out)]) == 4
    assert "resume" not in capsys.readouterr().err


def test_a_run_that_failed_before_its_first_checkpoint_is_not_resumable(
    plugin_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A trainer that fails at its first step: nothing to resume, so no marker says "resume it";
    the log the error names is still there."""
    out = tmp_path / "nan.json"
    assert main(["run", "mlp-tiny", "--trainer", "tinymlp:NaNLossTrainer", "--out", str(out)]) == 4
    err = capsys.readouterr().err
    log = Path(err.split("(log: ")[1].split(")")[0])
    assert log.is_file() and not incomplete_marker(out).exists()
    assert main(["run", "mlp-tiny", "--trainer", "tinymlp:TinyMLPTrainer", "--out", str(out), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["run", "mlp-tiny", "--trainer", "tinymlp:TinyMLPTrainer", "--out", str(out)]) == 0
    assert load_manifest(out).manifest.steps


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())
