"""The audit report: what was compared, how close it came, what differs here, and the likely cause.

Every model is frozen and forbids unknown fields, like the manifest. ``--json`` writes
:class:`AuditReport`; its JSON Schema is published as ``docs/audit-report.schema.json``
(regenerate with ``python -m audits.report docs/``; a test keeps it current).
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from repro.audits.options import AuditOptions
from repro.audits.vulnerabilities import VulnerabilityReport
from repro.records.base import FrozenRecord
from repro.trust.verify import VerifyResult

REPORT_SCHEMA_VERSION: Final = 1
REPORT_KIND: Final = "repro.audit-report"
SCHEMA_FILE = "audit-report.schema.json"

Verdict = Literal["bitwise", "within_tolerance", "diverged"]
"""``bitwise``: every compared bit equal. ``within_tolerance``: every difference inside the
documented thresholds and the same batches. ``diverged``: anything else."""

Likelihood = Literal["certain", "high", "medium", "low", "none"]
"""How likely a difference between recorded and here is to change the numbers (``none``: it cannot,
e.g. a package the training process never imported)."""

Mode = Literal["full", "prefix", "spot-check"]


class ReportRecord(FrozenRecord):
    """Base of the report's models: immutable, unknown fields rejected."""


class ManifestInfo(ReportRecord):
    """The audited manifest: where it is, who signed it, what it ran."""

    path: str
    key_id: str
    trusted: bool = Field(description="True when the key was checked against a trust list.")
    trainer: str
    trainer_version: str
    preset: str | None
    config_sha256: str
    recorded_steps: int
    recorded_device: str
    recorded_threads: int
    recorded_world_size: int = Field(1, description="Data-parallel processes of the recorded run.")
    recorded_precision: str = Field("32", description="Numeric precision of the recorded run.")
    recorded_compile: bool = Field(False, description="Whether the recorded run trained through torch.compile.")


def manifest_info(verified: VerifyResult) -> ManifestInfo:
    """The one way every report describes a verified manifest (audit, diff, vary, gate)."""
    m = verified.loaded.manifest
    settings = m.run.settings
    return ManifestInfo(
        path=str(verified.loaded.path), key_id=verified.key_id, trusted=verified.trusted,
        trainer=m.run.trainer.name, trainer_version=m.run.trainer.version, preset=m.run.preset,
        config_sha256=m.run.config_sha256, recorded_steps=len(m.step_columns()), recorded_device=settings.device,
        recorded_threads=settings.threads, recorded_world_size=settings.world_size,
        recorded_precision=settings.precision, recorded_compile=settings.compile,
    )


def config_note(rerun: RerunInfo) -> str:
    """Why the rerun's config digest differs from the recorded one, in words ('' when it does not):
    the settings the auditor changed, or else the installed trainer's reading of the config."""
    if rerun.config_matches:
        return ""
    if rerun.changed:
        return f"config digest differs: {', '.join(rerun.changed)} changed"
    return "config digest differs: the installed trainer reads the recorded config differently"


class RerunInfo(ReportRecord):
    """How the rerun was configured (device and threads may differ from the recording)."""

    device: str
    threads: int
    world_size: int = Field(1, description="Data-parallel processes of the rerun (on one node).")
    config_sha256: str
    config_matches: bool = Field(description="Whether the rerun's config digest equals the recorded one.")
    changed: list[str] = Field(
        default_factory=list,
        description="Settings the auditor changed for the rerun (device, threads, processes, precision, compile).",
    )


class Segment(ReportRecord):
    """A stretch of the run replayed from the checkpoint after ``start`` (0: from scratch) to ``end``."""

    start: int = Field(ge=0)
    end: int = Field(ge=1)


class CatchProbability(ReportRecord):
    """The chance of catching a run with at least ``fraction`` of its steps fabricated."""

    fraction: float = Field(ge=0.0, le=1.0, description="Share of the run's steps fabricated.")
    segments_touched: int = Field(ge=0, description="The fewest segments such a fabrication touches (m).")
    probability: float = Field(ge=0.0, le=1.0, description="Lower bound on the chance of catching it.")


class Assurance(ReportRecord):
    """What a spot-check replayed and what it proves (the model: :mod:`repro.audits.assurance`)."""

    segments_total: int = Field(description="Checkpoint-to-checkpoint segments in the run (N).")
    largest_update: list[Segment] = Field(description="Segments picked for the largest recorded update.")
    random: list[Segment] = Field(description="Segments drawn at random from the rest, with the reported seed.")
    pool: int = Field(description="Segments the random picks were drawn from (P = N - largest-update picks).")
    steps_replayed: int
    steps_total: int
    fraction_of_steps: float = Field(description="Share of the run's steps replayed.")
    seed: int | None = Field(description="Seed of the random picks (the auditor's; repeat the choice with it).")
    budget: str | None = Field(None, description="The budget given (--budget), if any.")
    estimated_seconds: float | None = Field(None, description="Estimated replay time, from the recorded timing.")
    budget_seconds: float | None = Field(None, description="The budget in seconds of replay.")
    catch: list[CatchProbability] = Field(description="Lower bounds for fabricated fractions of steps.")
    statement: str = Field(description="The assurance in one sentence.")
    blind_spots: list[str] = Field(description="What a spot-check cannot see.")


