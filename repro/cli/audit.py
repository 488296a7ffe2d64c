"""``repro audit``: the command line of the audit engine.

Errors propagate to ``repro.cli.app.main``, which exits with their code (:mod:`repro.errors`);
this module maps only the verdict: reproduced (``bitwise`` or ``within_tolerance``) exits 0,
``diverged`` exits 1. Heavy imports (pydantic
models, torch, matplotlib) happen when the command runs, not when ``repro`` starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from repro.cli.parsing import Subparsers, add_tolerance_arguments, tolerance_from
from repro.trust import limits

DESCRIPTION = """\
Rerun the configuration a manifest records, through the same trainer, and judge the result
against it: integrity first (exit 3 if tampered or untrusted), data checked before compute,
then per-step losses (exact bits), batch fingerprints, checkpoints tensor by tensor and
validation losses, with the likely cause of any difference. Exit codes: 0 reproduced (bitwise
or within tolerance), 1 not reproduced, 2 usage or input error, 3 integrity failure (also a
changed data file), 4 could not check (missing artifact or data, device unavailable, trainer not
installed), 70 internal error. See docs/audit.md."""


def add_parser(sub: Subparsers) -> None:
    """Add ``audit`` to the ``repro`` subcommands."""
    from repro.audits.options import DEFAULT_MAX_STEPS

    p = sub.add_parser("audit", help="rerun a recorded run and judge it against its manifest",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", help="the run manifest, e.g. manifests/run.json")
    p.add_argument("--trusted-keys", metavar="FILE", help="trust list: a valid signature by another key fails (exit 3)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--steps", type=int, metavar="N",
                       help="audit only the first N steps (schedules stay as recorded)")
    scope.add_argument("--segments", type=int, metavar="K",
                       help="spot-check: replay K random checkpoint-to-checkpoint segments")
    scope.add_argument("--budget", metavar="B",
                       help="spot-check the segments whose replay fits B: a share of the run's recorded wall time "
                            "(10%%) or a time (90s, 5m, 2h); largest recorded updates and random segments")
    p.add_argument("--seed", type=int, metavar="S",
                   help="seed for choosing the segments of --segments or --budget (default: random, reported)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="rerun device (default: as recorded)")
    p.add_argument("--threads", type=int, metavar="N", help="rerun thread count (default: as recorded)")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="rerun data-parallel processes on this node (default: the recorded world size)")
    p.add_argument("--precision", choices=["32", "bf16-mixed"], help="rerun precision (default: as recorded)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="rerun through torch.compile, or not (default: as recorded)")
    add_tolerance_arguments(p)
    p.add_argument("--data", metavar="PATH",
                   help="where the run's data is here, if not where it was recorded (data outside the git "
                   "work tree); accepted only if every file hashes as recorded")
    p.add_argument("--allow-data-change", action="store_true",
                   help="rerun even if data files differ from the recorded ones, and attribute")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON (schema: docs/audit-report.schema.json)")
    p.add_argument("--junit", metavar="FILE", help="write the report as JUnit XML")
    p.add_argument("--plot", metavar="FILE.png", help="plot recorded vs rerun losses and their difference")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report (verdict, curves, all tensors)")
    p.add_argument("--scan-vulnerabilities", action="store_true",
                   help="also scan the recorded environment with pip-audit (informational; the gate enforces policy)")
    p.add_argument("--osv-url", metavar="URL",
                   help="OSV-compatible mirror for the scan (default: pip-audit's PyPI service)")
    p.add_argument("--work-dir", metavar="DIR", help="keep the rerun's checkpoints and log here (default: temporary)")
    p.add_argument("--vary", metavar="LIST",
                   help="rerun a prefix (--steps, default 20) as recorded and once per changed condition: "
                        "threads, hashseed, cwd, locale, timezone, device, or all; report what the run is "
                        "sensitive to (schema: docs/vary-report.schema.json)")
    p.add_argument("--trainer", metavar="NAME_OR_REF",
                   help="rerun with this trainer (entry-point name or package.module:Class); needed to import a "
                        "trainer that an untrusted manifest names only by module (see docs/security.md)")
    p.add_argument("--allow-imports", action="store_true",
                   help="import the modules the manifest names (its trainer, a Lightning module and datamodule) "
                        "although no trust list names its signer: that runs their code (see docs/security.md)")
    p.add_argument("--allow-command", metavar="CMD",
                   help="rerun a command run's recorded command (given exactly as recorded, e.g. "
                        "'python train.py --lr 3e-4') although no trust list names its signer: that runs it "
                        "(see docs/security.md)")
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, metavar="N",
                   help=f"refuse, before compute, to replay more than N training steps (default {DEFAULT_MAX_STEPS:,})")
    limits.add_arguments(p)
    p.set_defaults(func=cmd_audit)


def _options(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from repro.audits.options import AuditOptions
    from repro.errors import UsageError

    try:
        return AuditOptions(
            trusted_keys=Path(args.trusted_keys) if args.trusted_keys is not None else None,
            steps=args.steps, segments=args.segments, budget=args.budget, seed=args.seed, device=args.device,
            threads=args.threads,
            nproc=args.nproc,
            precision=args.precision, compile=args.compile,
            tolerance=tolerance_from(args),
            allow_data_change=args.allow_data_change, data=Path(args.data) if args.data else None,
            work_dir=Path(args.work_dir) if args.work_dir else None,
            trainer=args.trainer, max_steps=args.max_steps, allow_imports=args.allow_imports,
            allow_command=args.allow_command,
            limits=limits.from_arguments(args),
        )
    except ValidationError as exc:
        from repro.records.validation import option_problem

        raise UsageError(option_problem(exc)) from exc


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before any compute if a report cannot be written (probed; nothing is left behind)."""
    from repro.errors import UsageError
    from repro.files import atomic

    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot {args.plot}: the plot is a PNG; name a .png file")
    for flag, value in (("--json", args.json), ("--junit", args.junit), ("--plot", args.plot), ("--html", args.html)):
        if value:
            atomic.check_writable(Path(value), flag)


