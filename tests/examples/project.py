"""A user's project for the examples' end-to-end tests: an example copied into a git repository.

The tests run ``repro run -- python <script>`` and ``repro audit`` in-process (``repro.cli.main``)
from the project folder, as a user would from their checkout; the training itself runs in the
child process repro starts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from git import Repo

from repro.cli import main
from repro.records.manifest_file import load_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def make_project(tmp: Path, example: str, script: str) -> Path:
    """``examples/<example>/<script>`` and the corpus, committed in a fresh git repo at ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy2(EXAMPLES / example / script, tmp / script)
    (tmp / "data").mkdir()
    shutil.copy2(EXAMPLES / "data" / "corpus.txt", tmp / "data" / "corpus.txt")
    (tmp / ".gitignore").write_text("runs/\n", encoding="utf-8")
    repo = Repo.init(tmp)
    with repo.config_writer() as config:
        config.set_value("user", "name", "test").set_value("user", "email", "test@example.com")
    repo.index.add([script, "data/corpus.txt", ".gitignore"])
    repo.index.commit("example")
    return tmp


def repro(project: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """``repro ARGS`` run from ``project``."""
    monkeypatch.chdir(project)
    return main(list(args))


def edit_line(path: Path, old: str, new: str) -> None:
    """Change one line of ``path`` (the text must occur exactly once)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def same_records(a: Path, b: Path) -> None:
    """Two manifests' steps, validation and checkpoint tensors are bit-identical."""
    ma, mb = load_manifest(a).manifest, load_manifest(b).manifest
    assert len(ma.steps) > 0
    assert [(s.loss, s.lr, s.grad_norm, s.batch, s.tokens) for s in ma.steps] == [
        (s.loss, s.lr, s.grad_norm, s.batch, s.tokens) for s in mb.steps]
    assert [(v.step, v.loss) for v in ma.validation] == [(v.step, v.loss) for v in mb.validation]
    assert [(c.step, c.tensors) for c in ma.checkpoints] == [(c.step, c.tensors) for c in mb.checkpoints]
    assert ma.run.config_sha256 == mb.run.config_sha256


def run_in_session(project: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``repro ARGS`` as a process of its own session (a crash point kills only its group)."""
    import sys

    return subprocess.run([sys.executable, "-m", "repro", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600, start_new_session=True, check=False)
