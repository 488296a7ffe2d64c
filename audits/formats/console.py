"""The console report: a verdict panel first, then losses, tensors, environment, likely cause.

Long runs are summarised: the loss table shows the steps that tell the story (the first ones,
the first difference, the first step beyond tolerance, the largest differences, the last ones and
evenly spaced steps between); ``--json`` has every step. Every table reads at 80 columns (what CI
logs and ``> file`` get): numbers never wrap, text wraps at spaces, nothing is cut, digests are
shortened to 12 hex digits with "…" (the JSON has them whole). Text from the manifest or the run
(paths, names, key ids, messages) is shown with control characters escaped, never as markup.
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
    config_note,
)
from repro.records.hashing import short_digest
from repro.rendering.console import line, safe
from repro.text import escape_text, first_names, plural


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
_VERDICT_COLOUR = {"bitwise": "green", "within_tolerance": "yellow", "diverged": "red"}
MAX_STEP_ROWS = 30
LARGEST_STEP_ROWS = 5
EVEN_STEP_ROWS = 12
MAX_DIFFERENCE_ROWS = 20
MAX_TENSOR_ROWS = 8


def _num(x: float | None, digits: int = 9) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _threads(n: int) -> str:
    return plural(n, "thread")


def replayed_words(report: AuditReport) -> str:
    """What was replayed, in words: full rerun, prefix, or which spot-check segments and how much."""
    r = report
    if r.mode == "spot-check":
        spans = ", ".join(f"{s.start + 1}-{s.end}" for s in r.segments)
        return (f"spot-check of {plural(len(r.segments), 'segment')}, steps {spans}: {r.fraction_replayed:.0%} of "
                f"the run replayed (seed {r.spot_check_seed})")
    if r.mode == "prefix":
        return f"first {r.segments[0].end} of {plural(r.steps_total, 'step')} ({r.fraction_replayed:.0%} of the run)"
    return f"full rerun of {plural(r.steps_total, 'step')}"


def _words(verdict: str) -> str:
    return verdict.replace("_", " ")


def lead_cause(report: Compared, verdict: str) -> str | None:
    """The cause to name first on the verdict line (``trainer code changed: spiral/trainer.py``), when
    the numbers differ and the attribution has one."""
    if verdict == "bitwise" or not report.attribution.causes:
        return None
    return short_digest(report.attribution.causes[0])


def config_words(report: AuditReport) -> str:
    """Why the rerun's config digest differs, naming only what the auditor changed (device, threads,
    processes, precision, compile; :func:`repro.audits.report.config_note`), in parentheses."""
    note = config_note(report.rerun)
    return f" ({note})" if note else ""


def _table(title: str, columns: list[str], right: tuple[str, ...] = (), caption: str | None = None,
           numbers: tuple[str, ...] = ()) -> Table:
    """A table that stays readable at 80 columns: text wraps at spaces or folds, never ends in "…";
    the ``numbers`` columns never wrap (a number is never broken mid-digit)."""
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left",
                         overflow="ellipsis" if col in numbers else "fold", no_wrap=col in numbers)
    return table


def verdict_panel(report: AuditReport) -> Panel:
    """The headline (the verdict and the likely cause first), summary, what was replayed and how."""
    title, style = _VERDICT_STYLE[report.verdict]
    r, m = report, report.manifest
    cause = lead_cause(report, report.verdict)
    scope = replayed_words(report)
    trust = "trusted key" if m.trusted else "key not checked against a trust list"
    world = f", {r.rerun.world_size} processes" if r.rerun.world_size != 1 or m.recorded_world_size != 1 else ""
    recorded_world = f", {m.recorded_world_size} processes" if world else ""
    tol = r.options.tolerance
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    facts.add_row("manifest", safe(f"{m.path} ({m.trainer} {m.trainer_version}, preset {m.preset or '-'})"))
    facts.add_row("signed by", safe(f"{short_digest(m.key_id)} ({trust})"))
    facts.add_row("replayed", scope)
    facts.add_row("rerun", safe(f"{r.rerun.device}, {_threads(r.rerun.threads)}{world}{config_words(report)}; "
                                f"recorded {m.recorded_device}, {_threads(m.recorded_threads)}{recorded_world}"))
    facts.add_row("tolerance", f"|Δ| ≤ {tol.atol:g} + {tol.rtol:g}·|recorded| per step (grad norms rtol "
                               f"{tol.grad_rtol:g}); tensors rel. L2 ≤ {tol.tensor_rtol:g}")
    head = line((title, style), *((": ", style), (escape_text(cause), style)) if cause else ())
    assured = [safe(text) for text in (assurance_lines(r.assurance) if r.assurance else [])]
    body = Group(head, safe(short_digest(r.summary)), Text(""), facts, *assured)
    return Panel(body, title="repro audit", title_align="left", border_style=style.split()[-1])


def chosen_steps(report: Compared) -> list[StepDetail]:
    """The steps the console shows: every one when few; else the first ones, the first difference,
    the first step beyond tolerance, the largest differences, evenly spaced steps and the last ones
    (at most ``MAX_STEP_ROWS``, in step order)."""
    rows = report.steps
    if report.losses.verdict == "bitwise" and report.batches.identical and len(rows) > 6:
        return [*rows[:3], *rows[-2:]]  # nothing to see between: every step is identical
    if len(rows) <= MAX_STEP_ROWS:
        return list(rows)
    losses = report.losses
    wanted = {rows[0].step, rows[1].step, rows[2].step, rows[-2].step, rows[-1].step}
    wanted |= {s for s in (losses.first_difference_step, losses.first_beyond_tolerance_step, losses.max_step)
               if s is not None}
    largest = sorted((d for d in rows if d.abs_diff), key=lambda d: d.abs_diff or 0.0, reverse=True)
    wanted |= {d.step for d in largest[:LARGEST_STEP_ROWS]}
    wanted |= {rows[round(i * (len(rows) - 1) / (EVEN_STEP_ROWS + 1))].step for i in range(1, EVEN_STEP_ROWS + 1)}
    return [d for d in rows if d.step in wanted]


def _status(d: StepDetail) -> Text:
    batch = "; other batch" if d.batch_match is False else ""
    if d.abs_diff == 0 and d.batch_match is not False and not d.other_differences and d.ulps == 0:
        return Text("identical", "green")
    if d.within_tolerance:
        return Text("within tolerance" + batch, "yellow")
    others = f" ({', '.join(d.other_differences)})" if d.other_differences else ""
    return line(("beyond tolerance", "red"), others + batch)


def loss_table(report: Compared, sides: str = "recorded vs rerun") -> Table:
    """Per-step losses, recorded vs rerun (or A vs B), with exact differences and ulps."""
    rows = chosen_steps(report)
    caption = (None if len(rows) == len(report.steps) else
               f"{len(rows)} of {plural(len(report.steps), 'step')} shown: the first, the largest differences, "
               "evenly spaced and the last; --json has all")
    left, _, right = sides.partition(" vs ")
    numbers = ("step", left, right, "|Δ|", "rel. Δ", "ulps")
    table = _table(f"losses: {sides}", [*numbers, "status"], right=numbers, caption=caption, numbers=numbers)
    table.show_edge = False
    for d in rows:
        table.add_row(str(d.step), _num(d.recorded_loss), _num(d.rerun_loss), _num(d.abs_diff, 3),
                      _num(d.rel_diff, 3), "-" if d.ulps is None else str(d.ulps), _status(d))
    return table


def series_table(report: Compared) -> Group:
    """Each compared quantity in one line (verdict, identical steps, largest difference), then how
    each one that differs evolves, in words under the table (so the table fits 80 columns)."""
    table = _table("per-step quantities", ["quantity", "verdict", "identical", "max |Δ|", "first beyond tol."],
                   right=("identical", "max |Δ|"), numbers=("identical", "max |Δ|"))
    notes: list[RenderableType] = []
    for s in [report.losses, *report.series]:
        table.add_row(safe(s.name), Text(_words(s.verdict), _VERDICT_COLOUR[s.verdict]), f"{s.identical}/{s.compared}",
                      _num(s.max_abs_diff, 3), str(s.first_beyond_tolerance_step or "-"))
        if s.verdict != "bitwise":
            notes.append(line((f"  {escape_text(s.name)}: ", "bold"), s.growth))
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
        parts.append(Text.assemble(f"checkpoint {c.step}: ", (_words(c.verdict), _VERDICT_COLOUR[c.verdict]),
                                   f", {c.identical} of {plural(c.tensors, 'tensor')} bit-identical"))
        shown = c.differences[:MAX_TENSOR_ROWS]
        for status in _STATUS_ORDER:
            group = [d for d in shown if d.status == status]
            if not group:
                continue
            total = sum(d.status == status for d in c.differences)
            table = _table(f"  {_words(status)}: {plural(total, 'tensor')}", ["tensor", "max |Δ|", "rel. L2"],
                           right=("max |Δ|", "rel. L2"), numbers=("max |Δ|", "rel. L2"))
            table.columns[0].ratio = 1
            for d in group:
                table.add_row(safe(d.name), _num(d.max_abs_diff, 3), _num(d.rel_l2, 3))
            parts.append(table)
        if len(c.differences) > MAX_TENSOR_ROWS:
            parts.append(Text(f"  ... {len(c.differences) - MAX_TENSOR_ROWS} more not bit-identical "
                              "(--json or --html has all)"))
    return Group(*parts)


def cannot_matter(report: Compared) -> list[Difference]:
    """Differences that cannot have changed the numbers (likelihood ``none``: e.g. packages the
    training process never imported): summarised in one line, listed in full by --json and --html."""
    return [d for d in report.differences if d.likelihood == "none"]


def cannot_matter_words(differences: list[Difference]) -> str:
    """``"10 packages differ that the training process never imported"`` (or, for other kinds,
    ``"3 differences that cannot change the numbers"``)."""
    if all(d.category == "packages" for d in differences):
        return f"{plural(len(differences), 'package')} differ{'s' if len(differences) == 1 else ''} " \
               "that the training process never imported"
    return f"{plural(len(differences), 'difference')} that cannot change the numbers"


def difference_table(report: Compared, sides: str = "recorded vs here") -> RenderableType:
    """Recorded vs here (or A vs B), most likely to matter first; those that cannot matter in one line."""
    left, _, right = sides.partition(" vs ")
    noise = cannot_matter(report)
    listed = [d for d in report.differences if d.likelihood != "none"]
    table = _table(f"environment, code and data: {sides}", ["likely", "category", f"what: {left} → {right}"])
    table.columns[2].ratio = 1
    if not report.differences:
        table.add_row("-", "-", "no difference: same environment, code and data")
    elif not listed:
        table.add_row("-", "-", "no difference that can change the numbers")
    style = {"certain": "bold red", "high": "red", "medium": "yellow", "low": "dim", "none": "dim"}
    for d in listed[:MAX_DIFFERENCE_ROWS]:
        note = f" ({d.note})" if d.note and d.category != "code" else ""
        what = line((escape_text(d.field), "bold"), ": ", short_digest(d.recorded or "-"), " → ",
                    short_digest(d.here or "-"), note)
        if d.note and d.category == "code":
            what = line((escape_text(d.field), "bold"), ": ", d.note)
        table.add_row(Text(d.likelihood, style[d.likelihood]), safe(d.category), what)
    if len(listed) > MAX_DIFFERENCE_ROWS:
        table.add_row("", "", f"... {len(listed) - MAX_DIFFERENCE_ROWS} more (see --json)")
    if not noise:
        return table
    return Group(table, Text(f"{cannot_matter_words(noise)}; --json lists them", style="dim"))


def cause_panel(report: Compared) -> Panel:
    """The likely cause, in words."""
    a = report.attribution
    body = safe(short_digest(a.summary))
    if len(a.causes) > 1:
        body = line(body, ("\n\n", ""), "other candidates: " + short_digest("; ".join(a.causes[1:6])))
    return Panel(body, title=f"likely cause ({a.kind})", title_align="left")


def vulnerability_table(report: AuditReport) -> RenderableType:
    """Known vulnerabilities in the recorded environment: each package, version and advisory, and the counts."""
    scan = report.vulnerabilities
    if scan is None:
        return Text("")
    style = {"vulnerable": "bold red", "no_known": "green", "partial": "yellow", "not_checked": "bold yellow"}
    head = line(("vulnerabilities ", "italic"), f"({scan.tool}, {scan.service}): ",
                (escape_text(scan.summary()), style[scan.verdict]))
    found = [(p, v) for p in scan.packages for v in p.vulnerabilities]
    if not found:
        return head
    table = _table("", ["package", "version", "advisory", "aliases", "fixed in"])
    for pkg, v in found:
        table.add_row(safe(pkg.name), safe(pkg.version), safe(v.id + (" (ignored by policy)" if v.ignored else "")),
                      safe(first_names(v.aliases)), safe(", ".join(v.fix_versions) or "no fix"))
    return Group(head, table)


def render(report: AuditReport) -> RenderableType:
    """The whole console report, in reading order."""
    return Group(verdict_panel(report), loss_table(report), series_table(report), tensor_table(report),
                 difference_table(report), cause_panel(report), vulnerability_table(report))


def print_report(report: AuditReport, console: Console) -> None:
    """Print the report to ``console``."""
    console.print(render(report))
