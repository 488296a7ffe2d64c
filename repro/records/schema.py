"""The published JSON Schemas of repro's on-disk formats, and a command to regenerate them.

``python -m repro.records.schema docs/`` writes ``docs/manifest.schema.json`` (the manifest this release
writes, schema version 2) and ``docs/step-table.schema.json`` (the header of a run's
``steps.safetensors``); tests keep them current. ``docs/manifest-v1.schema.json`` is the frozen
schema of version-1 manifests, which this release still reads (it is not regenerated).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from repro.files import atomic
from repro.records.manifest import RunManifest
from repro.records.steptable import step_table_schema

SCHEMAS: dict[str, type | dict[str, Any]] = {
    "manifest.schema.json": RunManifest,
    "step-table.schema.json": step_table_schema(),
}


def schema_text(model: type | dict[str, Any]) -> str:
    """The JSON Schema of a pydantic model (or a schema given as a dict), as stable, indented text."""
    schema = model if isinstance(model, dict) else model.model_json_schema()  # type: ignore[attr-defined]
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path, schemas: dict[str, type | dict[str, Any]] | None = None) -> list[Path]:
    """Write every schema of ``schemas`` (default: the core's :data:`SCHEMAS`) into ``folder``."""
    written = []
    for name, model in (SCHEMAS if schemas is None else schemas).items():
        atomic.write_text(Path(folder) / name, schema_text(model))
        written.append(Path(folder) / name)
    return written


def main(argv: list[str] | None = None, schemas: dict[str, type | dict[str, Any]] | None = None,
         prog: str = "python -m repro.records.schema") -> int:
    """``python -m repro.records.schema [FOLDER]``: regenerate the published schemas (default ``docs``)."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="docs", help="existing folder to write into (default: docs)")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        parser.error(f"{folder} is not an existing folder")
    for path in write_schemas(folder, schemas):
        print(path)  # noqa: T201 - this module's command prints what it wrote
    return 0


if __name__ == "__main__":
    sys.exit(main())
