"""``--html FILE`` for ``repro audit`` and ``repro gate``: one self-contained page a reviewer opens.

The verdict comes first, big, in words and colour; then what was replayed and who signed it; the
loss curves recorded vs rerun, the per-step difference on a log scale with the tolerance band and
the bit-identical steps marked; learning rate and gradient norm; every checkpoint tensor (sortable);
the ranked environment/code/data differences; the likely cause; the spot-check segments; the
vulnerability scan. Rendering is :mod:`repro.rendering.pages` (Jinja2, autoescaped, inline SVG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from repro.audits.formats.assurance_text import assurance_rows
from repro.audits.formats.console import (
    cannot_matter,
    cannot_matter_words,
    config_words,
    lead_cause,
    replayed_words,
)
from repro.audits.gate import GateReport, ManifestResult
from repro.audits.gate_outputs import _VULN_WORDS, VERDICT_WORDS
from repro.audits.report import AuditReport, CheckpointComparison, Difference, Likelihood
from repro.records.manifest import RunManifest
from repro.rendering.charts import HALF, Chart, Series, line_chart
from repro.rendering.pages import BLUE, GREEN, GREY, PURPLE, RED, Banner, render, write_html
from repro.text import plural

MAX_STEP_ROWS = 2000
VERDICT_BANNER = {
    "bitwise": ("REPRODUCED: bit for bit", "good"),
    "within_tolerance": ("REPRODUCED: within tolerance", "warn"),
    "diverged": ("NOT REPRODUCED: diverged", "bad"),
}
TONE = {"bitwise": "good", "within_tolerance": "warn", "diverged": "bad"}
GATE_TONE = {"pass": "good", "not_reproduced": "bad", "vulnerable": "bad", "integrity_failure": "bad",
             "input_error": "bad", "could_not_check": "unknown"}
RERUN_COLOUR = {"bitwise": GREEN, "within_tolerance": "#e65100", "diverged": RED}
# One entry per value of ``Likelihood``: its sort rank (the order the differences table is ranked in)
# and its pill tone. ``none`` marks a difference the rerun never imported (see ``executed.py``).
LIKELIHOOD_TONE: dict[str, str] = {"certain": "bad", "high": "bad", "medium": "warn", "low": "unknown",
                                   "none": "unknown"}
LIKELIHOOD_RANK: dict[str, int] = {name: rank for rank, name in enumerate(get_args(Likelihood))}


@dataclass(frozen=True)
class TensorRow:
    """One checkpoint tensor, bit-identical or not."""

    step: int
    name: str
    status: str
    dtype: str | None = None
    shape: str = "-"
    max_abs_diff: float | None = None
    rel_l2: float | None = None
    differing: str = "-"


@dataclass(frozen=True)
class CheckpointRow:
    """One checkpoint in the "what was compared" table, measured as the tolerance measures it."""

    step: int
    verdict: str
    identical: int
    tensors: int
    not_identical: int
    max_rel_l2: float | None
    max_rel_l2_tensor: str | None
    missing: int

    @classmethod
    def of(cls, c: CheckpointComparison) -> CheckpointRow:
        """The row of ``c``: its largest relative L2 (what ``tensor_rtol`` limits), never a max of nothing."""
        measured = [d for d in c.differences if d.rel_l2 is not None]
        top = max(measured, key=lambda d: d.rel_l2 or 0.0) if measured else None
        missing = sum(d.status in ("missing_in_rerun", "only_in_rerun") for d in c.differences)
        return cls(c.step, c.verdict, c.identical, c.tensors, len(c.differences),
                   top.rel_l2 if top is not None else None, top.name if top is not None else None, missing)


@dataclass(frozen=True)
class AuditView:
    """Everything the audit section of a page shows, computed once."""

    report: AuditReport
    banner: Banner
    charts: list[Chart]
    tensors: list[TensorRow]
    tensor_note: str
    steps: list[Any]
    steps_note: str
    checkpoints: list[CheckpointRow] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    noise: list[Difference] = field(default_factory=list)
    noise_words: str = ""
    tone: dict[str, str] = field(default_factory=lambda: TONE)
    likelihood_tone: dict[str, str] = field(default_factory=lambda: LIKELIHOOD_TONE)
    likelihood_rank: dict[str, int] = field(default_factory=lambda: LIKELIHOOD_RANK)


def _threads(n: int) -> str:
    return plural(n, "thread")


def audit_banner(report: AuditReport) -> Banner:
    """The audit's verdict with what was replayed, who signed it, and the likely cause."""
    headline, tone = VERDICT_BANNER[report.verdict]
    cause = lead_cause(report, report.verdict)
    m, tol = report.manifest, report.options.tolerance
    trust = "trusted key (checked against the trust list)" if m.trusted else "key NOT checked against a trust list"
    config = config_words(report)
    summary = f"likely cause: {cause}. {report.summary}" if cause else report.summary
    return Banner(headline, tone, summary, [
        ("replayed", replayed_words(report)),
        ("signed by", f"{m.key_id}: {trust}"),
        ("manifest", f"{m.path} ({m.trainer} {m.trainer_version}, preset {m.preset or '-'})"),
        ("rerun", f"{report.rerun.device}, {_threads(report.rerun.threads)}{config}; recorded on "
                  f"{m.recorded_device}, {_threads(m.recorded_threads)}"),
        ("tolerance", f"|Δ loss| ≤ {tol.atol:g} + {tol.rtol:g}·|recorded| per step; gradient norms rtol "
                      f"{tol.grad_rtol:g}; tensors relative L2 ≤ {tol.tensor_rtol:g}"),
        ("likely cause", report.attribution.summary),
        *(assurance_rows(report.assurance) if report.assurance else []),
    ])


