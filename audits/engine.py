"""The audit engine: integrity → data → rerun → compare → attribute, returning an AuditReport.

:func:`run_audit` is the public entry point; :func:`audit_verified` audits a manifest that was
already verified (``repro audit`` and the CI gate, which report from the same verified bytes). It
raises a :class:`~repro.errors.ReproError` when the audit cannot be done or the manifest is not
authentic, and otherwise returns a report whose ``verdict`` says whether the run reproduced.
It writes nothing but the rerun's scratch files; reports are written by :mod:`repro.audits.formats`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from repro import __version__
from repro.audits import (
    assurance,
    attribution,
    comparison,
    differences,
    executed,
    integrity,
    rerun,
    selection,
    spotcheck,
    tensors,
)
from repro.audits.options import AuditOptions, effective_tolerance
from repro.audits.report import (
    Assurance,
    AuditReport,
    AuditTiming,
    CheckpointComparison,
    ManifestInfo,
    Mode,
    RerunInfo,
    Segment,
)
from repro.capture.git import capture_code
from repro.errors import CouldNotCheckError, UsageError
from repro.records.manifest import RunManifest
from repro.records.manifest_file import LoadedManifest, incomplete_marker, replaced_folder, run_folder
from repro.running.config import ResolvedRun
from repro.running.launcher import EventHandler
from repro.trust.verify import VerifyResult

_SEVERITY = {"bitwise": 0, "within_tolerance": 1, "diverged": 2}


@dataclass(frozen=True)
class _Plan:
    """What will be replayed, and how."""

    resolved: ResolvedRun
    mode: Mode
    segments: list[Segment]
    seed: int | None
    assurance: Assurance | None = None

    def covers(self, step: int) -> bool:
        """Whether ``step`` is one of the replayed steps."""
        return any(s.start < step <= s.end for s in self.segments)


def check_options(options: AuditOptions) -> None:
    """Reject combinations of options that make no sense, before reading anything."""
    if options.segments is not None and options.steps is not None:
        raise UsageError("--steps and --segments exclude each other; a spot-check replays whole segments")
    if options.budget is not None and (options.steps is not None or options.segments is not None):
        raise UsageError("--budget excludes --steps and --segments; it picks the segments whose replay fits it")
    if options.budget is not None:
        selection.parse_budget(options.budget)
    if options.seed is not None and options.segments is None and options.budget is None:
        raise UsageError("--seed chooses spot-check segments; use it with --segments K or --budget B")


def _plan(m: RunManifest, options: AuditOptions, trusted: bool) -> _Plan:
    resolved = rerun.plan(m, options.device, options.threads, nproc=options.nproc, trainer=options.trainer,
                          trusted=trusted or options.allow_imports, precision=options.precision,
                          compile=options.compile)
    total = resolved.config.steps
    if options.budget is not None:
        return _within_budget(_budgeted(m, resolved, options), options)
    if options.segments is not None:
        seed = options.seed if options.seed is not None else spotcheck.draw_seed()
        cut = spotcheck.segments_of(m, total)
        chosen = spotcheck.choose_segments(cut, options.segments, seed)
        return _within_budget(_Plan(resolved, "spot-check", chosen, seed,
                                    assurance.assess(cut, [], chosen, seed)), options)
    if options.steps is not None:
        if options.steps > total:
            raise UsageError(f"--steps {options.steps}: the run has only {total} steps")
        return _within_budget(_Plan(resolved, "full" if options.steps == total else "prefix",
                                    [Segment(start=0, end=options.steps)], None), options)
    return _within_budget(_Plan(resolved, "full", [Segment(start=0, end=total)], None), options)


def _budgeted(m: RunManifest, resolved: ResolvedRun, options: AuditOptions) -> _Plan:
    """The segments whose replay fits ``--budget``: largest recorded updates and random ones."""
    assert options.budget is not None
    budget = selection.parse_budget(options.budget)
    seed = options.seed if options.seed is not None else spotcheck.draw_seed()
    cut = spotcheck.segments_of(m, resolved.config.steps)
    seconds = budget.in_seconds(m.timing.wall_seconds)
    picked = selection.select_within(cut, selection.cost_model(m, resolved.config.steps), seconds, seed,
                                     selection.update_norms(m, cut))
    return _Plan(resolved, "spot-check", picked.segments, seed, assurance.assess(
        cut, picked.largest, picked.drawn, seed, budget=budget.text, estimated_seconds=picked.estimated_seconds,
        budget_seconds=seconds))


def _replay(plan: _Plan, m: RunManifest, loaded: LoadedManifest, work: Path,
            on_event: EventHandler | None) -> list[rerun.Rerun]:
    """Replay the plan's segments: a single-process spot-check in ONE training process, anything
    else one training process per segment."""
    if plan.mode == "spot-check":
        for index, segment in enumerate(plan.segments, 1):
            _notify(on_event, f"segment {index}/{len(plan.segments)}: steps {segment.start + 1}-{segment.end}")
    if plan.mode == "spot-check" and plan.resolved.settings.world_size == 1:
        spans = [(spotcheck.start_checkpoint(m, s), s.end) for s in plan.segments]
        return [rerun.rerun_segments(plan.resolved, loaded, work / "segments", spans, on_event=on_event)]
    runs = []
    for segment in plan.segments:
        folder = work / f"segment-{segment.start:06d}-{segment.end:06d}"
        start = spotcheck.start_checkpoint(m, segment)
        runs.append(rerun.rerun(plan.resolved, loaded, folder, start, segment.end, on_event=on_event))
    return runs


def _within_budget(plan: _Plan, options: AuditOptions) -> _Plan:
    """Refuse, before compute, more replayed steps than the user allowed: the manifest's ``steps``
    is a stranger's number, and it alone must not decide how long this machine trains."""
    replayed = sum(s.end - s.start for s in plan.segments)
    if replayed > options.max_steps:
        raise UsageError(
            f"the audit would replay {replayed:,} training steps, more than --max-steps {options.max_steps:,}; "
            f"pass --max-steps {replayed} to allow it, or audit part of the run with --steps N or --segments K"
        )
    return plan