class SeriesComparison(ReportRecord):
    """One per-step quantity (loss, gradient norm, learning rate, validation loss), recorded vs rerun."""

    name: str
    verdict: Verdict
    compared: int = Field(description="Steps present on both sides.")
    identical: int = Field(description="Steps whose values are bit-identical.")
    unmatched: list[int] = Field(description="Steps recorded but not rerun, or rerun but not recorded.")
    first_difference_step: int | None = Field(description="First step whose bits differ.")
    first_difference_ulps: int | None = Field(description="Units in the last place at that step.")
    first_beyond_tolerance_step: int | None
    max_abs_diff: float
    max_rel_diff: float
    max_ulps: int
    max_step: int | None = Field(description="Step of the largest absolute difference.")
    final_abs_diff: float = Field(description="Absolute difference at the last compared step.")
    doubling_steps: float | None = Field(
        description="Steps over which the difference doubles (log-linear fit), when it grows."
    )
    growth: str = Field(description="How the difference evolves, in words.")


class BatchComparison(ReportRecord):
    """Batch fingerprints per step: data-order drift, kept apart from numeric drift."""

    compared: int
    identical: bool
    first_difference_step: int | None
    differing_steps: int


class StepDetail(ReportRecord):
    """One step of the loss-difference table."""

    step: int
    recorded_loss: float | None
    rerun_loss: float | None
    abs_diff: float | None
    rel_diff: float | None
    ulps: int | None
    within_tolerance: bool
    batch_match: bool | None
    other_differences: list[str] = Field(description="Other fields that differ beyond tolerance at this step.")


class ValidationDetail(ReportRecord):
    """A validation loss, recorded vs rerun."""

    step: int
    recorded: float | None
    rerun: float | None
    abs_diff: float | None
    within_tolerance: bool


class TensorDifference(ReportRecord):
    """A checkpoint tensor whose bits differ (or that exists on one side only)."""

    name: str
    status: Literal["within_tolerance", "differs", "missing_in_rerun", "only_in_rerun", "device_only"]
    dtype: str | None
    shape: list[int] | None
    max_abs_diff: float | None
    rel_l2: float | None = Field(description="||rerun - recorded||_2 / ||recorded||_2 (floating point only).")
    differing_elements: int | None
    elements: int | None


class CheckpointComparison(ReportRecord):
    """One checkpoint, tensor by tensor."""

    step: int
    verdict: Verdict
    tensors: int
    identical: int
    differences: list[TensorDifference] = Field(description="Every tensor not bit-identical, largest first.")


class DataCheck(ReportRecord):
    """A data file (or the corpus as a whole) checked against its recorded hash before any compute."""

    kind: str
    path: str
    status: Literal["ok", "changed", "missing"]


class Difference(ReportRecord):
    """One way the recorded run's world differs from this one."""

    category: str = Field(description="device, torch, cuda, blas, cpu, world, threads, determinism, hashseed, "
                                      "code, data, trainer, packages, platform, tool.")
    field: str = Field(description="What differs, e.g. environment.torch_version.")
    recorded: str | None
    here: str | None
    likelihood: Likelihood
    note: str | None = None


class Attribution(ReportRecord):
    """The most likely cause of what the comparison found."""

    kind: Literal["none", "data", "data_order", "environment", "code", "nondeterminism", "records", "unknown"]
    summary: str = Field(description="One line, e.g. 'first difference at step 2, 1 ulp; threads 2 → 1'.")
    causes: list[str] = Field(description="Candidate causes, most likely first.")


class AuditTiming(ReportRecord):
    """Where the audit's time went (never compared). Report files are written after this."""

    total_seconds: float
    integrity_seconds: float = Field(description="Signature, artifact and data hashes.")
    plan_seconds: float = Field(description="Loading the trainer, reading the code's git state.")
    rerun_seconds: float = Field(description="Wall time of the training child processes.")
    training_seconds: float = Field(description="Of which optimizer steps.")
    validation_seconds: float = Field(description="Of which validation passes.")
    compare_seconds: float = Field(description="Steps, checkpoints, differences, attribution.")
    overhead_seconds: float = Field(description="Everything but the rerun: total - rerun.")


class AuditReport(ReportRecord):
    """The result of ``repro audit`` (schema version 1)."""

    schema_version: Literal[1] = REPORT_SCHEMA_VERSION
    kind: Literal["repro.audit-report"] = REPORT_KIND
    tool_version: str
    created_at: str
    manifest: ManifestInfo
    options: AuditOptions
    rerun: RerunInfo
    mode: Mode
    verdict: Verdict
    reproduced: bool = Field(description="True for bitwise and within_tolerance.")
    summary: str
    steps_compared: int
    steps_total: int = Field(description="Steps in the recorded run.")
    fraction_replayed: float = Field(description="Share of the run's steps that were rerun.")
    segments: list[Segment]
    spot_check_seed: int | None
    losses: SeriesComparison
    series: list[SeriesComparison] = Field(description="Gradient norm, learning rate and validation loss.")
    batches: BatchComparison
    steps: list[StepDetail]
    validation: list[ValidationDetail]
    checkpoints: list[CheckpointComparison]
    first_checkpoint_difference: int | None = Field(description="Step of the first checkpoint not bit-identical.")
    data_checks: list[DataCheck]
    differences: list[Difference] = Field(description="Recorded vs here, most likely to matter first.")
    attribution: Attribution
    timing: AuditTiming
    vulnerabilities: VulnerabilityReport | None = Field(
        None, description="pip-audit scan of the recorded environment (--scan-vulnerabilities).")
    assurance: Assurance | None = Field(
        None, description="A spot-check's picks and what they prove (--segments, --budget); None for a full or "
        "prefix audit.")
