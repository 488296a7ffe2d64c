"""Small text helpers every report uses: timestamps, plurals, short name lists, and control
characters made visible (digests are shortened by :func:`repro.records.hashing.short_digest`).

Pure functions without I/O or rich, so records, the judgment and every renderer share them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone

__all__ = ["escape_text", "first_names", "plural", "utc_now"]


def utc_now() -> str:
    """Now, in UTC, as ISO 8601 to the second (``2026-12-06T01:56:28+00:00``): every report's timestamp."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 file"``, ``"3 files"``, ``"0 files"``; ``plural_form`` for irregular nouns (``"1 process"``,
    ``plural(2, "process", "processes")``). Counts get thousands separators (``"12,000 steps"``)."""
    many = plural_form if plural_form is not None else noun + "s"
    return f"{count:,} {noun if count == 1 else many}"


def first_names(names: Iterable[str], limit: int = 5, separator: str = ", ") -> str:
    """The first ``limit`` names, then how many more: ``"a, b, c and 4 more"``; ``"-"`` for none."""
    listed = list(names)
    if not listed:
        return "-"
    shown = separator.join(listed[:limit])
    rest = len(listed) - limit
    return f"{shown} and {rest:,} more" if rest > 0 else shown


# C0 controls (but tab), DEL, C1 controls, and the Unicode format characters that reorder or hide
# text on a terminal (bidirectional overrides and isolates, zero-width joiners and marks).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_CONTROL_KEEP_NEWLINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b", "\x07": "\\a", "\x08": "\\b"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_text(text: object, keep_newlines: bool = False) -> str:
    """``str(text)`` with every control character shown as an escape (``ESC`` as ``\\x1b``, ``CR`` as
    ``\\r``, ``BEL`` as ``\\a``, C1 and DEL as ``\\x9b``/``\\x7f``, bidirectional overrides as
    ``\\u202e``), so text from a manifest, a report, a file name or an error cannot move the cursor,
    erase a line, set the window title, write the clipboard (OSC 52) or reorder what a reader sees.
    Newlines are escaped too unless ``keep_newlines`` (for text whose line structure is ours)."""
    pattern = _CONTROL_KEEP_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(_visible, str(text))
