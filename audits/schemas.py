"""The published JSON Schemas of the audit's reports, and the command that regenerates them.

``python -m repro.audits.schemas docs/`` writes ``audit-report.schema.json`` (``repro audit --json``),
``vary-report.schema.json`` (``--vary --json``), ``diff-report.schema.json`` (``repro diff --json``) and
``command-failure.schema.json`` (what any of them, and the gate, write instead when they stop before a verdict);
``tests/audits/test_report_schema.py`` keeps them current. The core's own schemas (manifest, step
table) are :mod:`repro.records.schema`'s.
"""

from __future__ import annotations

import sys
from typing import Any

from repro.audits.diff import DIFF_SCHEMA_FILE, DiffReport
from repro.audits.formats.failure import FAILURE_SCHEMA_FILE, CommandFailure
from repro.audits.report import SCHEMA_FILE, AuditReport
from repro.audits.vary import VARY_SCHEMA_FILE, VaryReport
from repro.records.schema import main

SCHEMAS: dict[str, type | dict[str, Any]] = {
    SCHEMA_FILE: AuditReport,
    VARY_SCHEMA_FILE: VaryReport,
    DIFF_SCHEMA_FILE: DiffReport,
    FAILURE_SCHEMA_FILE: CommandFailure,
}

if __name__ == "__main__":
    sys.exit(main(schemas=SCHEMAS, prog="python -m repro.audits.schemas"))
