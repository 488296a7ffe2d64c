"""``repro diff A.json B.json``: judge two recorded runs against each other, without rerunning.

Both manifests are verified exactly as ``repro verify`` does (signature, trust list, every data
file and artifact). Then the one judgment core (:mod:`repro.audits.judgment`) judges B with A in
the place of the record: per-step comparison (bits, ulps, tolerance for both precisions), batch
fingerprints, validation losses, checkpoint tensors at the steps both runs saved (read from both
runs' files), every difference in settings (precision and compile included), world size,
environment, git state, executed code and data, ranked, and the likely cause. The report's JSON
Schema is ``docs/diff-report.schema.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from repro import __version__
from repro.audits import differences
from repro.audits.judgment import CheckpointPair, Evidence, Side, judge
from repro.audits.options import Tolerance
from repro.audits.report import (
    Attribution,
    BatchComparison,
    CheckpointComparison,
    Difference,
    ManifestInfo,
    ReportRecord,
    SeriesComparison,
    StepDetail,
    ValidationDetail,
    Verdict,
    manifest_info,
)
from repro.text import utc_now
from repro.trust.keys import load_trusted_keys
from repro.trust.verify import verify_manifest

DIFF_SCHEMA_FILE = "diff-report.schema.json"


class DiffReport(ReportRecord):
    """The result of ``repro diff`` (schema version 1): run A (as "recorded") against run B (as "here")."""

    schema_version: Literal[1] = 1
    kind: Literal["repro.diff-report"] = "repro.diff-report"
    tool_version: str
    created_at: str
    a: ManifestInfo
    b: ManifestInfo
    tolerance: Tolerance = Field(description="The tolerance applied: the defaults for both runs' precision, "
                                "with what the user set on top.")
    verdict: Verdict
    reproduced: bool = Field(description="True for bitwise and within_tolerance.")
    summary: str
    steps_compared: int
    losses: SeriesComparison
    series: list[SeriesComparison] = Field(description="Gradient norm, learning rate and validation loss.")
    batches: BatchComparison
    steps: list[StepDetail]
    validation: list[ValidationDetail]
    checkpoints: list[CheckpointComparison] = Field(description="Checkpoints at the steps both runs saved.")
    first_checkpoint_difference: int | None
    differences: list[Difference] = Field(description="A vs B, most likely to matter first.")
    attribution: Attribution


def run_diff(a_path: Path, b_path: Path, trusted_keys: Path | None = None,
             tolerance: Tolerance | None = None) -> DiffReport:
    """Verify both runs, then judge B against A through the one judgment core, as an audit judges
    a rerun against its record (the tolerance for both runs' precision)."""
    trusted = load_trusted_keys(trusted_keys) if trusted_keys is not None else None
    va, vb = verify_manifest(Path(a_path), trusted), verify_manifest(Path(b_path), trusted)
    a, b = va.loaded.manifest, vb.loaded.manifest
    b_ckpts = {c.step: c for c in b.checkpoints}
    evidence = Evidence(
        differences=[
            *differences.data_differences([], a.data, b.data),
            *differences.run_differences(a.run, b.run, rerun=False),
            *differences.distributed_differences(a, b.run.settings.world_size, b.distributed),
            *differences.environment_differences(a.environment, b.environment),
            *differences.code_differences(a.code, b.code, (a.executed, b.executed)),
        ],
        recorded_executed=a.executed, observed_executed=b.executed, trainer_entry=a.run.trainer.entry,
    )
    judgment = judge(
        Side(a.step_columns(), a.validation, a.run.settings.precision),
        Side(b.step_columns(), b.validation, b.run.settings.precision),
        checkpoints=[
            CheckpointPair(c.step, c.path, c.tensors, b_ckpts[c.step].path, b_ckpts[c.step].tensors,
                           recorded_root=va.loaded.folder, recorded_sha256=c.sha256,
                           observed_root=vb.loaded.folder, observed_sha256=b_ckpts[c.step].sha256)
            for c in a.checkpoints if c.step in b_ckpts
        ],
        device_changed=a.run.settings.device != b.run.settings.device,
        evidence=evidence, tolerance=tolerance, checkpoint_noun="shared checkpoint",
    )
    return DiffReport(
        tool_version=__version__, created_at=utc_now(),
        a=manifest_info(va), b=manifest_info(vb), tolerance=judgment.tolerance, verdict=judgment.verdict,
        reproduced=judgment.reproduced, summary=judgment.summary,
        steps_compared=judgment.losses.compared, losses=judgment.losses, series=judgment.series,
        batches=judgment.batches, steps=judgment.steps, validation=judgment.validation,
        checkpoints=judgment.checkpoints, first_checkpoint_difference=judgment.first_checkpoint_difference,
        differences=judgment.differences, attribution=judgment.attribution,
    )
