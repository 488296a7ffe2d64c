"""Choosing which segments a budgeted spot-check replays (``repro audit --budget 10%`` or ``5m``).

Pure functions of the manifest's signed records and the auditor's seed: no file is read, nothing
is trained. The run is cut at its signed checkpoints (:func:`repro.audits.spotcheck.segments_of`);
each segment's replay time is estimated from the recorded timing (the step table's per-step
seconds, validation passes and checkpoint writing from the recorded wall time, and one start-up
for the whole audit, since every segment replays in one training process). Proof-of-Learning's
pick comes first: the segments with the largest recorded update (the signed ``update_norm`` of
the checkpoint at their end), at most a third of what fits; the rest of the budget goes to
segments drawn uniformly at random, with ``random.Random(seed)``, from those left. The seed is
the auditor's (drawn unpredictably unless given) and is recorded in the report.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from repro.audits.report import Segment
from repro.errors import UsageError
from repro.records.manifest import RunManifest

_BUDGET = re.compile(r"^\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>%|s|m|h)\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Budget:
    """A replay budget: a share of the recorded run's wall time, or seconds."""

    text: str
    fraction: float | None = None
    seconds: float | None = None

    def in_seconds(self, recorded_wall: float) -> float:
        """The budget in seconds of replay, for a run that took ``recorded_wall`` seconds."""
        return self.seconds if self.seconds is not None else (self.fraction or 0.0) * recorded_wall


def parse_budget(text: str) -> Budget:
    """``"10%"`` (of the recorded wall time), ``"90s"``, ``"5m"`` or ``"2h"``; anything else is a
    :class:`UsageError` saying what is accepted."""
    match = _BUDGET.match(text)
    if match is None or float(match.group("value")) <= 0:
        raise UsageError(f"--budget {text!r}: give a share of the run's wall time (e.g. 10%) or a time "
                         "(e.g. 90s, 5m, 2h), greater than zero")
    value, unit = float(match.group("value")), match.group("unit")
    if unit == "%":
        if value > 100:
            raise UsageError(f"--budget {text}: a share of the run is at most 100%; for a whole audit leave "
                             "out --budget")
        return Budget(text=text.strip(), fraction=value / 100)
    return Budget(text=text.strip(), seconds=value * _UNIT_SECONDS[unit])


@dataclass(frozen=True)
class CostModel:
    """Estimated replay seconds, from the recorded timing of the run."""

    startup: float
    step_seconds: tuple[float, ...]
    validation_pass: float
    validation_steps: frozenset[int]
    per_segment: float

    def segment(self, segment: Segment) -> float:
        """Seconds to replay ``segment`` (its steps, validation passes, loading and saving its checkpoints)."""
        steps = sum(self.step_seconds[segment.start:segment.end])
        passes = sum(1 for v in self.validation_steps if segment.start < v <= segment.end)
        return steps + passes * self.validation_pass + self.per_segment

    def total(self, segments: Sequence[Segment]) -> float:
        """Seconds to replay ``segments`` in one training process."""
        return self.startup + sum(self.segment(s) for s in segments) if segments else 0.0


def cost_model(manifest: RunManifest, total_steps: int) -> CostModel:
    """What replaying the run's segments costs, as its own recorded timing says.

    Per-step seconds from the step table (the mean training step where a step time is missing);
    validation passes share the wall time not spent on setup, training or repro's own work;
    each segment loads and saves a checkpoint (a share of repro's recorded overhead); the one
    training process starts once (the recorded setup: start-up, data, model).
    """
    timing = manifest.timing
    recorded = list(timing.step_seconds)
    mean = timing.train_seconds / max(len(recorded) or total_steps, 1)
    seconds = tuple((recorded[i] if i < len(recorded) else mean) for i in range(total_steps))
    validation = frozenset(v.step for v in manifest.validation)
    rest = max(timing.wall_seconds - timing.setup_seconds - timing.train_seconds - timing.overhead_seconds, 0.0)
    return CostModel(
        startup=timing.setup_seconds, step_seconds=seconds,
        validation_pass=rest / len(validation) if validation else 0.0, validation_steps=validation,
        per_segment=timing.overhead_seconds / (len(manifest.checkpoints) + 1),
    )


def update_norms(manifest: RunManifest, segments: Sequence[Segment]) -> dict[Segment, float]:
    """Each segment's recorded update: the signed ``update_norm`` of the checkpoint at its end
    (segments whose end checkpoint records none are left out)."""
    by_step = {c.step: c.update_norm for c in manifest.checkpoints if c.update_norm is not None}
    return {s: by_step[s.end] for s in segments if s.end in by_step}


@dataclass(frozen=True)
class Selection:
    """The segments a spot-check replays, and why."""

    largest: list[Segment]
    drawn: list[Segment]
    estimated_seconds: float

    @property
    def segments(self) -> list[Segment]:
        """Every picked segment, in run order."""
        return sorted([*self.largest, *self.drawn], key=lambda s: s.start)


def _fits(cost: CostModel, picked: list[Segment], candidate: Segment, budget: float) -> bool:
    return cost.total([*picked, candidate]) <= budget


def select_within(segments: Sequence[Segment], cost: CostModel, budget_seconds: float, seed: int,
                  norms: dict[Segment, float] | None = None) -> Selection:
    """The segments whose replay fits ``budget_seconds``: the largest recorded updates first (at
    most a third of what fits, none when no norm is recorded), then random ones.

    Random picks come from ``random.Random(seed)``'s shuffle of the segments left, taken in that
    order while they fit (so with equal costs they are a uniform sample without replacement).
    Raises :class:`UsageError` when not even the cheapest segment fits.
    """
    cheapest = min(segments, key=cost.segment)
    if cost.total([cheapest]) > budget_seconds:
        raise UsageError(
            f"the budget ({budget_seconds:.0f} s of replay) does not fit one segment: the cheapest, steps "
            f"{cheapest.start + 1}-{cheapest.end}, needs about {cost.total([cheapest]):.0f} s by the run's recorded "
            "timing; raise --budget, or record checkpoints more often (--set checkpoint_every=N) for shorter segments"
        )
    rng = random.Random(seed)  # noqa: S311 - seeded so that the choice can be repeated
    order = list(segments)
    rng.shuffle(order)
    fits_count = 0
    probe: list[Segment] = []
    for s in sorted(segments, key=cost.segment):  # how many segments fit at all (the cheapest first)
        if _fits(cost, probe, s, budget_seconds):
            probe.append(s)
            fits_count += 1
    largest_quota = fits_count // 3 if norms else 0
    largest: list[Segment] = []
    ranked = sorted((norms or {}).items(), key=lambda item: (-item[1], item[0].start))
    for s, _ in ranked:
        if len(largest) == largest_quota:
            break
        if _fits(cost, largest, s, budget_seconds):
            largest.append(s)
    drawn: list[Segment] = []
    for s in order:
        if s not in largest and _fits(cost, [*largest, *drawn], s, budget_seconds):
            drawn.append(s)
    return Selection(largest=sorted(largest, key=lambda s: s.start), drawn=sorted(drawn, key=lambda s: s.start),
                     estimated_seconds=cost.total([*largest, *drawn]))

