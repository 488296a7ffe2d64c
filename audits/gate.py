"""``repro gate``: the release gate. Every policy manifest must reproduce; environments are scanned.

For each manifest the policy names, the gate runs a full audit through the audit engine's public
entry point (integrity first, then the rerun and comparison), and scans the environment the run
recorded for known vulnerabilities. It never stops at the first problem: every manifest is
audited and everything is reported, then one outcome is chosen, most serious first:

==================== ==== ===========================================================
outcome              exit meaning
==================== ==== ===========================================================
``integrity_failure``  3  a manifest or artifact was changed, or signed by an untrusted key
``not_reproduced``     1  a rerun diverged beyond the policy's tolerance
``vulnerable``         1  a known vulnerability the policy does not accept
``input_error``        2  a manifest is malformed or unreadable (the policy itself: also 2)
``could_not_check``    4  an artifact, device or trainer was missing, or (``on_unchecked =
                          "fail"``) the vulnerability service could not answer
``internal_error``    70  a bug in repro stopped a manifest's audit (traceback in a file)
``pass``               0  every manifest reproduced and nothing the policy forbids was found
==================== ==== ===========================================================

The command line maps each outcome to its exit code (``repro.cli.gate.OUTCOME_EXIT_CODES``); a
manifest's error is classified by its error class's own exit code, as every command does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field

from repro import __version__, errors
from repro.audits.integrity import verify_for_audit
from repro.audits.options import AuditOptions
from repro.audits.policy import GatePolicy, LoadedPolicy
from repro.audits.report import AuditReport
from repro.audits.vulnerabilities import VulnerabilityReport, scan_manifest
from repro.records.base import FrozenRecord
from repro.records.canonical import canonical_bytes
from repro.records.hashing import sha256_bytes
from repro.records.manifest import RunManifest
from repro.text import utc_now
from repro.trust.verify import VerifyResult

Outcome = Literal["integrity_failure", "not_reproduced", "vulnerable", "input_error", "could_not_check",
                  "internal_error", "pass"]
OUTCOME_ORDER: tuple[Outcome, ...] = (
    "integrity_failure", "not_reproduced", "vulnerable", "input_error", "could_not_check", "internal_error", "pass"
)
"""Most serious first: the gate's outcome is the first of these that any manifest has."""


ReproductionStatus = Literal["reproduced", "not_reproduced", "integrity_failure", "input_error", "could_not_check",
                             "internal_error"]
VulnerabilityStatus = Literal["pass", "fail", "accepted", "unchecked_warning", "unchecked_failure", "not_scanned",
                              "disabled"]
"""``accepted``: vulnerable but the policy does not fail on it. ``unchecked_*``: some packages could
not be checked (a warning or a failure per policy). ``not_scanned``: the manifest did not verify."""

REPORT_KIND: Final = "repro.gate-report"


class _Model(FrozenRecord):
    """Frozen and strict, as every record (repro.records.base)."""


class ManifestResult(_Model):
    """What the gate found for one manifest."""

    manifest: str = Field(description="The path as the policy names it.")
    reproduction: ReproductionStatus
    message: str = Field(description="The audit's summary, or the error that stopped it.")
    audit: AuditReport | None = None
    vulnerability_status: VulnerabilityStatus
    vulnerabilities: VulnerabilityReport | None = None
    plot: str | None = Field(None, description="Loss-curve plot, when one was written.")
    seconds: float

    @property
    def outcome(self) -> Outcome:
        """This manifest's contribution to the gate's outcome."""
        if self.reproduction != "reproduced":
            return self.reproduction
        if self.vulnerability_status == "fail":
            return "vulnerable"
        if self.vulnerability_status == "unchecked_failure":
            return "could_not_check"
        return "pass"


class GateReport(_Model):
    """The result of ``repro gate`` (``--json``)."""

    schema_version: Literal[1] = 1
    kind: Literal["repro.gate-report"] = REPORT_KIND
    tool_version: str
    created_at: str
    policy_file: str
    policy: GatePolicy
    outcome: Outcome
    results: list[ManifestResult]
    warnings: list[str] = Field(description="What a reader must not miss, e.g. packages not checked.")
    seconds: float


