"""examples/plain/train.py end to end: a plain PyTorch script recorded with `repro run -- python ...`.

The default set keeps one test (run twice → bitwise, audit → bitwise, consent); the edit, data,
kill + resume, spot-check and torchrun tests are slow-marked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from repro.errors import ExitCode
from repro.records.manifest_file import load_manifest
from repro.running.crashpoint import CRASH_ENV_VAR
from tests.audits.forgery import resign
from tests.examples.project import edit_line, make_project, repro, run_in_session, same_records
from tests.helpers import read_report

ARGS = ["--steps", "12", "--checkpoint-every", "4", "--data", "data/corpus.txt"]
COMMAND = ["python", "train.py", *ARGS]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project", "plain", "train.py")


def _run(project: Path, monkeypatch: pytest.MonkeyPatch, out: str, *extra: str) -> Path:
    assert repro(project, monkeypatch, "run", *extra, "--out", out, "--", *COMMAND) == 0
    return project / out


def test_plain_script_runs_twice_bitwise_and_audits_bitwise(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _run(project, monkeypatch, "runs/a.json")
    b = _run(project, monkeypatch, "runs/b.json")
    same_records(a, b)
    m = load_manifest(a).manifest
    assert m.run.trainer.name == "command" and m.run.config["command"] == COMMAND
    assert m.run.config["steps"] == 12 and [c.step for c in m.checkpoints] == [4, 8, 12]
    assert [f.path for f in m.data.files] == ["corpus.txt"] and m.data.source.kind == "path"
    assert m.executed is not None  # the script is in the executed-code fingerprint:
    assert "train.py" in [f.path for f in m.executed.files]
    # Signed by this user's own key: the recorded command is theirs, it reruns without a flag.
    report = project / "report.json"
    assert repro(project, monkeypatch, "audit", "runs/b.json", "--json", str(report)) == 0
    assert read_report(report).verdict == "bitwise"
    assert repro(project, monkeypatch, "audit", "runs/b.json", "--vary", "threads") == ExitCode.USAGE  # not commands
    # A stranger's command never runs without consent naming it exactly (exit 4 before compute, as
    # for imports; a flag naming another command is a usage error).
    resign(a, lambda raw: None, project / "stranger.pem")
    assert repro(project, monkeypatch, "audit", "runs/a.json") == ExitCode.COULD_NOT_CHECK
    assert repro(project, monkeypatch, "audit", "runs/a.json", "--allow-command", "python train.py") == ExitCode.USAGE
    assert repro(project, monkeypatch, "audit", "runs/a.json", "--allow-command", " ".join(COMMAND),
                 "--json", str(report)) == 0
    assert read_report(report).verdict == "bitwise"


def test_a_script_that_reports_no_step_is_an_error(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (project / "quiet.py").write_text("import repro.record as record\nrecord.seed()\nprint('no steps')\n")
    code = repro(project, monkeypatch, "run", "--out", "runs/q.json", "--", "python", "quiet.py")
    assert code == ExitCode.COULD_NOT_CHECK
    assert "finished without reporting a step" in capsys.readouterr().err
    assert not (project / "runs" / "q.json").exists()


def test_a_command_that_is_not_python_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert repro(project, monkeypatch, "run", "--out", "runs/x.json", "--", "bash", "train.sh") == ExitCode.USAGE
    assert "Python command" in capsys.readouterr().err
    assert repro(project, monkeypatch, "run", "smoke", "--out", "runs/x.json", "--", *COMMAND) == ExitCode.USAGE


@pytest.mark.slow
def test_edit_diverges_naming_the_file_and_changed_data_is_exit_3(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(project, monkeypatch, "runs/a.json")
    allow = ("--allow-command", " ".join(COMMAND))
    clip, changed = "clip_grad_norm_(model.parameters(), 1.0)", "clip_grad_norm_(model.parameters(), 0.5)"
    edit_line(project / "train.py", clip, changed)
    report = project / "edited.json"
    assert repro(project, monkeypatch, "audit", "runs/a.json", *allow, "--json", str(report)) == ExitCode.NOT_REPRODUCED
    found = read_report(report)
    assert found.verdict == "diverged"
    assert "train.py" in found.attribution.summary + " ".join(found.attribution.causes)
    edit_line(project / "train.py", changed, clip)
    corpus = project / "data" / "corpus.txt"
    data = bytearray(corpus.read_bytes())
    data[100] ^= 1
    corpus.write_bytes(bytes(data))
    assert repro(project, monkeypatch, "verify", "runs/a.json") == ExitCode.INTEGRITY
    assert repro(project, monkeypatch, "audit", "runs/a.json", *allow) == ExitCode.INTEGRITY


@pytest.mark.slow
def test_kill_and_resume_is_bitwise_and_spot_checks_replay_segments(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = _run(project, monkeypatch, "runs/ref.json")
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV_VAR}
    killed = run_in_session(project, ["run", "--out", "runs/k.json", "--", *COMMAND], {**env, CRASH_ENV_VAR: "step:7"})
    assert killed.returncode < 0, killed.stderr
    assert not (project / "runs" / "k.json").exists()
    resumed = run_in_session(project, ["run", "--resume", "--out", "runs/k.json", "--", *COMMAND], env)
    assert resumed.returncode == 0, resumed.stderr
    same_records(project / "runs" / "k.json", reference)
    assert load_manifest(project / "runs" / "k.json").manifest.timing.resumed_from_step == 4
    report = project / "spot.json"
    assert repro(project, monkeypatch, "audit", "runs/ref.json", "--allow-command", " ".join(COMMAND),
                 "--segments", "2", "--seed", "1", "--json", str(report)) == 0
    spot = json.loads(report.read_text())
    assert spot["verdict"] == "bitwise" and spot["mode"] == "spot-check"


@pytest.mark.slow
def test_two_processes_under_torchrun_run_twice_bitwise(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _run(project, monkeypatch, "runs/a.json", "--nproc", "2", "--threads", "1")
    b = _run(project, monkeypatch, "runs/b.json", "--nproc", "2", "--threads", "1")
    same_records(a, b)
    m = load_manifest(a).manifest
    assert m.distributed is not None and m.distributed.world_size == 2
    assert m.distributed.replica_checks == [4, 8, 12]
    report = project / "report.json"
    assert repro(project, monkeypatch, "audit", "runs/a.json", "--allow-command", " ".join(COMMAND),
                 "--json", str(report)) == 0
    assert read_report(report).verdict == "bitwise"
