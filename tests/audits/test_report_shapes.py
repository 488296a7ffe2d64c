"""Every shape of result the comparison can produce renders in every format (console at 80 columns,
HTML for the audit and the gate, JUnit, JSON), generated from the report model, without training.

CI once crashed (exit 70, no page) on a checkpoint that differed only in tensor names: the page took
the max of an empty list. The shapes here are built variant by variant from the models' fields
(empty lists, None fields, tensors on one side only, unmatched steps, zero compared steps, huge
counts, infinities), each alone and all at once.
"""

from __future__ import annotations

import io
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from repro.audits.formats.console import MAX_STEP_ROWS, chosen_steps, render
from repro.audits.formats.html import audit_page, gate_page
from repro.audits.formats.junit import junit_xml
from repro.audits.gate import GateReport, ManifestResult
from repro.audits.options import AuditOptions
from repro.audits.policy import GatePolicy
from repro.audits.report import (
    Attribution,
    AuditReport,
    AuditTiming,
    BatchComparison,
    CheckpointComparison,
    DataCheck,
    Difference,
    Likelihood,
    ManifestInfo,
    RerunInfo,
    Segment,
    SeriesComparison,
    StepDetail,
    TensorDifference,
    ValidationDetail,
    Verdict,
)
from repro.rendering.charts import linear_ticks, tick_label
from repro.rendering.console import SafeConsole

DIGEST = "ab" * 32  # a 64-hex digest: shown shortened to 12 hex + "…", whole in the JSON
HUGE = 10**12


def series(name: str = "loss", **changes: Any) -> SeriesComparison:
    base: dict[str, Any] = {
        "name": name, "verdict": "within_tolerance", "compared": 20, "identical": 19, "unmatched": [],
        "first_difference_step": 7, "first_difference_ulps": 1, "first_beyond_tolerance_step": None,
        "max_abs_diff": 4.77e-7, "max_rel_diff": 7e-8, "max_ulps": 1, "max_step": 7, "final_abs_diff": 0.0,
        "doubling_steps": None, "growth": "stays at the same order"}
    return SeriesComparison(**{**base, **changes})


def step(n: int, **changes: Any) -> StepDetail:
    base: dict[str, Any] = {"step": n, "recorded_loss": 6.5 + 1 / n, "rerun_loss": 6.5 + 1 / n, "abs_diff": 0.0,
                            "rel_diff": 0.0, "ulps": 0, "within_tolerance": True, "batch_match": True,
                            "other_differences": []}
    return StepDetail(**{**base, **changes})


def tensor(name: str, status: str = "differs", **changes: Any) -> TensorDifference:
    base: dict[str, Any] = {"name": name, "status": status, "dtype": "float32", "shape": [4, 4], "max_abs_diff": 0.5,
                                "rel_l2": 0.25, "differing_elements": 3, "elements": 16}
    return TensorDifference(**{**base, **changes})


def base_report() -> AuditReport:
    steps = [step(n) for n in range(1, 21)]
    return AuditReport(
        tool_version="0.0.0", created_at="2026-12-06T00:00:00+00:00",
        manifest=ManifestInfo(path="runs/base.json", key_id="6b28bc4061402681", trusted=False, trainer="gpt",
                              trainer_version="0.2.0", preset="smoke", config_sha256=DIGEST, recorded_steps=20,
                              recorded_device="cpu", recorded_threads=2),
        options=AuditOptions(), mode="full", verdict="within_tolerance", reproduced=True,
        rerun=RerunInfo(device="cpu", threads=2, config_sha256=DIGEST, config_matches=True),
        summary="within tolerance", steps_compared=20, steps_total=20, fraction_replayed=1.0,
        segments=[Segment(start=0, end=20)], spot_check_seed=None, losses=series(),
        series=[series("grad_norm"), series("validation loss", compared=2, identical=1)],
        batches=BatchComparison(compared=20, identical=True, first_difference_step=None, differing_steps=0),
        steps=steps,
        validation=[ValidationDetail(step=10, recorded=6.6, rerun=6.6, abs_diff=0.0, within_tolerance=True)],
        checkpoints=[CheckpointComparison(step=10, verdict="within_tolerance", tensors=3, identical=2,
                                          differences=[tensor("model.w", "within_tolerance", rel_l2=1e-6)])],
        first_checkpoint_difference=10, data_checks=[DataCheck(kind="corpus", path="data/corpus.txt", status="ok")],
        differences=[Difference(category="threads", field="environment.torch_threads", recorded="2", here="1",
                                likelihood="high")],
        attribution=Attribution(kind="environment", summary="threads 2 → 1", causes=["threads 2 → 1"]),
        timing=AuditTiming(total_seconds=1, integrity_seconds=0, plan_seconds=0, rerun_seconds=1, training_seconds=1,
                           validation_seconds=0, compare_seconds=0, overhead_seconds=0),
    )


