"""The audit's HTML report in a real headless Chromium, and the console report at 80 columns.

One real audit of the smoke run, rerun with 1 thread instead of the recorded 2 so that there is
something to show (gradient norms and checkpoint tensors differ within tolerance; measured).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Literal, get_args

import pytest
from rich.console import Console

from repro.audits.formats.console import render as render_console
from repro.audits.formats.html import audit_page
from repro.audits.report import AuditReport, Difference, Likelihood, TensorDifference
from repro.audits.vulnerabilities import PackageFinding, Vulnerability, VulnerabilityReport
from repro.cli import main
from repro.records.manifest_file import load_manifest
from tests.browser import assert_verdict_first, render

HOSTILE = "<script>alert('pwned')</script>"


@pytest.fixture(scope="module")
def audited(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("html-audit")
    code = main(["audit", str(smoke_run), "--threads", "1", "--html", str(base / "audit.html"),
                 "--json", str(base / "audit.json")])
    report = AuditReport.model_validate_json((base / "audit.json").read_text())
    return {"code": code, "base": base, "report": report, "manifest": smoke_run}


def test_the_audit_page_renders_with_the_verdict_first(audited: dict) -> None:
    assert audited["code"] == 0
    report: AuditReport = audited["report"]
    assert report.verdict == "within_tolerance"
    page = audited["base"] / "audit.html"
    rendered = render(page, audited["base"] / "audit.png")
    assert_verdict_first(rendered, "REPRODUCED: within tolerance", "warn")
    dom = rendered.dom
    assert "full rerun of 20 steps" in dom and report.manifest.key_id in dom
    assert "NOT checked against a trust list" in dom
    for title in ("loss: recorded vs rerun", "per-step loss difference", "learning rate", "gradient norm"):
        assert title in dom
    assert "environment.torch_threads" in dom and report.attribution.summary in dom


def test_the_tensor_table_lists_every_tensor_and_sorts(audited: dict) -> None:
    report: AuditReport = audited["report"]
    html = (audited["base"] / "audit.html").read_text()
    table = html[html.index('id="tensors"'):]
    table = table[:table.index("</table>")]
    rows = table.count("<tr>") - 1  # minus the header
    assert rows == sum(c.tensors for c in report.checkpoints)  # all of them, not the first few
    manifest = load_manifest(audited["manifest"]).manifest
    for name in manifest.checkpoints[-1].tensors:
        assert f"<code>{name}</code>" in table
    assert table.count("bit-identical") == sum(c.identical for c in report.checkpoints)
    assert 'class="sortable"' in html[html.index('id="tensors"') - 40:html.index('id="tensors"')]


def test_hostile_names_in_a_report_stay_text(audited: dict, tmp_path: Path) -> None:
    report: AuditReport = audited["report"]
    first = report.checkpoints[0]
    bad = TensorDifference(name=HOSTILE, status="differs", dtype="float32", shape=[2], max_abs_diff=1.0,
                           rel_l2=1.0, differing_elements=1, elements=2)
    scan = VulnerabilityReport(tool="pip-audit", service="osv", osv_url=None, packages=[
        PackageFinding(name=HOSTILE, version="1.0", status="vulnerable",
                       vulnerabilities=[Vulnerability(id="GHSA-<b>x</b>", aliases=[HOSTILE])])])
    hostile = report.model_copy(update={
        "checkpoints": [first.model_copy(update={"differences": [*first.differences, bad]}), *report.checkpoints[1:]],
        "summary": HOSTILE, "vulnerabilities": scan})
    page = tmp_path / "hostile.html"
    page.write_text(audit_page(hostile))
    html = page.read_text()
    assert HOSTILE not in html and "<b>x</b>" not in html
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html
    rendered = render(page, tmp_path / "hostile.png")
    assert rendered.console == [] and rendered.dom.count("<script") == 1


def test_every_likelihood_renders_in_every_format(audited: dict, tmp_path: Path) -> None:
    # CI once crashed (exit 70) on a difference of likelihood "none" that the page had no colour for.
    report: AuditReport = audited["report"]
    differences = [Difference(category="packages", field=f"packages.{name}", recorded="1", here="2", likelihood=name)
                   for name in get_args(Likelihood)]
    every = report.model_copy(update={"differences": differences})
    html = audit_page(every)
    matter = [name for name in get_args(Likelihood) if name != "none"]
    for name in matter:
        assert f"packages.{name}" in html and f">{name}<" in html
    # What cannot change the numbers is kept, in a collapsed section of its own.
    hidden = html[html.index('<details id="cannot-matter">'):]
    assert "packages.none" in hidden[:hidden.index("</details>")]
    text = _console_text(every)
    assert all(f"packages.{name}" in text for name in matter)
    assert "packages.none" not in text and "1 package differs that the training process never imported" in text


def _console_text(report: AuditReport) -> str:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(render_console(report))
    return console.export_text()


def test_the_console_report_is_readable_at_80_columns(audited: dict) -> None:
    report: AuditReport = audited["report"]
    text = _console_text(report)
    assert max(len(line) for line in text.splitlines()) <= 80
    for line in text.splitlines():  # no table wider than the screen, cut off at the right
        if line and line[0] in "│┃┏┡└":
            assert line.rstrip()[-1] in "│┃┓┩┘", line
    assert "…" not in text  # nothing cut short: long words wrap or fold
    assert "within tolerance" in text and "within_t" not in text
    shown = [d.name for c in report.checkpoints for d in c.differences[:8]]
    assert shown and all(name in text for name in shown)  # whole tensor names, on one line each
    assert not re.search(r"\b[0-9a-f]{64}\b", text)  # digests are shortened


def test_vulnerabilities_in_the_console_name_package_version_and_advisory(audited: dict) -> None:
    scan = VulnerabilityReport(tool="pip-audit 2.10", service="osv", osv_url=None, packages=[
        PackageFinding(name="requests", version="2.25.0", status="vulnerable", vulnerabilities=[
            Vulnerability(id="GHSA-j8r2-6x86-q33q", aliases=["CVE-2023-32681"], fix_versions=["2.31.0"])]),
        PackageFinding(name="numpy", version="2.1.0", status="no_known"),
        PackageFinding(name="torch", version="2.13.0+cpu", status="not_checked", reason="service unreachable"),
    ])
    text = _console_text(audited["report"].model_copy(update={"vulnerabilities": scan}))
    flat = " ".join(text.split())
    assert "1 known vulnerability in 1 of 3 packages: requests 2.25.0 (GHSA-j8r2-6x86-q33q)" in flat
    assert "1 other packages NOT CHECKED" in flat
    assert "CVE-2023-32681" in flat and "2.31.0" in flat and "…" not in text


def test_scan_summaries_read_at_once() -> None:
    Status = Literal["vulnerable", "no_known", "not_checked"]

    def scan(*statuses: Status, error: str | None = None) -> VulnerabilityReport:
        return VulnerabilityReport(tool="pip-audit", service="pypi", osv_url=None, error=error, packages=[
            PackageFinding(name=f"p{i}", version="1.0", status=s) for i, s in enumerate(statuses)])

    assert scan("no_known", "no_known").summary() == "no known vulnerabilities: all 2 packages checked"
    assert scan("no_known", "not_checked").summary() == (
        "no known vulnerabilities in the 1 packages checked, but 1 of 2 packages were NOT CHECKED")
    error = "could not reach the vulnerability service (x): timed out"
    unreachable = scan("not_checked", "not_checked", error=error).summary()
    assert unreachable.startswith("NOT CHECKED: none of the 2 packages could be looked up")
