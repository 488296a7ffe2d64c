"""Recorded vs rerun, step by step: losses (exact bits), other per-step scalars, batch
fingerprints and validation losses.

Bits are compared on the float64 values the manifest stores (float32 losses are stored exactly).
Differences are also counted in units in the last place (ulps): of float32 when either value is a
float32 number, as the GPT's losses are, else of float64. Batch fingerprints never get a
tolerance: a different fingerprint is a different batch, so data-order drift is reported apart
from numeric drift.

The per-step comparison works on columns (:class:`repro.records.steptable.StepColumns`) with NumPy, so a
million steps compare in about a second; :func:`same_bits` and :func:`ulps` are the scalar rules
the vectorised code follows.
"""

from __future__ import annotations

import gc
import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from repro.audits.options import Tolerance
from repro.audits.report import (
    BatchComparison,
    CheckpointComparison,
    SeriesComparison,
    StepDetail,
    ValidationDetail,
    Verdict,
)
from repro.records.manifest import StepRecord, ValidationRecord
from repro.records.steptable import StepColumns
from repro.text import plural

Array = npt.NDArray[Any]
_FLOAT32_MAX = 3.4028234663852886e38


def same_bits(a: float, b: float) -> bool:
    """Whether two floats have identical float64 bit patterns (so 0.0 and -0.0 differ)."""
    return struct.pack("<d", a) == struct.pack("<d", b)


def _is_float32(x: float) -> bool:
    if math.isfinite(x) and abs(x) > _FLOAT32_MAX:
        return False  # beyond float32's range (struct would refuse to pack it)
    return not math.isfinite(x) or struct.unpack("<f", struct.pack("<f", x))[0] == x


def _ordered(x: float, single: bool) -> int:
    """The float's bits as an integer that increases with the value (adjacent floats differ by 1)."""
    if single:
        i: int = struct.unpack("<i", struct.pack("<f", x))[0]
        return i if i >= 0 else -(2**31) - i
    i = struct.unpack("<q", struct.pack("<d", x))[0]
    return i if i >= 0 else -(2**63) - i


def ulps(a: float, b: float) -> int:
    """Distance in units in the last place: of float32 if either is a float32 number (the
    trainer's precision; an edited value need not be one), else of float64."""
    single = _is_float32(a) or _is_float32(b)
    if single and max(abs(a), abs(b)) > _FLOAT32_MAX:
        single = False  # beyond float32's range
    return abs(_ordered(a, single) - _ordered(b, single))


def ulps_array(a: Array, b: Array) -> Array:
    """:func:`ulps` of aligned float64 arrays, as uint64 (a float64 distance can exceed int64)."""
    with np.errstate(over="ignore", invalid="ignore"):
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        single = (~np.isfinite(a) | (a32 == a)) | (~np.isfinite(b) | (b32 == b))
        single &= ~(np.maximum(np.abs(a), np.abs(b)) > _FLOAT32_MAX)

    def ordered(x: Array, x32: Array) -> Array:
        i32 = x32.view(np.int32).astype(np.int64)
        o32 = np.where(i32 >= 0, i32, -(2**31) - i32)
        i64 = x.view(np.int64)
        o64 = np.where(i64 >= 0, i64, np.int64(-(2**63)) - i64)
        return np.where(single, o32, o64)

    oa, ob = ordered(a, a32), ordered(b, b32)
    ua, ub = oa.view(np.uint64), ob.view(np.uint64)
    distance: Array = np.where(oa >= ob, ua - ub, ub - ua)  # modular: exact, the distance is below 2**64
    return distance


def _allows(tolerance: Tolerance, a: Array, b: Array) -> Array:
    """:meth:`Tolerance.allows` over aligned arrays (the same float operations)."""
    allowed: Array = np.abs(b - a) <= tolerance.atol + tolerance.rtol * np.abs(a)
    return allowed


def _growth(steps: Array, d: Array) -> tuple[float | None, str]:
    """Fit log2|diff| against the step over the differing steps; return doubling steps and words."""
    nonzero = d > 0
    if not nonzero.any():
        return None, "bit-identical"
    xs, dz = steps[nonzero].astype(np.float64), d[nonzero]
    first_step, first = int(steps[nonzero][0]), float(dz[0])
    k = int(np.argmax(dz))
    peak_step, peak = int(steps[nonzero][k]), float(dz[k])
    doubling = None
    if len(dz) >= 4:
        ys = np.log2(dz)
        dx = xs - xs.mean()
        var = float(np.dot(dx, dx))
        slope = float(np.dot(dx, ys - ys.mean())) / var if var else 0.0
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