def _loss_chart(report: AuditReport, manifest: RunManifest | None) -> Chart:
    recorded = ([(s.step, s.loss) for s in manifest.steps] if manifest is not None else
                [(d.step, d.recorded_loss) for d in report.steps if d.recorded_loss is not None])
    colour = RERUN_COLOUR[report.verdict]
    series = [Series("recorded loss", recorded, BLUE)]
    rerun = [(d.step, d.rerun_loss) for d in report.steps if d.rerun_loss is not None]
    for i, seg in enumerate(report.segments):  # one line per segment: gaps between segments stay gaps
        points = [(s, v) for s, v in rerun if seg.start < s <= seg.end]
        series.append(Series("rerun loss" if i == 0 else "", points, colour, "dashed"))
    series.append(Series("recorded validation", [(v.step, v.recorded) for v in report.validation
                                                 if v.recorded is not None], BLUE, "dots"))
    series.append(Series("rerun validation", [(v.step, v.rerun) for v in report.validation
                                              if v.rerun is not None], colour, "crosses"))
    spans = [(s.start, s.end) for s in report.segments] if report.mode == "spot-check" else []
    return line_chart("loss: recorded vs rerun", [s for s in series if s.points or s.label], y_label="loss",
                      spans=spans, note="shaded: the replayed segments" if spans else "")


def _difference_chart(report: AuditReport) -> Chart:
    tol = report.options.tolerance
    diffs = [(d.step, d.abs_diff, d.recorded_loss) for d in report.steps if d.abs_diff is not None]
    nonzero = [(s, a) for s, a, _ in diffs if a > 0]
    identical = [(s, 0.0) for s, a, _ in diffs if a == 0]
    band = [(s, tol.atol + tol.rtol * abs(r)) for s, _, r in diffs if r is not None]
    scale = [a for _, a in nonzero] + [v for _, v in band]
    # Bit-identical steps cannot sit on a log scale: they are ticks on a floor well below everything.
    floor = (min(scale) if scale else 1e-6) / (1000 if identical else 10)
    series = [Series("|rerun - recorded| (log scale)", [(s, a if a > 0 else float("nan")) for s, a, _ in diffs],
                     RERUN_COLOUR[report.verdict], "marked"),
              Series(f"bit-identical step (Δ = 0): {len(identical)} of {len(diffs)}", identical, GREEN, "ticks")]
    note = ("every step bit-identical" if diffs and not nonzero else
            f"{len(nonzero)} of {len(diffs)} steps differ" if diffs else "")
    return line_chart("per-step loss difference", series, y_label="|Δ loss|", log_y=True, floor=floor, band=band,
                      band_label="within tolerance (atol + rtol·|recorded|)", note=note)


def audit_charts(report: AuditReport, manifest: RunManifest | None) -> list[Chart]:
    """Loss recorded vs rerun, the difference per step, and the recorded lr and gradient norm."""
    charts = [_loss_chart(report, manifest), _difference_chart(report)]
    if manifest is not None:
        lrs, grads = [], []
        for s in manifest.steps:
            lrs.append((s.step, s.lr))
            grads.append((s.step, s.grad_norm))
        spans = [(s.start, s.end) for s in report.segments] if report.mode == "spot-check" else []
        charts.append(line_chart("learning rate (recorded)", [Series("learning rate", lrs, PURPLE)], y_label="lr",
                                 spans=spans, width=HALF))
        charts.append(line_chart("gradient norm (recorded)", [Series("gradient norm", grads, GREY)], y_label="‖g‖",
                                 spans=spans, width=HALF))
    return charts


