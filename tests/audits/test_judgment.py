"""The one judgment core on constructed records (no training): tolerance by precision, verdict
order, first difference, the settings every command compares, and what the reports say."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from repro.audits import differences
from repro.audits.formats.failure import failure_junit, failure_of
from repro.audits.formats.junit import junit_xml
from repro.audits.judgment import Side, judge, most_severe
from repro.audits.options import BF16_TOLERANCE, Tolerance
from repro.errors import (
    CouldNotCheckError,
    DataChangedError,
    ExitCode,
    MissingArtifactError,
    SignatureError,
    UsageError,
)
from repro.records.manifest import (
    DataRecord,
    DataSource,
    FileDigest,
    RunIdentity,
    RunSettings,
    StepRecord,
    TrainerRef,
    ValidationRecord,
)
from tests.helpers import constructed_report


def _steps(losses: list[float], batch_offset: int = 0) -> list[StepRecord]:
    return [StepRecord(step=i, loss=x, lr=1e-3, grad_norm=1.0, tokens=64, batch=f"{i + batch_offset:016x}")
            for i, x in enumerate(losses, 1)]


LOSSES = [8.0, 7.5, 7.25, 7.0]


def _side(losses: list[float], precision: str = "32", batch_offset: int = 0) -> Side:
    return Side(_steps(losses, batch_offset), [ValidationRecord(step=4, loss=7.0)], precision)


def test_identical_runs_are_bitwise_and_name_nothing() -> None:
    j = judge(_side(LOSSES), _side(LOSSES))
    assert (j.verdict, j.reproduced, j.first_difference()) == ("bitwise", True, None)
    assert j.summary.startswith("bitwise: 4 steps")


@pytest.mark.parametrize(("precisions", "verdict"), [
    (("32", "32"), "diverged"),
    (("bf16-mixed", "32"), "within_tolerance"),
    (("32", "bf16-mixed"), "within_tolerance"),
    (("bf16-mixed", "bf16-mixed"), "within_tolerance"),
])
def test_the_tolerance_follows_the_precision_of_both_runs(precisions: tuple[str, str], verdict: str) -> None:
    # 2e-4 relative: beyond float32's default, inside bf16-mixed's (every command judges this way).
    moved = [x * (1 + 2e-4) for x in LOSSES]
    j = judge(_side(LOSSES, precisions[0]), _side(moved, precisions[1]))
    assert j.verdict == verdict
    assert (j.tolerance == BF16_TOLERANCE) == ("bf16-mixed" in precisions)


def test_what_the_user_sets_overrides_the_precision_defaults() -> None:
    moved = [x * (1 + 2e-4) for x in LOSSES]
    j = judge(_side(LOSSES, "bf16-mixed"), _side(moved, "bf16-mixed"), tolerance=Tolerance(rtol=1e-6))
    assert j.verdict == "diverged"
    assert j.tolerance.rtol == 1e-6 and j.tolerance.atol == BF16_TOLERANCE.atol


def test_another_batch_is_diverged_whatever_the_losses() -> None:
    j = judge(_side(LOSSES), _side(LOSSES, batch_offset=1))
    assert j.verdict == "diverged"
    first = j.first_difference()
    assert first is not None and (first.step, first.quantity) == (1, "batch")
    assert j.attribution.kind == "data_order"


def test_the_first_difference_is_the_earliest_quantity() -> None:
    later = [*LOSSES[:2], LOSSES[2] + 1e-6, LOSSES[3]]
    j = judge(_side(LOSSES), _side(later))
    first = j.first_difference()
    assert first is not None and (first.step, first.quantity) == (3, "loss") and first.ulps and first.ulps > 0


def test_nothing_on_either_side_is_not_a_judgment() -> None:
    with pytest.raises(CouldNotCheckError):
        judge(Side([], [], "32"), Side([], [], "32"))


def test_the_verdict_order_is_one() -> None:
    assert most_severe(["bitwise", "within_tolerance"]) == "within_tolerance"
    assert most_severe(["within_tolerance", "diverged", "bitwise"]) == "diverged"
    assert most_severe([]) == "bitwise"


def _identity(**settings: Any) -> RunIdentity:
    return RunIdentity(tool_version="1", trainer=TrainerRef(name="gpt", version="1", distribution=None, entry="m:C"),
                       preset="smoke", settings=RunSettings(**settings), config={"steps": 4}, config_sha256="0" * 64)


@pytest.mark.parametrize(("setting", "value", "likelihood"), [
    ("precision", "bf16-mixed", "certain"), ("compile", True, "high"), ("seed", 7, "certain"),
    ("device", "cuda", "high"), ("pythonhashseed", 1, "medium"),
])
def test_diff_and_audit_list_every_numeric_setting(setting: str, value: object, likelihood: str) -> None:
    for rerun in (False, True):
        found = differences.run_differences(_identity(), _identity(**{setting: value}), rerun=rerun)
        assert [(d.field, d.likelihood) for d in found] == [(f"settings.{setting}", likelihood)]


def test_settings_changed_names_only_what_changed() -> None:
    base = RunSettings()
    assert differences.settings_changed(base, base) == []
    assert differences.settings_changed(base, base.model_copy(update={"threads": 1})) == ["threads"]
    assert differences.settings_changed(base, base.model_copy(update={"nproc": 2})) == ["processes"]
    assert differences.settings_changed(base, base.model_copy(update={"device": "cuda", "precision": "bf16-mixed"})) \
        == ["device", "precision"]


def _data(root: str, sha: str = "a" * 64) -> DataRecord:
    return DataRecord(source=DataSource(kind="path", name=root),
                      files=[FileDigest(path="train.csv", sha256=sha, size=3)], corpus_sha256="c" * 64,
                      tokenizer=None, token_stream_sha256=None, train_tokens=10, val_tokens=1)


def test_the_same_data_from_another_place_is_not_a_likely_cause() -> None:
    found = differences.data_differences([], _data("/home/a/repo"), _data("/ci/checkout"))
    assert [(d.field, d.likelihood) for d in found] == [("data.source", "low")]
    changed = differences.data_differences([], _data("/a"), _data("/a", "b" * 64))
    assert ("data file train.csv", "certain") in [(d.field, d.likelihood) for d in changed]


def test_junit_lists_only_the_tensors_beyond_tolerance() -> None:
    from repro.audits.report import CheckpointComparison, TensorDifference

    report = constructed_report(judge(_side(LOSSES), _side(LOSSES)))
    near = TensorDifference(name="model.near", status="within_tolerance", dtype="float32", shape=[2],
                            max_abs_diff=1e-9, rel_l2=1e-9, differing_elements=1, elements=2)
    far = near.model_copy(update={"name": "model.far", "status": "differs", "rel_l2": 0.5})
    ckpt = CheckpointComparison(step=4, verdict="diverged", tensors=3, identical=1, differences=[near, far])
    xml = ET.fromstring(junit_xml(report.model_copy(update={"checkpoints": [ckpt]})))
    messages = [f.get("message", "") for f in xml.iter("failure")]
    assert any("model.far" in m for m in messages) and not any("model.near" in m for m in messages)


@pytest.mark.parametrize(("error", "outcome", "code"), [
    (UsageError("bad"), "input_error", ExitCode.USAGE),
    (SignatureError("bad"), "integrity_failure", ExitCode.INTEGRITY),
    (DataChangedError("bad"), "data_changed", ExitCode.INTEGRITY),
    (MissingArtifactError("gone"), "could_not_check", ExitCode.COULD_NOT_CHECK),
    (RuntimeError("bug"), "internal_error", ExitCode.INTERNAL),
    (KeyboardInterrupt(), "interrupted", ExitCode.INTERRUPTED),
])
def test_a_failure_report_says_what_stopped_the_command(error: BaseException, outcome: str, code: int) -> None:
    failure = failure_of("audit", "run.json", error)
    assert (failure.outcome, failure.exit_code, failure.reproduced) == (outcome, code, False)
    suite = ET.fromstring(failure_junit(failure))
    assert suite.get("errors") == "1" and suite.find(".//error").get("type") == outcome  # type: ignore[union-attr]
