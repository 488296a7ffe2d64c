"""``repro audit``: the command line of the audit engine.

Registered in :data:`repro.cli.COMMANDS` through :func:`add_audit_command`. Errors propagate to
``repro.cli.main``, which maps them to exit codes; this module maps only the verdict: reproduced
(``bitwise`` or ``within_tolerance``) exits 0, ``diverged`` exits 1. Heavy imports (pydantic
models, torch, matplotlib) happen when the command runs, not when ``repro`` starts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Rerun the configuration a manifest records, through the same trainer, and judge the result
against it: integrity first (exit 3 if tampered or untrusted), data checked before compute,
then per-step losses (exact bits), batch fingerprints, checkpoints tensor by tensor and
validation losses, with the likely cause of any difference. Exit codes: 0 reproduced (bitwise
or within tolerance), 1 not reproduced, 2 usage or input error, 3 integrity failure, 4 could not
check (missing artifact or data, changed data, device unavailable, trainer not installed).
See docs/audit.md."""


def add_audit_command(sub: argparse._SubParsersAction) -> None:
    """Add ``audit`` to the ``repro`` subcommands."""
    from repro.audits.options import (
        BF16_TOLERANCE,
        DEFAULT_GRAD_RTOL,
        DEFAULT_LOSS_ATOL,
        DEFAULT_LOSS_RTOL,
        DEFAULT_TENSOR_RTOL,
    )

    p = sub.add_parser("audit", help="rerun a recorded run and judge it against its manifest",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", help="the run manifest, e.g. manifests/run.json")
    p.add_argument("--trusted-keys", metavar="FILE", help="trust list: a valid signature by another key fails (exit 3)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--steps", type=int, metavar="N", help="audit only the first N steps (schedules stay as recorded)")
    scope.add_argument("--segments", type=int, metavar="K",
                       help="spot-check: replay K random checkpoint-to-checkpoint segments")
    p.add_argument("--seed", type=int, metavar="S", help="seed for choosing the segments (default: random, reported)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="rerun device (default: as recorded)")
    p.add_argument("--threads", type=int, metavar="N", help="rerun thread count (default: as recorded)")
    p.add_argument("--precision", choices=["32", "bf16-mixed"], help="rerun precision (default: as recorded)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="rerun through torch.compile, or not (default: as recorded)")
    bf16 = "; bf16-mixed runs: {:g}"
    p.add_argument("--atol", type=float, help=f"absolute tolerance per step (default {DEFAULT_LOSS_ATOL:g}"
                   + bf16.format(BF16_TOLERANCE.atol) + ")")
    p.add_argument("--rtol", type=float, help=f"relative tolerance per step (default {DEFAULT_LOSS_RTOL:g}"
                   + bf16.format(BF16_TOLERANCE.rtol) + ")")
    p.add_argument("--grad-rtol", type=float,
                   help=f"relative tolerance on gradient norms (default {DEFAULT_GRAD_RTOL:g}"
                   + bf16.format(BF16_TOLERANCE.grad_rtol) + ")")
    p.add_argument("--tensor-rtol", type=float,
                   help=f"relative L2 tolerance per checkpoint tensor (default {DEFAULT_TENSOR_RTOL:g}"
                   + bf16.format(BF16_TOLERANCE.tensor_rtol) + ")")
    p.add_argument("--allow-data-change", action="store_true",
                   help="rerun even if data files differ from the recorded ones, and attribute")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON (schema: docs/audit-report.schema.json)")
    p.add_argument("--junit", metavar="FILE", help="write the report as JUnit XML")
    p.add_argument("--plot", metavar="FILE.png", help="plot recorded vs rerun losses and their difference")
    p.add_argument("--scan-vulnerabilities", action="store_true",
                   help="also scan the recorded environment with pip-audit (informational; the gate enforces policy)")
    p.add_argument("--osv-url", metavar="URL", help="OSV-compatible mirror for the scan (default: pip-audit's PyPI service)")
    p.add_argument("--work-dir", metavar="DIR", help="keep the rerun's checkpoints and log here (default: temporary)")
    p.set_defaults(func=cmd_audit)


def _options(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from repro.audits.options import AuditOptions, Tolerance
    from repro.errors import UsageError

    try:
        return AuditOptions(
            trusted_keys=Path(args.trusted_keys) if args.trusted_keys else None,
            steps=args.steps, segments=args.segments, seed=args.seed, device=args.device, threads=args.threads,
            precision=args.precision, compile=args.compile,
            # Only the values given: the rest default by the runs' precision (the engine decides).
            tolerance=Tolerance(**{k: v for k, v in (("atol", args.atol), ("rtol", args.rtol),
                                                     ("grad_rtol", args.grad_rtol),
                                                     ("tensor_rtol", args.tensor_rtol)) if v is not None}),
            allow_data_change=args.allow_data_change,
            work_dir=Path(args.work_dir) if args.work_dir else None,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "--" + str(first["loc"][-1]).replace("_", "-")
        raise UsageError(f"{where}: {first['msg']}") from exc


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before any compute if a report cannot be written."""
    from repro.errors import OutputError, UsageError

    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot {args.plot}: the plot is a PNG; name a .png file")
    for flag, value in (("--json", args.json), ("--junit", args.junit), ("--plot", args.plot)):
        if not value:
            continue
        folder = Path(value).resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{flag} {value}: cannot create {folder} ({exc.strerror}); choose another path") from exc
        if not os.access(folder, os.W_OK) or Path(value).is_dir():
            raise OutputError(f"{flag} {value}: cannot write there; choose a writable file path")


def _scan(args: argparse.Namespace) -> Any:
    """Scan the recorded environment; "not checked" packages are reported as such, never as clean."""
    from pydantic import ValidationError

    from repro.audits.vulnerabilities import ScanSettings, scan_manifest
    from repro.errors import UsageError
    from repro.manifest import load_manifest

    try:
        settings = ScanSettings(service="osv", osv_url=args.osv_url) if args.osv_url else ScanSettings()
    except ValidationError as exc:
        raise UsageError(f"--osv-url {args.osv_url}: {exc.errors()[0]['msg']}") from exc
    return scan_manifest(load_manifest(Path(args.manifest)).manifest, settings)


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit a manifest; print the report; write the requested files; 0 if reproduced, else 1."""
    from repro.audits.engine import run_audit
    from repro.audits.formats.console import print_report
    from repro.cli import EXIT_NOT_REPRODUCED, EXIT_OK
    from repro.console import TrainingProgress, err_console, out_console

    options = _options(args)
    _check_outputs(args)
    progress = TrainingProgress(f"audit {Path(args.manifest).name}")
    started = False

    def on_event(event: dict[str, Any]) -> None:
        nonlocal started
        if event.get("event") == "notice":
            err_console.print(f"[bold]audit:[/] {event['message']}", highlight=False)
            return
        if not started:  # show the bar only once training starts, not for an audit that stops early
            progress.__enter__()
            started = True
        progress(event)

    try:
        report = run_audit(Path(args.manifest), options, on_event)
    finally:
        if started:
            progress.__exit__(None, None, None)
    if args.scan_vulnerabilities:
        report = report.model_copy(update={"vulnerabilities": _scan(args)})
    print_report(report, out_console)
    if args.json:
        from repro.audits.formats.json_report import write_json

        write_json(report, Path(args.json))
        err_console.print(f"wrote {args.json}", highlight=False)
    if args.junit:
        from repro.audits.formats.junit import write_junit

        write_junit(report, Path(args.junit))
        err_console.print(f"wrote {args.junit}", highlight=False)
    if args.plot:
        from repro.audits.formats.plot import write_plot
        from repro.manifest import load_manifest

        curve = [(s.step, s.loss) for s in load_manifest(Path(args.manifest)).manifest.steps]
        write_plot(report, Path(args.plot), curve)
        err_console.print(f"wrote {args.plot}", highlight=False)
    return EXIT_OK if report.reproduced else EXIT_NOT_REPRODUCED