def _checkpoint(*differences: TensorDifference, verdict: Verdict = "diverged", tensors: int = 3,
                identical: int = 0) -> dict[str, Any]:
    return {"checkpoints": [CheckpointComparison(step=10, verdict=verdict, tensors=tensors, identical=identical,
                                                 differences=list(differences))]}


# One variant per shape of each part of the result; each is applied to the base report alone, and
# all of them together in the last shape.
VARIANTS: dict[str, Callable[[AuditReport], dict[str, Any]]] = {
    "checkpoint differs only in tensor names": lambda r: _checkpoint(
        tensor("model.old_name", "missing_in_rerun", dtype=None, shape=None, max_abs_diff=None, rel_l2=None,
               differing_elements=None, elements=None),
        tensor("model.new_name", "only_in_rerun", dtype=None, shape=None, max_abs_diff=None, rel_l2=None,
               differing_elements=None, elements=None)),
    "checkpoint diverged with no tensor listed": lambda r: _checkpoint(),
    "checkpoint with no tensors": lambda r: _checkpoint(verdict="bitwise", tensors=0),
    "integer tensor differs (no relative L2)": lambda r: _checkpoint(
        tensor("step_count", dtype="int64", rel_l2=None, max_abs_diff=1.0)),
    "device-only tensor": lambda r: _checkpoint(tensor("rng.cuda", "device_only", max_abs_diff=None, rel_l2=None)),
    "many tensors, huge counts": lambda r: _checkpoint(
        *[tensor(f"model.blocks.{i}.mlp.c_fc.weight", differing_elements=HUGE, elements=HUGE * 2) for i in range(40)],
        tensors=HUGE, identical=HUGE - 40),
    "infinite differences": lambda r: {"losses": series(verdict="diverged", max_abs_diff=math.inf,
                                                        max_rel_diff=math.inf, first_beyond_tolerance_step=3),
                                       "steps": [step(n, rerun_loss=math.inf, abs_diff=math.inf, rel_diff=math.inf,
                                                      ulps=None, within_tolerance=False) for n in range(1, 6)]},
    "zero compared steps": lambda r: {"losses": series(compared=0, identical=0, first_difference_step=None,
                                                       first_difference_ulps=None, max_abs_diff=0.0, max_step=None),
                                      "series": [], "steps": [], "validation": [], "steps_compared": 0,
                                      "batches": BatchComparison(compared=0, identical=True, first_difference_step=None,
                                                                 differing_steps=0)},
    "only unmatched steps": lambda r: {"losses": series(verdict="diverged", compared=0, identical=0,
                                                        unmatched=list(range(1, 500)), first_difference_step=None,
                                                        max_step=None),
                                       "steps": [step(n, rerun_loss=None, abs_diff=None, rel_diff=None, ulps=None,
                                                      within_tolerance=False, batch_match=None)
                                                 for n in range(1, 500)]},
    "validation on one side only": lambda r: {"validation": [ValidationDetail(step=10, recorded=6.6, rerun=None,
                                                                              abs_diff=None, within_tolerance=False)]},
    "batches differ": lambda r: {"batches": BatchComparison(compared=20, identical=False, first_difference_step=4,
                                                            differing_steps=17),
                                 "steps": [step(n, batch_match=n < 4) for n in range(1, 21)]},
    "a long diverged run": lambda r: {
        "verdict": "diverged", "reproduced": False,
        "losses": series(verdict="diverged", first_beyond_tolerance_step=2, max_step=2900, max_abs_diff=0.75),
        "steps": [step(n, rerun_loss=6.5 + 1 / n + n * 1e-4, abs_diff=n * 1e-4, rel_diff=n * 1e-5, ulps=n * 1000,
                       within_tolerance=n < 2, other_differences=["grad_norm"] if n % 7 == 0 else [])
                  for n in range(1, 3001)]},
    "no differences, no causes": lambda r: {"differences": [], "attribution": Attribution(kind="unknown", summary="",
                                                                                          causes=[])},
    "only differences that cannot matter": lambda r: {"differences": [
        Difference(category="packages", field=f"package pkg{i}", recorded="1.0", here=None, likelihood="none",
                   note="not imported by the training process: irrelevant to numerics") for i in range(10)]},
    "every likelihood, None values, digests": lambda r: {"differences": [
        Difference(category="code", field=f"code.{name}", recorded=None if i % 2 else DIGEST, here=DIGEST,
                   likelihood=name, note=None if i % 2 else "trainer code changed: spiral/trainer.py")
        for i, name in enumerate(get_args(Likelihood))] * 6},
    "spot-check segments": lambda r: {"mode": "spot-check", "segments": [Segment(start=0, end=5),
                                                                          Segment(start=10, end=15)],
                                      "spot_check_seed": 7, "fraction_replayed": 0.5},
    "prefix": lambda r: {"mode": "prefix", "segments": [Segment(start=0, end=5)], "fraction_replayed": 0.25},
    "rerun with other settings": lambda r: {"rerun": RerunInfo(device="cuda", threads=1, world_size=2,
                                                               config_sha256="cd" * 32, config_matches=False)},
    "data changed and missing": lambda r: {"data_checks": [
        DataCheck(kind="file", path="data/a.txt", status="changed"),
        DataCheck(kind="file", path="data/b.txt", status="missing")]},
}