def _series(name: str, steps: Array, *, a: Array, b: Array, unmatched: Array, tolerance: Tolerance) -> SeriesComparison:
    """Compare one quantity: ``a`` (recorded) and ``b`` (rerun) aligned on the sorted ``steps``."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = np.abs(b - a)
    differs = a.view(np.int64) != b.view(np.int64)
    identical = int(len(a) - np.count_nonzero(differs))
    idx = np.flatnonzero(differs)
    first_diff = first_ulps = beyond = max_step = None
    max_abs = max_rel = 0.0
    max_ulps = 0
    if idx.size:
        u = ulps_array(a[idx], b[idx])
        first_diff, first_ulps = int(steps[idx[0]]), int(u[0])
        out = idx[~_allows(tolerance, a[idx], b[idx])]
        beyond = int(steps[out[0]]) if out.size else None
        j = int(np.argmax(d[idx]))
        max_abs, max_step = float(d[idx][j]), int(steps[idx[j]])
        ai = a[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(ai != 0, d[idx] / np.abs(ai), d[idx])
        max_rel = max(0.0, float(rel.max()))
        max_ulps = int(u.max())
    verdict: Verdict
    if unmatched.size or beyond is not None:
        verdict = "diverged"
    elif identical == len(a):
        verdict = "bitwise"
    else:
        verdict = "within_tolerance"
    doubling, growth = _growth(steps, d)
    if unmatched.size:
        growth += f"; {unmatched.size} step(s) on one side only (first {int(unmatched[0])})"
    return SeriesComparison(
        name=name, verdict=verdict, compared=len(a), identical=identical, unmatched=unmatched.tolist(),
        first_difference_step=first_diff, first_difference_ulps=first_ulps,
        first_beyond_tolerance_step=beyond, max_abs_diff=max_abs, max_rel_diff=max_rel, max_ulps=max_ulps,
        max_step=max_step, final_abs_diff=float(d[-1]) if len(d) else 0.0, doubling_steps=doubling,
        growth=growth,
    )


def _align(recorded: Array, rerun: Array) -> tuple[Array, Array, Array, Array]:
    """Common steps (sorted) with their indices on either side, and the steps of one side only."""
    common, ia, ib = np.intersect1d(recorded, rerun, assume_unique=True, return_indices=True)
    return common, ia, ib, np.setxor1d(recorded, rerun, assume_unique=True)


def compare_series(name: str, recorded: Mapping[int, float], rerun: Mapping[int, float],
                   tolerance: Tolerance) -> SeriesComparison:
    """Compare one per-step quantity on the steps either side has."""
    rs = np.fromiter(recorded.keys(), dtype=np.int64, count=len(recorded))
    ns = np.fromiter(rerun.keys(), dtype=np.int64, count=len(rerun))
    common, ia, ib, unmatched = _align(rs, ns)
    a = np.fromiter(recorded.values(), dtype=np.float64, count=len(recorded))[ia]
    b = np.fromiter(rerun.values(), dtype=np.float64, count=len(rerun))[ib]
    return _series(name, common, a=a, b=b, unmatched=unmatched, tolerance=tolerance)


def compare_batches(recorded: Mapping[int, str], rerun: Mapping[int, str]) -> BatchComparison:
    """Compare batch fingerprints on the steps both sides have (missing steps count as differing)."""
    steps = sorted(set(recorded) | set(rerun))
    differing = [s for s in steps if recorded.get(s) != rerun.get(s)]
    return BatchComparison(
        compared=len(steps), identical=not differing,
        first_difference_step=differing[0] if differing else None, differing_steps=len(differing),
    )


def _by_step(columns: StepColumns | Iterable[StepRecord]) -> StepColumns:
    """Columns sorted by step, one row per step (the last, where a step repeats)."""
    cols = columns if isinstance(columns, StepColumns) else StepColumns.from_records(columns)
    s = cols.step
    if len(s) < 2 or bool((np.diff(s) > 0).all()):
        return cols
    order = np.argsort(s, kind="stable")
    ordered = s[order]
    last = np.append(ordered[1:] != ordered[:-1], True)
    return cols.take(order[last])


def compare_steps(recorded: StepColumns | Iterable[StepRecord], rerun: StepColumns | Iterable[StepRecord],
                  tolerance: Tolerance
                  ) -> tuple[SeriesComparison, list[SeriesComparison], BatchComparison, list[StepDetail]]:
    """Losses, gradient norms, learning rates, token counts and batches of the audited steps.

    Takes columns (``manifest.step_columns()``) or step records. Returns the loss comparison, the
    other series, the batch comparison and the per-step table.
    """
    rec, new = _by_step(recorded), _by_step(rerun)
    common, ia, ib, unmatched = _align(rec.step, new.step)
    a, b = rec.take(ia), new.take(ib)
    losses = _series("loss", common, a=a.loss, b=b.loss, unmatched=unmatched, tolerance=tolerance)
    exact = Tolerance(atol=0.0, rtol=0.0)  # token counts are integers: no tolerance
    others = [
        _series(field, common, a=getattr(a, field), b=getattr(b, field), unmatched=unmatched,
                tolerance=exact if field == "tokens" else tolerance.for_field(field))
        for field in ("grad_norm", "lr", "tokens")
    ]
    batch_match = a.batch == b.batch
    differing = np.union1d(common[~batch_match], unmatched)
    batches = BatchComparison(
        compared=len(common) + len(unmatched), identical=not differing.size,
        first_difference_step=int(differing[0]) if differing.size else None, differing_steps=int(differing.size),
    )
    return losses, others, batches, _details(common, a, b=b, batch_match=batch_match, unmatched=unmatched,
                                             sides=(rec, new), tolerance=tolerance)


_DETAIL_FIELDS = frozenset(StepDetail.model_fields)
_SET_FIELDS_SET = BaseModel.__dict__["__pydantic_fields_set__"].__set__  # the slots behind a model
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__


def _detail(values: dict[str, Any]) -> StepDetail:
    """A StepDetail from values that already have its fields' types (ints, floats, bools, lists
    of str, from ``tolist()``), made without validation: a million steps are a million rows, and
    validating each costs several times more than the whole vectorised comparison.
    What ``StepDetail.model_construct`` does, without its per-field default handling."""
    detail = object.__new__(StepDetail)
    object.__setattr__(detail, "__dict__", values)
    _SET_FIELDS_SET(detail, _DETAIL_FIELDS)
    _SET_EXTRA(detail, None)
    _SET_PRIVATE(detail, None)
    return detail


def _details(common: Array, a: StepColumns, *, b: StepColumns, batch_match: Array, unmatched: Array,
             sides: tuple[StepColumns, StepColumns], tolerance: Tolerance) -> list[StepDetail]:
    """The per-step table over every step either side has, in step order."""
    d = np.abs(b.loss - a.loss)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(a.loss != 0, d / np.abs(a.loss), d)
    grad_bad = ~_allows(tolerance.for_field("grad_norm"), a.grad_norm, b.grad_norm)
    lr_bad = ~_allows(tolerance.for_field("lr"), a.lr, b.lr)
    tokens_bad = a.tokens != b.tokens
    within = _allows(tolerance, a.loss, b.loss) & ~grad_bad & ~lr_bad & ~tokens_bad
    flags = grad_bad.astype(np.int8) + 2 * lr_bad + 4 * tokens_bad
    others = [[f for bit, f in ((1, "grad_norm"), (2, "lr"), (4, "tokens")) if code & bit] for code in range(8)]
    collecting = gc.isenabled()
    gc.disable()  # a million new containers would trigger full collections over all of them
    try:
        rows = [
            _detail({"step": s, "recorded_loss": x, "rerun_loss": y, "abs_diff": dd, "rel_diff": r, "ulps": u,
                     "within_tolerance": w, "batch_match": m, "other_differences": list(others[f]) if f else []})
            for s, x, y, dd, r, u, w, m, f in zip(
                common.tolist(), a.loss.tolist(), b.loss.tolist(), d.tolist(), rel.tolist(),
                ulps_array(a.loss, b.loss).tolist(), within.tolist(), batch_match.tolist(), flags.tolist(),
                strict=True,
            )
        ]
    finally:
        if collecting:
            gc.enable()
    if unmatched.size:
        rec, new = (dict(zip(c.step.tolist(), c.loss.tolist(), strict=True)) for c in sides)
        one_sided = [
            StepDetail(step=s, recorded_loss=rec.get(s), rerun_loss=new.get(s), abs_diff=None, rel_diff=None,
                       ulps=None, within_tolerance=False, batch_match=None,
                       other_differences=["not recorded" if s not in rec else "not rerun"])
            for s in unmatched.tolist()
        ]
        rows = sorted(rows + one_sided, key=lambda r: r.step)
    return rows


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


def verdict_summary(verdict: Verdict, losses: SeriesComparison, checkpoints: list[CheckpointComparison], cause: str,
                    *, checkpoint_noun: str = "checkpoint", against: str = "") -> str:
    """One line for people: the verdict and its evidence (the audit's and the diff's summary)."""
    ckpts = plural(len(checkpoints), checkpoint_noun)
    if verdict == "bitwise":
        return f"bitwise: {losses.compared} steps and {ckpts} bit-identical{against}"
    if verdict == "within_tolerance":
        return (f"within tolerance: {losses.compared} steps, largest loss difference {losses.max_abs_diff:.3g} "
                f"({plural(losses.max_ulps, 'ulp')}); {cause}")
    step = losses.first_beyond_tolerance_step
    where = f"losses beyond tolerance from step {step}" if step is not None else "differences beyond tolerance"
    return f"diverged: {where}; {cause}"
