"""Canonical JSON: the one byte form of a JSON value that is signed and hashed.

Keys sorted, no insignificant whitespace, UTF-8, no NaN or infinity. Floats use Python's shortest
round-tripping repr, so a float written and read back is the same float and the same bytes.
Parsing rejects duplicate keys, which a lenient parser would silently collapse.
"""

from __future__ import annotations

import json
from typing import Any

from repro.errors import ManifestFormatError


def canonical_bytes(value: Any) -> bytes:
    """Return the canonical UTF-8 bytes of a JSON-compatible ``value``."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, val in pairs:
        if key in result:
            raise ManifestFormatError(f"duplicate key {key!r} in JSON object")
        result[key] = val
    return result


def _reject_constant(name: str) -> Any:
    raise ManifestFormatError(f"non-standard JSON constant {name} is not allowed")


def parse_json(data: bytes, what: str) -> Any:
    """Parse strict JSON ``data`` (duplicate keys and NaN rejected); ``what`` names it in errors."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestFormatError(f"{what} is not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise ManifestFormatError(f"{what} is empty")
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise ManifestFormatError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "it may be truncated or hand-edited"
        ) from exc
    except RecursionError as exc:
        raise ManifestFormatError(f"{what} is nested too deeply to be a manifest") from exc
