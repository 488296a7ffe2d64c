"""``repro audit MANIFEST --vary threads,hashseed,…``: what the run is sensitive to, found on purpose.

After the audit's integrity checks, the recorded configuration is rerun once as recorded (the
control, itself compared with the record) and once per variation (:mod:`repro.audits.variations`),
over the same short prefix. Each variation is compared with the control exactly as an audit
compares a rerun with a record: per-step losses and scalars (bits, ulps, tolerance), batch
fingerprints, validation losses, and checkpoint tensors made by both — through the one judgment
core (:mod:`repro.audits.judgment`), with the tolerance for the runs' precision. A variation whose rerun is
bit-identical to the control shows the run is immune to that condition; any difference shows it
is sensitive. The report's JSON Schema is ``docs/vary-report.schema.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from repro import __version__
from repro.audits import integrity, rerun
from repro.audits.judgment import CheckpointPair, Judgment, Side, judge
from repro.audits.options import Tolerance
from repro.audits.report import CheckpointComparison, ManifestInfo, ReportRecord, manifest_info
from repro.audits.variations import VARIATIONS, Condition
from repro.errors import UsageError
from repro.running.command import is_command
from repro.running.config import ResolvedRun
from repro.running.launcher import EventHandler
from repro.text import plural, utc_now
from repro.trust import limits
from repro.trust.limits import Limits

VARY_SCHEMA_FILE = "vary-report.schema.json"
DEFAULT_VARY_STEPS = 20
"""Steps each variation reruns by default: differences of thread count show within the first ten
steps of the GPT (docs/audit.md, "Tolerances")."""

Status = Literal["bitwise", "within_tolerance", "diverged", "not_available"]


class VariationResult(ReportRecord):
    """One rerun under a changed condition, compared with the control (or the control with the record)."""

    name: str = Field(description="Variation name, or 'control' (the rerun as recorded, vs the record).")
    condition: str = Field(description="What was changed, e.g. 'threads 2 → 1'.")
    status: Status
    sensitive: bool | None = Field(description="True when the numbers differ at all; None if not run.")
    first_difference_step: int | None = Field(description="First step at which any compared quantity differs.")
    first_difference_in: str | None = Field(description="Which quantity differs first: loss, grad_norm, batch, ...")
    first_difference_ulps: int | None = Field(description="Units in the last place of that first difference.")
    first_beyond_tolerance_step: int | None
    max_abs_diff: float | None = Field(description="Largest absolute loss difference.")
    max_ulps: int | None = Field(description="Largest difference in ulps over every per-step quantity.")
    batches_identical: bool | None
    checkpoints: list[CheckpointComparison] = Field(description="Checkpoints both reruns made, tensor by tensor.")
    note: str | None = Field(None, description="Why a variation was not available.")


class VaryReport(ReportRecord):
    """The result of ``repro audit --vary`` (schema version 1)."""

    schema_version: Literal[1] = 1
    kind: Literal["repro.vary-report"] = "repro.vary-report"
    tool_version: str
    created_at: str
    manifest: ManifestInfo
    steps: int = Field(description="Steps each rerun ran (a prefix of the recorded run).")
    tolerance: Tolerance
    control: VariationResult = Field(description="The rerun as recorded, compared with the record.")
    variations: list[VariationResult]
    sensitive_to: list[str]
    immune_to: list[str]
    not_available: list[str]
    reproduced: bool = Field(description="Whether the control reproduced the record (bitwise or within tolerance).")
    summary: str


def parse_variations(text: str) -> list[str]:
    """``threads,hashseed`` (or ``all``) -> variation names, checked against the registry."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(VARIATIONS)
    unknown = [n for n in names if n not in VARIATIONS]
    if unknown or not names:
        raise UsageError(f"--vary {text}: unknown variation {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(VARIATIONS)} or all")
    return list(dict.fromkeys(names))


def _result(name: str, condition: str, judgment: Judgment) -> VariationResult:
    """One rerun's judgment against its reference, as a row of the report."""
    first = judgment.first_difference()
    return VariationResult(
        name=name, condition=condition, status=judgment.verdict, sensitive=judgment.verdict != "bitwise",
        first_difference_step=first.step if first else None, first_difference_in=first.quantity if first else None,
        first_difference_ulps=first.ulps if first else None,
        first_beyond_tolerance_step=judgment.first_beyond_tolerance_step, max_abs_diff=judgment.losses.max_abs_diff,
        max_ulps=judgment.max_ulps, batches_identical=judgment.batches.identical, checkpoints=judgment.checkpoints,
    )


def _unavailable(name: str, reason: str) -> VariationResult:
    return VariationResult(
        name=name, condition=f"{name}: not available", status="not_available", sensitive=None,
        first_difference_step=None, first_difference_in=None, first_difference_ulps=None,
        first_beyond_tolerance_step=None,
        max_abs_diff=None, max_ulps=None, batches_identical=None, checkpoints=[], note=f"not available: {reason}",
    )


