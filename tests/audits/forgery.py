"""Forging manifests for tests: edit the JSON, then sign it again.

:func:`resign` signs with someone else's key: what an attacker without the original key can do;
the signature then verifies (by the wrong key), so only a trust list or a rerun can catch it.
:func:`resign_with` signs with a given key, e.g. the real one: then only the checks of the files
against the record, and of the record against itself, can catch it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro.records.steptable import parse_table, write_table
from repro.trust.keys import SigningKey, generate_key
from repro.trust.signing import sign_body


def _apply(edit: Callable[..., None], raw: dict[str, Any], manifest: Path) -> None:
    """``edit(raw)``, or ``edit(raw, manifest)`` for an edit that also rewrites files beside the
    manifest (e.g. the step table)."""
    import inspect

    required = [p for p in inspect.signature(edit).parameters.values() if p.default is p.empty]
    if len(required) >= 2:
        edit(raw, manifest)
    else:
        edit(raw)


def resign(manifest: Path, edit: Callable[..., None], key_path: Path) -> SigningKey:
    """Apply ``edit`` to the manifest's raw JSON (and its files, beside ``manifest``) and re-sign
    it with a new key at ``key_path``."""
    raw = json.loads(manifest.read_text(encoding="utf-8"))
    _apply(edit, raw, manifest)
    key = generate_key(key_path)
    body = {k: v for k, v in raw.items() if k != "signature"}
    raw["signature"] = sign_body(body, key).model_dump(mode="json")
    manifest.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return key


def resign_with(manifest: Path, edit: Callable[..., None], key: SigningKey) -> None:
    """Apply ``edit`` to the manifest's raw JSON and re-sign it with ``key`` (e.g. the real key:
    what an insider, or anyone who holds the key, can do). ``edit(raw)``, or ``edit(raw, manifest)``
    for an edit that also rewrites files beside the manifest (e.g. the step table)."""
    raw = json.loads(manifest.read_text(encoding="utf-8"))
    _apply(edit, raw, manifest)
    body = {k: v for k, v in raw.items() if k != "signature"}
    raw["signature"] = sign_body(body, key).model_dump(mode="json")
    manifest.write_text(json.dumps(raw, indent=1), encoding="utf-8")


def scale_losses(first: int, last: int, factor: float) -> Callable[[dict[str, Any], Path], None]:
    """An edit that multiplies the recorded losses of steps ``first``..``last`` by ``factor``:
    in the step table (rewritten, its new digest put in the manifest), or inline in a version 1."""
    def edit(raw: dict[str, Any], manifest: Path) -> None:
        if "steps" in raw:
            for record in raw["steps"]:
                if first <= record["step"] <= last:
                    record["loss"] = record["loss"] * factor
            return
        table = manifest.parent / raw["step_table"]["path"]
        columns = parse_table(table.read_bytes(), raw["step_table"]["rows"], str(table))
        loss = columns.loss.copy()
        chosen = (columns.step >= first) & (columns.step <= last)
        loss[chosen] = loss[chosen] * factor
        sha256, size = write_table(table, dataclasses.replace(columns, loss=loss))
        raw["step_table"].update(sha256=sha256, size=size)
    return edit
