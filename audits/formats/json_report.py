"""``--json FILE``: the :class:`~audits.report.AuditReport` as indented JSON, written atomically."""

from __future__ import annotations

from pathlib import Path

from repro.audits.report import AuditReport
from repro.files import atomic


def report_json(report: AuditReport) -> str:
    """The report's JSON text (schema: ``docs/audit-report.schema.json``)."""
    return report.model_dump_json(indent=1) + "\n"


def write_json(report: AuditReport, path: Path) -> None:
    """Write the report to ``path`` atomically."""
    atomic.write_text(Path(path), report_json(report))