def _notify(on_event: EventHandler | None, message: str) -> None:
    if on_event is not None:
        on_event({"event": "notice", "message": message})


def _compare_checkpoints(m: RunManifest, folder: Path, plan: _Plan, runs: list[rerun.Rerun],
                         options: AuditOptions) -> list[CheckpointComparison]:
    device_changed = plan.resolved.settings.device != m.run.settings.device
    out = []
    for record in m.checkpoints:
        made = next((c for r in runs if (c := r.checkpoint(record.step)) is not None), None)
        if made is not None and plan.covers(record.step):
            out.append(tensors.compare_checkpoint(record.step, record.path, record.tensors, made[0],
                                                  made[1], options.tolerance, device_changed,
                                                  recorded_root=folder, recorded_sha256=record.sha256))
    return out


def run_audit(manifest_path: Path, options: AuditOptions | None = None,
              on_event: EventHandler | None = None, failure_log: Path | None = None) -> AuditReport:
    """Verify the manifest at ``manifest_path``, then audit it (:func:`audit_verified`).

    See ``docs/audit.md`` for the semantics. ``on_event`` receives the training child's progress
    events (as ``repro run`` does) and ``{"event": "notice", "message": ...}`` for what the user
    should see before compute ends. Without ``options.work_dir`` the rerun's files go to a
    temporary folder that is always removed; if the rerun fails, its training log is copied to
    ``failure_log`` (when given) first.
    """
    options = options or AuditOptions()
    check_options(options)
    verified = integrity.verify_for_audit(Path(manifest_path), options.trusted_keys)
    return audit_verified(verified, options, on_event, failure_log)


