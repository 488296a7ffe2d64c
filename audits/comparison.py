"""Recorded vs rerun, step by step: losses (exact bits), other per-step scalars, batch
fingerprints and validation losses.

Bits are compared on the float64 values the manifest stores (float32 losses are stored exactly).
Differences are also counted in units in the last place (ulps): of float32 when either value is a
float32 number, as the GPT's losses are, else of float64. Batch fingerprints never get a
tolerance: a different fingerprint is a different batch, so data-order drift is reported apart
from numeric drift.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping

from repro.audits.options import Tolerance
from repro.audits.report import BatchComparison, SeriesComparison, StepDetail, ValidationDetail
from repro.manifest import StepRecord, ValidationRecord


def same_bits(a: float, b: float) -> bool:
    """Whether two floats have identical float64 bit patterns (so 0.0 and -0.0 differ)."""
    return struct.pack("<d", a) == struct.pack("<d", b)


def _is_float32(x: float) -> bool:
    return not math.isfinite(x) or struct.unpack("<f", struct.pack("<f", x))[0] == x


def _ordered(x: float, single: bool) -> int:
    """The float's bits as an integer that increases with the value (adjacent floats differ by 1)."""
    if single:
        i = struct.unpack("<i", struct.pack("<f", x))[0]
        return i if i >= 0 else -(2**31) - i
    i = struct.unpack("<q", struct.pack("<d", x))[0]
    return i if i >= 0 else -(2**63) - i


def ulps(a: float, b: float) -> int:
    """Distance in units in the last place: of float32 if either is a float32 number (the
    trainer's precision; an edited value need not be one), else of float64."""
    single = _is_float32(a) or _is_float32(b)
    if single and max(abs(a), abs(b)) > 3.4028234663852886e38:
        single = False  # beyond float32's range
    return abs(_ordered(a, single) - _ordered(b, single))


def _growth(diffs: list[tuple[int, float]]) -> tuple[float | None, str]:
    """Fit log2|diff| against the step over the differing steps; return doubling steps and words."""
    nonzero = [(s, d) for s, d in diffs if d > 0]
    if not nonzero:
        return None, "bit-identical"
    first_step, first = nonzero[0]
    peak_step, peak = max(nonzero, key=lambda p: p[1])
    doubling = None
    if len(nonzero) >= 4:
        xs = [float(s) for s, _ in nonzero]
        ys = [math.log2(d) for _, d in nonzero]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
        if slope > 0 and peak >= 4 * first:
            doubling = 1.0 / slope
    text = f"first {first:.3g} at step {first_step}, largest {peak:.3g} at step {peak_step}"
    if doubling is not None:
        text += f"; grows, doubling about every {doubling:.1f} steps"
    elif peak >= 4 * first:
        text += "; grows irregularly"
    else:
        text += "; stays at the same order of magnitude"
    return doubling, text


def compare_series(name: str, recorded: Mapping[int, float], rerun: Mapping[int, float],
                   tolerance: Tolerance) -> SeriesComparison:
    """Compare one per-step quantity on the steps either side has."""
    common = sorted(set(recorded) & set(rerun))
    unmatched = sorted(set(recorded) ^ set(rerun))
    identical = 0
    first_diff = first_ulps = beyond = max_step = None
    max_abs = max_rel = 0.0
    max_ulps = 0
    diffs: list[tuple[int, float]] = []
    for step in common:
        a, b = recorded[step], rerun[step]
        d = abs(b - a)
        diffs.append((step, d))
        if same_bits(a, b):
            identical += 1
            continue
        u = ulps(a, b)
        if first_diff is None:
            first_diff, first_ulps = step, u
        if beyond is None and not tolerance.allows(a, b):
            beyond = step
        if d > max_abs or max_step is None:
            max_abs, max_step = d, step
        max_rel = max(max_rel, d / abs(a) if a else d)
        max_ulps = max(max_ulps, u)
    if unmatched or beyond is not None:
        verdict = "diverged"
    elif identical == len(common):
        verdict = "bitwise"
    else:
        verdict = "within_tolerance"
    doubling, growth = _growth(diffs)
    if unmatched:
        growth += f"; {len(unmatched)} step(s) on one side only (first {unmatched[0]})"
    return SeriesComparison(
        name=name, verdict=verdict, compared=len(common), identical=identical, unmatched=unmatched,
        first_difference_step=first_diff, first_difference_ulps=first_ulps,
        first_beyond_tolerance_step=beyond, max_abs_diff=max_abs, max_rel_diff=max_rel, max_ulps=max_ulps,
        max_step=max_step, final_abs_diff=diffs[-1][1] if diffs else 0.0, doubling_steps=doubling,
        growth=growth,
    )


