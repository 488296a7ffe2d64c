"""A stranger's manifest cannot make the auditor's machine do unbounded work (issue 18, item 2).

Every count a manifest controls is bounded by one table (:mod:`repro.trust.limits`), checked
after verification and before anything starts: over a bound, `audit`, `audit --vary` and `gate`
stop with exit 2 and name the flag (or the policy field) that allows more; no work folder, no
training process. The manifest from the review — re-signed with ``nproc = 1024, nnodes = 4096``
— never launches a process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from repro.cli import main
from repro.records.manifest_file import load_manifest
from repro.trust.keys import public_key_path
from repro.trust.limits import Limits, check, counts, flag
from tests.audits.forgery import resign


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    return " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize(("bound", "value", "wanted"), [
    ("max_checkpoints", 1, 2), ("max_tensors", 3, None), ("max_data_files", 1, 2), ("max_step_rows", 5, 20),
    ("max_processes", 1, 2),
])
def test_each_bound_refuses_before_compute_and_names_its_flag(
    bound: str, value: int, wanted: int | None, smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    extra = ["--nproc", "2"] if bound == "max_processes" else []
    m = load_manifest(smoke_run).manifest
    wanted = wanted if wanted is not None else counts(m, 1)[bound]
    if bound == "max_data_files" and len(m.data.files) < 2:
        pytest.skip("the smoke run records one data file")
    assert main(["audit", str(smoke_run), *extra, flag(bound), str(value), "--work-dir", str(work)]) == 2
    line = _error(capsys)
    assert f"pass {flag(bound)} {wanted}" in line, line
    assert not work.exists()  # refused before any rerun


def test_the_reviewed_manifest_launches_nothing(smoke_copy: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    def huge(raw: dict[str, Any]) -> None:
        raw["run"]["settings"]["nproc"] = 1024
        raw["run"]["settings"]["nnodes"] = 4096

    resign(smoke_copy, huge, tmp_path / "attacker.pem")
    work = tmp_path / "work"
    code = main(["audit", str(smoke_copy), "--work-dir", str(work)])
    line = _error(capsys)
    # Refused by the bound before a process starts.
    assert code == 2, line
    assert "4,194,304 processes" in line and "--max-processes 4194304" in line
    assert not work.exists()


def test_one_table_names_every_bound_and_its_flag() -> None:
    assert set(Limits.model_fields) == {"max_processes", "max_checkpoints", "max_tensors", "max_data_files",
                                        "max_step_rows"}
    assert [flag(n) for n in Limits.model_fields] == ["--max-processes", "--max-checkpoints", "--max-tensors",
                                                      "--max-data-files", "--max-step-rows"]


def test_vary_is_bounded_too(smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    assert main(["audit", str(smoke_run), "--vary", "threads", "--max-checkpoints", "1",
                 "--work-dir", str(work)]) == 2
    assert "pass --max-checkpoints 2" in _error(capsys)
    assert not work.exists()


def test_the_gate_policy_sets_the_bounds(smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from repro.trust.keys import default_key_path

    config = tmp_path / "pyproject.toml"
    config.write_text(
        f'[tool.repro.gate]\nmanifests = ["{smoke_run}"]\ntrusted_keys = "{public_key_path(default_key_path())}"\n'
        "[tool.repro.gate.limits]\nmax_checkpoints = 1\n[tool.repro.gate.vulnerabilities]\nenabled = false\n",
        encoding="utf-8",
    )
    report = tmp_path / "gate.json"
    code = main(["gate", "--config", str(config), "--json", str(report)])
    text = _error(capsys) + (report.read_text() if report.exists() else "")
    assert code != 0
    assert "limits.max_checkpoints: 2" in text, text
    if report.exists():
        data = json.loads(report.read_text())
        assert data["outcome"] != "pass"
    assert re.search(r"\b2 checkpoints\b", text)


def test_check_counts_what_a_rerun_would_start(smoke_run: Path) -> None:
    m = load_manifest(smoke_run).manifest
    check(m, Limits(), processes=64)
    with pytest.raises(Exception, match="--max-processes 65"):
        check(m, Limits(), processes=65)
