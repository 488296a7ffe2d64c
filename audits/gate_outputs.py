"""What ``repro gate`` writes for CI: JSON, JUnit XML and a markdown summary.

JUnit has two test cases per manifest, so CI test views show reproduction and vulnerabilities
apart: ``reproduce <manifest>`` (failure: not reproduced; error: integrity, input, could not
check) and ``vulnerabilities <manifest>`` (failure: a forbidden vulnerability; skipped: packages
not checked with ``on_unchecked = "warn"``; error: with ``"fail"``). "Not checked" is never
shown as a pass.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from repro.audits.formats.junit import junit_document
from repro.audits.gate import GateReport, ManifestResult
from repro.text import escape_text

VERDICT_WORDS = {
    "pass": "PASS",
    "not_reproduced": "FAIL: not reproduced",
    "vulnerable": "FAIL: known vulnerabilities",
    "integrity_failure": "FAIL: integrity",
    "input_error": "ERROR: bad input",
    "could_not_check": "COULD NOT CHECK",
    "internal_error": "INTERNAL ERROR (please report it)",
}

_VULN_WORDS = {
    "pass": "no known vulnerabilities (every package checked)",
    "fail": "known vulnerabilities (policy fails on them)",
    "accepted": "known vulnerabilities (accepted by policy)",
    "unchecked_warning": "NOT fully checked (warning)",
    "unchecked_failure": "NOT fully checked (policy fails)",
    "not_scanned": "not scanned (manifest did not verify)",
    "disabled": "scan disabled by policy",
}


def json_bytes(report: GateReport) -> bytes:
    """The ``--json`` report."""
    return (json.dumps(report.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _vuln_detail(result: ManifestResult) -> str:
    v = result.vulnerabilities
    if v is None:
        return _VULN_WORDS[result.vulnerability_status]
    lines = [v.summary()]
    for package in v.packages:
        for vuln in package.vulnerabilities:
            fixed = ", ".join(vuln.fix_versions) or "no fixed version"
            note = " (ignored by policy)" if vuln.ignored else ""
            lines.append(f"{package.name} {package.version}: {vuln.id} ({', '.join(vuln.aliases) or 'no aliases'}); "
                         f"fixed in {fixed}{note}")
    return "\n".join(lines)


def junit_bytes(report: GateReport) -> bytes:
    """The ``--junit`` report: one suite, two test cases per manifest."""
    suite = ET.Element("testsuite", name="repro gate", timestamp=report.created_at, time=f"{report.seconds:.3f}")

    def case(name: str, seconds: float, kind: str | None, message: str, text: str) -> None:
        element = ET.SubElement(suite, "testcase", classname="repro.gate", name=name, time=f"{seconds:.3f}")
        if kind is not None:
            ET.SubElement(element, kind, message=message.splitlines()[0][:500]).text = text
        else:
            ET.SubElement(element, "system-out").text = text

    for r in report.results:
        kind = {"reproduced": None, "not_reproduced": "failure"}.get(r.reproduction, "error")
        case(f"reproduce {r.manifest}", r.seconds, kind, f"{r.reproduction}: {r.message}", r.message)
        vkind = {"fail": "failure", "unchecked_failure": "error", "unchecked_warning": "skipped",
                 "not_scanned": "skipped", "disabled": "skipped"}.get(r.vulnerability_status)
        case(f"vulnerabilities {r.manifest}", 0.0, vkind, _VULN_WORDS[r.vulnerability_status], _vuln_detail(r))
    return junit_document(suite)


def _cell(text: str) -> str:
    """Text for a markdown table cell or list item: one line, ``|`` escaped, control characters shown."""
    return escape_text(text.replace("\n", " ")).replace("|", "\\|")


def markdown(report: GateReport) -> str:
    """The markdown summary (what ``$GITHUB_STEP_SUMMARY`` gets)."""
    lines = [
        f"## repro gate: {VERDICT_WORDS[report.outcome]}",
        "",
        "| manifest | reproduction | verdict | steps compared | vulnerabilities |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in report.results:
        verdict = r.audit.verdict if r.audit else "-"
        steps = f"{r.audit.steps_compared}/{r.audit.steps_total}" if r.audit else "-"
        vulns = _VULN_WORDS[r.vulnerability_status]
        if r.vulnerabilities is not None:
            v = r.vulnerabilities
            vulns += (f": {v.count('vulnerable')} vulnerable, {v.count('no_known')} none known, "
                      f"{v.count('not_checked')} not checked")
        lines.append(f"| `{_cell(r.manifest)}` | {r.reproduction} | {verdict} | {steps} | {_cell(vulns)} |")
    lines.append("")
    for r in report.results:
        lines.append(f"- `{_cell(r.manifest)}`: {_cell(r.message)}")
    found = [(r, p, v) for r in report.results if r.vulnerabilities
             for p in r.vulnerabilities.packages for v in p.vulnerabilities]
    if found:
        lines += ["", "### Known vulnerabilities", "", "| package | version | id | aliases | fixed in | ignored |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for _, p, vuln in found:
            lines.append(f"| {_cell(p.name)} | {_cell(p.version)} | {_cell(vuln.id)} | "
                         f"{_cell(', '.join(vuln.aliases))} | {_cell(', '.join(vuln.fix_versions) or 'none')} | "
                         f"{'yes' if vuln.ignored else 'no'} |")
    if report.warnings:
        lines += ["", "### Warnings", ""] + [f"- {_cell(w)}" for w in report.warnings]
    plots = [r.plot for r in report.results if r.plot]
    if plots:
        lines += ["", "Loss-curve plots (uploaded with the reports): " + ", ".join(f"`{p}`" for p in plots)]
    return "\n".join(lines) + "\n"
