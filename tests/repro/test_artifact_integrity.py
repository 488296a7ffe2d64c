"""Issue 9.1: every shipped file must agree with everything its signed manifest says about it.

The attacker here holds the real signing key (an insider, or a stolen key) and re-signs after
each edit, so the signature always verifies: only the checks of the files against the record,
and of the record against itself, can catch these. Real files, real signatures, real CLI.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from repro.cli import main
from repro.records.hashing import sha256_bytes, sha256_tensor
from repro.records.manifest_file import load_manifest
from repro.records.safetensors_digest import digest_checkpoint
from repro.records.steptable import StepColumns, parse_table, write_table
from repro.trust.keys import SigningKey, default_key_path, load_key, public_key_path
from tests.audits.forgery import resign_with

Edit = Callable[..., None]  # (raw) or (raw, manifest path): see forgery.resign_with


@pytest.fixture(scope="module")
def real_key() -> SigningKey:
    return load_key(default_key_path())


def _verify(manifest: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(["verify", str(manifest)])
    err = capsys.readouterr().err
    assert code == 0 or (err.startswith("error:") and len(err.strip().splitlines()) == 1), err
    return code, err


def _ckpt(manifest: Path, index: int) -> tuple[dict[str, Any], Path]:
    record = json.loads(manifest.read_text())["checkpoints"][index]
    return record, manifest.parent / record["path"]


def _record_file(index: int, data: bytes) -> Edit:
    """An edit that records ``data``'s digest and size for checkpoint ``index`` (tensors kept)."""
    def edit(raw: dict[str, Any]) -> None:
        raw["checkpoints"][index].update(sha256=sha256_bytes(data), size=len(data))
    return edit


def _rewrite_checkpoint(path: Path, change: Callable[[dict], dict]) -> bytes:
    from safetensors.torch import load_file, save

    data = save(change(load_file(str(path))))
    path.write_bytes(data)
    return data


