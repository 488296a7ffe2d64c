"""Spot-check audits: segment choice, replay from recorded checkpoints, and a fabricated late
segment caught by replaying it."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.audits.report import Segment
from repro.audits.spotcheck import choose_segments, segments_of
from repro.cli import main
from repro.errors import UsageError
from repro.records.manifest_file import load_manifest
from tests.audits.forgery import resign, scale_losses
from tests.helpers import read_report


def test_a_run_is_cut_at_its_checkpoints(smoke_run: Path) -> None:
    m = load_manifest(smoke_run).manifest
    assert segments_of(m, 20) == [Segment(start=0, end=10), Segment(start=10, end=20)]


def test_the_choice_of_segments_is_repeatable_from_its_seed() -> None:
    segments = [Segment(start=i * 10, end=(i + 1) * 10) for i in range(30)]
    first = choose_segments(segments, 4, seed=7)
    assert first == choose_segments(segments, 4, seed=7)
    assert len(set(first)) == 4 and first == sorted(first, key=lambda s: s.start)
    assert {tuple(choose_segments(segments, 4, seed=s)) for s in range(20)} != {tuple(first)}
    with pytest.raises(UsageError, match="only 30"):
        choose_segments(segments, 31, seed=0)


def test_replaying_every_segment_from_its_checkpoint_is_bitwise(smoke_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["audit", str(smoke_run), "--segments", "2", "--json", str(tmp_path / "r.json")]) == 0
    report = read_report(tmp_path / "r.json")
    assert report.mode == "spot-check" and report.verdict == "bitwise"
    assert report.segments == [Segment(start=0, end=10), Segment(start=10, end=20)]
    assert report.spot_check_seed is not None and report.options.seed == report.spot_check_seed
    assert report.fraction_replayed == 1.0 and [c.step for c in report.checkpoints] == [10, 20]
    assert "segment 2/2: steps 11-20" in capsys.readouterr().err


def _seed_choosing(segment: Segment, segments: list[Segment]) -> int:
    return next(s for s in range(1000) if choose_segments(segments, 1, s) == [segment])


def test_a_fabricated_late_segment_is_caught_by_replaying_it(smoke_copy: Path, tmp_path: Path, capsys) -> None:
    resign(smoke_copy, scale_losses(11, 20, 0.98), tmp_path / "forger.pem")  # "better" losses, new key
    m = load_manifest(smoke_copy).manifest
    late = Segment(start=10, end=20)
    seed = _seed_choosing(late, segments_of(m, 20))

    code = main(["audit", str(smoke_copy), "--segments", "1", "--seed", str(seed),
                 "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"spot-check of 1 segment, steps 11-20: 50% of the run replayed (seed {seed})" in out
    report = read_report(tmp_path / "r.json")
    assert report.segments == [late] and report.fraction_replayed == 0.5
    assert report.verdict == "diverged" and report.losses.first_beyond_tolerance_step == 11
    assert report.steps_compared == 10 and [s.step for s in report.steps] == list(range(11, 21))
    assert [c.step for c in report.checkpoints] == [20] and report.checkpoints[0].verdict == "bitwise"
    assert report.attribution.kind == "records"
    assert (tmp_path / "r.png").stat().st_size > 10_000


def test_checkpoints_record_a_signed_update_norm(smoke_run: Path) -> None:
    from safetensors.torch import load_file

    m = load_manifest(smoke_run).manifest
    first, second = m.checkpoints
    assert first.update_norm is not None and second.update_norm is not None
    folder = smoke_run.parent
    before, after = load_file(folder / first.path), load_file(folder / second.path)
    floating = [k for k, v in after.items() if v.is_floating_point() and v.dim() and not k.startswith("repro.")]
    assert any(k.startswith("optim.") and not after[k].dim() for k in after)  # step counters: not counted
    expected = sum(float((after[k].double() - before[k].double()).square().sum()) for k in floating) ** 0.5
    assert second.update_norm == pytest.approx(expected, rel=1e-12)


def test_one_training_process_reloads_a_checkpoint_after_training_past_it(smoke_run: Path, tmp_path: Path) -> None:
    """Two stretches in one process, the second resuming step 10 after the first trained to 20:
    the reload leaves nothing of the first stretch behind (steps 11-20 bit-identical twice)."""
    from repro.audits import rerun
    from repro.records.manifest_file import load_manifest as load

    loaded = load(smoke_run)
    m = loaded.manifest
    resolved = rerun.plan(m, None, None)
    ten = next(c for c in m.checkpoints if c.step == 10)
    done = rerun.rerun_segments(resolved, loaded, tmp_path / "work", [(None, 20), (ten, 20)])
    assert done.result.span_starts == [0, 10]
    steps = done.result.steps
    assert [s.step for s in steps] == [*range(1, 21), *range(11, 21)]
    assert steps[10:20] == steps[20:] == list(m.steps)[10:20]


def test_a_budgeted_spot_check_states_what_it_checked_and_what_that_proves(
        smoke_run: Path, tmp_path: Path, capsys) -> None:
    code = main(["audit", str(smoke_run), "--budget", "100%", "--seed", "5", "--json", str(tmp_path / "r.json"),
                 "--junit", str(tmp_path / "r.xml"), "--html", str(tmp_path / "r.html")])
    out = capsys.readouterr().out
    assert code == 0
    report = read_report(tmp_path / "r.json")
    a = report.assurance
    assert report.mode == "spot-check" and report.verdict == "bitwise" and a is not None
    assert a.budget == "100%" and a.seed == 5 and report.options.budget == "100%"
    assert a.budget_seconds is not None and a.estimated_seconds is not None
    assert a.estimated_seconds <= a.budget_seconds
    assert sorted([*a.largest_update, *a.random], key=lambda s: s.start) == report.segments
    assert a.statement.startswith("a run with ≥ 20% of its steps fabricated would have been caught with probability")
    assert "assurance: a run with" in " ".join(out.split())
    assert "cannot see" in out
    assert a.statement in (tmp_path / "r.xml").read_text(encoding="utf-8")
    assert "a run with ≥ 20% of its steps" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_a_budget_too_small_for_any_segment_is_refused_before_compute(smoke_run: Path, capsys) -> None:
    assert main(["audit", str(smoke_run), "--budget", "1s"]) == 2
    err = capsys.readouterr().err
    assert "does not fit one segment" in err and "raise --budget" in err
    assert main(["audit", str(smoke_run), "--budget", "lots"]) == 2
    assert "--budget 'lots'" in capsys.readouterr().err
