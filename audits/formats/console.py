"""The console report: a verdict panel first, then losses, tensors, environment, likely cause.

Long runs are summarised: the loss table shows the steps that tell the story (the first ones,
the first difference, the first step beyond tolerance, the largest difference, the last ones and
evenly spaced steps between); ``--json`` has every step.
"""

from __future__ import annotations

from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from repro.audits.formats.assurance_text import assurance_lines
from repro.audits.report import (
    Attribution,
    AuditReport,
    BatchComparison,
    CheckpointComparison,
    Difference,
    SeriesComparison,
    StepDetail,
)
from repro.records.hashing import short_digest


class Compared(Protocol):
    """What the tables below read: an audit's report, or ``repro diff``'s."""

    @property
    def losses(self) -> SeriesComparison: ...
    @property
    def series(self) -> list[SeriesComparison]: ...
    @property
    def batches(self) -> BatchComparison: ...
    @property
    def steps(self) -> list[StepDetail]: ...
    @property
    def checkpoints(self) -> list[CheckpointComparison]: ...
    @property
    def differences(self) -> list[Difference]: ...
    @property
    def attribution(self) -> Attribution: ...

_VERDICT_STYLE = {
    "bitwise": ("REPRODUCED: bitwise", "bold green"),
    "within_tolerance": ("REPRODUCED: within tolerance", "bold yellow"),
    "diverged": ("NOT REPRODUCED: diverged", "bold red"),
}
MAX_STEP_ROWS = 30
MAX_DIFFERENCE_ROWS = 20
MAX_TENSOR_ROWS = 8


