"""Forging manifests for tests: edit the JSON, then sign it again.

:func:`resign` signs with someone else's key: what an attacker without the original key can do;
the signature then verifies (by the wrong key), so only a trust list or a rerun can catch it.
:func:`resign_with` signs with a given key, e.g. the real one: then only the checks of the files
against the record, and of the record against itself, can catch it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro.keys import SigningKey, generate_key
from repro.signing import sign_body


def resign(manifest: Path, edit: Callable[[dict[str, Any]], None], key_path: Path) -> SigningKey:
    """Apply ``edit`` to the manifest's raw JSON and re-sign it with a new key at ``key_path``."""
    raw = json.loads(manifest.read_text(encoding="utf-8"))
    edit(raw)
    key = generate_key(key_path)
    body = {k: v for k, v in raw.items() if k != "signature"}
    raw["signature"] = sign_body(body, key).model_dump(mode="json")
    manifest.write_text(json.dumps(raw, indent=1), encoding="utf-8")
    return key


def resign_with(manifest: Path, edit: Callable[[dict[str, Any]], None], key: SigningKey) -> None:
    """Apply ``edit`` to the manifest's raw JSON and re-sign it with ``key`` (e.g. the real key:
    what an insider, or anyone who holds the key, can do)."""
    raw = json.loads(manifest.read_text(encoding="utf-8"))
    edit(raw)
    body = {k: v for k, v in raw.items() if k != "signature"}
    raw["signature"] = sign_body(body, key).model_dump(mode="json")
    manifest.write_text(json.dumps(raw, indent=1), encoding="utf-8")


def scale_losses(first: int, last: int, factor: float) -> Callable[[dict[str, Any]], None]:
    """An edit that multiplies the recorded losses of steps ``first``..``last`` by ``factor``."""
    def edit(raw: dict[str, Any]) -> None:
        for record in raw["steps"]:
            if first <= record["step"] <= last:
                record["loss"] = record["loss"] * factor
    return edit
