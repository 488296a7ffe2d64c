"""The vulnerability scan cannot be blinded by a manifest.

Names and versions come from a manifest, so they are untrusted: a name or version with whitespace
is set aside (not checked, with the reason) and never reaches pip-audit's input, so every other
package is still checked; two names for one package are refused (exit 2); and nothing the service
returned is dropped. Real pip-audit against the loopback OSV server of ``tests/audits/osv_server``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import HttpUrl

from repro.audits.vulnerabilities import ScanSettings, findings_from_output, requirements_text, scan_distributions
from repro.errors import ExitCode, ManifestFormatError
from tests.audits.osv_server import osv_record, serve_osv

VULN = osv_record("GHSA-test-0000-0009", "requests", "99.0", ["CVE-0000-00009"], "test")
PINS = {"requests": "2.25.0", "idna": "2.10", "urllib3": "1.26.0"}


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.mark.parametrize("extra", [
    {"evil\n": "1.0"}, {"evil\r": "1.0"}, {" evil": "1.0"}, {"evil\nrequests": "1.0"}, {"evil": "1.0\n"},
    {"evil": "1.0 ; python_version<'2'"}, {"evil": " 1.0"}, {"evil": "1.0\n--index-url=http://x"},
])
def test_a_name_or_version_with_whitespace_is_set_aside_and_the_rest_is_still_checked(
    extra: dict[str, str], loopback_only: None, tmp_path: Path
) -> None:
    with serve_osv({("requests", "2.25.0"): [VULN]}) as server:
        report = scan_distributions({**PINS, **extra}, ScanSettings(osv_url=HttpUrl(server.url), cache_dir=tmp_path))
    status = {p.name: p.status for p in report.packages}
    [bad] = extra
    assert status == {"requests": "vulnerable", "idna": "no_known", "urllib3": "no_known", bad: "not_checked"}
    assert report.verdict == "vulnerable" and report.error is None
    assert {q["package"]["name"] for q in server.queries} == set(PINS)


def test_requirement_lines_are_exactly_one_pin_each() -> None:
    text, rejected = requirements_text({**PINS, "evil\n": "1.0", "x": "1.0\n"})
    assert text.splitlines() == ["idna==2.10", "requests==2.25.0", "urllib3==1.26.0"]
    assert set(rejected) == {"evil\n", "x"}


@pytest.mark.parametrize("twins", [("Requests", "requests"), ("zope.interface", "zope-interface"),
                                   ("typing_extensions", "typing-extensions")])
def test_two_names_for_one_package_are_refused(twins: tuple[str, str], loopback_only: None, tmp_path: Path) -> None:
    first, second = twins
    with serve_osv({("requests", "2.25.0"): [VULN]}) as server, pytest.raises(ManifestFormatError) as caught:
        settings = ScanSettings(osv_url=HttpUrl(server.url), cache_dir=tmp_path)
        scan_distributions({first: "99.0", second: "2.25.0"}, settings)
    assert caught.value.exit_code == ExitCode.USAGE
    assert first in str(caught.value) and second in str(caught.value) and "same package" in str(caught.value)
    assert server.queries == []  # refused before anything was asked


def test_nothing_the_service_returned_is_dropped() -> None:
    other = {**VULN, "id": "GHSA-test-0000-0010", "aliases": []}
    output: dict[str, Any] = {"dependencies": [
        {"name": "requests", "version": "2.25.0", "vulns": [{"id": "A-1", "fix_versions": ["3"], "aliases": []}]},
        {"name": "Requests", "version": "2.25.0", "vulns": []},  # a later, clean answer for the same package
        {"name": "requests", "version": "2.25.0", "vulns": [{"id": other["id"], "fix_versions": [], "aliases": []}]},
        {"name": "unasked", "version": "1.0", "vulns": [{"id": "B-2", "fix_versions": [], "aliases": []}]},
    ]}
    findings = {f.name: f for f in findings_from_output(output, {"requests": "2.25.0"}, set())}
    assert findings["requests"].status == "vulnerable"
    assert sorted(v.id for v in findings["requests"].vulnerabilities) == ["A-1", other["id"]]
    assert findings["unasked"].status == "vulnerable"
    returned = sum(len(d["vulns"]) for d in output["dependencies"])
    assert sum(len(f.vulnerabilities) for f in findings.values()) == returned