def audit_verified(verified: VerifyResult, options: AuditOptions | None = None,
                   on_event: EventHandler | None = None, failure_log: Path | None = None) -> AuditReport:
    """Audit a manifest :func:`repro.trust.verify.verify_manifest` verified (with ``data="report"``).

    Everything reported comes from the verified document; the manifest file is not read again.
    ``failure_log`` is as for :func:`run_audit`.
    """
    clock = [time.perf_counter() - verified.seconds]  # integrity time includes the verification
    options = options or AuditOptions()
    check_options(options)
    given_tolerance = options.tolerance
    checked = integrity.check_integrity(verified, options.allow_data_change)
    manifest_path = verified.loaded.path
    m = checked.loaded.manifest
    for change in checked.data_changed:
        _notify(on_event, f"data differs before the rerun: {change.kind} {change.path} {change.status}")
    clock.append(time.perf_counter())
    plan = _plan(m, options, checked.trusted)
    # The defaults depend on the precision of both runs; what the auditor set explicitly stays.
    options = options.model_copy(update={"tolerance": effective_tolerance(
        given_tolerance, m.run.settings.precision, plan.resolved.settings.precision)})
    # The run's own outputs (and the audit's work folder) are not code, tracked by git or not.
    path = Path(manifest_path)
    outputs = [path, run_folder(path), incomplete_marker(path), replaced_folder(path),
               *([options.work_dir] if options.work_dir else [])]
    code_here = capture_code(Path(options.code_path or Path.cwd()), exclude=outputs)
    clock.append(time.perf_counter())

    with rerun.work_folder(options.work_dir, failure_log) as work:
        runs = _replay(plan, m, checked.loaded, work, on_event)
        clock.append(time.perf_counter())
        checkpoints = _compare_checkpoints(m, checked.loaded.folder, plan, runs, options)
        # The rerun's tokenizer lives in the work folder: hash it before the folder goes.
        data_found = differences.data_differences(checked.data, m.data, runs[0].result.data)

    tol = options.tolerance
    recorded = m.step_columns()
    covered = np.zeros(len(recorded), dtype=bool)
    for segment in plan.segments:
        covered |= (recorded.step > segment.start) & (recorded.step <= segment.end)
    losses, others, batches, details = comparison.compare_steps(
        recorded.take(covered), [s for r in runs for s in r.result.steps], tol)
    if losses.compared == 0 and not losses.unmatched:
        raise CouldNotCheckError("the rerun produced no steps to compare; nothing was checked")
    validation, val_details = comparison.compare_validation(
        [v for v in m.validation if plan.covers(v.step)], [v for r in runs for v in r.result.validation], tol)
    series = [*others, validation]
    verdicts = [losses.verdict, *(s.verdict for s in series), *(c.verdict for c in checkpoints)]
    verdict = max(verdicts + ([] if batches.identical else ["diverged"]), key=_SEVERITY.__getitem__)

    env_here = runs[0].result.environment
    assert env_here is not None  # a successful job always reports its environment
    weighed, code_known = executed.refine([
        *data_found,
        *differences.run_differences(m.run, plan.resolved.trainer, plan.resolved.settings.device,
                                     plan.resolved.config.model_dump(mode="json"), __version__,
                                     settings_here=plan.resolved.settings),
        *differences.distributed_differences(m, plan.resolved.settings.world_size, runs[0].result.distributed),
        *differences.environment_differences(m.environment, env_here),
        *differences.code_differences(m.code, code_here),
    ], m.executed, runs[0].result.executed, m.run.trainer.entry)
    found = differences.rank(weighed)
    cause = attribution.attribute(verdict, losses, series, batches, checkpoints, found, code_known=code_known)
    clock.append(time.perf_counter())
    return AuditReport(
        tool_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        manifest=_manifest_info(manifest_path, checked),
        options=options.model_copy(update={"seed": plan.seed}) if plan.seed is not None else options,
        rerun=RerunInfo(device=plan.resolved.settings.device, threads=plan.resolved.settings.threads,
                        world_size=plan.resolved.settings.world_size,
                        config_sha256=plan.resolved.config_sha256,
                        config_matches=plan.resolved.config_sha256 == m.run.config_sha256),
        mode=plan.mode, verdict=verdict, reproduced=verdict != "diverged",
        summary=comparison.verdict_summary(verdict, losses, checkpoints, cause.summary, against=" to the record"),
        steps_compared=losses.compared, steps_total=plan.resolved.config.steps,
        fraction_replayed=sum(s.end - s.start for s in plan.segments) / plan.resolved.config.steps,
        segments=plan.segments, spot_check_seed=plan.seed,
        losses=losses, series=series, batches=batches, steps=details, validation=val_details,
        checkpoints=checkpoints,
        first_checkpoint_difference=next((c.step for c in checkpoints if c.verdict != "bitwise"), None),
        data_checks=checked.data, differences=found, attribution=cause,
        timing=_timing(clock, runs),
        assurance=plan.assurance,
    )


def _manifest_info(path: Path, checked: integrity.IntegrityResult) -> ManifestInfo:
    m = checked.loaded.manifest
    return ManifestInfo(
        path=str(path), key_id=checked.key_id, trusted=checked.trusted, trainer=m.run.trainer.name,
        trainer_version=m.run.trainer.version, preset=m.run.preset, config_sha256=m.run.config_sha256,
        recorded_steps=len(m.steps), recorded_device=m.run.settings.device, recorded_threads=m.run.settings.threads,
        recorded_world_size=m.run.settings.world_size,
    )


def _timing(clock: list[float], runs: list[rerun.Rerun]) -> AuditTiming:
    began, integrity_done, plan_done, rerun_done, now = clock
    rerun_seconds = sum(r.seconds for r in runs)
    return AuditTiming(
        total_seconds=now - began, integrity_seconds=integrity_done - began, plan_seconds=plan_done - integrity_done,
        rerun_seconds=rerun_seconds,
        training_seconds=sum(r.result.timing.train_seconds for r in runs if r.result.timing),
        validation_seconds=sum(r.result.timing.eval_seconds for r in runs if r.result.timing),
        compare_seconds=now - rerun_done, overhead_seconds=max(now - began - rerun_seconds, 0.0),
    )
