"""Canonical JSON: the one byte form of a JSON value that is signed and hashed.

Keys sorted, no insignificant whitespace, UTF-8, no NaN or infinity. Floats use Python's shortest
round-tripping repr, so a float written and read back is the same float and the same bytes.
Parsing rejects what a lenient parser would silently accept or collapse: duplicate keys, NaN and
infinity (also as overflowing literals such as ``1e400``), absurdly long integers and nesting far
deeper than any manifest, so every parsed value has exactly one canonical form.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from repro.errors import ManifestFormatError

MAX_DEPTH = 64
"""Deepest nesting accepted; a manifest is about 6 deep. Deeper input would only risk recursion."""


def canonical_bytes(value: Any) -> bytes:
    """Return the canonical UTF-8 bytes of a JSON-compatible ``value``."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Only an unpaired surrogate (legal in JSON's \u escapes, not in Unicode) gets here.
        raise ManifestFormatError("JSON text holds an unpaired surrogate, which is not Unicode") from exc


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, val in pairs:
        if key in result:
            raise ManifestFormatError(f"duplicate key {key!r} in JSON object")
        result[key] = val
    return result


def _reject_constant(name: str) -> Any:
    raise ManifestFormatError(f"non-standard JSON constant {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ManifestFormatError(f"number {text[:20]} is out of range for a float")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_value(value: Any, what: str) -> None:
    """Reject nesting deeper than :data:`MAX_DEPTH` and unpaired surrogates (iteratively).

    A surrogate can only come from a ``\\u`` escape that names half a character; it is not
    Unicode and has no UTF-8 (so no canonical) form.
    """
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ManifestFormatError(f"{what} is nested more than {MAX_DEPTH} levels deep; it is not a manifest")
        if isinstance(node, dict):
            if any(_SURROGATE.search(key) for key in node):
                raise ManifestFormatError(f"{what} has a key with an unpaired surrogate escape; it is not Unicode text")
            children = node.values()
        else:
            children = node
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif isinstance(child, str) and _SURROGATE.search(child):
                raise ManifestFormatError(
                    f"{what} has a string with an unpaired surrogate escape; it is not Unicode text"
                )


def parse_json(data: bytes, what: str) -> Any:
    """Parse strict JSON ``data`` (duplicate keys and NaN rejected); ``what`` names it in errors."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestFormatError(f"{what} is not UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise ManifestFormatError(f"{what} is empty")
    try:
        value = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as exc:
        raise ManifestFormatError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "it may be truncated or hand-edited"
        ) from exc
    except RecursionError as exc:
        raise ManifestFormatError(f"{what} is nested too deeply to be a manifest") from exc
    except ManifestFormatError as exc:
        raise ManifestFormatError(f"{what}: {exc}") from exc
    except ValueError as exc:  # e.g. an integer longer than Python converts (4300 digits)
        raise ManifestFormatError(f"{what} holds a number too long to be a manifest value") from exc
    if isinstance(value, str) and _SURROGATE.search(value):
        raise ManifestFormatError(f"{what} is a string with an unpaired surrogate escape; it is not Unicode text")
    if isinstance(value, (dict, list)):
        _check_value(value, what)
    return value


def decode_base64(value: str) -> bytes:
    """Decode standard base64, accepting only the one form that encodes the result.

    Base64 has spare bits and optional forms: several strings decode to the same bytes. Signature
    blocks, envelopes and trust lists accept only the canonical one (what ``b64encode`` writes), so
    no character of them can change unnoticed. Raises :class:`ValueError` otherwise.
    """
    import base64
    import binascii

    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not valid base64 ({exc})") from exc
    if base64.b64encode(raw).decode("ascii") != value:
        raise ValueError("not in canonical base64")
    return raw
