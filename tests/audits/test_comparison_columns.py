"""The vectorised step comparison gives exactly what the scalar rules give, and scales."""

from __future__ import annotations

import math
import struct
import time

import numpy as np

from repro.audits.comparison import compare_steps, ulps, ulps_array
from repro.audits.options import Tolerance
from repro.records.manifest import StepRecord
from repro.records.steptable import StepColumns


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def test_ulps_array_follows_the_scalar_rule() -> None:
    rng = np.random.default_rng(1)
    singles = [_f32(float(x)) for x in rng.standard_normal(200) * 10]
    pairs = [(a, math.nextafter(a, math.inf)) for a in singles]  # float64 neighbours of float32 numbers
    pairs += [(a, _f32(a * 1.001)) for a in singles]
    pairs += [(0.1, 0.1 + 1e-12), (0.0, -0.0), (-1.5, 1.5), (1e300, -1e300), (3.5e38, 3.4e38), (2.0, 2.0)]
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    assert ulps_array(a, b).tolist() == [ulps(x, y) for x, y in pairs]


def _record(step: int, loss: float, batch: int = 0, tokens: int = 64) -> StepRecord:
    return StepRecord(step=step, loss=loss, lr=1e-3 / step, grad_norm=1.0 + step / 100, tokens=tokens,
                      batch=f"{step + batch:016x}")


def test_columns_and_records_compare_the_same() -> None:
    rng = np.random.default_rng(2)
    losses = [_f32(float(x)) for x in 5 + rng.random(60)]
    recorded = [_record(s, losses[s - 1]) for s in range(1, 58)]  # 58..60 never recorded
    rerun = [_record(s, losses[s - 1]) for s in range(3, 61)]  # 1, 2 not rerun
    rerun[10] = _record(13, _f32(losses[12] * (1 + 2**-20)))  # a few ulps
    rerun[20] = _record(23, losses[22] + 0.5)  # beyond tolerance
    rerun[25] = _record(28, losses[27], batch=1)  # another batch
    rerun[30] = _record(33, losses[32], tokens=65)
    rerun.append(_record(40, losses[39]))  # a repeated step: the last one counts
    tol = Tolerance()
    by_records = compare_steps(recorded, rerun, tol)
    by_columns = compare_steps(StepColumns.from_records(recorded), StepColumns.from_records(rerun), tol)
    assert by_records == by_columns
    losses_cmp, others, batches, details = by_columns
    assert losses_cmp.verdict == "diverged" and losses_cmp.first_difference_step == 13
    assert losses_cmp.first_beyond_tolerance_step == 23 and losses_cmp.unmatched == [1, 2, 58, 59, 60]
    assert [o.verdict for o in others] == ["diverged"] * 3  # steps on one side only
    assert [(o.name, o.identical, o.compared) for o in others] == [
        ("grad_norm", 55, 55), ("lr", 55, 55), ("tokens", 54, 55)
    ]
    assert (batches.first_difference_step, batches.differing_steps) == (1, 6)
    assert [d.step for d in details] == list(range(1, 61))
    assert details[0].other_differences == ["not rerun"] and details[59].other_differences == ["not recorded"]
    assert details[59].rerun_loss == losses[59] and details[0].recorded_loss == losses[0]
    assert details[27].batch_match is False and details[32].other_differences == ["tokens"]
    assert details[12].rerun_loss is not None
    assert details[12].ulps == ulps(losses[12], details[12].rerun_loss) > 1 and details[12].within_tolerance


def test_a_million_steps_compare_in_seconds() -> None:
    n = 1_000_000
    rng = np.random.default_rng(3)
    recorded = StepColumns(
        step=np.arange(1, n + 1), loss=rng.random(n).astype(np.float32).astype(np.float64), lr=np.full(n, 1e-3),
        grad_norm=rng.random(n), tokens=np.full(n, 4096), batch=np.full(n, b"0123456789abcdef", dtype="S16"),
    )
    loss = recorded.loss.copy()
    loss[n // 2] = float(np.nextafter(np.float32(loss[n // 2]), np.float32(2)))
    rerun = StepColumns(step=recorded.step, loss=loss, lr=recorded.lr, grad_norm=recorded.grad_norm,
                        tokens=recorded.tokens, batch=recorded.batch)
    started = time.process_time()
    losses, _, batches, details = compare_steps(recorded, rerun, Tolerance())
    seconds = time.process_time() - started
    assert losses.verdict == "within_tolerance" and losses.first_difference_step == n // 2 + 1
    assert losses.identical == n - 1 and batches.identical and len(details) == n
    assert details[n // 2].ulps == 1 and details[n // 2 + 1].ulps == 0
    # Generous: about 2 s of CPU on the shared 2-core machine; per-row objects took minutes.
    assert seconds < 20, f"comparing {n} steps took {seconds:.1f} s of CPU"
