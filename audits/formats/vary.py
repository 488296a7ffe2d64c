"""The ``--vary`` report as a console table, JSON and JUnit XML (one test case per variation)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from repro.audits.formats.junit import junit_document
from repro.audits.vary import VariationResult, VaryReport
from repro.files import atomic
from repro.rendering.console import line, safe
from repro.text import escape_text, plural

_STYLE = {"bitwise": "green", "within_tolerance": "yellow", "diverged": "red", "not_available": "dim"}


def _num(x: float | int | None) -> str:
    return "-" if x is None else (str(x) if isinstance(x, int) else f"{x:.3g}")


def _row(table: Table, r: VariationResult) -> None:
    if r.name == "control":
        meaning = "does not reproduce" if r.status == "diverged" else "reproduces"
    else:
        meaning = {None: "-", True: "sensitive", False: "immune"}[r.sensitive]
    evidence = ["-"] if r.first_difference_step is None else [f"{r.first_difference_in} at {r.first_difference_step}"]
    if r.max_abs_diff is not None:
        evidence.append(f"max |Δloss| {_num(r.max_abs_diff)}")
    if r.max_ulps:
        evidence.append(f"max {_num(r.max_ulps)} ulps")
    # Prose under the name (the condition) and under the status (what it means), the numbers one per
    # line: three columns fit 80 characters, and no number is ever split.
    table.add_row(line((escape_text(r.name), "bold"), ("\n", ""), (escape_text(r.condition), "dim")),
                  line((r.status.replace("_", " "), _STYLE[r.status]), ("\n", ""), meaning),
                  Text("\n".join(escape_text(e) for e in evidence)))


def vary_table(report: VaryReport) -> RenderableType:
    """The variations as a table that reads at 80 columns, then the notes of those not available."""
    table = Table(title=line("repro audit --vary: ", report.manifest.path, f", first {plural(report.steps, 'step')}"),
                  title_justify="left")
    table.add_column("variation: what changed", overflow="fold", ratio=1)
    table.add_column("vs control", overflow="fold", min_width=16)
    table.add_column("first difference", overflow="fold", min_width=24)
    _row(table, report.control)
    for r in report.variations:
        _row(table, r)
    notes = [line((f"  {escape_text(r.name)}: ", "bold"), r.note) for r in [report.control, *report.variations]
             if r.note]
    return Group(table, *notes)


def print_vary(report: VaryReport, console: Console) -> None:
    """The table of variations and the one-line verdict."""
    style = "green" if report.reproduced else "red"
    console.print(Group(vary_table(report), Panel(safe(report.summary), title="sensitivity", title_align="left",
                                                  border_style=style)))


def write_vary_json(report: VaryReport, path: Path) -> None:
    """Write the report as indented JSON (schema: ``docs/vary-report.schema.json``), atomically."""
    atomic.write_text(Path(path), report.model_dump_json(indent=1) + "\n")


def vary_junit_xml(report: VaryReport) -> bytes:
    """JUnit XML: the control fails if it does not reproduce the record; a variation the run is
    sensitive to is reported in its ``<system-out>`` (sensitivity is a finding, not a failure);
    one that is not available here is skipped."""
    suite = ET.Element("testsuite", name="repro audit --vary", timestamp=report.created_at)
    cls = f"repro.vary.{report.manifest.preset or report.manifest.trainer}"
    for r in [report.control, *report.variations]:
        case = ET.SubElement(suite, "testcase", name=r.name, classname=cls, time="0")
        detail = f"{r.condition}: {r.status}" + (
            f", first difference in {r.first_difference_in} at step {r.first_difference_step}, at most "
            f"{r.max_ulps} ulps" if r.first_difference_step else "")
        if r.status == "not_available":
            ET.SubElement(case, "skipped", message=r.note or "not available")
        elif r.name == "control" and r.status == "diverged":
            ET.SubElement(case, "failure", message=detail, type="NotReproduced").text = detail
        else:
            ET.SubElement(case, "system-out").text = detail
    ET.SubElement(suite, "system-out").text = report.summary
    return junit_document(suite)


def write_vary_junit(report: VaryReport, path: Path) -> None:
    """Write the JUnit XML atomically."""
    atomic.write_bytes(Path(path), vary_junit_xml(report))