def test_one_pass_digests_equal_sha256_tensor_for_every_dtype(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    dtypes = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
              torch.bfloat16, torch.float32, torch.float64, torch.float8_e5m2, torch.float8_e4m3fn,
              torch.uint16, torch.uint32, torch.uint64]
    tensors = {f"t{i}": (torch.randn(3, i + 1) * 9).to(d) for i, d in enumerate(dtypes)}
    tensors |= {"scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4), "big": torch.randn(700, 500)}
    save_file(tensors, tmp_path / "x.safetensors", metadata={"format": "pt"})
    with open(tmp_path / "x.safetensors", "rb") as handle:
        found = digest_checkpoint(handle)
    expected = {name: sha256_tensor(t) for name, t in load_file(str(tmp_path / "x.safetensors")).items()}
    assert found.tensors == expected
    assert found.sha256 == sha256_bytes((tmp_path / "x.safetensors").read_bytes())


def test_changed_tensors_with_old_tensor_digests_resigned_with_the_real_key(
        smoke_copy: Path, real_key: SigningKey, capsys: pytest.CaptureFixture) -> None:
    """The reviewer's attack: tensors changed, file digest updated, tensor digests left, re-signed."""
    assert _verify(smoke_copy, capsys)[0] == 0
    rng = random.Random(91)
    for index in (0, 1):
        record, path = _ckpt(smoke_copy, index)
        original = path.read_bytes()
        floats = [n for n in record["tensors"] if n.startswith("model.")]
        for name in rng.sample(floats, 3):
            def bump(t: dict, n: str = name) -> dict:
                t[n] = t[n].clone()
                t[n].view(-1)[0] += 1.0
                return t
            resign_with(smoke_copy, _record_file(index, _rewrite_checkpoint(path, bump)), real_key)
            code, err = _verify(smoke_copy, capsys)
            assert code == 3 and f"tensor {name} differs" in err and record["path"] in err, err
            path.write_bytes(original)
            resign_with(smoke_copy, _record_file(index, original), real_key)
    assert _verify(smoke_copy, capsys)[0] == 0


def test_changed_tensor_digest_only(smoke_copy: Path, real_key: SigningKey, capsys: pytest.CaptureFixture) -> None:
    recorded = json.loads(smoke_copy.read_text())["checkpoints"][1]["tensors"]
    for name in random.Random(3).sample(sorted(recorded), 4):
        def edit(raw: dict, n: str = name) -> None:
            raw["checkpoints"][1]["tensors"] = {**recorded, n: "0" * 64}
        resign_with(smoke_copy, edit, real_key)
        code, err = _verify(smoke_copy, capsys)
        assert code == 3 and f"tensor {name} differs" in err, err


@pytest.mark.parametrize("case", ["drop from file", "add to file", "drop from record", "add to record"])
def test_tensor_sets_must_match_both_ways(case: str, smoke_copy: Path, real_key: SigningKey,
                                          capsys: pytest.CaptureFixture) -> None:
    import torch

    record, path = _ckpt(smoke_copy, 0)
    victim = sorted(record["tensors"])[5]
    if case == "drop from file":
        data = _rewrite_checkpoint(path, lambda t: {k: v for k, v in t.items() if k != victim})
        resign_with(smoke_copy, _record_file(0, data), real_key)
        expect = f"tensor {victim} recorded but not in the file"
    elif case == "add to file":
        data = _rewrite_checkpoint(path, lambda t: {**t, "smuggled": torch.ones(3)})
        resign_with(smoke_copy, _record_file(0, data), real_key)
        expect = "tensor smuggled in the file but not recorded"
    elif case == "drop from record":
        resign_with(smoke_copy, lambda raw: raw["checkpoints"][0]["tensors"].pop(victim), real_key)
        expect = f"tensor {victim} in the file but not recorded"
    else:
        resign_with(smoke_copy, lambda raw: raw["checkpoints"][0]["tensors"].update(extra="ab" * 32), real_key)
        expect = "tensor extra recorded but not in the file"
    code, err = _verify(smoke_copy, capsys)
    assert code == 3 and expect in err, err


TRUNCATIONS: dict[str, Callable[[bytes], bytes]] = {
    "last byte": lambda d: d[:-1], "last 1000 bytes": lambda d: d[:-1000], "header only": lambda d: d[:5000],
    "under 8 bytes": lambda d: d[:7], "empty": lambda d: b"",
}


@pytest.mark.parametrize("cut", sorted(TRUNCATIONS))
def test_truncated_checkpoint_recorded_as_is(cut: str, smoke_copy: Path, real_key: SigningKey,
                                             capsys: pytest.CaptureFixture) -> None:
    _, path = _ckpt(smoke_copy, 1)
    data = TRUNCATIONS[cut](path.read_bytes())
    path.write_bytes(data)
    resign_with(smoke_copy, _record_file(1, data), real_key)
    code, err = _verify(smoke_copy, capsys)
    assert code == 3 and "not a valid safetensors file" in err, err


def test_two_checkpoints_files_swapped(smoke_copy: Path, capsys: pytest.CaptureFixture) -> None:
    (a, pa), (b, pb) = _ckpt(smoke_copy, 0), _ckpt(smoke_copy, 1)
    da, db = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(db)
    pb.write_bytes(da)
    code, err = _verify(smoke_copy, capsys)
    assert code == 3 and a["path"] in err and b["path"] in err, err


def test_swapped_checkpoint_records_with_their_digests_are_caught_by_step(
        smoke_copy: Path, real_key: SigningKey, capsys: pytest.CaptureFixture) -> None:
    """Swapping the records' steps (each record keeps its own file): out of step order."""
    def edit(raw: dict) -> None:
        first, second = raw["checkpoints"]
        first["step"], second["step"] = second["step"], first["step"]
    resign_with(smoke_copy, edit, real_key)
    code, err = _verify(smoke_copy, capsys)
    assert code == 3 and "not in step order" in err, err


def _steps(change: Callable[[list], list]) -> Edit:
    """An edit of the step records: the signer rewrites the step table and records its digest."""
    def edit(raw: dict, manifest: Path) -> None:
        table = manifest.parent / raw["step_table"]["path"]
        columns = parse_table(table.read_bytes(), raw["step_table"]["rows"], str(table))
        assert columns.seconds is not None
        rows = change([{"record": columns.record(i), "seconds": float(columns.seconds[i]), "step": int(columns.step[i])}
                       for i in range(len(columns))])
        records = [r["record"].model_copy(update={"step": r["step"]}) for r in rows]
        sha256, size = write_table(table, StepColumns.from_records(records, [r["seconds"] for r in rows]))
        raw["step_table"].update(sha256=sha256, size=size, rows=len(rows))
    return edit


INCONSISTENT: dict[str, tuple[Edit, str]] = {
    "a step skipped": (_steps(lambda s: s[:4] + [{**x, "step": x["step"] + 1} for x in s[4:]]), "not numbered 1..20"),
    "a step duplicated": (_steps(lambda s: [*s[:7], s[6], *s[8:]]), "not numbered 1..20"),
    "steps reordered": (_steps(lambda s: [s[1], s[0], *s[2:]]), "not numbered 1..20"),
    "the last step dropped": (_steps(lambda s: s[:-1]), "config says the run has 20"),
    "a step added": (_steps(lambda s: [*s, {**s[-1], "step": 21}]), "config says the run has 20"),
    "config steps changed": (lambda raw: raw["run"]["config"].update(steps=25), "config says the run has 25"),
    "a checkpoint at a step never run": (lambda raw: raw["checkpoints"][1].update(step=30),
                                         "checkpoint is at step 30"),
    "two checkpoints at one step": (lambda raw: raw["checkpoints"][0].update(step=20),
                                    "two checkpoints are at step 20"),
    "validation at a step never run": (lambda raw: raw["validation"][0].update(step=99), "validation is at step 99"),
    "two validations at one step": (lambda raw: raw["validation"].append(raw["validation"][-1]), "two validations"),
    "resumed from nowhere": (lambda raw: raw["timing"].update(resumed_from_step=7), "resumed from step 7"),
    "two records, one file": (lambda raw: raw["checkpoints"][0].update(path=raw["checkpoints"][1]["path"]),
                              "share the path"),
}


@pytest.mark.parametrize("case", sorted(INCONSISTENT))
def test_an_inconsistent_signed_manifest_is_an_integrity_failure(
        case: str, smoke_copy: Path, real_key: SigningKey, capsys: pytest.CaptureFixture) -> None:
    edit, expect = INCONSISTENT[case]
    resign_with(smoke_copy, edit, real_key)
    code, err = _verify(smoke_copy, capsys)
    assert code == 3 and "not a valid record of a finished run" in err and expect in err, (case, err)


@pytest.mark.parametrize("where", ["tokenizer", "checkpoint", "sbom", "data"])
def test_a_wrong_recorded_size_is_caught(where: str, smoke_copy: Path, real_key: SigningKey,
                                         capsys: pytest.CaptureFixture) -> None:
    def edit(raw: dict) -> None:
        record = {"tokenizer": lambda: raw["data"]["tokenizer"], "checkpoint": lambda: raw["checkpoints"][0],
                  "sbom": lambda: raw["artifacts"][0], "data": lambda: raw["data"]["files"][1]}[where]()
        record["size"] += 1
    resign_with(smoke_copy, edit, real_key)
    code, err = _verify(smoke_copy, capsys)
    assert code == 3 and "recorded" in err and "size" in err, err


def test_an_sbom_of_another_environment_is_caught(smoke_copy: Path, real_key: SigningKey,
                                                  capsys: pytest.CaptureFixture) -> None:
    m = load_manifest(smoke_copy).manifest
    sbom = smoke_copy.parent / m.artifacts[0].path
    original = sbom.read_text()
    for change in ("drop a component", "change a version", "change the timestamp"):
        document = json.loads(original)
        if change == "drop a component":
            document["components"] = [c for c in document["components"] if c["name"] != "torch"]
        elif change == "change a version":
            next(c for c in document["components"] if c["name"] == "torch")["version"] = "0.0.1"
        else:
            document["metadata"]["timestamp"] = "2020-01-01T00:00:00+00:00"
        data = json.dumps(document, indent=2).encode()
        sbom.write_bytes(data)
        resign_with(smoke_copy, lambda raw, d=data: raw["artifacts"][0].update(sha256=sha256_bytes(d), size=len(d)),
                    real_key)
        code, err = _verify(smoke_copy, capsys)
        assert code == 3 and "sbom.cdx.json" in err, (change, err)


def _attack(smoke_copy: Path, real_key: SigningKey) -> None:
    _, path = _ckpt(smoke_copy, 1)

    def bump(t: dict) -> dict:
        t["model.lm_head.weight"] = t["model.lm_head.weight"] * 1.5
        return t
    resign_with(smoke_copy, _record_file(1, _rewrite_checkpoint(path, bump)), real_key)


def test_the_attack_fails_audit_gate_and_attest_too(smoke_copy: Path, real_key: SigningKey, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    record = json.loads(smoke_copy.read_text())["checkpoints"][1]
    assert "model.lm_head.weight" in record["tensors"]
    _attack(smoke_copy, real_key)
    trusted = str(public_key_path(default_key_path()))
    assert main(["audit", str(smoke_copy), "--trusted-keys", trusted]) == 3
    policy = tmp_path / "pyproject.toml"
    policy.write_text(f'[tool.repro.gate]\nmanifests = ["{smoke_copy}"]\ntrusted_keys = "{trusted}"\n'
                      "[tool.repro.gate.vulnerabilities]\nenabled = false\n")
    assert main(["gate", "--config", str(policy), "--json", str(tmp_path / "gate.json")]) == 3
    assert json.loads((tmp_path / "gate.json").read_text())["outcome"] == "integrity_failure"
    out = tmp_path / "a.intoto.jsonl"
    assert main(["attest", str(smoke_copy), "--out", str(out), "--trusted-keys", trusted]) == 3
    assert not out.exists()
    assert "tensor model.lm_head.weight differs" in capsys.readouterr().err


def test_the_gate_checks_the_signature_before_the_schema(smoke_copy: Path, tmp_path: Path) -> None:
    """An edit that also breaks the schema is tampering (3), not a malformed manifest (2), in the gate too."""
    raw = json.loads(smoke_copy.read_text())
    raw["run"]["surprise"] = 1
    smoke_copy.write_text(json.dumps(raw))
    trusted = str(public_key_path(default_key_path()))
    policy = tmp_path / "pyproject.toml"
    policy.write_text(f'[tool.repro.gate]\nmanifests = ["{smoke_copy}"]\ntrusted_keys = "{trusted}"\n'
                      "[tool.repro.gate.vulnerabilities]\nenabled = false\n")
    assert main(["gate", "--config", str(policy), "--json", str(tmp_path / "gate.json")]) == 3
    [result] = json.loads((tmp_path / "gate.json").read_text())["results"]
    assert result["reproduction"] == "integrity_failure" and "changed after it was signed" in result["message"]
