"""examples/lightning and examples/transformers end to end: the user's own Trainer with ReproCallback.

All slow (each run starts Lightning or transformers in a fresh process): run twice → bitwise,
audit → bitwise, a one-line edit → diverged naming train.py, a changed data byte → exit 3, and
Lightning's DDP under `repro run --nproc 2` (gloo on the CPU) → bitwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.errors import ExitCode
from repro.records.manifest_file import load_manifest
from tests.examples.project import edit_line, make_project, repro, same_records
from tests.helpers import read_report

pytestmark = pytest.mark.slow

CASES = {
    "lightning": (["--steps", "8", "--checkpoint-every", "4"], "gradient_clip_val=1.0", "gradient_clip_val=0.5"),
    "transformers": (["--steps", "6", "--checkpoint-every", "3"],
                     "learning_rate=args.lr,", "learning_rate=args.lr * 2,"),
}


def _check(project: Path, monkeypatch: pytest.MonkeyPatch, example: str, *run_options: str) -> None:
    args, old, new = CASES[example]
    command = ["python", "train.py", *args, "--data", "data/corpus.txt"]
    for out in ("runs/a.json", "runs/b.json"):
        assert repro(project, monkeypatch, "run", *run_options, "--out", out, "--", *command) == 0
    same_records(project / "runs/a.json", project / "runs/b.json")
    m = load_manifest(project / "runs/a.json").manifest
    steps = int(args[1])
    assert [s.step for s in m.steps] == list(range(1, steps + 1)) and m.checkpoints[-1].step == steps
    assert len({s.batch for s in m.steps}) == steps  # the real batches are fingerprinted
    assert m.validation and all(v.step > 0 for v in m.validation)
    allow = ("--allow-command", " ".join(command))
    report = project / "report.json"
    assert repro(project, monkeypatch, "audit", "runs/a.json", *allow, "--json", str(report)) == 0
    assert read_report(report).verdict == "bitwise"
    edit_line(project / "train.py", old, new)
    assert repro(project, monkeypatch, "audit", "runs/a.json", *allow, "--json", str(report)) == ExitCode.NOT_REPRODUCED
    found = read_report(report)
    assert found.verdict == "diverged" and "train.py" in found.attribution.summary + " ".join(found.attribution.causes)
    corpus = project / "data" / "corpus.txt"
    corpus.write_bytes(corpus.read_bytes().replace(b"the", b"The", 1))
    assert repro(project, monkeypatch, "verify", "runs/a.json") == ExitCode.INTEGRITY


def test_lightning_trainer_with_repro_callback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check(make_project(tmp_path / "p", "lightning", "train.py"), monkeypatch, "lightning")


def test_lightning_ddp_two_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(tmp_path / "p", "lightning", "train.py")
    command = ["python", "train.py", *CASES["lightning"][0], "--data", "data/corpus.txt"]
    for out in ("runs/a.json", "runs/b.json"):
        assert repro(project, monkeypatch, "run", "--nproc", "2", "--threads", "1", "--out", out, "--", *command) == 0
    same_records(project / "runs/a.json", project / "runs/b.json")
    m = load_manifest(project / "runs/a.json").manifest
    assert m.distributed is not None and m.distributed.world_size == 2 and m.distributed.replica_checks == [4, 8]
    report = project / "report.json"
    assert repro(project, monkeypatch, "audit", "runs/a.json", "--allow-command", " ".join(command),
                 "--json", str(report)) == 0
    assert read_report(report).verdict == "bitwise"


def test_transformers_trainer_with_repro_callback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    _check(make_project(tmp_path / "p", "transformers", "train.py"), monkeypatch, "transformers")
