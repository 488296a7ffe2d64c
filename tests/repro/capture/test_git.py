"""Git capture in real temporary repositories: clean, dirty, untracked, not a repository."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import git
import pytest

from repro.capture.git import capture_code


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.email", "t@example.org")
    _git(path, "config", "user.name", "Test")
    (path / "train.py").write_text("print('hi')\n")
    _git(path, "add", "train.py")
    _git(path, "commit", "-qm", "first")
    _git(path, "remote", "add", "origin", "https://example.org/project.git")
    return path


def test_clean_repository(repo: Path) -> None:
    code = capture_code(repo)
    assert code.available
    assert code.commit == _git(repo, "rev-parse", "HEAD").strip()
    assert code.branch == "main"
    assert code.remotes == {"origin": "https://example.org/project.git"}
    assert code.dirty is False and code.diff_sha256 is None and code.untracked == []


def test_dirty_repository_hashes_the_exact_diff_bytes(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    code = capture_code(repo)
    expected = subprocess.run(
        ["git", "-C", str(repo), "diff", "HEAD", "--binary"], check=True, capture_output=True
    ).stdout
    assert code.dirty is True
    assert code.diff_sha256 == hashlib.sha256(expected).hexdigest()


def test_untracked_file_is_listed_and_makes_the_tree_dirty(repo: Path) -> None:
    (repo / "notes.txt").write_text("x")
    code = capture_code(repo)
    assert code.untracked == ["notes.txt"]
    assert code.dirty is True and code.diff_sha256 is None


def test_subfolder_finds_the_enclosing_repository(repo: Path) -> None:
    (repo / "sub").mkdir()
    assert capture_code(repo / "sub").commit == capture_code(repo).commit


def test_detached_head_has_no_branch(repo: Path) -> None:
    _git(repo, "checkout", "-q", "--detach")
    assert capture_code(repo).branch is None


def test_not_a_repository_is_recorded_as_unknown(tmp_path: Path) -> None:
    code = capture_code(tmp_path)
    assert code.available is False and "not inside a git repository" in (code.reason or "")


def test_repository_without_commits_is_unknown_not_a_crash(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    code = capture_code(tmp_path)
    assert code.available is False and code.reason


def test_missing_git_program_is_unknown_not_a_crash(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(git.Git, "GIT_PYTHON_GIT_EXECUTABLE", str(repo / "no-such-git"))
    code = capture_code(repo)
    assert code.available is False and code.reason == "the git program is not installed"


def test_excluded_outputs_are_not_untracked_changes(repo: Path) -> None:
    (repo / "manifests").mkdir()
    (repo / "manifests" / "run.json.incomplete").write_text("{}")
    (repo / "manifests" / "run.incomplete").mkdir()
    (repo / "manifests" / "run.incomplete" / "tokenizer.model").write_text("x")
    (repo / "notes.txt").write_text("a real change")
    code = capture_code(
        repo, exclude=[repo / "manifests" / "run.json.incomplete", repo / "manifests" / "run.incomplete"]
    )
    assert code.untracked == ["notes.txt"]
    clean = capture_code(repo, exclude=[repo / "manifests", repo / "notes.txt"])
    assert clean.untracked == [] and clean.dirty is False


def test_a_run_does_not_record_its_own_outputs(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from repro.cli import main
    from repro.records.manifest_file import load_manifest

    monkeypatch.chdir(repo)
    assert main(["run", "smoke", "--steps", "2", "--out", "out/run.json"]) == 0
    code = load_manifest(repo / "out" / "run.json").manifest.code
    assert code.available and code.untracked == [] and code.dirty is False