def _plan(resolved: ResolvedRun, condition: Condition) -> ResolvedRun:
    if not condition.settings:
        return resolved
    settings = resolved.settings.model_copy(update=condition.settings)
    if settings.device == "cuda":
        rerun.check_cuda()
    return ResolvedRun(trainer=resolved.trainer, trainer_class=resolved.trainer_class, preset=resolved.preset,
                       settings=settings, config=resolved.config)


def run_vary(manifest_path: Path, names: list[str], *, steps: int | None = None, trusted_keys: Path | None = None,
             tolerance: Tolerance | None = None, work_dir: Path | None = None, trainer: str | None = None,
             allow_imports: bool = False, on_event: EventHandler | None = None,
             bounds: Limits | None = None) -> VaryReport:
    """Rerun the recorded configuration as recorded and once per variation; judge the control against
    the record and each variation against the control, through the one judgment core.

    ``trainer``, ``allow_imports`` and ``trusted_keys`` choose and allow the trainer exactly as in
    ``repro audit`` (:func:`repro.audits.rerun.plan`).
    """
    checked = integrity.check_integrity(integrity.verify_for_audit(Path(manifest_path), trusted_keys),
                                        allow_data_change=False)
    loaded = checked.loaded
    m = loaded.manifest
    if is_command(m.run.trainer):
        raise UsageError("--vary does not rerun recorded commands (repro run -- CMD): a changed working folder or "
                         "locale changes what the command itself does; audit the run with repro audit M")
    resolved = rerun.plan(m, None, None, trainer=trainer, trusted=checked.imports_trusted or allow_imports)
    limits.check(m, bounds or Limits(), processes=resolved.settings.world_size)
    total = resolved.config.steps
    if steps is not None and steps > total:
        raise UsageError(f"--steps {steps}: the run has only {total} steps")
    stop = steps or min(DEFAULT_VARY_STEPS, total)
    conditions: dict[str, Condition | str] = {name: VARIATIONS[name].make(m) for name in names}

    def notify(message: str) -> None:
        if on_event is not None:
            on_event({"event": "notice", "message": message})

    with rerun.work_folder(work_dir) as kept:
        work = kept.resolve()  # the cwd variation runs elsewhere: every path the job names is absolute
        notify(f"control: steps 1-{stop} as recorded")
        control = rerun.rerun(resolved, loaded, work / "control", None, stop, on_event=on_event)
        reference = Side(control.result.steps, control.result.validation, resolved.settings.precision)
        recorded = judge(
            Side(m.step_columns().take(m.step_columns().step <= stop), [v for v in m.validation if v.step <= stop],
                 m.run.settings.precision),
            reference,
            checkpoints=[CheckpointPair(c.step, c.path, c.tensors, made[0], made[1], recorded_root=loaded.folder,
                                        recorded_sha256=c.sha256)
                         for c in m.checkpoints if (made := control.checkpoint(c.step)) is not None],
            tolerance=tolerance,
        )
        results = [_result("control", "as recorded (vs the record)", recorded)]
        for name, condition in conditions.items():
            if isinstance(condition, str):
                results.append(_unavailable(name, condition))
                continue
            notify(f"{name}: {condition.description}")
            folder = condition.rerun_folder(work / f"vary-{name}")
            plan = _plan(resolved, condition)
            varied = rerun.rerun(plan, loaded, folder, None, stop, on_event=on_event, extra_env=condition.env,
                                 cwd=condition.working_dir(folder))
            pairs = [CheckpointPair(saved.step, Path(saved.path), saved.tensors, other[0], other[1])
                     for saved in control.result.checkpoints if (other := varied.checkpoint(saved.step)) is not None]
            judgment = judge(reference, Side(varied.result.steps, varied.result.validation, plan.settings.precision),
                             checkpoints=pairs, device_changed=plan.settings.device != resolved.settings.device,
                             tolerance=tolerance)
            results.append(_result(name, condition.description, judgment))
    return _report(checked, stop, recorded.tolerance, results)


def _report(checked: integrity.IntegrityResult, steps: int, tol: Tolerance,
            rows: list[VariationResult]) -> VaryReport:
    """The report: ``rows`` are the control, then the variations."""
    control, results = rows[0], rows[1:]
    sensitive = [r.name for r in results if r.sensitive]
    immune = [r.name for r in results if r.sensitive is False]
    unavailable = [r.name for r in results if r.status == "not_available"]
    parts = []
    if sensitive:
        parts.append("sensitive to " + ", ".join(
            f"{r.name} ({r.status.replace('_', ' ')}: {r.first_difference_in} differs from step "
            f"{r.first_difference_step}, at most {plural(r.max_ulps or 0, 'ulp')})"
            for r in results if r.sensitive))
    if immune:
        parts.append("immune to " + ", ".join(immune) + " (bitwise)")
    if unavailable:
        parts.append("not available: " + ", ".join(unavailable))
    reproduced = control.status != "diverged"
    head = f"control {control.status.replace('_', ' ')} vs the record over {steps} steps"
    return VaryReport(
        tool_version=__version__, created_at=utc_now(),
        manifest=manifest_info(checked.verified),
        steps=steps, tolerance=tol, control=control, variations=results, sensitive_to=sensitive,
        immune_to=immune, not_available=unavailable, reproduced=reproduced,
        summary="; ".join([head, *parts]),
    )
