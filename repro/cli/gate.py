"""``repro gate``: command-line wiring of :mod:`repro.audits.gate` (registered in ``repro.cli.app``).

The exit code is the outcome's (:data:`OUTCOME_EXIT_CODES`); see ``docs/ci.md``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from repro.cli.parsing import Subparsers
from repro.errors import ExitCode

SUMMARY_ENV_VAR = "GITHUB_STEP_SUMMARY"


OUTCOME_EXIT_CODES: dict[str, ExitCode] = {
    "integrity_failure": ExitCode.INTEGRITY,
    "not_reproduced": ExitCode.NOT_REPRODUCED,
    "vulnerable": ExitCode.NOT_REPRODUCED,
    "input_error": ExitCode.USAGE,
    "could_not_check": ExitCode.COULD_NOT_CHECK,
    "internal_error": ExitCode.INTERNAL,
    "pass": ExitCode.OK,
}
"""The gate's exit code for each outcome of :mod:`repro.audits.gate` (the README's table)."""


def add_parser(sub: Subparsers) -> None:
    """Register ``repro gate``."""
    p = sub.add_parser("gate", help="release gate: audit the policy's manifests and scan their environments")
    p.add_argument("--config", default="pyproject.toml",
                   help="pyproject.toml holding [tool.repro.gate] (default: ./pyproject.toml)")
    p.add_argument("--json", metavar="FILE", help="write the gate report as JSON")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML (two test cases per manifest)")
    p.add_argument("--summary", metavar="FILE",
                   help=f"write the markdown summary (also appended to ${SUMMARY_ENV_VAR} when set)")
    p.add_argument("--plots", metavar="DIR", help="write a loss-curve plot per manifest into DIR")
    p.add_argument("--html", metavar="FILE", help="write one self-contained HTML page for all the policy's manifests")
    p.add_argument("--osv-url", help="scan with this OSV-compatible service instead of the policy's")
    p.set_defaults(func=cmd_gate)


def _append_summary(path: Path, text: str) -> None:
    from repro.errors import OutputError
    from repro.files.atomic import describe_os_error

    try:
        with open(path, "a", encoding="utf-8") as handle:  # GitHub's contract: append, never replace
            handle.write(text)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from exc


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any audit runs, a report the gate could not write (probed, nothing left)."""
    from repro.files import atomic

    for flag, value in (("--json", args.json), ("--junit", args.junit), ("--summary", args.summary),
                        ("--html", args.html)):
        if value:
            atomic.check_writable(Path(value), flag)
    if args.plots:
        atomic.check_writable(Path(args.plots) / "plot.png", "--plots")
    if os.environ.get(SUMMARY_ENV_VAR):
        atomic.check_writable(Path(os.environ[SUMMARY_ENV_VAR]), f"${SUMMARY_ENV_VAR}")


def _check_not_inputs(args: argparse.Namespace, loaded: Any) -> None:
    """No report may overwrite a manifest the gate reads, a file of its run, the policy or the trust list."""
    from repro.records.manifest_file import refuse_overwriting_inputs

    for flag, value in (("--json", args.json), ("--junit", args.junit), ("--summary", args.summary),
                        ("--html", args.html)):
        if value:
            for manifest in loaded.manifests:
                refuse_overwriting_inputs(Path(value), flag, manifest, Path(args.config),
                                          loaded.resolve(loaded.policy.trusted_keys))


def _refuse_inputs_as_outputs(args: argparse.Namespace) -> None:
    """Before the failure-report guard (which would write a failure report there): no report path
    may be a manifest the policy names, a file of its run, the policy or the trust list. A policy
    that cannot be loaded is reported inside the guard, as before."""
    from repro.audits.policy import load_policy
    from repro.errors import ReproError

    try:
        loaded = load_policy(Path(args.config))
    except ReproError:
        return
    _check_not_inputs(args, loaded)


def cmd_gate(args: argparse.Namespace) -> int:
    """Load the policy, run the gate, write the reports, return the outcome's exit code."""
    from repro.audits.formats.failure import reports_on_failure

    _check_outputs(args)  # cheap, before anything is read or run
    _refuse_inputs_as_outputs(args)
    # A policy that cannot be loaded, or a crash, still replaces every report asked for (never stale).
    with reports_on_failure("gate", args.config, json=args.json, junit=args.junit, html=args.html,
                            remove=(args.summary,)):
        return _gate(args)


def _gate(args: argparse.Namespace) -> int:
    from repro.audits.gate import Gate
    from repro.audits.gate_outputs import VERDICT_WORDS, json_bytes, junit_bytes, markdown
    from repro.audits.policy import PolicyError, load_policy
    from repro.files import atomic
    from repro.rendering.console import ProgressEvents, say

    loaded = load_policy(Path(args.config))
    if args.osv_url:
        from pydantic import ValidationError

        vulns = loaded.policy.vulnerabilities
        try:
            vulns = vulns.model_validate({**vulns.model_dump(), "osv_url": args.osv_url})
        except ValidationError as exc:
            from repro.records.validation import first_problem

            raise PolicyError(f"--osv-url {args.osv_url!r}: {first_problem(exc)[1]}") from None
        loaded = loaded.model_copy(update={"policy": loaded.policy.model_copy(update={"vulnerabilities": vulns})})
    plots = Path(args.plots) if args.plots else None
    progress = ProgressEvents("gate rerun", "gate")
    gate = Gate(loaded, plots_dir=plots, on_progress=lambda message: progress({"event": "notice", "message": message}),
                on_event=progress)
    try:
        report = gate.run()
    finally:
        progress.close()

    summary = markdown(report)
    if args.json:
        atomic.write_bytes(Path(args.json), json_bytes(report))
    if args.junit:
        atomic.write_bytes(Path(args.junit), junit_bytes(report))
    if args.summary:
        atomic.write_text(Path(args.summary), summary)
    if args.html:
        from repro.audits.formats.html import write_gate_html

        manifests = [gate.verified_manifests.get(r.manifest) for r in report.results]
        write_gate_html(report, Path(args.html), manifests)
    if os.environ.get(SUMMARY_ENV_VAR):
        _append_summary(Path(os.environ[SUMMARY_ENV_VAR]), summary)

    for r in report.results:
        say(f"{r.manifest}: {r.reproduction} — {r.message}")
        if r.vulnerabilities is not None:
            say(f"  vulnerabilities: {r.vulnerabilities.summary()}")
    for warning in report.warnings:
        say(("warning:", "bold yellow"), " ", warning, err=True)
    colour = "green" if report.outcome == "pass" else "red"
    say((f"gate: {VERDICT_WORDS[report.outcome]}", f"bold {colour}"))
    return OUTCOME_EXIT_CODES[report.outcome]
