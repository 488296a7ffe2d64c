"""Small helpers several test modules share (one copy each, so they cannot drift apart)."""

from __future__ import annotations

import struct
from pathlib import Path

from repro.audits.judgment import Judgment
from repro.audits.options import AuditOptions
from repro.audits.report import AuditReport, AuditTiming, ManifestInfo, RerunInfo, Segment
from repro.files import atomic

REAL_WRITE_ALL = atomic.write_all
"""``repro.files.atomic.write_all`` as shipped, kept before any test patches it to fail on purpose."""


def float_bits(value: float) -> str:
    """The exact bits of a float (as float64), for comparing losses bit for bit in messages."""
    return struct.pack("<d", value).hex()


def read_report(path: Path) -> AuditReport:
    """An audit's ``--json`` report, validated against the report model."""
    return AuditReport.model_validate_json(Path(path).read_text(encoding="utf-8"))


def constructed_report(judgment: Judgment, **updates: object) -> AuditReport:
    """An audit report around a constructed judgment (no training): for the pure rendering and
    report tests. ``updates`` replace fields (e.g. ``checkpoints``)."""
    info = ManifestInfo(path="run.json", key_id="0" * 16, trusted=False, trainer="gpt", trainer_version="1",
                        preset="smoke", config_sha256="c" * 64, recorded_steps=judgment.losses.compared,
                        recorded_device="cpu", recorded_threads=2)
    timing = AuditTiming(total_seconds=1.0, integrity_seconds=0.1, plan_seconds=0.1, rerun_seconds=0.5,
                         training_seconds=0.4, validation_seconds=0.05, compare_seconds=0.1, overhead_seconds=0.5)
    report = AuditReport(
        tool_version="0", created_at="2026-01-01T00:00:00+00:00", manifest=info,
        options=AuditOptions(tolerance=judgment.tolerance),
        rerun=RerunInfo(device="cpu", threads=2, config_sha256="c" * 64, config_matches=True), mode="full",
        verdict=judgment.verdict, reproduced=judgment.reproduced, summary=judgment.summary,
        steps_compared=judgment.losses.compared, steps_total=judgment.losses.compared, fraction_replayed=1.0,
        segments=[Segment(start=0, end=max(judgment.losses.compared, 1))], spot_check_seed=None,
        losses=judgment.losses, series=judgment.series, batches=judgment.batches, steps=judgment.steps,
        validation=judgment.validation, checkpoints=judgment.checkpoints,
        first_checkpoint_difference=judgment.first_checkpoint_difference, data_checks=[],
        differences=judgment.differences, attribution=judgment.attribution, timing=timing,
    )
    return report.model_copy(update=updates)
