"""``repro audit --vary`` and ``repro diff`` on real smoke runs.

Measured on this machine (docs/audit.md): 1 vs 2 threads changes the smoke GPT's gradient norm by
1 ulp from step 6 (losses stay bit-identical over its 20 steps: within tolerance), while
PYTHONHASHSEED and the working directory change nothing.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from repro.cli import main
from repro.records.manifest_file import load_manifest

VARY_STEPS = "8"


@pytest.fixture(scope="module")
def one_thread_run(tmp_path_factory: pytest.TempPathFactory, repro_home: Path) -> Path:
    """The smoke preset with 1 thread (the session's ``smoke_run`` uses 2). Do not modify."""
    out = tmp_path_factory.mktemp("one-thread") / "run.json"
    assert main(["run", "smoke", "--threads", "1", "--out", str(out)]) == 0
    return out


def test_vary_reports_thread_sensitivity_and_immunity_to_hashseed_and_cwd(
    smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path, junit = tmp_path / "vary.json", tmp_path / "vary.xml"
    code = main(["audit", str(smoke_run), "--vary", "threads,hashseed,cwd,device", "--steps", VARY_STEPS,
                 "--json", str(report_path), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["kind"] == "repro.vary-report" and report["control"]["status"] == "bitwise"
    by_name = {v["name"]: v for v in report["variations"]}
    threads = by_name["threads"]
    assert threads["condition"] == "threads 2 → 1"
    assert threads["status"] == "within_tolerance" and threads["sensitive"] is True
    assert threads["first_difference_step"] is not None and threads["first_difference_step"] <= 8
    assert 1 <= threads["max_ulps"] <= 64 and threads["batches_identical"]
    assert by_name["hashseed"]["status"] == "bitwise" and by_name["cwd"]["status"] == "bitwise"
    assert report["sensitive_to"] == ["threads"] and report["immune_to"] == ["hashseed", "cwd"]
    assert by_name["device"]["status"] == "not_available" and report["not_available"] == ["device"]
    assert "sensitive to threads" in report["summary"] and "immune to hashseed, cwd" in report["summary"]
    assert "not available: no CUDA device here" in out
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {"control", "threads", "hashseed", "cwd", "device"}
    assert cases["device"].find("skipped") is not None and cases["threads"].find("failure") is None


def test_vary_rejects_an_unknown_variation(smoke_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(smoke_run), "--vary", "threads,moonphase"]) == 2
    err = capsys.readouterr().err
    assert "unknown variation moonphase" in err and "threads, hashseed, cwd" in err


def test_diff_of_a_run_with_itself_is_bitwise(smoke_run: Path, tmp_path: Path) -> None:
    code = main(["diff", str(smoke_run), str(smoke_run), "--json", str(tmp_path / "d.json")])
    report = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    assert code == 0 and report["verdict"] == "bitwise" and report["differences"] == []
    assert [c["verdict"] for c in report["checkpoints"]] == ["bitwise", "bitwise"]


def test_diff_attributes_a_thread_count_difference_to_threads(
    smoke_run: Path, one_thread_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_manifest(one_thread_run).manifest.run.settings.threads == 1
    code = main(["diff", str(smoke_run), str(one_thread_run), "--json", str(tmp_path / "d.json")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    assert code == 0 and report["verdict"] == "within_tolerance", report["summary"]
    assert report["series"][0]["name"] == "grad_norm" and report["series"][0]["first_difference_step"] is not None
    top = report["differences"][0]
    assert (top["field"], top["recorded"], top["here"]) == ("environment.torch_threads", "2", "1")
    assert report["attribution"]["kind"] == "environment"
    assert "threads 2 → 1" in report["attribution"]["summary"]
    assert [c["step"] for c in report["checkpoints"]] == [10, 20]
    assert "threads 2 → 1" in out


def test_diff_of_a_tampered_run_is_an_integrity_failure(smoke_copy: Path, smoke_run: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    raw = json.loads(smoke_copy.read_text(encoding="utf-8"))
    raw["validation"][0]["loss"] += 1.0
    smoke_copy.write_text(json.dumps(raw), encoding="utf-8")
    assert main(["diff", str(smoke_run), str(smoke_copy)]) == 3
    assert "Traceback" not in capsys.readouterr().err
