"""The published JSON Schema of the audit report is current, and a report round-trips."""

from __future__ import annotations

from pathlib import Path

from repro.audits.report import SCHEMA_FILE, schema_text

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_published_schema_is_current() -> None:
    published = (DOCS / SCHEMA_FILE).read_text(encoding="utf-8")
    assert published == schema_text(), "regenerate with: python -m audits.report docs/"


def test_the_published_vary_and_diff_schemas_are_current() -> None:
    from repro.audits.diff import DIFF_SCHEMA_FILE, diff_schema_text
    from repro.audits.vary import VARY_SCHEMA_FILE, vary_schema_text

    assert (DOCS / VARY_SCHEMA_FILE).read_text(encoding="utf-8") == vary_schema_text(), \
        "regenerate with: python -m repro.audits.vary docs/"
    assert (DOCS / DIFF_SCHEMA_FILE).read_text(encoding="utf-8") == diff_schema_text(), \
        "regenerate with: python -m repro.audits.diff docs/"
