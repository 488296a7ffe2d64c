"""Attribution from the code a run executed: a changed plugin file is named, an edited or shadowed
file of an installed distribution is named against it, a package the training never imported is
irrelevant, and the run's own outputs are not code.

Real runs of the tiny MLP trainer (tests/assets/plugins/tinymlp.py), copied into temp folders and
put on PYTHONPATH; real distributions laid out as pip would (dist-info with a RECORD).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from repro.cli import main
from repro.records.manifest_file import load_manifest
from tests.plugin_site import PLUGINS, PluginSite, make_importable

SCALED = ("loss = torch.nn.functional.mse_loss(self.model(x), y)\n",
          "loss = torch.nn.functional.mse_loss(self.model(x), y) * 1.5\n")


def _audit(manifest: Path, report: Path, *extra: str) -> tuple[int, dict]:
    # --allow-imports: these trainers are named only as module:Class, which an audit imports only
    # with the user's say (docs/security.md); here the user is the test that wrote them.
    code = main(["audit", str(manifest), "--json", str(report), "--allow-imports", *extra])
    return code, json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}


def _edit(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert SCALED[0] in source
    path.write_text(source.replace(SCALED[0], SCALED[1]), encoding="utf-8")


def _install_unrelated(site: Path) -> None:
    """A distribution nobody imports, installed after the run (as pip would lay it out)."""
    info = site / "unrelated_pkg-0.3.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unrelated-pkg\nVersion: 0.3.1\n", encoding="utf-8")
    (site / "unrelated_pkg.py").write_text("VALUE = 1\n", encoding="utf-8")
    (info / "RECORD").write_text("unrelated_pkg.py,,\n", encoding="utf-8")


def _write_record(site: PluginSite) -> None:
    """Give the installed tinymlp-plugin a RECORD with the module's hash, as pip writes it."""
    module = site.root / "tinymlp.py"
    digest = base64.urlsafe_b64encode(hashlib.sha256(module.read_bytes()).digest()).rstrip(b"=").decode()
    info = next(site.root.glob("tinymlp_plugin-*.dist-info"))
    (info / "RECORD").write_text(f"tinymlp.py,sha256={digest},{module.stat().st_size}\n", encoding="utf-8")


def test_a_changed_plugin_file_is_named_and_an_unimported_package_is_irrelevant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "mymod.py").write_bytes((PLUGINS / "tinymlp.py").read_bytes())
    make_importable(monkeypatch, plugin)
    monkeypatch.delitem(sys.modules, "mymod", raising=False)
    monkeypatch.chdir(tmp_path)  # outside any git repository: git cannot see the change
    out = tmp_path / "run.json"
    assert main(["run", "--trainer", "mymod:TinyMLPTrainer", "--steps", "6", "--out", str(out)]) == 0
    executed = load_manifest(out).manifest.executed
    assert executed is not None
    mine = {f.path: f.sha256 for f in executed.files}
    assert mine["mymod.py"] == hashlib.sha256((plugin / "mymod.py").read_bytes()).hexdigest()
    assert "repro/running/worker.py" in mine  # the project's own code (installed editable) is in no RECORD
    names = {d.name for d in executed.distributions}
    assert {"torch", "numpy", "python-stdlib"} <= names and "unrelated-pkg" not in names

    other = tmp_path / "other-site"
    _install_unrelated(other)
    make_importable(monkeypatch, other)
    code, report = _audit(out, tmp_path / "same.json")
    assert code == 0 and report["verdict"] == "bitwise"
    unrelated = [d for d in report["differences"] if d["field"] == "package unrelated-pkg"]
    assert [(d["recorded"], d["here"], d["likelihood"]) for d in unrelated] == [("(absent)", "0.3.1", "none")]
    assert "not imported" in unrelated[0]["note"]

    _edit(plugin / "mymod.py")
    monkeypatch.delitem(sys.modules, "mymod", raising=False)
    code, report = _audit(out, tmp_path / "changed.json")
    assert code == 1 and report["verdict"] == "diverged"
    cause = report["attribution"]
    assert cause["kind"] == "code" and "trainer code changed: mymod.py" in cause["summary"]
    assert cause["causes"][0] == "trainer code changed: mymod.py"
    assert not [c for c in cause["causes"] if "unrelated" in c or "nondeterminism" in c]
    assert "trainer code changed: mymod.py" in capsys.readouterr().out


def test_an_edited_or_shadowed_file_of_an_installed_distribution_is_named(
    plugin_site: PluginSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin_site.install("1.2.3")
    _write_record(plugin_site)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run.json"
    assert main(["run", "mlp-tiny", "--steps", "6", "--out", str(out)]) == 0
    executed = load_manifest(out).manifest.executed
    assert executed is not None
    plugin = next(d for d in executed.distributions if d.name == "tinymlp-plugin")
    assert (plugin.version, plugin.files, plugin.packages, plugin.modified) == ("1.2.3", 1, ["tinymlp"], [])
    assert "tinymlp.py" not in {f.path for f in executed.files}

    module = plugin_site.root / "tinymlp.py"
    original = module.read_bytes()
    _edit(module)  # edited in site-packages: the RECORD still has the installed hash
    code, report = _audit(out, tmp_path / "edited.json")
    assert code == 1
    expected = "tinymlp.py differs from the installed tinymlp-plugin 1.2.3 as recorded"
    assert report["attribution"]["causes"][0] == expected
    module.write_bytes(original)

    vendor = tmp_path / "vendor"  # an edited copy placed first on the path shadows the installed one
    vendor.mkdir()
    (vendor / "tinymlp.py").write_bytes(original)
    _edit(vendor / "tinymlp.py")
    make_importable(monkeypatch, vendor)
    code, report = _audit(out, tmp_path / "vendored.json")
    assert code == 1
    first = report["attribution"]["causes"][0]
    assert first.startswith("tinymlp.py differs from the installed tinymlp-plugin 1.2.3 as recorded"), first
    assert "copy outside the distribution" in first


def test_the_runs_own_outputs_in_a_git_repository_are_not_code(
    plugin_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "README").write_text("x\n", encoding="utf-8")
    subprocess.run(["git", "add", "README"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    out = repo / "manifests" / "run.json"  # not ignored: the manifest and checkpoints are untracked
    assert main(["run", "mlp-tiny", "--trainer", "tinymlp:TinyMLPTrainer", "--steps", "4", "--out", str(out)]) == 0
    code, report = _audit(out, tmp_path / "report.json")
    assert code == 0 and report["verdict"] == "bitwise"
    assert not [d for d in report["differences"] if d["category"] == "code"], report["differences"]
