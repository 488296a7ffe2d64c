"""`repro gate` end to end on the smoke run, and its decisions with a stand-in audit.

One real gate run (a real rerun of the smoke run and a real pip-audit against a loopback OSV
server) checks the outputs CI reads; the precedence of outcomes is checked with the real audit
report replayed through a stand-in audit function, so no further training is needed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from repro.audits.gate import Gate, GateReport
from repro.audits.policy import load_policy
from repro.audits.report import AuditReport
from repro.cli import main
from repro.errors import ArtifactMismatchError, MissingArtifactError
from repro.records.manifest_file import load_manifest
from repro.trust.keys import default_key_path, generate_key, public_key_path
from tests.audits.osv_server import osv_record, serve_osv
from tests.conftest import copy_run

VULN_ID = "GHSA-test-0000-0002"


def write_policy(folder: Path, manifest: Path, trusted: Path, extra: str = "") -> Path:
    """A pyproject.toml with a gate policy for ``manifest``."""
    path = folder / "pyproject.toml"
    path.write_text(
        f'[tool.repro.gate]\nmanifests = ["{manifest}"]\ntrusted_keys = "{trusted}"\n{extra}', encoding="utf-8"
    )
    return path


@pytest.fixture(scope="module")
def gated(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real `repro gate` with every output, against a copy of the smoke run."""
    base = tmp_path_factory.mktemp("gate")
    manifest = copy_run(smoke_run, base / "runs")
    config = write_policy(base, manifest.relative_to(base), public_key_path(default_key_path()))
    recorded = load_manifest(manifest).manifest.environment.distributions
    known = {("requests", recorded["requests"]): [osv_record(VULN_ID, "requests", "99.0", [], "test")]}
    step_summary = base / "step-summary.md"
    step_summary.write_text("earlier step\n")
    with pytest.MonkeyPatch.context() as patch, serve_osv(known) as server:
        for name in ("HTTP_PROXY", "HTTPS_PROXY"):  # nothing may leave the machine
            patch.setenv(name, "http://127.0.0.1:9")
        patch.setenv("NO_PROXY", "127.0.0.1")
        patch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
        code = main(["gate", "--config", str(config), "--osv-url", server.url, "--json", str(base / "gate.json"),
                     "--junit", str(base / "gate.xml"), "--summary", str(base / "gate.md"),
                     "--plots", str(base / "plots"), "--html", str(base / "gate.html")])
    return {"code": code, "base": base, "config": config, "manifest": manifest, "step_summary": step_summary}


def test_reproduced_but_vulnerable_fails_with_exit_1(gated: dict) -> None:
    assert gated["code"] == 1
    report = GateReport.model_validate_json((gated["base"] / "gate.json").read_text())
    [result] = report.results
    assert report.outcome == "vulnerable"
    assert result.audit is not None and result.vulnerabilities is not None
    assert result.reproduction == "reproduced" and result.audit.verdict == "bitwise"
    assert result.vulnerability_status == "fail"
    [finding] = [p for p in result.vulnerabilities.packages if p.status == "vulnerable"]
    assert finding.name == "requests" and finding.vulnerabilities[0].fix_versions == ["99.0"]