def worst(outcomes: list[Outcome]) -> Outcome:
    """The most serious outcome in ``outcomes`` (``pass`` when empty)."""
    return min(outcomes, key=OUTCOME_ORDER.index, default="pass")


_STATUS_OF_CODE: dict[errors.ExitCode, ReproductionStatus] = {
    errors.ExitCode.INTEGRITY: "integrity_failure",
    errors.ExitCode.COULD_NOT_CHECK: "could_not_check",
}


def _classify(exc: errors.ReproError) -> ReproductionStatus:
    """The status of a manifest whose audit raised ``exc``: by the error's own exit code."""
    return _STATUS_OF_CODE.get(errors.exit_code_for(exc), "input_error")


def _vulnerability_status(report: VulnerabilityReport, loaded: LoadedPolicy) -> VulnerabilityStatus:
    policy = loaded.policy.vulnerabilities
    if report.verdict == "vulnerable":
        return "fail" if policy.fail_on_vulnerable else "accepted"
    if report.verdict == "no_known":
        return "pass"
    return "unchecked_failure" if policy.on_unchecked == "fail" else "unchecked_warning"


AuditFunction = Callable[[VerifyResult, AuditOptions], AuditReport]
PlotFunction = Callable[[AuditReport, Path], None]


class Gate:
    """Runs a loaded policy: audits, scans, and collects one :class:`GateReport`.

    Each manifest is verified once (:func:`repro.trust.verify.verify_manifest`); the audit and the
    vulnerability scan both work on that verified document. ``audit`` and ``plot`` default to
    the audit engine's public functions; they are parameters
    so the gate's decisions can be tested without training.
    """

    def __init__(self, loaded: LoadedPolicy, audit: AuditFunction | None = None,
                 plot: PlotFunction | None = None, plots_dir: Path | None = None,
                 on_progress: Callable[[str], None] | None = None, *,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.loaded = loaded
        self.on_event = on_event
        self.audit = audit or self._engine_audit
        self.plot = plot or _engine_plot
        self.plots_dir = plots_dir
        self.on_progress = on_progress or (lambda message: None)
        self._scans: dict[str, VulnerabilityReport] = {}
        self.verified_manifests: dict[str, RunManifest] = {}
        """Each audited manifest as verified, by its policy path: reports draw on these, never a re-read."""

    def run(self) -> GateReport:
        """Audit and scan every manifest; never raises for a manifest's failure."""
        started = time.perf_counter()
        results = [self._one(policy_path, path)
                   for policy_path, path in zip(self.loaded.policy.manifests, self.loaded.manifests, strict=True)]
        return GateReport(
            tool_version=__version__, created_at=utc_now(),
            policy_file=str(self.loaded.source), policy=self.loaded.policy,
            outcome=worst([r.outcome for r in results]), results=results,
            warnings=[w for r in results for w in _warnings(r)], seconds=time.perf_counter() - started,
        )

    def _one(self, policy_path: Path, path: Path) -> ManifestResult:
        started = time.perf_counter()
        self.on_progress(f"auditing {policy_path}")
        audit, plot, verified = None, None, None
        try:
            # Verified once, signature first; the audit and the scan both use this document.
            options = self.loaded.audit_options()
            verified = verify_for_audit(path, options.trusted_keys, options.data)
            audit = self.audit(verified, options)
            self.verified_manifests[str(policy_path)] = verified.loaded.manifest
            reproduction: ReproductionStatus = "reproduced" if audit.reproduced else "not_reproduced"
            message = audit.summary
        except errors.ReproError as exc:
            reproduction, message = _classify(exc), str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not cost the other manifests or the report
            reproduction, message = "internal_error", _internal(exc)
        if audit is not None and self.plots_dir is not None:
            plot = self._plot(audit, policy_path, self.plots_dir)
        try:
            vuln_status, vulns = self._scan(verified, policy_path)
        except errors.ReproError as exc:  # e.g. a contradictory recorded environment: never a pass
            vuln_status, vulns = "not_scanned", None
            if reproduction == "reproduced":
                reproduction, message = _classify(exc), f"vulnerability scan refused: {exc}"
        return ManifestResult(
            manifest=str(policy_path), reproduction=reproduction, message=message, audit=audit,
            vulnerability_status=vuln_status, vulnerabilities=vulns, plot=plot,
            seconds=time.perf_counter() - started,
        )

    def _engine_audit(self, verified: VerifyResult, options: AuditOptions) -> AuditReport:
        from repro.audits.engine import audit_verified

        def notice(event: dict[str, Any]) -> None:
            if event.get("event") == "notice":
                self.on_progress(str(event.get("message")))
            elif self.on_event is not None:  # the rerun's phases and steps: a bar, or plain lines in a log
                self.on_event(event)

        return audit_verified(verified, options, on_event=notice)

    def _plot(self, audit: AuditReport, policy_path: Path, plots_dir: Path) -> str | None:
        # Named after the whole policy path, so manifests with the same file name do not collide.
        target = plots_dir / (str(policy_path.with_suffix("")).replace("/", "_").strip("_") + ".png")
        try:
            self.plot(audit, target)
        except errors.ReproError as exc:
            self.on_progress(f"no plot for {policy_path}: {exc}")
            return None
        return str(target)

    def _scan(self, verified: VerifyResult | None,
              policy_path: Path) -> tuple[VulnerabilityStatus, VulnerabilityReport | None]:
        settings = self.loaded.policy.vulnerabilities
        if not settings.enabled:
            return "disabled", None
        # The recorded package list is only worth scanning if the manifest verified.
        if verified is None:
            return "not_scanned", None
        manifest = verified.loaded
        environment = manifest.manifest.environment.distributions
        digest = sha256_bytes(canonical_bytes(environment))
        if digest not in self._scans:
            self.on_progress(f"scanning the {len(environment)} packages {policy_path} recorded for vulnerabilities")
            self._scans[digest] = scan_manifest(manifest.manifest, self.loaded.scan_settings())
        report = self._scans[digest]
        return _vulnerability_status(report, self.loaded), report


def _internal(exc: Exception) -> str:
    from repro.cli.crashlog import write_crash_report

    try:
        where = f"traceback written to {write_crash_report(exc)}"
    except OSError:
        where = "the traceback could not be written"
    return f"internal error: {type(exc).__name__}: {exc} ({where}; please report it)"


def _first_reason(report: VulnerabilityReport) -> str:
    first = next(p for p in report.packages if p.status == "not_checked")
    return f", e.g. {first.name} {first.version}: {first.reason}"


def _warnings(result: ManifestResult) -> list[str]:
    found = []
    if result.vulnerabilities is not None and result.vulnerabilities.count("not_checked"):
        v = result.vulnerabilities
        found.append(
            f"{result.manifest}: {v.count('not_checked')} of {len(v.packages)} recorded packages were NOT "
            f"checked for vulnerabilities ({v.service}); that is not a clean result"
            + (f": {v.error}" if v.error else _first_reason(v))
        )
    if result.vulnerability_status == "accepted" and result.vulnerabilities is not None:  # "accepted" implies a scan
        found.append(f"{result.manifest}: known vulnerabilities accepted by policy: {result.vulnerabilities.summary()}")
    if result.vulnerability_status == "not_scanned":
        found.append(f"{result.manifest}: not scanned for vulnerabilities because the manifest did not verify")
    return found


def _engine_plot(report: AuditReport, target: Path) -> None:
    from repro.audits.formats.plot import write_plot

    write_plot(report, target)


def run_gate(loaded: LoadedPolicy, plots_dir: Path | None = None,
             on_progress: Callable[[str], None] | None = None) -> GateReport:
    """Run the gate with the audit engine; see :class:`Gate`."""
    return Gate(loaded, plots_dir=plots_dir, on_progress=on_progress).run()