def _check_not_inputs(args: argparse.Namespace) -> None:
    """No report may overwrite the manifest, a file of its run or the trust list. Checked before
    the failure-report guard, so a refused path is never written, not even with a failure report."""
    from repro.records.manifest_file import refuse_overwriting_inputs

    others = [Path(args.trusted_keys)] if args.trusted_keys else []
    for flag, value in (("--json", args.json), ("--junit", args.junit), ("--plot", args.plot), ("--html", args.html)):
        if value:
            refuse_overwriting_inputs(Path(value), flag, Path(args.manifest), *others)


def failure_log_path(args: argparse.Namespace) -> Path | None:
    """Where a failed rerun's training log is kept: beside the first report asked for, as
    ``<report>.train.log`` (None: no report file, or a device or FIFO, which has no "beside")."""
    from repro.files.atomic import is_stream

    for value in (args.json, args.junit, args.plot, args.html):
        if value and not is_stream(Path(value)):
            return Path(value).with_suffix(".train.log")
    return None


def _scan_settings(args: argparse.Namespace) -> Any:
    """The scan's settings, checked before anything is read."""
    from pydantic import ValidationError

    from repro.audits.vulnerabilities import ScanSettings
    from repro.errors import UsageError

    try:
        return ScanSettings(service="osv", osv_url=args.osv_url) if args.osv_url else ScanSettings()
    except ValidationError as exc:
        from repro.records.validation import first_problem

        raise UsageError(f"--osv-url {args.osv_url}: {first_problem(exc)[1]}") from exc


def _progress(args: argparse.Namespace) -> Any:
    """An event handler that prints notices and shows a training bar; ``.close()`` ends the bar."""
    from repro.rendering.console import ProgressEvents

    return ProgressEvents(f"audit {Path(args.manifest).name}", "audit")


