"""Choosing which segments a budgeted spot-check replays (``repro audit --budget 10%`` or ``5m``).

Pure functions of the manifest's signed records and the auditor's seed: no file is read, nothing
is trained. The run is cut at its signed checkpoints (:func:`repro.audits.spotcheck.segments_of`);
each segment's replay time is estimated from the recorded timing (the step table's per-step
seconds and the recorded validation seconds, plus one start-up for the whole audit, since every
segment replays in one training process: :func:`cost_model`). Proof-of-Learning's pick comes
first: the segments with the largest recorded update (the signed ``update_norm`` of the
checkpoint at their end), at most a third of what fits; the rest of the budget goes to segments
drawn uniformly at random, with ``random.Random(seed)``, from those left. The seed is the
auditor's (drawn unpredictably unless given) and is recorded in the report.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from repro.audits.report import Segment
from repro.errors import UsageError
from repro.records.manifest import RunManifest, Timing

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
    a validation pass from the recorded validation seconds (``timing.eval_seconds``; manifests
    made before it was recorded count it in the start-up instead). The one training process
    starts once, and that is charged as everything the recorded run did besides steps and
    validation: its setup (start-up, data, model) and repro's overhead (capture, fingerprinting,
    writing every checkpoint and the manifest), which covers loading and saving the replayed
    segments' checkpoints, so no segment is charged a fixed cost of its own.
    """
    timing = manifest.timing
    recorded = list(timing.step_seconds)
    mean = timing.train_seconds / max(len(recorded) or total_steps, 1)
    seconds = tuple((recorded[i] if i < len(recorded) else mean) for i in range(total_steps))
    validation = frozenset(v.step for v in manifest.validation)
    known = timing.eval_seconds is not None and not timing.resumed_from_step
    passes = timing.eval_seconds / len(validation) if known and validation and timing.eval_seconds else 0.0
    return CostModel(
        startup=timing.setup_seconds + timing.overhead_seconds + (0.0 if known else _unknown_eval(timing)),
        step_seconds=seconds, validation_pass=passes, validation_steps=validation, per_segment=0.0,
    )


def _unknown_eval(timing: Timing) -> float:
    """Validation seconds of a manifest that did not record them: whatever of the wall is not
    setup, training or overhead (all of it when the run was resumed)."""
    return max(timing.wall_seconds - timing.setup_seconds - timing.train_seconds - timing.overhead_seconds, 0.0)


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


def _most_picks(cost: CostModel, fixed: list[Segment], pool: Sequence[Segment], budget: float) -> int:
    """The most segments that can be drawn from ``pool`` besides ``fixed`` whichever they turn out
    to be: the count whose costliest choice still fits ``budget``."""
    costliest = sorted(pool, key=cost.segment, reverse=True)
    count = 0
    while count < len(costliest) and cost.total([*fixed, *costliest[:count + 1]]) <= budget:
        count += 1
    return count


def select_within(segments: Sequence[Segment], cost: CostModel, budget_seconds: float, seed: int,
                  norms: dict[Segment, float] | None = None) -> Selection:
    """The segments whose replay fits ``budget_seconds``: the largest recorded updates first (at
    most a third of what fits, none when no norm is recorded), then random ones.

    The random picks are a uniform sample without replacement (``random.Random(seed).sample``) of
    the segments left, as many as fit even if the costliest ones were drawn: so every segment is
    equally likely to be checked whatever it costs, and the probability model of
    :mod:`repro.audits.assurance` holds exactly. Raises :class:`UsageError` when that is not one.
    """
    fits = _most_picks(cost, [], segments, budget_seconds)
    if fits == 0:
        costliest = max(segments, key=cost.segment)
        raise UsageError(
            f"the budget ({budget_seconds:.0f} s of replay) does not fit one segment drawn at random: the costliest, "
            f"steps {costliest.start + 1}-{costliest.end}, needs about {cost.total([costliest]):.0f} s by the run's "
            "recorded timing, and every segment must be affordable to be equally likely; raise --budget, or record "
            "checkpoints more often (--set checkpoint_every=N) for shorter segments"
        )
    ranked = [s for s, _ in sorted((norms or {}).items(), key=lambda item: (-item[1], item[0].start))]
    largest = ranked[:fits // 3]
    while True:
        pool = [s for s in segments if s not in largest]
        count = _most_picks(cost, largest, pool, budget_seconds)
        if count > 0 or not largest:
            break
        largest = largest[:-1]  # the random picks are what the assurance rests on: keep at least one
    rng = random.Random(seed)  # noqa: S311 - seeded so that the choice can be repeated
    drawn = rng.sample(pool, count)
    return Selection(largest=sorted(largest, key=lambda s: s.start), drawn=sorted(drawn, key=lambda s: s.start),
                     estimated_seconds=cost.total([*largest, *drawn]))