def shapes() -> Iterator[tuple[str, AuditReport]]:
    base = base_report()
    for name, variant in VARIANTS.items():
        yield name, base.model_copy(update=variant(base))
    everything: dict[str, Any] = {}
    for variant in VARIANTS.values():
        everything.update(variant(base))
    yield "all at once", base.model_copy(update=everything)


SHAPES = dict(shapes())


def console_text(report: AuditReport) -> str:
    console = SafeConsole(width=80, record=True, file=io.StringIO())
    console.print(render(report))
    return console.export_text()


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_shape_renders_in_every_format(name: str) -> None:
    report = SHAPES[name]
    # JSON: every field written, and read back as the same report (finite shapes; pydantic writes
    # an infinity as null, which the schema then refuses: the comparison never reports one as such).
    written = report.model_dump_json()
    assert len(json.loads(written)["steps"]) == len(report.steps)
    if "inf" not in name and name != "all at once":
        assert AuditReport.model_validate_json(written) == report
    # HTML: the audit page and the gate page that embeds it.
    html = audit_page(report)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for c in report.checkpoints:
        assert f"checkpoint {c.step}" in html
    gate = GateReport(tool_version="0", created_at="2026-12-06T00:00:00+00:00", policy_file="pyproject.toml",
                      policy=GatePolicy(manifests=[Path("runs/base.json")], trusted_keys=Path("keys.txt")),
                      outcome="pass", warnings=[], seconds=1.0,
                      results=[ManifestResult(manifest="runs/base.json", reproduction="reproduced",
                                              message=report.summary, audit=report, vulnerability_status="pass",
                                              seconds=1.0)])
    assert "runs/base.json" in gate_page(gate)
    # JUnit: parses, one case per check.
    root = ET.fromstring(junit_xml(report))
    assert int(root.get("tests", "0")) == 4 + len(report.series) + len(report.checkpoints)
    # Console at 80 columns: nothing wider, nothing cut.
    text = console_text(report)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in re.sub(r"\b[0-9a-f]{12}…", "", text)


