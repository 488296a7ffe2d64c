"""The vulnerability scan runs the real pip-audit against an OSV-compatible server on 127.0.0.1.

Every test blocks the rest of the network for pip-audit (a proxy on a dead loopback port for
everything but 127.0.0.1), so a query that tried to leave the machine would fail loudly.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import HttpUrl

from repro.audits.vulnerabilities import ScanSettings, findings_from_output, requirements_text, scan_manifest
from repro.records.manifest import RunManifest
from repro.records.manifest_file import load_manifest
from tests.audits.osv_server import osv_record, serve_osv

VULNERABLE = "requests"


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route every non-loopback HTTP(S) request of child processes to a dead proxy."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def recorded(smoke_run: Path) -> RunManifest:
    manifest = load_manifest(smoke_run).manifest
    assert VULNERABLE in manifest.environment.distributions
    return manifest


def _known(manifest: RunManifest) -> dict:
    version = manifest.environment.distributions[VULNERABLE]
    record = osv_record("GHSA-test-0000-0001", VULNERABLE, "99.0", ["CVE-0000-00001"], "A test vulnerability")
    return {(VULNERABLE, version): [record]}


def test_finds_the_known_vulnerability_and_nothing_else(recorded: RunManifest, loopback_only, tmp_path: Path) -> None:
    with serve_osv(_known(recorded)) as server:
        report = scan_manifest(recorded, ScanSettings(osv_url=HttpUrl(server.url), cache_dir=tmp_path))
    distributions = recorded.environment.distributions
    assert report.verdict == "vulnerable" and report.service == "osv" and report.error is None
    [finding] = [p for p in report.packages if p.status == "vulnerable"]
    assert (finding.name, finding.version) == (VULNERABLE, distributions[VULNERABLE])
    [vuln] = finding.vulnerabilities
    assert {vuln.id, *vuln.aliases} == {"GHSA-test-0000-0001", "CVE-0000-00001"}
    assert vuln.fix_versions == ["99.0"] and vuln.description == "A test vulnerability"
    assert report.count("no_known") == len(distributions) - 1 and report.count("not_checked") == 0
    # pip-audit asked the server about every recorded pin, as PyPI packages, and nothing else.
    asked = {(q["package"]["name"], q["version"]) for q in server.queries}
    assert {q["package"]["ecosystem"] for q in server.queries} == {"PyPI"}
    assert len(asked) == len(distributions)


def test_ignored_vulnerability_is_listed_but_does_not_count(
    recorded: RunManifest, loopback_only, tmp_path: Path
) -> None:
    with serve_osv(_known(recorded)) as server:
        settings = ScanSettings(osv_url=HttpUrl(server.url), cache_dir=tmp_path, ignore=["CVE-0000-00001"])
        report = scan_manifest(recorded, settings)
    finding = next(p for p in report.packages if p.name == VULNERABLE)
    assert finding.status == "no_known" and finding.vulnerabilities[0].ignored
    assert report.verdict == "no_known"


def test_a_failing_service_means_not_checked_never_clean(recorded: RunManifest, loopback_only, tmp_path: Path) -> None:
    with serve_osv({}, status=503) as server:
        report = scan_manifest(recorded, ScanSettings(osv_url=HttpUrl(server.url), cache_dir=tmp_path))
    assert report.verdict == "not_checked"
    assert {p.status for p in report.packages} == {"not_checked"}
    assert report.error and "pip-audit exited 1" in report.error
    assert "NOT CHECKED" in report.summary()


def test_an_unreachable_service_means_not_checked(recorded: RunManifest, loopback_only, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ScanSettings(osv_url=HttpUrl(f"http://127.0.0.1:{port}/v1/query"), cache_dir=tmp_path, timeout=5)
    report = scan_manifest(recorded, settings)
    assert report.verdict == "not_checked"
    assert report.error is not None
    assert report.error.startswith("could not reach the vulnerability service") and "Error" not in report.error
    assert "NOT CHECKED: none of the" in report.summary()


def test_packages_pip_audit_skipped_are_not_checked() -> None:
    # What pip-audit 2.10's PyPI service writes here (every lookup 404) while it prints
    # "No known vulnerabilities found" and exits 0.
    output = {"dependencies": [
        {"name": "requests", "skip_reason": "Dependency not found on PyPI and could not be audited: requests (2.25.0)"},
        {"name": "idna", "version": "2.10", "vulns": []},
    ], "fixes": []}
    findings = findings_from_output(output, {"requests": "2.25.0", "idna": "2.10", "absent": "1.0"}, set())
    status = {f.name: f.status for f in findings}
    assert status == {"requests": "not_checked", "idna": "no_known", "absent": "not_checked"}
    assert "not found on PyPI" in str(next(f.reason for f in findings if f.name == "requests"))


def test_unparsable_pins_are_set_aside_not_sent() -> None:
    text, rejected = requirements_text({"good": "1.0", "weird": "not a version", "bad name!": "1.0"})
    assert text == "good==1.0\n"
    assert set(rejected) == {"weird", "bad name!"}


def test_audit_command_reports_the_scan(smoke_run: Path, recorded: RunManifest, loopback_only, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`repro audit --scan-vulnerabilities` adds the scan to the console and JSON reports."""
    import json

    from repro.cli import main

    monkeypatch.setenv("PIP_AUDIT_CACHE_DIR", str(tmp_path / "cache"))
    with serve_osv(_known(recorded)) as server:
        code = main(["audit", str(smoke_run), "--steps", "2", "--scan-vulnerabilities",
                     "--osv-url", server.url, "--json", str(tmp_path / "a.json")])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0  # informational in an audit: the gate enforces the policy
    assert "GHSA-test-0000-0001" in out and "1 known vulnerability in 1 of" in out
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["vulnerabilities"]["packages"] and report["vulnerabilities"]["service"] == "osv"