def compare_batches(recorded: Mapping[int, str], rerun: Mapping[int, str]) -> BatchComparison:
    """Compare batch fingerprints on the steps both sides have (missing steps count as differing)."""
    steps = sorted(set(recorded) | set(rerun))
    differing = [s for s in steps if recorded.get(s) != rerun.get(s)]
    return BatchComparison(
        compared=len(steps), identical=not differing,
        first_difference_step=differing[0] if differing else None, differing_steps=len(differing),
    )


def _by_step(records: Iterable[StepRecord]) -> dict[int, StepRecord]:
    return {r.step: r for r in records}


def compare_steps(recorded: Iterable[StepRecord], rerun: Iterable[StepRecord], tolerance: Tolerance
                  ) -> tuple[SeriesComparison, list[SeriesComparison], BatchComparison, list[StepDetail]]:
    """Losses, gradient norms, learning rates, token counts and batches of the audited steps.

    Returns the loss comparison, the other series, the batch comparison and the per-step table.
    """
    rec, new = _by_step(recorded), _by_step(rerun)
    losses = compare_series("loss", {s: r.loss for s, r in rec.items()}, {s: r.loss for s, r in new.items()}, tolerance)
    exact = Tolerance(atol=0.0, rtol=0.0)  # token counts are integers: no tolerance
    others = [
        compare_series(field, {s: float(getattr(r, field)) for s, r in rec.items()},
                       {s: float(getattr(r, field)) for s, r in new.items()},
                       exact if field == "tokens" else tolerance.for_field(field))
        for field in ("grad_norm", "lr", "tokens")
    ]
    batches = compare_batches({s: r.batch for s, r in rec.items()}, {s: r.batch for s, r in new.items()})
    details = []
    for step in sorted(set(rec) | set(new)):
        a, b = rec.get(step), new.get(step)
        if a is None or b is None:
            details.append(StepDetail(
                step=step, recorded_loss=a.loss if a else None, rerun_loss=b.loss if b else None,
                abs_diff=None, rel_diff=None, ulps=None, within_tolerance=False, batch_match=None,
                other_differences=["not recorded" if a is None else "not rerun"],
            ))
            continue
        d = abs(b.loss - a.loss)
        other = [f for f in ("grad_norm", "lr") if not tolerance.for_field(f).allows(getattr(a, f), getattr(b, f))]
        if a.tokens != b.tokens:
            other.append("tokens")
        details.append(StepDetail(
            step=step, recorded_loss=a.loss, rerun_loss=b.loss, abs_diff=d,
            rel_diff=d / abs(a.loss) if a.loss else d,
            ulps=ulps(a.loss, b.loss), within_tolerance=tolerance.allows(a.loss, b.loss) and not other,
            batch_match=a.batch == b.batch, other_differences=other,
        ))
    return losses, others, batches, details


def compare_validation(recorded: Iterable[ValidationRecord], rerun: Iterable[ValidationRecord],
                       tolerance: Tolerance) -> tuple[SeriesComparison, list[ValidationDetail]]:
    """Validation losses at the steps either side evaluated."""
    rec = {v.step: v.loss for v in recorded}
    new = {v.step: v.loss for v in rerun}
    series = compare_series("validation loss", rec, new, tolerance)
    details = [
        ValidationDetail(
            step=s, recorded=rec.get(s), rerun=new.get(s),
            abs_diff=abs(new[s] - rec[s]) if s in rec and s in new else None,
            within_tolerance=s in rec and s in new and tolerance.allows(rec[s], new[s]),
        )
        for s in sorted(set(rec) | set(new))
    ]
    return series, details
