"""The audit engine: integrity → data → plan → rerun → judge, returning an AuditReport.

The judging (compare, verdict, differences, attribution) is :mod:`repro.audits.judgment`'s, the
core ``repro diff`` and ``--vary`` call too; this module gathers the two sides: the verified
record and a rerun of it.

:func:`run_audit` is the public entry point; :func:`audit_verified` audits a manifest that was
already verified (``repro audit`` and the CI gate, which report from the same verified bytes). It
raises a :class:`~repro.errors.ReproError` when the audit cannot be done or the manifest is not
authentic, and otherwise returns a report whose ``verdict`` says whether the run reproduced.
It writes nothing but the rerun's scratch files; reports are written by :mod:`repro.audits.formats`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro import __version__
from repro.audits import assurance, differences, integrity, rerun, selection, spotcheck
from repro.audits.judgment import CheckpointPair, Evidence, Judgment, Side, judge
from repro.audits.options import AuditOptions, Tolerance
from repro.audits.report import Assurance, AuditReport, AuditTiming, Mode, RerunInfo, Segment, manifest_info
from repro.capture.git import capture_code
from repro.errors import UsageError
from repro.records.manifest import CodeRecord, RunIdentity, RunManifest
from repro.records.manifest_file import LoadedManifest, incomplete_marker, replaced_folder, run_folder
from repro.running.command import is_command
from repro.running.config import ResolvedRun
from repro.running.launcher import EventHandler
from repro.text import utc_now
from repro.trust import limits
from repro.trust.verify import VerifyResult


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
                          compile=options.compile, signer_trusted=trusted, allow_command=options.allow_command)
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
    """Replay the plan's segments: a single-process spot-check of a plugin run in ONE training
    process; anything else (a data-parallel run, a recorded command, whose script owns its loop
    and starts once per process) one training process per segment."""
    if plan.mode == "spot-check":
        for index, segment in enumerate(plan.segments, 1):
            _notify(on_event, f"segment {index}/{len(plan.segments)}: steps {segment.start + 1}-{segment.end}")
    if plan.mode == "spot-check" and plan.resolved.settings.world_size == 1 and not is_command(m.run.trainer):
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


def _checkpoint_pairs(m: RunManifest, folder: Path, plan: _Plan, runs: list[rerun.Rerun]) -> list[CheckpointPair]:
    """The recorded checkpoints the rerun made again, in the replayed stretches."""
    pairs = []
    for record in m.checkpoints:
        made = next((c for r in runs if (c := r.checkpoint(record.step)) is not None), None)
        if made is not None and plan.covers(record.step):
            pairs.append(CheckpointPair(record.step, record.path, record.tensors, made[0], made[1],
                                        recorded_root=folder, recorded_sha256=record.sha256))
    return pairs


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
    verified = integrity.verify_for_audit(Path(manifest_path), options.trusted_keys, options.data)
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
    checked = integrity.check_integrity(verified, options.allow_data_change)
    manifest_path = verified.loaded.path
    m = checked.loaded.manifest
    for change in checked.data_changed:
        _notify(on_event, f"data differs before the rerun: {change.kind} {change.path} {change.status}")
    clock.append(time.perf_counter())
    plan = _plan(m, options, checked.imports_trusted)
    limits.check(m, options.limits, processes=plan.resolved.settings.world_size, where=options.limits_from)
    # The run's own outputs (and the audit's work folder) are not code, tracked by git or not.
    path = Path(manifest_path)
    outputs = [path, run_folder(path), incomplete_marker(path), replaced_folder(path),
               *([options.work_dir] if options.work_dir else [])]
    code_here = capture_code(Path(options.code_path or Path.cwd()), exclude=outputs)
    clock.append(time.perf_counter())

    with rerun.work_folder(options.work_dir, failure_log) as work:
        runs = _replay(plan, m, checked.loaded, work, on_event)
        clock.append(time.perf_counter())
        if on_event is not None:  # the progress names the phase: the bar (or a log line) says what is slow now
            on_event({"event": "phase", "phase": "comparing steps, checkpoints and environment"})
        judgment = _judge(m, checked, plan, runs, code_here, given=options.tolerance)
    clock.append(time.perf_counter())
    settings = plan.resolved.settings
    return AuditReport(
        tool_version=__version__,
        created_at=utc_now(),
        manifest=manifest_info(checked.verified),
        options=options.model_copy(update={"tolerance": judgment.tolerance,
                                           **({"seed": plan.seed} if plan.seed is not None else {})}),
        rerun=RerunInfo(device=settings.device, threads=settings.threads, world_size=settings.world_size,
                        config_sha256=plan.resolved.config_sha256,
                        config_matches=plan.resolved.config_sha256 == m.run.config_sha256,
                        changed=differences.settings_changed(m.run.settings, settings)),
        mode=plan.mode, verdict=judgment.verdict, reproduced=judgment.reproduced, summary=judgment.summary,
        steps_compared=judgment.losses.compared, steps_total=plan.resolved.config.steps,
        fraction_replayed=sum(s.end - s.start for s in plan.segments) / plan.resolved.config.steps,
        segments=plan.segments, spot_check_seed=plan.seed,
        losses=judgment.losses, series=judgment.series, batches=judgment.batches, steps=judgment.steps,
        validation=judgment.validation, checkpoints=judgment.checkpoints,
        first_checkpoint_difference=judgment.first_checkpoint_difference,
        data_checks=checked.data, differences=judgment.differences, attribution=judgment.attribution,
        timing=_timing(clock, runs),
        assurance=plan.assurance,
    )


def _judge(m: RunManifest, checked: integrity.IntegrityResult, plan: _Plan, runs: list[rerun.Rerun],
           code_here: CodeRecord, *, given: Tolerance) -> Judgment:
    """The record (the replayed stretches of it) against the rerun, through the one judgment core."""
    options_settings = plan.resolved.settings
    recorded = m.step_columns()
    covered = np.zeros(len(recorded), dtype=bool)
    for segment in plan.segments:
        covered |= (recorded.step > segment.start) & (recorded.step <= segment.end)
    first = runs[0].result
    env_here = first.environment
    assert env_here is not None  # a successful job always reports its environment
    here = RunIdentity(settings=options_settings, trainer=plan.resolved.trainer, preset=m.run.preset,
                       config=plan.resolved.config.model_dump(mode="json"),
                       config_sha256=plan.resolved.config_sha256, tool_version=__version__)
    evidence = Evidence(
        differences=[
            # The rerun's tokenizer lives in the work folder: hashed here, before the folder goes.
            *differences.data_differences(checked.data, m.data, first.data),
            *differences.run_differences(m.run, here, rerun=True),
            *differences.distributed_differences(m, options_settings.world_size, first.distributed),
            *differences.environment_differences(m.environment, env_here),
            *differences.code_differences(m.code, code_here, (m.executed, first.executed)),
        ],
        recorded_executed=m.executed, observed_executed=first.executed, trainer_entry=m.run.trainer.entry,
    )
    return judge(
        Side(recorded.take(covered), [v for v in m.validation if plan.covers(v.step)], m.run.settings.precision),
        Side([s for r in runs for s in r.result.steps], [v for r in runs for v in r.result.validation],
             options_settings.precision),
        checkpoints=_checkpoint_pairs(m, checked.loaded.folder, plan, runs),
        device_changed=options_settings.device != m.run.settings.device,
        evidence=evidence, tolerance=given, against=" to the record",
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
