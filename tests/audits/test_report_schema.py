"""The published JSON Schemas of the audit, vary and diff reports are current."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.audits.schemas import SCHEMAS
from repro.records.schema import schema_text

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_published_schema_is_current(name: str) -> None:
    assert (DOCS / name).read_text(encoding="utf-8") == schema_text(SCHEMAS[name]), \
        "regenerate with: python -m repro.audits.schemas docs/"
