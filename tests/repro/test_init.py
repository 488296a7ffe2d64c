"""``repro init`` and a user's own repository end to end.

The end-to-end test is the first day of a team adopting repro: a throwaway git repository with its
own trainer plugin (a module at its root) and repo-local data, ``repro init``, a reference run,
a commit; then a clone at another path, used with another working folder and another HOME (no
signing key there), runs exactly the gate command the generated workflow runs: PASS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from repro.cli import main
from tests.plugin_site import PLUGINS, REGRESSION_CSV

TRAINER = "myplug:TinyMLPTrainer"


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _repository(path: Path) -> Path:
    path.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=path)
    _git("config", "user.email", "team@example.org", cwd=path)
    _git("config", "user.name", "team", cwd=path)
    return path


def _env(home: Path, **extra: str) -> dict[str, str]:
    """Another user's environment: their HOME (no signing key in it), repro's command on PATH."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_", "XDG_", "PYTHONPATH")) and k != "HOME"}
    home.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**keep, "HOME": str(home), "PATH": path, **extra}


def _repro(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "repro", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.mark.slow
def test_a_cloned_repository_passes_the_generated_gate(tmp_path: Path) -> None:
    origin = _repository(tmp_path / "team" / "project")
    shutil.copy2(PLUGINS / "tinymlp.py", origin / "myplug.py")  # the team's own plugin, at the root
    (origin / "data").mkdir()
    shutil.copy2(REGRESSION_CSV, origin / "data" / "train.csv")
    (origin / "pyproject.toml").write_text('# the team\'s settings\n[tool.black]\nline-length = 100\n',
                                           encoding="utf-8")
    author = _env(tmp_path / "author-home", PYTHONPATH=str(origin))
    _git("add", "-A", cwd=origin)
    _git("commit", "-q", "-m", "the project", cwd=origin)

    init = _repro(["init", "--trainer", TRAINER, "--reference", "manifests/reference/mlp.json"], origin, author)
    assert init.returncode == 0, init.stderr
    pyproject = (origin / "pyproject.toml").read_text(encoding="utf-8")
    assert pyproject.startswith("# the team's settings\n[tool.black]\nline-length = 100\n")  # kept as written
    assert tomllib.loads(pyproject)["tool"]["repro"]["gate"]["manifests"] == ["manifests/reference/mlp.json"]
    workflow = (origin / ".github" / "workflows" / "repro-gate.yml").read_text(encoding="utf-8")
    gate_command = next(line.split("run: ", 1)[1] for line in workflow.splitlines() if "run: repro gate" in line)
    assert "PYTHONPATH: ${{ github.workspace }}" in workflow and "--index-url https://download.pytorch.org/whl/cpu" \
        in workflow
    assert "repro-gate:" in (origin / ".gitlab-ci.yml").read_text(encoding="utf-8")
    _git("add", "-A", cwd=origin)
    _git("commit", "-q", "-m", "repro init", cwd=origin)

    run = _repro(["run", "mlp-tiny", "--trainer", TRAINER, "--data", "data/train.csv",
                  "--out", "manifests/reference/mlp.json"], origin, author)
    assert run.returncode == 0, run.stderr
    source = json.loads((origin / "manifests/reference/mlp.json").read_text(encoding="utf-8"))["data"]["source"]
    assert source == {"kind": "path", "name": "data", "root": "repository", "version": None}  # relative
    _git("add", "-A", cwd=origin)
    _git("commit", "-q", "-m", "reference run and gate", cwd=origin)

    clone = tmp_path / "ci" / "checkout" / "project"
    _git("clone", "-q", str(origin), str(clone), cwd=tmp_path)
    ci = _env(tmp_path / "ci-home", PYTHONPATH=str(clone))  # as the workflow sets it; no signing key here
    (clone / "reports").mkdir()
    (clone / "reports" / "gate.html").write_text("an earlier gate's report", encoding="utf-8")
    gate = subprocess.run(gate_command.split(), cwd=clone, env=ci, capture_output=True, text=True, timeout=600,
                          check=False)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "gate: PASS" in gate.stdout
    report = json.loads((clone / "reports" / "gate.json").read_text(encoding="utf-8"))
    audit = report["results"][0]["audit"]
    assert audit["verdict"] == "bitwise"
    # The gate's own reports/ is ignored (repro init's .gitignore lines): never a code difference.
    assert not [d for d in audit["differences"] if d["field"].startswith("code.untracked")]
    assert (clone / "reports" / "gate.xml").is_file() and (clone / "reports" / "gate.html").is_file()


def test_init_never_overwrites_without_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    project = _repository(tmp_path / "p")
    monkeypatch.chdir(project)
    workflow = project / ".github" / "workflows" / "repro-gate.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text("name: ours\n", encoding="utf-8")
    assert main(["init"]) == 2
    err = capsys.readouterr().err
    assert "would overwrite" in err and str(workflow) in err and "--force" in err and "Traceback" not in err
    assert workflow.read_text(encoding="utf-8") == "name: ours\n"
    assert not (project / "pyproject.toml").exists()  # nothing written when anything conflicts
    assert main(["init", "--force"]) == 0
    assert "repro gate" in workflow.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["init"]) == 0  # the same set-up again: every file unchanged
    assert capsys.readouterr().out.count("unchanged") == 5


def test_init_keeps_an_existing_gitlab_pipeline_and_gitignore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys) -> None:
    project = _repository(tmp_path / "p")
    monkeypatch.chdir(project)
    (project / ".gitlab-ci.yml").write_text("test:\n  script: [pytest]\n", encoding="utf-8")
    (project / ".gitignore").write_text("*.pyc\n/reports/", encoding="utf-8")
    assert main(["init"]) == 0
    assert (project / ".gitlab-ci.yml").read_text(encoding="utf-8") == "test:\n  script: [pytest]\n"
    assert "repro-gate:" in (project / ".gitlab" / "repro-gate.gitlab-ci.yml").read_text(encoding="utf-8")
    assert "include:" in capsys.readouterr().out
    ignored = (project / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ignored[:2] == ["*.pyc", "/reports/"] and ignored.count("/reports/") == 1 and "/manifests/run/" in ignored
    trust = (project / "manifests" / "trusted-keys.txt").read_text(encoding="utf-8")
    public = Path(os.environ["REPRO_SIGNING_KEY"] + ".pub").read_text(encoding="utf-8")
    assert public.split()[1] in trust
