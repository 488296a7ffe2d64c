"""``repro audit`` end to end on real smoke runs: verdicts, reports, integrity and exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from repro.cli import main
from repro.records.manifest_file import load_manifest
from tests.audits.forgery import resign, scale_losses
from tests.helpers import read_report


def test_an_unchanged_run_audits_bitwise_with_everyread_report(smoke_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "reports"
    code = main(["audit", str(smoke_run), "--json", str(out / "a.json"), "--junit", str(out / "a.xml"),
                 "--plot", str(out / "a.png")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "REPRODUCED: bitwise" in captured.out
    for title in ("losses: recorded vs rerun", "checkpoints: tensor by tensor", "recorded vs here", "likely cause"):
        assert title in captured.out
    report = read_report(out / "a.json")
    assert report.verdict == "bitwise" and report.reproduced and report.mode == "full"
    assert report.steps_compared == 20 and report.fraction_replayed == 1.0
    assert [c.step for c in report.checkpoints] == [10, 20]
    assert all(c.verdict == "bitwise" and c.identical == c.tensors for c in report.checkpoints)
    assert report.batches.identical and report.losses.identical == 20
    assert [v.step for v in report.validation] == [10, 20]
    assert report.rerun.config_matches
    assert not [d for d in report.differences if d.category in ("data", "threads", "device", "torch")]
    suite = ET.parse(out / "a.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert {"integrity", "data", "loss", "batch fingerprints", "checkpoint step 20"} <= {
        c.get("name") for c in suite.iter("testcase")}
    assert (out / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_first_n_steps_are_audited_with_the_recorded_schedule(smoke_run: Path, tmp_path: Path) -> None:
    assert main(["audit", str(smoke_run), "--steps", "15", "--json", str(tmp_path / "r.json")]) == 0
    report = read_report(tmp_path / "r.json")
    assert (report.mode, report.verdict, report.steps_compared) == ("prefix", "bitwise", 15)
    assert report.fraction_replayed == 0.75
    assert [c.step for c in report.checkpoints] == [10]  # the step-20 checkpoint is beyond the audit
    assert [v.step for v in report.validation] == [10]
    assert report.series[1].name == "lr" and report.series[1].verdict == "bitwise"  # cosine over 20 steps


def test_edited_losses_signed_by_another_key_fail_the_trust_list(smoke_copy: Path, tmp_path: Path,
                                                                 repro_home: Path, capsys) -> None:
    resign(smoke_copy, scale_losses(15, 20, 1.01), tmp_path / "forger.pem")
    trusted = Path(str(repro_home / "key.pem") + ".pub")  # the key that signed the real run
    assert main(["audit", str(smoke_copy), "--trusted-keys", str(trusted), "--json", str(tmp_path / "r.json")]) == 3
    err = capsys.readouterr().err
    assert "not in the trust list" in err and "Traceback" not in err
    failure = json.loads((tmp_path / "r.json").read_text())  # never rerun: the report says why
    assert (failure["kind"], failure["outcome"], failure["exit_code"]) == ("repro.command-failure",
                                                                          "integrity_failure", 3)


def test_edited_losses_signed_by_another_key_are_caught_by_the_rerun(smoke_copy: Path, tmp_path: Path,
                                                                     capsys) -> None:
    resign(smoke_copy, scale_losses(15, 20, 1.01), tmp_path / "forger.pem")
    code = main(["audit", str(smoke_copy), "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml")])
    out = capsys.readouterr().out
    assert code == 1
    assert "NOT REPRODUCED" in out
    report = read_report(tmp_path / "r.json")
    assert report.verdict == "diverged" and not report.reproduced
    assert report.losses.first_difference_step == 15 and report.losses.first_beyond_tolerance_step == 15
    assert report.losses.identical == 14 and report.batches.identical
    assert all(c.verdict == "bitwise" for c in report.checkpoints)  # the weights were not touched
    assert report.attribution.kind == "records"
    assert "edited" in report.attribution.summary
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert suite is not None
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["loss"]


def _checkpoint_file(manifest: Path, step: int) -> Path:
    record = next(c for c in load_manifest(manifest).manifest.checkpoints if c.step == step)
    return manifest.parent / record.path


def test_a_missing_checkpoint_means_the_audit_could_not_check(smoke_copy: Path, capsys) -> None:
    _checkpoint_file(smoke_copy, 20).unlink()
    assert main(["audit", str(smoke_copy)]) == 4
    err = capsys.readouterr().err
    assert "missing" in err and "step-000020" in err


def test_a_changed_checkpoint_is_an_integrity_failure(smoke_copy: Path, capsys) -> None:
    state = _checkpoint_file(smoke_copy, 10)
    data = bytearray(state.read_bytes())
    data[-1] ^= 0x01
    state.write_bytes(bytes(data))
    assert main(["audit", str(smoke_copy)]) == 3
    assert "changed since the run" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--steps", "5", "--segments", "1"], "not allowed with argument"),
    (["--segments", "3"], "only 2 checkpoint-to-checkpoint segment(s)"),
    (["--steps", "21"], "only 20 steps"),
    (["--steps", "0"], "--steps"),
    (["--seed", "3"], "use it with --segments"),
    (["--plot", "curves.jpg"], "name a .png file"),
    (["--rtol", "-1"], "--rtol"),
])
def test_bad_options_are_usage_errors(smoke_run: Path, args: list[str], message: str, capsys) -> None:
    assert main(["audit", str(smoke_run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_unreadable_manifest_is_an_input_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "run.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["audit", str(bad)]) == 2
    assert main(["audit", str(tmp_path / "absent.json")]) == 4


def test_cuda_that_is_not_here_is_reported_before_any_compute(smoke_run: Path, capsys) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    assert main(["audit", str(smoke_run), "--device", "cuda"]) == 4
    err = capsys.readouterr().err
    assert "needs a CUDA device" in err and "none is available here" in err


@pytest.mark.cuda
def test_a_cpu_run_audited_on_cuda_gets_a_tolerance_verdict(smoke_run: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    code = main(["audit", str(smoke_run), "--device", "cuda", "--json", str(tmp_path / "r.json")])
    report = read_report(tmp_path / "r.json")
    assert code == 0, report.summary
    assert report.verdict in ("within_tolerance", "bitwise") and not report.rerun.config_matches
    assert report.differences[0].category == "device"
    print(json.dumps({"losses": report.losses.model_dump(), "checkpoints": [
        {"step": c.step, "max_rel_l2": max((d.rel_l2 or 0.0) for d in c.differences) if c.differences else 0.0}
        for c in report.checkpoints]}, indent=1))
