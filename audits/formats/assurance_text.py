"""A spot-check's assurance in words, shared by the console, JUnit and HTML reports."""

from __future__ import annotations

from repro.audits.assurance import at_least
from repro.audits.report import Assurance, Segment


def _spans(segments: list[Segment]) -> str:
    return ", ".join(f"{s.start + 1}-{s.end}" for s in segments) or "none"


def picked_words(a: Assurance) -> str:
    """Which segments were checked and why, and what share of the steps that is."""
    budget = ""
    if a.budget is not None and a.budget_seconds is not None and a.estimated_seconds is not None:
        budget = (f"; budget {a.budget} = {a.budget_seconds:.0f} s of replay, estimated "
                  f"{a.estimated_seconds:.0f} s from the recorded timing")
    return (f"{len(a.largest_update) + len(a.random)} of {a.segments_total} segments, {a.steps_replayed} of "
            f"{a.steps_total} steps ({a.fraction_of_steps:.1%}): largest recorded update {_spans(a.largest_update)}; "
            f"random (seed {a.seed}) {_spans(a.random)}{budget}")


def catch_words(a: Assurance) -> str:
    """The catch probability for each fabricated share of steps, on one line."""
    return ", ".join(f"≥ {c.fraction:.0%} fabricated: ≥ {at_least(c.probability)}" for c in a.catch)


def assurance_rows(a: Assurance) -> list[tuple[str, str]]:
    """Everything the report says about a spot-check's assurance, as (label, sentence) rows."""
    return [("checked", picked_words(a)), ("assurance", a.statement), ("catch probability", catch_words(a)),
            *(("cannot see", b) for b in a.blind_spots)]


def assurance_lines(a: Assurance) -> list[str]:
    """:func:`assurance_rows` as lines of text."""
    return [f"{label}: {text}" for label, text in assurance_rows(a)]
