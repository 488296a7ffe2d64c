"""The published JSON Schemas of repro's on-disk formats, and a command to regenerate them.

``python -m repro.schema docs/`` writes ``docs/manifest.schema.json``; a test keeps it current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from repro import atomic
from repro.manifest import RunManifest

SCHEMAS = {"manifest.schema.json": RunManifest}


def schema_text(model: type) -> str:
    """The JSON Schema of a pydantic model, as stable, indented text."""
    return json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    """Write every published schema into ``folder``."""
    written = []
    for name, model in SCHEMAS.items():
        atomic.write_text(Path(folder) / name, schema_text(model))
        written.append(Path(folder) / name)
    return written


if __name__ == "__main__":
    for path in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(path)