def test_a_checkpoint_that_differs_only_in_tensor_names_shows_both_names() -> None:
    report = SHAPES["checkpoint differs only in tensor names"]
    html = audit_page(report)
    assert "model.old_name" in html and "model.new_name" in html and "2 on one side only" in html
    text = console_text(report)
    assert "model.old_name" in text and "model.new_name" in text


def test_the_checkpoint_row_shows_the_measure_the_tolerance_uses() -> None:
    report = base_report().model_copy(update=_checkpoint(tensor("model.w", max_abs_diff=123.0, rel_l2=0.0123),
                                                         tensor("model.b", max_abs_diff=0.5, rel_l2=0.0456)))
    html = audit_page(report)
    row = html[html.index("<td>checkpoint 10</td>"):]
    row = row[:row.index("</tr>")]
    assert "rel. L2 0.0456" in row and "<code>model.b</code>" in row and "tolerance 0.05" in row
    assert "123" not in row  # not the absolute max next to a relative limit


def test_a_long_diverged_run_shows_first_largest_evenly_spaced_and_last_steps() -> None:
    report = SHAPES["a long diverged run"]
    shown = [d.step for d in chosen_steps(report)]
    assert len(shown) <= MAX_STEP_ROWS and shown == sorted(shown)
    assert shown[:3] == [1, 2, 3] and shown[-2:] == [2999, 3000]
    largest = sorted(report.steps, key=lambda d: d.abs_diff or 0, reverse=True)[:3]
    assert all(d.step in shown for d in largest)
    assert any(1000 < s < 2000 for s in shown)  # evenly spaced across the run, not the first 40
    text = console_text(report)
    assert f"{len(shown)} of 3,000 steps shown" in text


def test_the_verdict_line_names_the_cause_first_and_digests_are_short() -> None:
    report = SHAPES["a long diverged run"].model_copy(update={
        "attribution": Attribution(kind="code", summary=f"first loss difference at step 2; code.diff_sha256 {DIGEST}",
                                   causes=["trainer code changed: spiral/trainer.py", "threads 2 → 1"])})
    text = console_text(report)
    first = next(line for line in text.splitlines() if "NOT REPRODUCED" in line)
    assert "NOT REPRODUCED: diverged: trainer code changed: spiral/trainer.py" in first
    assert DIGEST not in text and DIGEST[:12] + "…" in text
    assert "likely cause: trainer code changed: spiral/trainer.py" in audit_page(report)
    assert DIGEST in report.model_dump_json()  # the JSON keeps it whole


def test_differences_that_cannot_matter_take_one_console_line() -> None:
    report = SHAPES["only differences that cannot matter"]
    text = console_text(report)
    assert "10 packages differ that the training process never imported; --json lists them" in text
    assert "pkg3" not in text
    html = audit_page(report)
    section = html[html.index('<details id="cannot-matter">'):]
    section = section[:section.index("</details>")]
    assert all(f"package pkg{i}" in section for i in range(10))


@pytest.mark.parametrize(("value", "label"), [(2.5e-4, "0.00025"), (7.5e-4, "0.00075"), (2.5e-5, "2.5e-5"),
                                              (1.5e6, "1.5e6"), (0.0, "0"), (1e-3, "0.001"), (250.0, "250")])
def test_tick_labels_keep_their_digits(value: float, label: str) -> None:
    assert tick_label(value) == label


def test_ticks_of_a_small_range_are_labelled_distinctly() -> None:
    ticks = linear_ticks(0.0, 1e-3, 4)
    labels = [tick_label(t) for t in ticks]
    assert "0.00025" in labels and len(set(labels)) == len(labels)


# --- 80 columns with real long content ----------------------------------------------------------

LONG_NAMES = [f"data/shards/tokenized_corpus_part_{i:04d}_of_0128.bin" for i in range(6)]
DIGESTS = [f"{i:02x}" * 32 for i in range(6)]