def test_junit_shows_reproduction_and_vulnerabilities_apart(gated: dict) -> None:
    suite = ET.parse(gated["base"] / "gate.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    reproduce, vulnerabilities = suite.findall("testcase")
    assert reproduce.find("failure") is None and reproduce.find("error") is None
    failure = vulnerabilities.find("failure")
    assert failure is not None and VULN_ID in str(failure.text)


def test_markdown_summary_is_written_and_appended_to_the_step_summary(gated: dict) -> None:
    summary = (gated["base"] / "gate.md").read_text()
    assert summary.startswith("## repro gate: FAIL: known vulnerabilities")
    assert "| requests |" in summary and VULN_ID in summary
    assert gated["step_summary"].read_text() == "earlier step\n" + summary


def test_a_loss_curve_plot_is_written(gated: dict) -> None:
    [plot] = (gated["base"] / "plots").glob("*.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_html_page_shows_the_gate_and_every_manifest(gated: dict) -> None:
    from tests.browser import assert_verdict_first, render

    rendered = render(gated["base"] / "gate.html", gated["base"] / "gate.png")
    assert_verdict_first(rendered, "GATE FAIL: known vulnerabilities", "bad")
    dom = rendered.dom
    assert "REPRODUCED: bit for bit" in dom  # the manifest's own audit, under the gate's outcome
    assert "requests" in dom and VULN_ID in dom and "1 known vulnerability in 1 of" in dom
    assert "loss: recorded vs rerun" in dom and 'id="tensors"' in dom


@pytest.fixture(scope="module")
def real_audit(gated: dict) -> AuditReport:
    audit = GateReport.model_validate_json((gated["base"] / "gate.json").read_text()).results[0].audit
    assert audit is not None
    return audit


def _gate(
    gated: dict, tmp_path: Path, audit, extra: str = "[tool.repro.gate.vulnerabilities]\nenabled = false\n"
) -> GateReport:
    config = write_policy(tmp_path, gated["manifest"], public_key_path(default_key_path()), extra)
    return Gate(load_policy(config), audit=audit).run()


def test_a_reproduced_run_with_nothing_forbidden_passes(gated: dict, real_audit: AuditReport, tmp_path: Path) -> None:
    report = _gate(gated, tmp_path, lambda path, options: real_audit)
    assert report.outcome == "pass" and report.results[0].vulnerability_status == "disabled"


def test_a_diverged_run_is_not_reproduced(gated: dict, real_audit: AuditReport, tmp_path: Path) -> None:
    diverged = real_audit.model_copy(
        update={"verdict": "diverged", "reproduced": False, "summary": "diverged at step 3"}
    )
    report = _gate(gated, tmp_path, lambda path, options: diverged)
    assert report.outcome == "not_reproduced" and report.results[0].message == "diverged at step 3"


def test_errors_map_to_outcomes_and_integrity_wins(gated: dict, real_audit: AuditReport, tmp_path: Path) -> None:
    def missing(path, options):
        raise MissingArtifactError("checkpoint gone")

    assert _gate(gated, tmp_path, missing).outcome == "could_not_check"
    manifest = gated["manifest"]
    extra = "[tool.repro.gate.vulnerabilities]\nenabled = false\n"
    config = tmp_path / "pyproject.toml"
    config.write_text(f'[tool.repro.gate]\nmanifests = ["{manifest}", "{manifest}"]\n'
                      f'trusted_keys = "{public_key_path(default_key_path())}"\n{extra}')
    answers = iter([real_audit.model_copy(update={"verdict": "diverged", "reproduced": False}),
                    ArtifactMismatchError("checkpoint changed")])

    def mixed(path, options):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    report = Gate(load_policy(config), audit=mixed).run()
    assert [r.reproduction for r in report.results] == ["not_reproduced", "integrity_failure"]
    assert report.outcome == "integrity_failure"


def test_unchecked_packages_warn_by_default_and_fail_when_told(
    gated: dict, real_audit: AuditReport, tmp_path: Path
) -> None:
    unreachable = '[tool.repro.gate.vulnerabilities]\nosv_url = "http://127.0.0.1:9/v1/query"\ntimeout = 5\n'
    report = _gate(gated, tmp_path, lambda path, options: real_audit, unreachable)
    assert report.outcome == "pass" and report.results[0].vulnerability_status == "unchecked_warning"
    assert "NOT checked" in report.warnings[0] and "not a clean result" in report.warnings[0]
    report = _gate(gated, tmp_path, lambda path, options: real_audit, unreachable + 'on_unchecked = "fail"\n')
    assert report.outcome == "could_not_check"


def test_cli_exit_codes_for_tampered_untrusted_and_missing_manifests(gated: dict, tmp_path: Path) -> None:
    trusted = public_key_path(default_key_path())
    tampered = copy_run(gated["manifest"], tmp_path / "tampered")
    tampered.write_text(tampered.read_text().replace('"preset": "smoke"', '"preset": "smoke2"'))
    off = '[tool.repro.gate.vulnerabilities]\nenabled = false\n'
    assert main(["gate", "--config", str(write_policy(tmp_path, tampered, trusted, off))]) == 3

    other = generate_key(tmp_path / "other.pem")
    config = write_policy(tmp_path, gated["manifest"], public_key_path(other.path), off)
    assert main(["gate", "--config", str(config)]) == 3

    assert main(["gate", "--config", str(write_policy(tmp_path, tmp_path / "absent.json", trusted, off))]) == 4
