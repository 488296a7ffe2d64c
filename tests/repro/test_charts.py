"""Inline SVG charts: long curves are thinned without losing their spikes, so pages stay small."""

from __future__ import annotations

import math
from pathlib import Path

from repro.records.manifest import StepRecord
from repro.records.manifest_file import load_manifest
from repro.rendering.charts import MAX_POINTS, Series, downsample, line_chart
from repro.rendering.pages import Banner, Verification, show_page


def test_downsampling_keeps_the_extremes_and_the_ends() -> None:
    points = [(float(i), math.sin(i / 500)) for i in range(1, 200_001)]
    points[123_456] = (123_457.0, 50.0)  # one spike
    kept = downsample(points)
    assert len(kept) <= MAX_POINTS
    assert (123_457.0, 50.0) in kept and kept[0] == points[0] and kept[-1] == points[-1]
    assert [x for x, _ in kept] == sorted(x for x, _ in kept)


def test_log_charts_break_at_zero_and_mark_it_on_the_floor() -> None:
    diffs = [(1, 0.0), (2, 1e-7), (3, 0.0), (4, 2e-6)]
    chart = line_chart("d", [Series("diff", [(s, v if v > 0 else math.nan) for s, v in diffs], "#000"),
                             Series("identical", [(s, 0.0) for s, v in diffs if v == 0], "#0a0", "ticks")],
                       log_y=True, floor=1e-10, band=[(s, 1e-5) for s, _ in diffs])
    line, ticks = chart.series
    assert line.path.count("M") == 2  # two separate pieces: step 2, then step 4
    assert len(ticks.markers) == 2 and chart.band.startswith("M")
    assert all(label.startswith("1e") for _, label in chart.y_ticks)


def test_a_long_run_makes_a_small_page(smoke_run: Path) -> None:
    manifest = load_manifest(smoke_run).manifest
    template = manifest.steps[0]
    steps = [StepRecord(step=i, loss=5 + 1 / i, lr=1e-3, grad_norm=1.0, tokens=1, batch=template.batch)
             for i in range(1, 100_001)]
    long_run = manifest.model_copy(update={"steps": steps})
    page = show_page(long_run, "long.json", Verification(Banner("VERIFIED", "good", "test")))
    assert len(page) < 800_000, len(page)