def _long_report() -> AuditReport:
    differences = [Difference(category="data", field=f"data file {name}", recorded=digest, here=digest[::-1],
                              likelihood="certain") for name, digest in zip(LONG_NAMES, DIGESTS, strict=True)]
    differences.append(Difference(category="code", field="code.diff_sha256", recorded=DIGESTS[0], here=DIGESTS[1],
                                  likelihood="high", note="uncommitted changes differ"))
    differences.append(Difference(category="torch", field="environment.torch_version", recorded="2.13.0+cpu",
                                  here="2.14.1+cu128", likelihood="high"))
    return SHAPES["a long diverged run"].model_copy(update={"differences": differences})


def test_the_console_at_80_columns_cuts_nothing_and_breaks_no_number() -> None:
    report = _long_report()
    text = console_text(report)
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in LONG_NAMES:
        assert name in text  # whole, on one line
    for digest in DIGESTS:  # shortened on purpose, by our helper, with an ellipsis; the JSON has them whole
        assert digest not in text and digest[:12] + "…" in text and digest in report.model_dump_json()
    assert "2.13.0+cpu → 2.14.1+cu128" in text
    for d in chosen_steps(report):  # every number of the loss table intact on its row
        row = next(line for line in text.splitlines() if re.match(rf"\s*{d.step} ", line))
        for value in (f"{d.recorded_loss:.9g}", f"{d.rerun_loss:.9g}", f"{d.abs_diff:.3g}", str(d.ulps)):
            assert value in row, (value, row)


def test_the_vary_table_at_80_columns_keeps_its_headers_and_numbers() -> None:
    from repro.audits.formats.vary import print_vary
    from repro.audits.options import Tolerance
    from repro.audits.vary import Status, VariationResult, VaryReport

    def result(name: str, condition: str, status: Status, sensitive: bool | None, **more: Any) -> VariationResult:
        return VariationResult(name=name, condition=condition, status=status, sensitive=sensitive,
                               first_difference_step=more.get("step"), first_difference_in=more.get("where"),
                               first_difference_ulps=None, first_beyond_tolerance_step=None,
                               max_abs_diff=more.get("diff"), max_ulps=more.get("ulps"), batches_identical=True,
                               checkpoints=[], note=more.get("note"))

    variations = [
        result("threads", "torch/OpenMP thread count (1 ↔ the recorded count)", "within_tolerance", True,
               step=7, where="grad_norm", diff=4.76837158e-07, ulps=123456),
        result("hashseed", "PYTHONHASHSEED (recorded + 1)", "bitwise", False),
        result("cwd", "working directory and the absolute paths of the run's files", "bitwise", False),
        result("locale", "LC_ALL/LANG (C ↔ C.UTF-8)", "bitwise", False),
        result("timezone", "TZ (UTC+14)", "bitwise", False),
        result("device", "cpu ↔ cuda, when a CUDA device is here", "not_available", None,
               note="no CUDA device here: torch.cuda.is_available() is False"),
        result("precision", "bf16-mixed ↔ 32", "diverged", True, step=1, where="loss", diff=0.0123456789,
               ulps=9876543),
        result("compile", "torch.compile on ↔ off", "diverged", True, step=3, where="loss", diff=3.5e-3, ulps=77),
    ]
    report = VaryReport(tool_version="0", created_at="2026-12-06T00:00:00+00:00", manifest=base_report().manifest,
                        steps=20, tolerance=Tolerance(),
                        control=result("control", "as recorded", "bitwise", None), variations=variations,
                        sensitive_to=["threads", "precision", "compile"], immune_to=["hashseed"],
                        not_available=["device"], reproduced=True, summary="sensitive to threads, precision, compile")
    console = SafeConsole(width=80, record=True, file=io.StringIO())
    print_vary(report, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    header = " ".join(" ".join(line.strip("┃ ") for line in text.splitlines()[2:4]).split())
    for title in ("variation: what changed", "vs control", "first difference"):
        assert title in header  # at most wrapped at a space, never folded letter by letter
    for v in variations:
        assert v.condition in " ".join(text.split()) or v.condition.split()[0] in text
    for v in variations:
        assert v.name in text
        if v.max_ulps is not None:
            assert str(v.max_ulps) in text and f"{v.max_abs_diff:.3g}" in text
    assert "no CUDA device here: torch.cuda.is_available() is False" in " ".join(text.split())
