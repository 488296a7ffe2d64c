"""The mistakes a new user makes on the first day, each answered by one line that says what is
wrong and what to do, with the documented exit code: a manifest copied without its run folder, an
audit report passed as a manifest, a missing data file (the absolute path looked at), a ``--data``
typo (before any output, nothing left behind), and mistyped presets, ``--set`` keys and policy
fields (the closest name suggested)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from repro.cli import main
from repro.records.manifest_file import incomplete_marker, run_folder
from tests.repro.test_exit_codes import _resign


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("command", ["verify", "audit"])
def test_a_manifest_without_its_run_folder_says_the_folder_is_missing(
    command: str, smoke_run: Path, tmp_path: Path, capsys
) -> None:
    alone = tmp_path / "alone.json"
    shutil.copy2(smoke_run, alone)
    assert main([command, str(alone)]) == 4
    line = _one_line_error(capsys.readouterr().err)
    assert f"the run folder {tmp_path / 'run'}/ is missing" in line and "copy run/ along with alone.json" in line
    assert "file(s) missing" not in line


@pytest.mark.parametrize(("kind", "what"), [("repro.audit-report", "an audit report"),
                                            ("repro.gate-report", "a gate report")])
def test_a_report_passed_as_a_manifest_is_a_usage_error(kind: str, what: str, tmp_path: Path, capsys) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"kind": kind, "tool_version": "0.2.0", "verdict": "bitwise"}), encoding="utf-8")
    for command in ("verify", "audit"):
        assert main([command, str(report)]) == 2
        line = _one_line_error(capsys.readouterr().err)
        assert f"{report} is {what}, not a run manifest" in line and "signature" not in line


def test_a_missing_data_file_names_the_absolute_path_looked_at(smoke_copy: Path, tmp_path: Path, capsys) -> None:
    gone = tmp_path / "moved-away" / "corpus"
    _resign(smoke_copy, lambda raw: raw["data"].update(source={"kind": "path", "name": str(gone), "version": None}))
    assert main(["verify", str(smoke_copy)]) == 4
    assert f"looked for {gone}" in _one_line_error(capsys.readouterr().err)
    assert main(["audit", str(smoke_copy)]) == 4
    line = _one_line_error(capsys.readouterr().err)
    assert f"looked for {gone}" in line and "--data PATH" in line


def test_a_data_typo_fails_first_and_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "manifests" / "run.json"
    assert main(["run", "smoke", "--data", "dat/train.txt", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_line_error(captured.err)
    assert f"--data dat/train.txt: no such file or folder (looked for {tmp_path / 'dat' / 'train.txt'})" in line
    assert not out.parent.exists() and not incomplete_marker(out).exists()
    assert not run_folder(out).with_name("run.incomplete").exists()


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "smok"], "unknown preset 'smok' (did you mean 'smoke'?)"),
    (["run", "--trainer", "gpt", "smok"], "trainer gpt has no preset 'smok' (did you mean 'smoke'?)"),
    (["run", "smoke", "--set", "stpes=3"], "--set stpes: unknown key (did you mean 'steps'?)"),
])
def test_mistyped_names_suggest_the_closest(argv: list[str], expected: str, tmp_path: Path, capsys) -> None:
    assert main([*argv, "--out", str(tmp_path / "m.json")]) == 2
    assert expected in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(("table", "expected"), [
    ('trusted_key = "keys.txt"', "did you mean 'trusted_keys' instead of 'trusted_key'?"),
    ('trusted_keys = "keys.txt"\n[tool.repro.gate.tolerance]\natl = 1e-5', "did you mean 'atol' instead of 'atl'?"),
])
def test_a_mistyped_policy_field_suggests_the_closest(table: str, expected: str, tmp_path: Path, capsys) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text(f'[tool.repro.gate]\nmanifests = ["m.json"]\n{table}\n', encoding="utf-8")
    assert main(["gate", "--config", str(config)]) == 2
    assert expected in _one_line_error(capsys.readouterr().err)
