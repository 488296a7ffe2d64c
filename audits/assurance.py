"""What a spot-check proves: the chance that it would have caught a run with part of it fabricated.

The model (docs/audit.md, "What a spot-check proves"). The run is cut at its signed checkpoints
into N segments. A segment is *fabricated* when the checkpoint at its end is not what the
trainer computes from the checkpoint at its start and the recorded data (records edited, steps
skipped, weights made up); replaying a fabricated segment shows it, replaying a genuine one
does not. An audit replays some segments chosen deterministically from the manifest (the
largest recorded updates, Proof-of-Learning's pick) and k chosen uniformly at random, without
replacement, from the P segments left (the *pool*), with a seed the forger cannot know.

The deterministic picks are chosen from numbers the forger recorded, so they prove nothing
against a forger who knows the rule: the bound counts only the random picks, and assumes the
forger put every fabricated segment in the pool. Fabricating a fraction f of the run's S steps
touches at least m segments, the fewest pool segments whose steps add up to ⌈f·S⌉ (the longest
ones first; with equal segments m = ⌈f·S / length⌉). Then the audit misses every fabricated
segment with probability C(P - m, k) / C(P, k), and catches at least one with probability

    p(f) >= 1 - C(P - m, k) / C(P, k)        (1 when m > P - k)

The largest-update picks add what they add: a forger who does not steer them, or fabricates
where the update really is largest, is caught by them outright.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from repro.audits.report import Assurance, CatchProbability, Segment

FRACTIONS = (0.05, 0.1, 0.2, 1 / 3, 0.5)
"""The fabricated fractions of steps the report states a catch probability for."""

BLIND_SPOTS = (
    "a fabricated or edited segment that was not replayed (the chance of that is the miss probability above)",
    "anything not written in a checkpoint or the step records (e.g. state a trainer keeps outside "
    "state_tensors)",
    "a forger who actually trained every fabricated segment from the recorded checkpoints: a replay "
    "proves the step from one signed checkpoint to the next, not that the data or code were the intended ones",
    "which segments are largest-update picks is decided by norms the run's signer recorded; only the random "
    "picks count towards the probabilities",
)
"""What a spot-check cannot see, stated in every spot-check report."""


def segments_touched(pool_lengths: Sequence[int], fabricated_steps: int) -> int:
    """The fewest pool segments that hold ``fabricated_steps`` steps (longest first); more than
    the pool (``len + 1``) when the pool does not hold that many."""
    if fabricated_steps <= 0:
        return 0
    total = 0
    for count, length in enumerate(sorted(pool_lengths, reverse=True), 1):
        total += length
        if total >= fabricated_steps:
            return count
    return len(pool_lengths) + 1


def catch_probability(pool: int, random_picks: int, touched: int) -> float:
    """``1 - C(pool - touched, k) / C(pool, k)``: the chance that ``k`` segments drawn uniformly
    without replacement from ``pool`` include at least one of ``touched`` fabricated ones."""
    if random_picks < 0 or random_picks > pool:
        raise ValueError(f"cannot draw {random_picks} of {pool} segments")
    if touched <= 0:
        return 0.0
    if touched > pool - random_picks:
        return 1.0
    return 1.0 - math.comb(pool - touched, random_picks) / math.comb(pool, random_picks)


def catch_table(pool_lengths: Sequence[int], random_picks: int, steps_total: int,
                fractions: Sequence[float] = FRACTIONS) -> list[CatchProbability]:
    """The catch probability for each fabricated fraction of the run's ``steps_total`` steps."""
    out = []
    for fraction in fractions:
        touched = segments_touched(pool_lengths, math.ceil(fraction * steps_total - 1e-9))
        out.append(CatchProbability(fraction=fraction, segments_touched=touched,
                                    probability=catch_probability(len(pool_lengths), random_picks, touched)))
    return out


def at_least(probability: float) -> str:
    """A lower bound with two decimals, rounded down so that it stays one (the epsilon: in floats
    1 - 0.8 is 0.19999999999999996, which is 0.20)."""
    return f"{math.floor(probability * 100 + 1e-9) / 100:.2f}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def statement(catch: CatchProbability, random_picks: int, pool: int) -> str:
    """The assurance in words, e.g. "a run with ≥ 20% of its steps fabricated would have been
    caught with probability ≥ 0.50 (3 random segments of 30)"."""
    plural = "s" if random_picks != 1 else ""
    return (f"a run with ≥ {_percent(catch.fraction)} of its steps fabricated would have been caught with "
            f"probability ≥ {at_least(catch.probability)} ({random_picks} random segment{plural} of {pool})")


def assess(segments: Sequence[Segment], largest: Sequence[Segment], drawn: Sequence[Segment],
           seed: int | None, *, headline: float = 0.2, budget: str | None = None,
           estimated_seconds: float | None = None, budget_seconds: float | None = None) -> Assurance:
    """The assurance of replaying ``largest`` and ``drawn`` (random) among the run's ``segments``."""
    picked = {*largest, *drawn}
    pool = [s for s in segments if s not in set(largest)]
    lengths = [s.end - s.start for s in pool]
    steps_total = sum(s.end - s.start for s in segments)
    replayed = sum(s.end - s.start for s in picked)
    table = catch_table(lengths, len(drawn), steps_total)
    head = catch_table(lengths, len(drawn), steps_total, [headline])[0]
    return Assurance(
        segments_total=len(segments), largest_update=sorted(largest, key=lambda s: s.start),
        random=sorted(drawn, key=lambda s: s.start), pool=len(pool), steps_replayed=replayed,
        steps_total=steps_total, fraction_of_steps=replayed / steps_total if steps_total else 0.0, seed=seed,
        budget=budget, estimated_seconds=estimated_seconds, budget_seconds=budget_seconds,
        catch=table, statement=statement(head, len(drawn), len(pool)), blind_spots=list(BLIND_SPOTS),
    )


def simulate(pool_lengths: Sequence[int], random_picks: int, fabricated: Sequence[int], trials: int,
             seed: int) -> float:
    """Monte-Carlo estimate of the catch probability: the share of ``trials`` draws of
    ``random_picks`` pool segments (``random.Random(seed)``) that include an index in ``fabricated``."""
    rng = random.Random(seed)  # noqa: S311 - a seeded simulation, not a secret
    bad = set(fabricated)
    caught = sum(bool(bad.intersection(rng.sample(range(len(pool_lengths)), random_picks))) for _ in range(trials))
    return caught / trials
