"""``repro diff A.json B.json``: judge two recorded runs against each other, without rerunning.

Both manifests are verified exactly as ``repro verify`` does (signature, trust list, every data
file and artifact). Then the audit's engine does the rest with A in the place of the record and B
in the place of the rerun: per-step comparison (bits, ulps, tolerance), batch fingerprints,
validation losses, checkpoint tensors at the steps both runs saved (read from both runs' files),
every difference in settings, environment, git state, executed code and data, ranked, and the
likely cause. The report's JSON Schema is ``docs/diff-report.schema.json``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import Field

from repro import __version__
from repro.audits import attribution, comparison, differences, executed, tensors
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
)
from repro.records.manifest import DataRecord, RunIdentity
from repro.trust.keys import load_trusted_keys
from repro.trust.verify import VerifyResult, verify_manifest

DIFF_SCHEMA_FILE = "diff-report.schema.json"
_SEVERITY = {"bitwise": 0, "within_tolerance": 1, "diverged": 2}


class DiffReport(ReportRecord):
    """The result of ``repro diff`` (schema version 1): run A (as "recorded") against run B (as "here")."""

    schema_version: Literal[1] = 1
    kind: Literal["repro.diff-report"] = "repro.diff-report"
    tool_version: str
    created_at: str
    a: ManifestInfo
    b: ManifestInfo
    tolerance: Tolerance
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


def _d(category: str, field: str, a: object, b: object, likelihood: str) -> Difference:
    return Difference(category=category, field=field, recorded=None if a is None else str(a),
                      here=None if b is None else str(b), likelihood=likelihood)  # type: ignore[arg-type]


_SETTINGS: dict[str, tuple[str, str]] = {
    "seed": ("trainer", "certain"), "device": ("device", "high"), "pythonhashseed": ("hashseed", "medium"),
    "checkpoint_every": ("trainer", "low"), "eval_every": ("trainer", "low"),
}
"""Run settings and how they weigh; threads are compared through the environment records."""


def identity_differences(a: RunIdentity, b: RunIdentity) -> list[Difference]:
    """Settings, trainer, config and tool version of two runs."""
    out = [
        _d(category, f"settings.{name}", getattr(a.settings, name), getattr(b.settings, name), likelihood)
        for name, (category, likelihood) in _SETTINGS.items()
        if getattr(a.settings, name) != getattr(b.settings, name)
    ]
    if a.trainer.entry != b.trainer.entry:
        out.append(_d("trainer", "trainer.entry", a.trainer.entry, b.trainer.entry, "high"))
    if a.trainer.version != b.trainer.version:
        out.append(_d("trainer", "trainer.version", a.trainer.version, b.trainer.version, "medium"))
    for key in sorted(set(a.config) | set(b.config)):
        if a.config.get(key, "(absent)") != b.config.get(key, "(absent)"):
            out.append(_d("trainer", f"config.{key}", a.config.get(key, "(absent)"), b.config.get(key, "(absent)"),
                          "certain" if key != "steps" else "high"))
    if a.tool_version != b.tool_version:
        out.append(_d("tool", "repro version", a.tool_version, b.tool_version, "low"))
    return out


def data_record_differences(a: DataRecord, b: DataRecord) -> list[Difference]:
    """Two runs' recorded data: source, files, corpus, tokenizer, token stream, split sizes."""
    out = []
    fa, fb = {f.path: f.sha256 for f in a.files}, {f.path: f.sha256 for f in b.files}
    for path in sorted(set(fa) | set(fb)):
        if fa.get(path) != fb.get(path):
            out.append(_d("data", f"data file {path}", (fa.get(path) or "(absent)")[:12],
                          (fb.get(path) or "(absent)")[:12], "certain"))
    pairs: list[tuple[str, object, object]] = [
        ("data.source", a.source.model_dump(), b.source.model_dump()),
        ("data.corpus_sha256", a.corpus_sha256, b.corpus_sha256),
        ("data.token_stream_sha256", a.token_stream_sha256, b.token_stream_sha256),
        ("data.tokenizer", a.tokenizer.sha256 if a.tokenizer else None, b.tokenizer.sha256 if b.tokenizer else None),
        ("data.train_tokens", a.train_tokens, b.train_tokens),
        ("data.val_tokens", a.val_tokens, b.val_tokens),
    ]
    for field, x, y in pairs:
        if x != y:
            # The same files from another place (a path source on two machines) is not a difference.
            likely = "low" if field == "data.source" and fa == fb and a.corpus_sha256 == b.corpus_sha256 else "certain"
            out.append(_d("data", field, x, y, likely))
    return out


def _info(path: Path, verified: VerifyResult) -> ManifestInfo:
    m = verified.loaded.manifest
    return ManifestInfo(
        path=str(path), key_id=verified.key_id, trusted=verified.trusted, trainer=m.run.trainer.name,
        trainer_version=m.run.trainer.version, preset=m.run.preset, config_sha256=m.run.config_sha256,
        recorded_steps=len(m.steps), recorded_device=m.run.settings.device, recorded_threads=m.run.settings.threads,
    )


def run_diff(a_path: Path, b_path: Path, trusted_keys: Path | None = None,
             tolerance: Tolerance | None = None) -> DiffReport:
    """Verify both runs, then compare B with A as an audit compares a rerun with its record."""
    tol = tolerance or Tolerance()
    trusted = load_trusted_keys(trusted_keys) if trusted_keys is not None else None
    va, vb = verify_manifest(Path(a_path), trusted), verify_manifest(Path(b_path), trusted)
    a, b = va.loaded.manifest, vb.loaded.manifest
    losses, others, batches, details = comparison.compare_steps(a.steps, b.steps, tol)
    validation, val_details = comparison.compare_validation(a.validation, b.validation, tol)
    device_changed = a.run.settings.device != b.run.settings.device
    b_ckpts = {c.step: c for c in b.checkpoints}
    checkpoints = [
        tensors.compare_checkpoint(c.step, va.loaded.folder / c.path, c.tensors,
                                   vb.loaded.folder / b_ckpts[c.step].path, b_ckpts[c.step].tensors, tol,
                                   device_changed)
        for c in a.checkpoints if c.step in b_ckpts
    ]
    series = [*others, validation]
    verdicts = [losses.verdict, *(s.verdict for s in series), *(c.verdict for c in checkpoints)]
    verdict = max(verdicts + ([] if batches.identical else ["diverged"]), key=_SEVERITY.__getitem__)
    weighed, code_known = executed.refine([
        *data_record_differences(a.data, b.data),
        *identity_differences(a.run, b.run),
        *differences.environment_differences(a.environment, b.environment),
        *differences.code_differences(a.code, b.code, (a.executed, b.executed)),
    ], a.executed, b.executed, a.run.trainer.entry)
    found = differences.rank(weighed)
    cause = attribution.attribute(verdict, losses, series, batches, checkpoints, found, code_known=code_known)
    summary = comparison.verdict_summary(verdict, losses, checkpoints, cause.summary,
                                         checkpoint_noun="shared checkpoint")
    return DiffReport(
        tool_version=__version__, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        a=_info(Path(a_path), va), b=_info(Path(b_path), vb), tolerance=tol, verdict=verdict,
        reproduced=verdict != "diverged", summary=summary,
        steps_compared=losses.compared, losses=losses, series=series, batches=batches, steps=details,
        validation=val_details, checkpoints=checkpoints,
        first_checkpoint_difference=next((c.step for c in checkpoints if c.verdict != "bitwise"), None),
        differences=found, attribution=cause,
    )