def _num(x: float | None, digits: int = 9) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _threads(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def replayed_words(report: AuditReport) -> str:
    """What was replayed, in words: full rerun, prefix, or which spot-check segments and how much."""
    r = report
    if r.mode == "spot-check":
        spans = ", ".join(f"{s.start + 1}-{s.end}" for s in r.segments)
        plural = "s" if len(r.segments) != 1 else ""
        return (f"spot-check of {len(r.segments)} segment{plural}, steps {spans}: {r.fraction_replayed:.0%} of "
                f"the run replayed (seed {r.spot_check_seed})")
    if r.mode == "prefix":
        return f"first {r.segments[0].end} of {r.steps_total} steps ({r.fraction_replayed:.0%} of the run)"
    return f"full rerun of {r.steps_total} steps"


def _words(verdict: str) -> str:
    return verdict.replace("_", " ")


def _table(title: str, columns: list[str], right: tuple[str, ...] = (), caption: str | None = None) -> Table:
    """A table that stays readable at 80 columns: cells wrap at spaces or fold, never end in "…"."""
    table = Table(title=title, caption=caption, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left", overflow="fold")
    return table


def verdict_panel(report: AuditReport) -> Panel:
    """The headline: verdict, summary, what was replayed and how."""
    title, style = _VERDICT_STYLE[report.verdict]
    r, m = report, report.manifest
    scope = replayed_words(report)
    trust = "trusted key" if m.trusted else "key not checked against a trust list"
    config = "" if r.rerun.config_matches else " (config digest differs: device/threads/processes changed)"
    world = f", {r.rerun.world_size} processes" if r.rerun.world_size != 1 or m.recorded_world_size != 1 else ""
    recorded_world = f", {m.recorded_world_size} processes" if world else ""
    body = Text.assemble(
        (title + "\n", style),
        (r.summary + "\n\n", ""),
        ("manifest   ", "bold"), f"{m.path} ({m.trainer} {m.trainer_version}, preset {m.preset or '-'})\n",
        ("signed by  ", "bold"), f"{m.key_id} ({trust})\n",
        ("replayed   ", "bold"), scope + "\n",
        ("rerun      ", "bold"), f"{r.rerun.device}, {_threads(r.rerun.threads)}{world}{config}; recorded "
                                  f"{m.recorded_device}, {_threads(m.recorded_threads)}{recorded_world}\n",
        ("tolerance  ", "bold"), f"|Δ| ≤ {r.options.tolerance.atol:g} + {r.options.tolerance.rtol:g}·|recorded| "
                                  f"per step (grad norms rtol {r.options.tolerance.grad_rtol:g}); "
                                  f"tensors rel. L2 ≤ {r.options.tolerance.tensor_rtol:g}",
        *(("\n" + line) for line in (assurance_lines(r.assurance) if r.assurance else [])),
    )
    return Panel(body, title="repro audit", title_align="left", border_style=style.split()[-1])


def _chosen_steps(report: Compared) -> list[StepDetail]:
    rows = report.steps
    if report.losses.verdict == "bitwise" and report.batches.identical and len(rows) > 6:
        return [*rows[:3], *rows[-2:]]  # nothing to see between: every step is identical
    if len(rows) <= MAX_STEP_ROWS:
        return rows
    losses = report.losses
    wanted = {rows[0].step, rows[1].step, rows[2].step, rows[-2].step, rows[-1].step}
    wanted |= {s for s in (losses.first_difference_step, losses.first_beyond_tolerance_step, losses.max_step) if s}
    stride = max(len(rows) // 12, 1)
    wanted |= {rows[i].step for i in range(0, len(rows), stride)}
    wanted |= {d.step for d in rows if not d.within_tolerance}
    return [d for d in rows if d.step in wanted][:MAX_STEP_ROWS + 10]


def loss_table(report: Compared, sides: str = "recorded vs rerun") -> Table:
    """Per-step losses, recorded vs rerun (or A vs B), with exact differences and ulps."""
    rows = _chosen_steps(report)
    caption = (None if len(rows) == len(report.steps)
               else f"{len(rows)} of {len(report.steps)} steps shown; --json has all")
    left, _, right = sides.partition(" vs ")
    table = _table(f"losses: {sides}", ["step", left, right, "|Δ|", "rel. Δ", "ulps", "batch", "status"],
                   right=("step", left, right, "|Δ|", "rel. Δ", "ulps"), caption=caption)
    for d in rows:
        if d.abs_diff == 0 and d.batch_match and not d.other_differences and d.ulps == 0:
            status = Text("identical", "green")
        elif d.within_tolerance:
            status = Text("within tolerance", "yellow")
        else:
            others = f" ({', '.join(d.other_differences)})" if d.other_differences else ""
            status = Text("beyond tolerance" + others, "red")
        batch = "-" if d.batch_match is None else ("same" if d.batch_match else Text("DIFFERENT", "red"))
        table.add_row(str(d.step), _num(d.recorded_loss), _num(d.rerun_loss), _num(d.abs_diff, 3),
                      _num(d.rel_diff, 3), "-" if d.ulps is None else str(d.ulps), batch, status)
    return table


def series_table(report: Compared) -> Group:
    """Each compared quantity in one line (verdict, identical steps, largest difference), then how
    each one that differs evolves, in words under the table (so the table fits 80 columns)."""
    table = _table("per-step quantities", ["quantity", "verdict", "identical", "max |Δ|", "first beyond tol."],
                   right=("identical", "max |Δ|"))
    notes: list[RenderableType] = []
    for s in [report.losses, *report.series]:
        style = {"bitwise": "green", "within_tolerance": "yellow", "diverged": "red"}[s.verdict]
        table.add_row(s.name, Text(_words(s.verdict), style), f"{s.identical}/{s.compared}", _num(s.max_abs_diff, 3),
                      str(s.first_beyond_tolerance_step or "-"))
        if s.verdict != "bitwise":
            notes.append(Text.assemble((f"  {s.name}: ", "bold"), s.growth))
    b = report.batches
    table.add_row("batches", Text("identical" if b.identical else "diverged", "green" if b.identical else "red"),
                  f"{b.compared - b.differing_steps}/{b.compared}", "-", str(b.first_difference_step or "-"))
    if not b.identical:
        notes.append(Text.assemble(("  batches: ", "bold"), "data-order drift: other batches were drawn"))
    return Group(table, *notes)


_STATUS_ORDER = ("differs", "missing_in_rerun", "only_in_rerun", "device_only", "within_tolerance")


def tensor_table(report: Compared) -> Group:
    """Checkpoints tensor by tensor: a line per checkpoint, then the tensors that differ most,
    one small table per status so the tensor name gets the width (names fold, never cut)."""
    parts: list[RenderableType] = [Text("checkpoints: tensor by tensor", style="italic")]
    if not report.checkpoints:
        parts.append(Text("no checkpoint in the replayed steps"))
    for c in report.checkpoints:
        style = {"bitwise": "green", "within_tolerance": "yellow", "diverged": "red"}[c.verdict]
        parts.append(Text.assemble(f"checkpoint {c.step}: ", (_words(c.verdict), style),
                                   f", {c.identical} of {c.tensors} tensors bit-identical"))
        shown = c.differences[:MAX_TENSOR_ROWS]
        for status in _STATUS_ORDER:
            group = [d for d in shown if d.status == status]
            if not group:
                continue
            total = sum(d.status == status for d in c.differences)
            table = _table(f"  {_words(status)}: {total} tensor{'s' if total != 1 else ''}",
                           ["tensor", "max |Δ|", "rel. L2"], right=("max |Δ|", "rel. L2"))
            table.columns[0].ratio = 1
            for d in group:
                table.add_row(d.name, _num(d.max_abs_diff, 3), _num(d.rel_l2, 3))
            parts.append(table)
        if len(c.differences) > MAX_TENSOR_ROWS:
            parts.append(Text(f"  ... {len(c.differences) - MAX_TENSOR_ROWS} more not bit-identical "
                              "(--json or --html has all)"))
    return Group(*parts)


def difference_table(report: Compared, sides: str = "recorded vs here") -> Table:
    """Recorded vs here (or A vs B), most likely to matter first."""
    left, _, right = sides.partition(" vs ")
    table = _table(f"environment, code and data: {sides}", ["likely", "category", "what", left, right])
    # The field name is what a reader scans for: keep it whole (the values fold instead).
    table.columns[2].min_width = min(32, max((len(d.field) for d in report.differences), default=4))
    if not report.differences:
        table.add_row("-", "-", "no difference: same environment, code and data", "-", "-")
    style = {"certain": "bold red", "high": "red", "medium": "yellow", "low": "dim", "none": "dim"}
    for d in report.differences[:MAX_DIFFERENCE_ROWS]:
        what = d.field + (f": {d.note}" if d.note and (d.category == "code" or d.likelihood == "none") else "")
        table.add_row(Text(d.likelihood, style[d.likelihood]), d.category, what, short_digest(d.recorded or "-"),
                      short_digest(d.here or "-"))
    if len(report.differences) > MAX_DIFFERENCE_ROWS:
        table.add_row("", "", f"... {len(report.differences) - MAX_DIFFERENCE_ROWS} more (see --json)", "", "")
    return table


def cause_panel(report: Compared) -> Panel:
    """The likely cause, in words."""
    a = report.attribution
    lines = [a.summary]
    if len(a.causes) > 1:
        lines += ["", "other candidates: " + "; ".join(a.causes[1:6])]
    return Panel("\n".join(lines), title=f"likely cause ({a.kind})", title_align="left")


def vulnerability_table(report: AuditReport) -> RenderableType:
    """Known vulnerabilities in the recorded environment: each package, version and advisory, and the counts."""
    scan = report.vulnerabilities
    if scan is None:
        return Text("")
    style = {"vulnerable": "bold red", "no_known": "green", "partial": "yellow", "not_checked": "bold yellow"}
    head = Text.assemble(("vulnerabilities ", "italic"), f"({scan.tool}, {scan.service}): ",
                         (scan.summary(), style[scan.verdict]))
    found = [(p, v) for p in scan.packages for v in p.vulnerabilities]
    if not found:
        return head
    table = _table("", ["package", "version", "advisory", "aliases", "fixed in"])
    for pkg, v in found:
        table.add_row(pkg.name, pkg.version, v.id + (" (ignored by policy)" if v.ignored else ""),
                      ", ".join(v.aliases) or "-", ", ".join(v.fix_versions) or "no fix")
    return Group(head, table)


def render(report: AuditReport) -> RenderableType:
    """The whole console report, in reading order."""
    return Group(verdict_panel(report), loss_table(report), series_table(report), tensor_table(report),
                 difference_table(report), cause_panel(report), vulnerability_table(report))


def print_report(report: AuditReport, console: Console) -> None:
    """Print the report to ``console``."""
    console.print(render(report))
