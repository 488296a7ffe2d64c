"""Turning a pydantic ``ValidationError`` into the one line a user reads (one formatter for all)."""

from __future__ import annotations

from pydantic import ValidationError

from repro.text import plural


def location(error_loc: tuple[int | str, ...], empty: str = "(top level)") -> str:
    """A pydantic error location as a dotted path (``run.settings.threads``)."""
    return ".".join(str(part) for part in error_loc) or empty


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """The first error's dotted location and message."""
    first = exc.errors()[0]
    return location(first["loc"]), first["msg"]


def describe(exc: ValidationError, limit: int = 1, empty: str = "(top level)") -> str:
    """``"field a.b: message"`` for the first ``limit`` errors, and how many more there are."""
    errors = exc.errors()
    parts = [f"field {location(e['loc'], empty)}: {e['msg']}" for e in errors[:limit]]
    more = len(errors) - limit
    return "; ".join(parts) + (f" (and {plural(more, 'more problem')})" if more > 0 else "")


def option_problem(exc: ValidationError) -> str:
    """``"--grad-rtol: message"``: the first error named as the command-line option it came from."""
    first = exc.errors()[0]
    return f"--{str(first['loc'][-1]).replace('_', '-')}: {first['msg']}"
