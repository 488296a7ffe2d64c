"""Issue 9.8: one verified document per command.

A hook replaces the manifest on disk right after verification read it, with a validly signed
(real key) manifest that says something else. Everything the command reports (scan, plot, JSON,
attestation) must come from the bytes that were verified, not from the file as it is afterwards.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from repro.cli import main
from repro.records import manifest_file
from repro.records.hashing import sha256_bytes
from repro.records.manifest_file import load_manifest
from repro.trust import verify as verify_module
from repro.trust.keys import default_key_path, load_key
from tests.audits.forgery import resign_with
from tests.audits.osv_server import osv_record, serve_osv

FORGED_VERSION = "0.0.1"


def _swap_after_read(monkeypatch: pytest.MonkeyPatch, manifest: Path, forged: bytes) -> list[bytes]:
    """Make verification's one read return the real bytes, then put ``forged`` in their place."""
    real_read = manifest_file.read_manifest_bytes
    seen: list[bytes] = []

    def read_then_swap(path: Path) -> bytes:
        data = real_read(path)
        seen.append(data)
        Path(path).write_bytes(forged)
        return data

    monkeypatch.setattr(verify_module, "read_manifest_bytes", read_then_swap)
    return seen


def _forged(manifest: Path, tmp_path: Path) -> bytes:
    """The same run re-signed with the real key, claiming another requests version and other losses."""
    forged = tmp_path / "forged.json"
    forged.write_bytes(manifest.read_bytes())

    def edit(raw: dict[str, Any]) -> None:
        raw["environment"]["distributions"]["requests"] = FORGED_VERSION
        for record in raw["validation"]:
            record["loss"] *= 2
    resign_with(forged, edit, load_key(default_key_path()))
    return forged.read_bytes()


def test_attestation_is_of_the_verified_bytes(smoke_copy: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    original = smoke_copy.read_bytes()
    seen = _swap_after_read(monkeypatch, smoke_copy, _forged(smoke_copy, tmp_path))
    out = tmp_path / "a.intoto.jsonl"
    assert main(["attest", str(smoke_copy), "--out", str(out), "--key", str(default_key_path())]) == 0
    assert seen == [original] and smoke_copy.read_bytes() != original  # the swap happened, after one read
    statement = json.loads(base64.b64decode(json.loads(out.read_text())["payload"]))
    assert statement["subject"][0]["digest"]["sha256"] == sha256_bytes(original)
    assert statement["predicate"]["record"] == json.loads(original)


def test_audit_scan_plot_and_json_come_from_the_verified_bytes(
        smoke_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = json.loads(smoke_copy.read_text())
    real_version = original["environment"]["distributions"]["requests"]
    original_curve = [(s.step, s.loss) for s in load_manifest(smoke_copy).manifest.steps]
    seen = _swap_after_read(monkeypatch, smoke_copy, _forged(smoke_copy, tmp_path))
    curves: list[list[tuple[int, float]]] = []
    from repro.audits.formats import plot

    monkeypatch.setattr(plot, "write_plot", lambda report, path, curve=None: curves.append(curve))
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):  # nothing may leave the machine
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    known = {("requests", FORGED_VERSION): [osv_record("GHSA-test-0000-0009", "requests", "99.0", [], "forged")]}
    report_path = tmp_path / "audit.json"
    with serve_osv(known) as server:
        code = main(["audit", str(smoke_copy), "--steps", "2", "--scan-vulnerabilities", "--osv-url", server.url,
                     "--json", str(report_path), "--plot", str(tmp_path / "loss.png")])
    assert code == 0 and len(seen) == 1
    report = json.loads(report_path.read_text())
    [requests] = [p for p in report["vulnerabilities"]["packages"] if p["name"] == "requests"]
    assert requests["version"] == real_version and requests["status"] == "no_known"
    assert curves == [original_curve]
    assert report["steps"][0]["recorded_loss"] == original_curve[0][1]


def test_the_gate_scans_the_verified_bytes(smoke_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from repro.audits.gate import Gate
    from repro.audits.policy import load_policy
    from repro.errors import MissingArtifactError
    from repro.trust.keys import public_key_path

    original = json.loads(smoke_copy.read_text())
    seen = _swap_after_read(monkeypatch, smoke_copy, _forged(smoke_copy, tmp_path))
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    known = {("requests", FORGED_VERSION): [osv_record("GHSA-test-0000-0010", "requests", "99.0", [], "forged")]}

    def no_rerun(verified: Any, options: Any) -> Any:  # the audit is not what this test is about
        raise MissingArtifactError("stand-in: no rerun")

    with serve_osv(known) as server:
        config = tmp_path / "pyproject.toml"
        config.write_text(f'[tool.repro.gate]\nmanifests = ["{smoke_copy}"]\n'
                          f'trusted_keys = "{public_key_path(default_key_path())}"\n'
                          f'[tool.repro.gate.vulnerabilities]\nosv_url = "{server.url}"\n')
        report = Gate(load_policy(config), audit=no_rerun).run()
    assert len(seen) == 1
    [result] = report.results
    assert result.vulnerabilities is not None
    [requests] = [p for p in result.vulnerabilities.packages if p.name == "requests"]
    assert requests.version == original["environment"]["distributions"]["requests"]
    assert result.vulnerability_status == "pass" and requests.status == "no_known"
