"""The comparison, tensor, difference and attribution rules on small hand-made inputs."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from repro.audits.attribution import attribute
from repro.audits.comparison import compare_batches, compare_series, compare_steps, same_bits, ulps
from repro.audits.differences import environment_differences, package_differences, rank
from repro.audits.options import Tolerance
from repro.audits.report import BatchComparison, CheckpointComparison, Difference, Likelihood
from repro.audits.tensors import compare_checkpoint
from repro.records.hashing import sha256_tensor
from repro.records.manifest import StepRecord

TOL = Tolerance()


def _next_float32(x: float) -> float:
    (i,) = struct.unpack("<i", struct.pack("<f", x))
    return struct.unpack("<f", struct.pack("<i", i + 1))[0]


def test_bits_and_ulps() -> None:
    x = struct.unpack("<f", struct.pack("<f", 6.5434))[0]
    assert same_bits(x, x) and not same_bits(0.0, -0.0)
    assert ulps(x, _next_float32(x)) == 1
    assert ulps(-x, -_next_float32(x)) == 1 and ulps(0.0, -0.0) == 0
    assert ulps(0.1, math.nextafter(0.1, 1.0)) == 1  # neither is a float32 number: float64 ulps
    assert ulps(x, x * 1.01) > 10_000  # an edited value is counted in the trainer's float32 ulps


def test_series_verdicts() -> None:
    rec = {1: 6.5, 2: 6.25, 3: 6.0}
    assert compare_series("loss", rec, dict(rec), TOL).verdict == "bitwise"
    near = compare_series("loss", rec, {1: 6.5, 2: _next_float32(6.25), 3: 6.0}, TOL)
    assert (near.verdict, near.first_difference_step, near.first_difference_ulps, near.identical) == \
        ("within_tolerance", 2, 1, 2)
    far = compare_series("loss", rec, {1: 6.5, 2: 6.25, 3: 6.1}, TOL)
    assert (far.verdict, far.first_beyond_tolerance_step, far.max_step) == ("diverged", 3, 3)
    assert far.max_abs_diff == pytest.approx(0.1)
    short = compare_series("loss", rec, {1: 6.5, 2: 6.25}, TOL)
    assert short.verdict == "diverged" and short.unmatched == [3]


def test_growth_is_measured_as_a_doubling_time() -> None:
    rec = dict.fromkeys(range(1, 41), 5.0)
    new = {s: 5.0 + (1e-7 * 2 ** ((s - 1) / 5) if s > 1 else 0.0) for s in rec}
    series = compare_series("loss", rec, new, Tolerance(atol=1.0, rtol=0.0))
    assert series.doubling_steps == pytest.approx(5.0, rel=0.05)
    assert "doubling about every 5.0 steps" in series.growth


def test_tolerance_is_absolute_plus_relative() -> None:
    tol = Tolerance(atol=1e-3, rtol=1e-2)
    assert tol.allows(10.0, 10.1005) and not tol.allows(10.0, 10.1015)  # bound: 0.001 + 0.01 * 10
    assert not Tolerance(atol=0.0, rtol=0.0).allows(1.0, _next_float32(1.0))


def _step(step: int, loss: float, batch: str = "b") -> StepRecord:
    return StepRecord(step=step, loss=loss, lr=1e-3, grad_norm=1.0, tokens=128, batch=f"{batch}{step}")


def test_batches_are_compared_apart_from_numbers() -> None:
    rec = [_step(1, 6.0), _step(2, 5.9)]
    losses, _others, batches, details = compare_steps(rec, [_step(1, 6.0), _step(2, 5.9, batch="x")], TOL)
    assert losses.verdict == "bitwise" and not batches.identical and batches.first_difference_step == 2
    assert [d.batch_match for d in details] == [True, False]
    assert compare_batches({1: "a"}, {1: "a", 2: "b"}).differing_steps == 1


def _checkpoint(tmp_path: Path, name: str, tensors: dict) -> tuple[Path, dict[str, str]]:
    from safetensors.torch import save_file

    path = tmp_path / f"{name}.safetensors"
    save_file(tensors, str(path))
    return path, {k: sha256_tensor(v) for k, v in tensors.items()}


def test_checkpoints_are_compared_tensor_by_tensor(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    w = torch.linspace(-1, 1, 100)
    base = {"model.w": w, "optim.step": torch.tensor([5], dtype=torch.int64), "gen": torch.arange(4, dtype=torch.uint8)}
    rec = _checkpoint(tmp_path, "rec", base)
    same = compare_checkpoint(10, *rec, *_checkpoint(tmp_path, "same", dict(base)), TOL, False)
    assert (same.verdict, same.identical, same.differences) == ("bitwise", 3, [])

    nudged = dict(base, **{"model.w": w + 1e-6})
    near = compare_checkpoint(10, *rec, *_checkpoint(tmp_path, "near", nudged), TOL, False)
    assert near.verdict == "within_tolerance" and near.identical == 2
    (d,) = near.differences
    assert d.name == "model.w" and d.status == "within_tolerance" and d.differing_elements == 100
    assert d.max_abs_diff == pytest.approx(1e-6, rel=0.1)
    assert d.rel_l2 == pytest.approx(1e-6 * 10 / w.norm().item(), rel=0.1)

    broken = dict(base, **{"optim.step": torch.tensor([6], dtype=torch.int64), "model.w": w * 2})
    far = compare_checkpoint(10, *rec, *_checkpoint(tmp_path, "far", broken), TOL, False)
    assert far.verdict == "diverged"
    assert {d.name: d.status for d in far.differences} == {"model.w": "differs", "optim.step": "differs"}
    assert next(d for d in far.differences if d.name == "model.w").rel_l2 == pytest.approx(1.0)

    on_gpu = dict(base, **{"repro.rng.cuda0": torch.zeros(8, dtype=torch.uint8)})
    cuda = compare_checkpoint(10, *rec, *_checkpoint(tmp_path, "cuda", on_gpu), TOL, True)
    assert cuda.verdict == "within_tolerance" and cuda.differences[0].status == "device_only"


def test_differences_are_ranked_by_how_likely_they_change_numbers(smoke_run: Path) -> None:
    from repro.records.manifest_file import load_manifest

    env = load_manifest(smoke_run).manifest.environment
    here = env.model_copy(update={
        "torch_version": "9.9.9", "torch_threads": 1, "kernel": "other",
        "env_vars": {**env.env_vars, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        "distributions": {**env.distributions, "numpy": "0.0.1", "left-pad": "1.0"},
    })
    found = rank(environment_differences(env, here))
    fields = [d.field for d in found]
    assert fields[:2] == ["environment.torch_version", "environment.torch_threads"]
    assert "env.OMP_NUM_THREADS" not in fields  # the same change as torch_threads, listed once
    assert fields.index("package numpy") < fields.index("package left-pad")
    assert found[-1].likelihood == "low"
    assert [d.field for d in package_differences({"torch": "1", "a": "1"}, {"torch": "2", "a": "1"})] == []


def _diff(category: str, likelihood: Likelihood = "high") -> Difference:
    return Difference(category=category, field=f"{category}.x", recorded="a", here="b", likelihood=likelihood)


def test_attribution_rules() -> None:
    rec = dict.fromkeys(range(1, 11), 6.0)
    drift = compare_series("loss", rec, {**rec, 4: _next_float32(6.0)}, TOL)
    jump = compare_series("loss", rec, {**rec, 6: 6.5}, TOL)
    same_batches = BatchComparison(compared=10, identical=True, first_difference_step=None, differing_steps=0)
    other_batches = BatchComparison(compared=10, identical=False, first_difference_step=3, differing_steps=8)
    bitwise_ckpt = [CheckpointComparison(step=10, verdict="bitwise", tensors=3, identical=3, differences=[])]
    moved_ckpt = [CheckpointComparison(step=10, verdict="diverged", tensors=3, identical=0, differences=[])]

    assert attribute("within_tolerance", drift, [], same_batches, [], [_diff("threads")]).kind == "environment"
    assert attribute("diverged", jump, [], same_batches, moved_ckpt, [_diff("code")]).kind == "code"
    data_and_device = [_diff("data", "certain"), _diff("device")]
    assert attribute("diverged", jump, [], same_batches, moved_ckpt, data_and_device).kind == "data"
    assert attribute("diverged", jump, [], other_batches, moved_ckpt, []).kind == "data_order"
    assert attribute("diverged", jump, [], same_batches, bitwise_ckpt, [_diff("threads")]).kind == "records"
    plain = attribute("diverged", drift, [], same_batches, moved_ckpt, [_diff("packages", "none")])
    assert plain.kind == "nondeterminism" and "nondeterminism in the trainer, a bug" in plain.summary
    assert plain.causes == ["nondeterminism in the trainer (a bug)"]  # an unimported package is no cause
    low = attribute("diverged", drift, [], same_batches, moved_ckpt, [_diff("platform", "low")])
    assert low.kind == "nondeterminism" and low.causes == ["x a → b", "nondeterminism in the trainer (a bug)"]
    assert "nondeterminism in the trainer, a bug" not in low.summary  # not said while something differs
    unknown = attribute("diverged", drift, [], same_batches, moved_ckpt, [], code_known=False)
    assert unknown.kind == "unknown" and "an unrecorded code change" in unknown.summary
    assert "nondeterminism in the trainer, a bug" not in unknown.summary
    abrupt = attribute("diverged", jump, [], same_batches, moved_ckpt, [])
    assert abrupt.kind == "nondeterminism" and "edited records" in abrupt.summary
    assert attribute("bitwise", drift, [], same_batches, [], []).kind == "none"


def test_gradient_norms_get_their_own_wider_tolerance() -> None:
    """CPU vs CUDA moved gradient norms by up to 1.3e-3 (relative) while losses moved by 2e-5."""
    tol = Tolerance()
    assert tol.for_field("grad_norm").allows(1.0, 1.0 + 1.3e-3)
    assert not tol.allows(1.0, 1.0 + 1.3e-3)  # the same change in a loss is beyond tolerance
    assert not tol.for_field("grad_norm").allows(1.0, 1.02)
    assert tol.for_field("lr") == tol