def tensor_rows(report: AuditReport, manifest: RunManifest | None) -> list[TensorRow]:
    """Every tensor of every compared checkpoint: the differing ones from the report, the rest identical."""
    recorded = {c.step: c.tensors for c in manifest.checkpoints} if manifest is not None else {}
    rows = []
    for c in report.checkpoints:
        named = set()
        for d in c.differences:
            named.add(d.name)
            differing = (f"{d.differing_elements:,} of {d.elements:,}"
                         if d.differing_elements is not None and d.elements is not None else "-")
            rows.append(TensorRow(c.step, d.name, d.status, d.dtype,
                                  "x".join(map(str, d.shape)) if d.shape is not None else "-",
                                  d.max_abs_diff, d.rel_l2, differing))
        rows += [TensorRow(c.step, name, "bit-identical")
                 for name in sorted(recorded.get(c.step, {})) if name not in named]
    return rows


def _steps(report: AuditReport) -> tuple[list[Any], str]:
    rows = report.steps
    if len(rows) <= MAX_STEP_ROWS:
        return list(rows), ""
    shown = [d for d in rows if not d.within_tolerance or d.abs_diff][:MAX_STEP_ROWS] or list(rows[:MAX_STEP_ROWS])
    return shown, f"{len(shown)} of {len(rows)} steps shown (those that differ first); the JSON report has all"


def audit_view(report: AuditReport, manifest: RunManifest | None = None) -> AuditView:
    """Build the page's view of one audit; ``manifest`` (authenticated) adds curves and tensor names."""
    tensors = tensor_rows(report, manifest)
    listed = sum(c.tensors for c in report.checkpoints)
    note = "" if len(tensors) >= listed else (
        f"{listed - len(tensors)} bit-identical tensors are counted but not named (the manifest was not available)")
    steps, steps_note = _steps(report)
    noise = cannot_matter(report)
    return AuditView(report, audit_banner(report), audit_charts(report, manifest), tensors, note, steps, steps_note,
                     checkpoints=[CheckpointRow.of(c) for c in report.checkpoints],
                     differences=[d for d in report.differences if d.likelihood != "none"], noise=noise,
                     noise_words=cannot_matter_words(noise) if noise else "")


def audit_page(report: AuditReport, manifest: RunManifest | None = None) -> str:
    """The ``repro audit --html`` page."""
    return render("audit.html.j2", title=f"repro audit: {report.verdict} · {report.manifest.path}",
                  view=audit_view(report, manifest))


def write_audit_html(report: AuditReport, path: Path, manifest: RunManifest | None = None) -> None:
    """Write the audit page to ``path`` atomically."""
    write_html(path, audit_page(report, manifest))


@dataclass(frozen=True)
class GateEntry:
    """One manifest of the gate: its result and, when it was audited, the audit's view."""

    result: ManifestResult
    view: AuditView | None
    anchor: str


def gate_page(report: GateReport, manifests: Sequence[RunManifest | None] = ()) -> str:
    """The ``repro gate --html`` page: the gate's outcome, one row per manifest, then each audit."""
    by_index = list(manifests) + [None] * (len(report.results) - len(manifests))
    entries = [GateEntry(r, audit_view(r.audit, m) if r.audit is not None else None, f"manifest-{i}")
               for i, (r, m) in enumerate(zip(report.results, by_index, strict=True))]
    passed = sum(r.outcome == "pass" for r in report.results)
    banner = Banner(f"GATE {VERDICT_WORDS[report.outcome]}", GATE_TONE[report.outcome],
                    f"{passed} of {len(report.results)} manifests pass the policy in {report.policy_file}",
                    [("mode", f"{report.policy.mode} audits"), ("took", f"{report.seconds:.1f} s")])
    return render("gate.html.j2", title=f"repro gate: {report.outcome}", report=report, banner=banner,
                  entries=entries, tone=GATE_TONE,
                  vulnerability_words=lambda r: _VULN_WORDS[r.vulnerability_status])


def write_gate_html(report: GateReport, path: Path, manifests: Sequence[RunManifest | None] = ()) -> None:
    """Write the gate page to ``path`` atomically; ``manifests`` parallels ``report.results``."""
    write_html(path, gate_page(report, manifests))
