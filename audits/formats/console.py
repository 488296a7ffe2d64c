"""The console report: a verdict panel first, then losses, tensors, environment, likely cause.

Long runs are summarised: the loss table shows the steps that tell the story (the first ones,
the first difference, the first step beyond tolerance, the largest difference, the last ones and
evenly spaced steps between); ``--json`` has every step.
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from repro.audits.report import AuditReport, StepDetail

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


def verdict_panel(report: AuditReport) -> Panel:
    """The headline: verdict, summary, what was replayed and how."""
    title, style = _VERDICT_STYLE[report.verdict]
    r, m = report, report.manifest
    if r.mode == "spot-check":
        spans = ", ".join(f"{s.start + 1}-{s.end}" for s in r.segments)
        plural = "s" if len(r.segments) != 1 else ""
        scope = (f"spot-check of {len(r.segments)} segment{plural}, steps {spans}: {r.fraction_replayed:.0%} of "
                 f"the run replayed (seed {r.spot_check_seed})")
    elif r.mode == "prefix":
        scope = f"first {r.segments[0].end} of {r.steps_total} steps ({r.fraction_replayed:.0%} of the run)"
    else:
        scope = f"full rerun of {r.steps_total} steps"
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
    )
    return Panel(body, title="repro audit", title_align="left", border_style=style.split()[-1])


def _chosen_steps(report: AuditReport) -> list[StepDetail]:
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


def loss_table(report: AuditReport) -> Table:
    """Per-step losses, recorded vs rerun, with exact differences and ulps."""
    rows = _chosen_steps(report)
    caption = None if len(rows) == len(report.steps) else f"{len(rows)} of {len(report.steps)} steps shown; --json has all"
    table = Table(title="losses: recorded vs rerun", caption=caption, title_justify="left")
    for col in ("step", "recorded", "rerun", "|Δ|", "rel. Δ", "ulps", "batch", "status"):
        table.add_column(col, justify="right" if col not in ("batch", "status") else "left")
    for d in rows:
        if d.abs_diff == 0 and d.batch_match and not d.other_differences and d.ulps == 0:
            status = Text("identical", "green")
        elif d.within_tolerance:
            status = Text("within tolerance", "yellow")
        else:
            status = Text("beyond tolerance" + (f" ({', '.join(d.other_differences)})" if d.other_differences else ""), "red")
        batch = "-" if d.batch_match is None else ("same" if d.batch_match else Text("DIFFERENT", "red"))
        table.add_row(str(d.step), _num(d.recorded_loss), _num(d.rerun_loss), _num(d.abs_diff, 3),
                      _num(d.rel_diff, 3), "-" if d.ulps is None else str(d.ulps), batch, status)
    return table


def series_table(report: AuditReport) -> Table:
    """Each compared quantity in one line: verdict, identical steps, largest difference, growth."""
    table = Table(title="per-step quantities", title_justify="left")
    for col in ("quantity", "verdict", "identical", "max |Δ|", "first beyond tolerance", "how it evolves"):
        table.add_column(col)
    for s in [report.losses, *report.series]:
        style = {"bitwise": "green", "within_tolerance": "yellow", "diverged": "red"}[s.verdict]
        table.add_row(s.name, Text(s.verdict, style), f"{s.identical}/{s.compared}", _num(s.max_abs_diff, 3),
                      str(s.first_beyond_tolerance_step or "-"), s.growth)
    b = report.batches
    table.add_row("batch fingerprints", Text("identical" if b.identical else "diverged", "green" if b.identical else "red"),
                  f"{b.compared - b.differing_steps}/{b.compared}", "-", str(b.first_difference_step or "-"),
                  "same batches at every step" if b.identical else "data-order drift: other batches were drawn")
    return table


def tensor_table(report: AuditReport) -> Table:
    """Checkpoints tensor by tensor: identical counts and the tensors that differ most."""
    table = Table(title="checkpoints: tensor by tensor", title_justify="left")
    for col in ("step", "verdict", "identical", "tensor", "status", "max |Δ|", "rel. L2"):
        table.add_column(col)
    if not report.checkpoints:
        table.add_row("-", "-", "-", "no checkpoint in the replayed steps", "-", "-", "-")
    for c in report.checkpoints:
        style = {"bitwise": "green", "within_tolerance": "yellow", "diverged": "red"}[c.verdict]
        head = [str(c.step), Text(c.verdict, style), f"{c.identical}/{c.tensors}"]
        if not c.differences:
            table.add_row(*head, "all bit-identical", "-", "-", "-")
            continue
        for i, d in enumerate(c.differences[:MAX_TENSOR_ROWS]):
            cells = head if i == 0 else ["", "", ""]
            table.add_row(*cells, d.name, d.status, _num(d.max_abs_diff, 3), _num(d.rel_l2, 3))
        if len(c.differences) > MAX_TENSOR_ROWS:
            table.add_row("", "", "", f"... {len(c.differences) - MAX_TENSOR_ROWS} more (see --json)", "", "", "")
    return table


def difference_table(report: AuditReport) -> Table:
    """Recorded vs here, most likely to matter first."""
    table = Table(title="environment, code and data: recorded vs here", title_justify="left")
    for col in ("likelihood", "category", "what", "recorded", "here"):
        table.add_column(col, overflow="fold")
    if not report.differences:
        table.add_row("-", "-", "no difference: same environment, code and data", "-", "-")
    style = {"certain": "bold red", "high": "red", "medium": "yellow", "low": "dim"}
    for d in report.differences[:MAX_DIFFERENCE_ROWS]:
        table.add_row(Text(d.likelihood, style[d.likelihood]), d.category, d.field, d.recorded or "-", d.here or "-")
    if len(report.differences) > MAX_DIFFERENCE_ROWS:
        table.add_row("", "", f"... {len(report.differences) - MAX_DIFFERENCE_ROWS} more (see --json)", "", "")
    return table


def cause_panel(report: AuditReport) -> Panel:
    """The likely cause, in words."""
    a = report.attribution
    lines = [a.summary]
    if len(a.causes) > 1:
        lines += ["", "other candidates: " + "; ".join(a.causes[1:6])]
    return Panel("\n".join(lines), title=f"likely cause ({a.kind})", title_align="left")


def vulnerability_table(report: AuditReport) -> Table | Text:
    """Known vulnerabilities in the recorded environment, and how much could not be checked."""
    scan = report.vulnerabilities
    if scan is None:
        return Text("")
    table = Table(title=f"vulnerabilities ({scan.tool}, {scan.service}): {scan.summary()}", title_justify="left")
    for col in ("package", "version", "id", "aliases", "fixed in"):
        table.add_column(col)
    for pkg in scan.packages:
        for v in pkg.vulnerabilities:
            table.add_row(pkg.name, pkg.version, v.id + (" (ignored)" if v.ignored else ""),
                          ", ".join(v.aliases) or "-", ", ".join(v.fix_versions) or "no fix")
    return table


def render(report: AuditReport) -> RenderableType:
    """The whole console report, in reading order."""
    return Group(verdict_panel(report), loss_table(report), series_table(report), tensor_table(report),
                 difference_table(report), cause_panel(report), vulnerability_table(report))


def print_report(report: AuditReport, console: Console) -> None:
    """Print the report to ``console``."""
    console.print(render(report))
