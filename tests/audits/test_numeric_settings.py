"""Precision and compilation in the audit: the differences it lists, and tolerances whose
defaults follow the runs' precision."""

from __future__ import annotations

from pathlib import Path

from repro.audits.differences import environment_differences, run_differences
from repro.audits.options import BF16_TOLERANCE, AuditOptions, Tolerance, effective_tolerance
from repro.records.manifest_file import load_manifest

REFERENCE = Path(__file__).parents[2] / "manifests" / "reference" / "smoke.json"


def test_default_tolerances_follow_the_precision_and_explicit_values_win() -> None:
    assert effective_tolerance(Tolerance(), "32", "32") == Tolerance()
    assert effective_tolerance(Tolerance(), "32", "bf16-mixed") == BF16_TOLERANCE
    assert effective_tolerance(Tolerance(), "bf16-mixed", "bf16-mixed") == BF16_TOLERANCE
    given = effective_tolerance(Tolerance(atol=0.5), "bf16-mixed")
    assert given.atol == 0.5 and given.rtol == BF16_TOLERANCE.rtol
    assert BF16_TOLERANCE.atol > Tolerance().atol and BF16_TOLERANCE.rtol > Tolerance().rtol
    # A policy or CLI that sets nothing leaves every value to the precision's defaults.
    assert AuditOptions().tolerance.model_fields_set == set()


def test_a_rerun_in_another_precision_or_compile_mode_is_listed_first() -> None:
    m = load_manifest(REFERENCE).manifest
    here = m.run.model_copy(update={"settings": m.run.settings.model_copy(
        update={"precision": "bf16-mixed", "compile": True})})
    found = run_differences(m.run, here, rerun=True)
    by_field = {d.field: d for d in found}
    assert (by_field["settings.precision"].recorded, by_field["settings.precision"].here) == ("32", "bf16-mixed")
    assert by_field["settings.precision"].likelihood == "certain"
    assert (by_field["settings.compile"].recorded, by_field["settings.compile"].here) == ("False", "True")
    same = run_differences(m.run, m.run, rerun=True)
    assert not [d for d in same if d.field.startswith("settings.")]


def test_inductor_flags_differ_when_recorded_and_are_not_invented_for_older_manifests() -> None:
    recorded = load_manifest(REFERENCE).manifest.environment  # captured before the inductor flags
    here = recorded.model_copy(update={"determinism": {**recorded.determinism, "inductor_deterministic": True,
                                                       "inductor_fallback_random": True}})
    assert not [d for d in environment_differences(recorded, here) if "inductor" in d.field]
    newer = here.model_copy(update={"determinism": {**here.determinism, "inductor_fallback_random": False}})
    changed = [d for d in environment_differences(newer, here) if "inductor" in d.field]
    assert [(d.field, d.recorded, d.here) for d in changed] == [
        ("determinism.inductor_fallback_random", "False", "True")]
