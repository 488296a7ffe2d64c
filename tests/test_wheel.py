"""The published artifacts: the sdist and wheel build, pass ``twine check``, and the wheel, installed
into a fresh virtual environment outside the checkout (not editable), runs, verifies, audits and
gates a smoke run.

torch comes from wherever this machine's pip finds ``torch==<the installed version>`` (a local CPU
wheel on the project's machines, else PyTorch's CPU index if ``PIP_EXTRA_INDEX_URL`` names it),
pinned by a constraint so no dependency can swap it; every other dependency from the configured
indexes (or pip's cache).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    """A clean environment: nothing from this checkout or test session, its own HOME."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("REPRO_", "PYTHON", "VIRTUAL_ENV", "XDG_")) and k != "HOME"}
    return {**keep, "HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, \
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` (sdist, then the wheel from the sdist), checked by twine."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend (setuptools) of this environment, so no download is needed.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], ROOT, dict(os.environ))
    files = sorted(out.iterdir())
    assert sorted(f.suffix for f in files) == [".gz", ".whl"], files
    _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)], ROOT, dict(os.environ))
    return out


def test_the_wheel_holds_the_linked_packages_and_templates(dist: Path) -> None:
    wheel = next(dist.glob("repro_audit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("repro/trainer/gpt/trainer.py", "repro/trainer/lightning/adapter.py",
                   "repro/trainer/litgpt/trainer.py", "repro/audits/engine.py", "repro/audits/formats/html.py",
                   "repro/rendering/templates/base.html.j2",
                   "repro/rendering/templates/gate.html.j2", "repro/py.typed"):
        assert needed in names, needed
    info = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(info).decode()
    assert "Name: repro-audit" in metadata and "Requires-Python: >=3.11" in metadata
    assert "License-Expression: Apache-2.0" in metadata and "Project-URL: Source" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    entry_points = zipfile.ZipFile(wheel).read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "repro = repro.__main__:run" in entry_points and "gpt = repro.trainer.gpt.trainer:GPTTrainer" in entry_points


def test_the_installed_wheel_runs_verifies_audits_and_gates(dist: Path, tmp_path: Path) -> None:
    wheel = next(dist.glob("repro_audit-*.whl"))
    env = _env(tmp_path / "home")
    (tmp_path / "home").mkdir()
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)  # no --system-site-packages: only what the wheel declares
    python, repro = target / "bin" / "python", target / "bin" / "repro"
    constraint = tmp_path / "torch-constraint.txt"
    constraint.write_text(f"torch=={importlib.metadata.version('torch').split('+')[0]}\n", encoding="utf-8")
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(constraint), str(wheel)],
         tmp_path, env)

    project = tmp_path / "project"  # a user's folder, far from the checkout
    project.mkdir()
    where = _run([str(python), "-c", "import repro; print(repro.__file__)"], project, env).stdout.strip()
    assert where.startswith(str(target)), where  # the installed copy, not this checkout
    _run([str(repro), "run", "smoke", "--out", "manifests/reference/smoke.json"], project, env)
    _run([str(repro), "verify", "manifests/reference/smoke.json"], project, env)
    audit = _run([str(repro), "audit", "manifests/reference/smoke.json", "--html", "audit.html"], project, env)
    assert "bitwise" in audit.stdout
    _run([str(repro), "init", "--reference", "manifests/reference/smoke.json"], project, env)
    gate = _run([str(repro), "gate", "--junit", "reports/gate.xml", "--html", "reports/gate.html"], project, env)
    assert "PASS" in gate.stdout.upper()
    assert (project / "reports" / "gate.html").stat().st_size > 1000
