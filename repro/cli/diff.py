"""``repro diff A.json B.json``: command-line wiring of :mod:`repro.audits.diff`.

One registration function, :func:`add_parser`, as for ``repro gate``. Exit codes as for
``repro audit``: 0 bitwise or within tolerance, 1 diverged, 2 usage or input error, 3 integrity
failure (either manifest), 4 could not check (a missing artifact or data file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from repro.cli.parsing import Subparsers, add_tolerance_arguments, tolerance_from

DESCRIPTION = """\
Judge two recorded runs against each other without rerunning (the same config on two machines,
CPU vs GPU, before and after an upgrade): verify both as `repro verify` does, then compare B with
A step by step (exact bits, ulps, tolerance), checkpoint tensors at the steps both saved, and
rank every difference in settings, environment, code (git and the modules each process
executed) and data, with the likely cause. Exit codes: 0 bitwise or within tolerance, 1
diverged, 2 usage or input error, 3 integrity failure, 4 could not check. See docs/audit.md."""


def add_parser(sub: Subparsers) -> None:
    """Register ``repro diff``."""
    p = sub.add_parser("diff", help="compare two recorded runs without rerunning, and attribute the difference",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", metavar="A.json", help="the first run's manifest (the reference)")
    p.add_argument("b", metavar="B.json", help="the second run's manifest")
    p.add_argument("--trusted-keys", metavar="FILE", help="trust list: both runs must be signed by a listed key")
    add_tolerance_arguments(p)
    p.add_argument("--json", metavar="FILE", help="write the report as JSON (schema: docs/diff-report.schema.json)")
    p.set_defaults(func=cmd_diff)


def cmd_diff(args: argparse.Namespace) -> int:
    """Compare two runs; print the report; 0 if B reproduces A (bitwise or within tolerance), else 1."""
    from rich.console import Group
    from rich.panel import Panel

    from repro.audits.diff import run_diff
    from repro.audits.formats.console import (
        cause_panel,
        difference_table,
        lead_cause,
        loss_table,
        series_table,
        tensor_table,
    )
    from repro.audits.formats.failure import reports_on_failure
    from repro.errors import ExitCode, UsageError
    from repro.files import atomic
    from repro.records.hashing import short_digest
    from repro.rendering.console import line, out_console, say
    from repro.text import plural

    tol = tolerance_from(args)
    if args.json and Path(args.json).is_dir():
        raise UsageError(f"--json {args.json} is a folder; name a file")
    with reports_on_failure("diff", f"{args.a} {args.b}", json=args.json, protect=(args.a, args.b)):
        report = run_diff(Path(args.a), Path(args.b), Path(args.trusted_keys) if args.trusted_keys else None, tol)
    title, style = {
        "bitwise": ("SAME: bitwise", "bold green"), "within_tolerance": ("SAME: within tolerance", "bold yellow"),
        "diverged": ("DIFFERENT: diverged", "bold red"),
    }[report.verdict]
    cause = lead_cause(report, report.verdict)
    sides = [line((f"{name}  ", "bold"), f"{m.path} ({m.trainer} {m.trainer_version}, {m.recorded_device}, "
                                         f"{plural(m.recorded_threads, 'thread')}; signed by {short_digest(m.key_id)})")
             for name, m in (("A", report.a), ("B", report.b))]
    head = line((title + (f": {cause}" if cause else ""), style), ("\n", ""), short_digest(report.summary),
                ("\n\n", ""), sides[0], ("\n", ""), sides[1])
    out_console.print(Group(
        Panel(head, title="repro diff", title_align="left", border_style=style.split()[-1]),
        loss_table(report, "A vs B"), series_table(report), tensor_table(report),
        difference_table(report, "A vs B"), cause_panel(report),
    ))
    if args.json:
        atomic.write_text(Path(args.json), report.model_dump_json(indent=1) + "\n")
        say(f"wrote {args.json}", err=True)
    return ExitCode.OK if report.reproduced else ExitCode.NOT_REPRODUCED
