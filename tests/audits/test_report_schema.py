"""The published JSON Schema of the audit report is current, and a report round-trips."""

from __future__ import annotations

from pathlib import Path

from repro.audits.report import SCHEMA_FILE, schema_text

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_published_schema_is_current() -> None:
    published = (DOCS / SCHEMA_FILE).read_text(encoding="utf-8")
    assert published == schema_text(), "regenerate with: python -m audits.report docs/"