def cmd_vary(args: argparse.Namespace, options: Any) -> int:
    """``--vary``: rerun under changed conditions; 0 if the control reproduces the record, else 1."""
    from repro.audits.formats.vary import print_vary, write_vary_json, write_vary_junit
    from repro.audits.vary import parse_variations, run_vary
    from repro.errors import ExitCode, UsageError
    from repro.rendering.console import out_console, say

    names = parse_variations(args.vary)
    for flag, value in (("--segments", args.segments), ("--device", args.device), ("--threads", args.threads),
                        ("--plot", args.plot), ("--scan-vulnerabilities", args.scan_vulnerabilities or None),
                        ("--allow-data-change", args.allow_data_change or None)):
        if value is not None:
            raise UsageError(f"--vary and {flag} exclude each other: --vary reruns as recorded and changes one "
                             "condition at a time")
    handler = _progress(args)
    try:
        report = run_vary(Path(args.manifest), names, steps=options.steps, trusted_keys=options.trusted_keys,
                          tolerance=options.tolerance, work_dir=options.work_dir, trainer=options.trainer,
                          allow_imports=options.allow_imports, on_event=handler, bounds=options.limits)
    finally:
        handler.close()
    print_vary(report, out_console)
    if args.json:
        write_vary_json(report, Path(args.json))
        say(f"wrote {args.json}", err=True)
    if args.junit:
        write_vary_junit(report, Path(args.junit))
        say(f"wrote {args.junit}", err=True)
    return ExitCode.OK if report.reproduced else ExitCode.NOT_REPRODUCED


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit a manifest; print the report; write the requested files; 0 if reproduced, else 1.

    Every report asked for is written whatever the outcome: one that stopped before a verdict
    writes a failure report in its place (:mod:`repro.audits.formats.failure`)."""
    from repro.audits.formats.failure import reports_on_failure

    _check_not_inputs(args)
    with reports_on_failure("vary" if args.vary is not None else "audit", args.manifest, json=args.json,
                            junit=args.junit, html=args.html, remove=(args.plot,)):
        return _audit(args)


def _audit(args: argparse.Namespace) -> int:
    from repro.audits.engine import audit_verified, check_options
    from repro.audits.formats.console import print_report
    from repro.audits.integrity import verify_for_audit
    from repro.errors import ExitCode
    from repro.rendering.console import TrainingProgress, out_console, say

    options = _options(args)
    check_options(options)
    _check_outputs(args)
    if args.vary is not None:
        return cmd_vary(args, options)
    settings = _scan_settings(args) if args.scan_vulnerabilities else None
    progress = TrainingProgress(f"audit {Path(args.manifest).name}")
    started = False

    def on_event(event: dict[str, Any]) -> None:
        nonlocal started
        if event.get("event") == "notice":
            say(("audit:", "bold"), " ", str(event["message"]), err=True)
            return
        if not started:  # show the bar only once training starts, not for an audit that stops early
            progress.__enter__()
            started = True
        progress(event)

    # One document: the scan and the plot use the manifest that was verified, never a new read.
    verified = verify_for_audit(Path(args.manifest), options.trusted_keys, options.data)
    try:
        report = audit_verified(verified, options, on_event, failure_log=failure_log_path(args))
    finally:
        if started:
            progress.__exit__(None, None, None)
    if settings is not None:
        from repro.audits.vulnerabilities import scan_manifest

        # "not checked" packages are reported as such, never as clean.
        report = report.model_copy(update={"vulnerabilities": scan_manifest(verified.loaded.manifest, settings)})
    print_report(report, out_console)
    if args.json:
        from repro.audits.formats.json_report import write_json

        write_json(report, Path(args.json))
        say(f"wrote {args.json}", err=True)
    if args.junit:
        from repro.audits.formats.junit import write_junit

        write_junit(report, Path(args.junit))
        say(f"wrote {args.junit}", err=True)
    manifest = verified.loaded.manifest  # the verified bytes, read once: never re-read from disk
    if args.plot:
        from repro.audits.formats.plot import write_plot

        columns = manifest.step_columns()
        write_plot(report, Path(args.plot), list(zip(columns.step.tolist(), columns.loss.tolist(), strict=True)))
        say(f"wrote {args.plot}", err=True)
    if args.html:
        from repro.audits.formats.html import write_audit_html

        write_audit_html(report, Path(args.html), manifest)
        say(f"wrote {args.html}", err=True)
    return ExitCode.OK if report.reproduced else ExitCode.NOT_REPRODUCED
