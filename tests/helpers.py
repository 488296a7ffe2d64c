"""Small helpers several test modules share (one copy each, so they cannot drift apart)."""

from __future__ import annotations

import struct
from pathlib import Path

from repro.audits.report import AuditReport
from repro.files import atomic

REAL_WRITE_ALL = atomic.write_all
"""``repro.files.atomic.write_all`` as shipped, kept before any test patches it to fail on purpose."""


def float_bits(value: float) -> str:
    """The exact bits of a float (as float64), for comparing losses bit for bit in messages."""
    return struct.pack("<d", value).hex()


def read_report(path: Path) -> AuditReport:
    """An audit's ``--json`` report, validated against the report model."""
    return AuditReport.model_validate_json(Path(path).read_text(encoding="utf-8"))
