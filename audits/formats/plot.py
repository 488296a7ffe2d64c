"""``--plot FILE.png``: recorded and rerun loss curves, and their difference per step.

Top: the recorded losses over the whole run and the rerun's over the replayed steps (validation
losses as markers). Bottom: ``|rerun - recorded|`` per step on a log scale with the tolerance
``atol + rtol·|recorded|`` for reference; bit-identical steps, which a log scale cannot show, sit
on a marked floor line. Rendered with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from repro.audits.report import AuditReport
from repro.rendering.plotting import new_figure, save_png
from repro.text import plural

_COLOURS = {"bitwise": "#2e7d32", "within_tolerance": "#e65100", "diverged": "#c62828"}


def _figure(report: AuditReport, recorded_curve: list[tuple[int, float]]) -> Any:  # a matplotlib Figure
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(9, 6.5)  # the Agg set-up `repro run --plot` uses too
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    colour = _COLOURS[report.verdict]

    if recorded_curve:
        xs, ys = zip(*recorded_curve, strict=True)
        top.plot(xs, ys, color="#1565c0", lw=1.6, label="recorded")
    rerun = [(d.step, d.rerun_loss) for d in report.steps if d.rerun_loss is not None]
    for seg in report.segments:  # one line per segment, so gaps between segments stay gaps
        pts = [(s, v) for s, v in rerun if seg.start < s <= seg.end]
        if pts:
            xs, ys = zip(*pts, strict=True)
            top.plot(xs, ys, color=colour, lw=1.2, ls="--", label="rerun" if seg == report.segments[0] else None)
    val_rec = [(v.step, v.recorded) for v in report.validation if v.recorded is not None]
    val_new = [(v.step, v.rerun) for v in report.validation if v.rerun is not None]
    if val_rec:
        top.scatter(*zip(*val_rec, strict=True), marker="o", s=36, facecolors="none", edgecolors="#1565c0",
                    label="recorded val")
    if val_new:
        top.scatter(*zip(*val_new, strict=True), marker="x", s=36, color=colour, label="rerun val")
    if report.mode == "spot-check":
        for seg in report.segments:
            top.axvspan(seg.start, seg.end, color=colour, alpha=0.08)
    top.set_ylabel("training loss")
    top.legend(loc="upper right", fontsize=8)
    top.grid(alpha=0.3)
    top.set_title(f"{report.verdict.replace('_', ' ')}: {report.manifest.trainer}/{report.manifest.preset or '-'}, "
                  f"{report.mode}, rerun on {report.rerun.device} with "
                  f"{plural(report.rerun.threads, 'thread')}",
                  fontsize=10, color=colour)

    tol = report.options.tolerance
    diffs = [(d.step, d.abs_diff, d.recorded_loss) for d in report.steps if d.abs_diff is not None]
    nonzero = [a for _, a, _ in diffs if a > 0]
    zero = [s for s, a, _ in diffs if a == 0]
    limit = [(s, tol.atol + tol.rtol * abs(r)) for s, _, r in diffs if r is not None]
    scale = nonzero + [v for _, v in limit]
    # Below every difference and the tolerance: far below when bit-identical steps sit on the floor.
    floor = (min(scale) if scale else 1e-6) / (1000 if zero else 10)
    ceiling = max([*scale, floor * 100]) * 10
    if limit:
        bottom.plot(*zip(*limit, strict=True), color="#616161", lw=1, ls=":", label="tolerance")
    if nonzero:
        # Bit-identical steps break the line (NaN) instead of joining differences across them.
        gapped = [a if a > 0 else math.nan for _, a, _ in diffs]
        bottom.plot([s for s, _, _ in diffs], gapped, color=colour, marker=".", lw=0.8, ms=5,
                    label="|rerun \N{MINUS SIGN} recorded|")
    if zero:
        bottom.scatter(zero, [floor] * len(zero), color="#2e7d32", marker="|", s=60, label="bit-identical (Δ = 0)")
    bottom.set_yscale("log")
    bottom.set_ylim(floor / 3, ceiling)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel("step")
    bottom.set_ylabel("|Δ loss|")
    bottom.legend(loc="upper left", fontsize=8, ncols=3)
    bottom.grid(alpha=0.3, which="major")
    return fig


def write_plot(report: AuditReport, path: Path, recorded_curve: list[tuple[int, float]] | None = None) -> None:
    """Render the plot to ``path`` (PNG) atomically.

    ``recorded_curve`` is the whole recorded run's (step, loss), to show replayed segments in
    context; by default only the replayed steps' recorded losses are drawn.
    """
    if recorded_curve is None:
        recorded_curve = [(d.step, d.recorded_loss) for d in report.steps if d.recorded_loss is not None]
    save_png(_figure(report, recorded_curve), Path(path))
