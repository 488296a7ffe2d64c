"""A signed manifest whose checkpoint is not what it records: one line, exit 3.

The checkpoint file is replaced (a giant header length, truncated, garbage, a tensor the record
names but the file lacks), its file digest updated and one recorded tensor digest changed so the
audit must read the file, and the manifest re-signed with the trusted key. Before, the audit and
the gate died with a traceback (and the gate wrote no report). Now verification itself re-hashes
every tensor of every checkpoint from its file, so verify, audit and gate all name
the file and exit 3, before any rerun.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from repro.audits.gate import GateReport
from repro.cli import main
from repro.trust.keys import default_key_path, load_key, public_key_path
from repro.trust.signing import sign_body
from tests.conftest import copy_run

pytestmark = pytest.mark.slow  # each test reruns 10 smoke steps (about 40 s on a loaded 2-core machine)


def _malformed(manifest: Path, kind: str) -> Path:
    raw = json.loads(manifest.read_text())
    record = raw["checkpoints"][0]  # step 10: audited with --steps 10
    path = manifest.parent / record["path"]
    good = path.read_bytes()
    victim = sorted(record["tensors"])[0]
    if kind == "missing_tensor":  # a valid file without one tensor that the record and the rerun have
        from safetensors.torch import load_file, save

        data = save({k: v for k, v in load_file(str(path)).items() if k != victim})
    else:
        data = {
            "giant_header": struct.pack("<Q", 2**63) + good[8:],
            "truncated": good[: len(good) // 2],
            "garbage": b"\x00not safetensors" * 64,
        }[kind]
    record["tensors"][victim] = "f" * 64  # differs from the rerun's digest, so the file must be read
    path.write_bytes(data)
    record.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    key = load_key(default_key_path())
    raw["signature"] = sign_body({k: v for k, v in raw.items() if k != "signature"}, key).model_dump(mode="json")
    manifest.write_text(json.dumps(raw, indent=1))
    return path


@pytest.mark.parametrize("kind", ["giant_header", "truncated", "garbage", "missing_tensor"])
def test_audit_names_the_checkpoint_and_exits_3(
    kind: str, smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = copy_run(smoke_run, tmp_path / "run")
    path = _malformed(manifest, kind)
    name = path.relative_to(manifest.parent).as_posix()
    # The file digest matches the (re-signed) record; reading the tensors tells, already in verify.
    assert main(["verify", str(manifest)]) == 3
    err = capsys.readouterr().err
    assert f"checkpoint {name}" in err and "Traceback" not in err, err
    code = main(["audit", str(manifest), "--steps", "10", "--trusted-keys", str(public_key_path(default_key_path()))])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "Traceback" not in err and "internal error" not in err
    assert f"checkpoint {name}" in err, err


def test_gate_reports_every_malformed_checkpoint_and_exits_3(
    smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = []
    for kind in ("garbage", "missing_tensor"):
        manifests.append(copy_run(smoke_run, tmp_path / kind))
        _malformed(manifests[-1], kind)
    config = tmp_path / "pyproject.toml"
    config.write_text(
        f"[tool.repro.gate]\nmanifests = {json.dumps([str(m) for m in manifests])}\n"
        f'trusted_keys = "{public_key_path(default_key_path())}"\nmode = "steps"\nsteps = 10\n'
        "[tool.repro.gate.vulnerabilities]\nenabled = false\n")
    assert main(["gate", "--config", str(config), "--json", str(tmp_path / "gate.json")]) == 3
    assert "Traceback" not in capsys.readouterr().err
    report = GateReport.model_validate_json((tmp_path / "gate.json").read_text())
    assert report.outcome == "integrity_failure"
    assert [r.reproduction for r in report.results] == ["integrity_failure"] * 2
    assert all("checkpoints/step-000010/state.safetensors" in r.message for r in report.results)
