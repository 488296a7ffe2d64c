"""Schema version 2: the per-step records in a signed columnar sidecar (``steps.safetensors``).

A run writes it and verifies; the committed version-1 reference run still verifies (migration);
any change to the sidecar is an integrity failure (exit 3), never a traceback; the lazy
``manifest.steps`` view gives back exactly what the run recorded; the format is published.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from safetensors.numpy import load_file

from repro.cli import main
from repro.errors import InputError, ManifestFormatError
from repro.records.checkpoint import load_records
from repro.records.manifest import StepRecord
from repro.records.manifest_file import load_manifest, run_folder
from repro.records.schema import schema_text
from repro.records.steptable import (
    COLUMNS,
    FILE_NAME,
    StepColumns,
    parse_table,
    step_table_schema,
    table_bytes,
    write_table,
)
from repro.trust.keys import generate_key, load_key
from repro.trust.signing import sign_body
from tests.conftest import copy_run

DOCS = Path(__file__).resolve().parents[2] / "docs"
REFERENCE = Path(__file__).resolve().parents[2] / "manifests" / "reference" / "smoke.json"


def _table(manifest: Path) -> Path:
    return run_folder(manifest) / FILE_NAME


def _resign(manifest: Path, raw: dict[str, Any], key_path: Path) -> None:
    """Sign ``raw`` with the key at ``key_path`` (made there if absent) and write it."""
    key = load_key(key_path) if key_path.exists() else generate_key(key_path)
    body = {k: v for k, v in raw.items() if k != "signature"}
    manifest.write_text(json.dumps({**body, "signature": sign_body(body, key).model_dump(mode="json")}))


def test_a_run_writes_version_2_with_its_steps_in_the_signed_sidecar(smoke_run: Path) -> None:
    raw = json.loads(smoke_run.read_text())
    assert raw["schema_version"] == 2 and "steps" not in raw and "step_seconds" not in raw["timing"]
    table = _table(smoke_run)
    data = table.read_bytes()
    assert raw["step_table"] == {
        "path": f"{run_folder(smoke_run).name}/{FILE_NAME}", "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data), "rows": 20, "format": "repro.step-table/1",
    }
    # Any safetensors reader gets the documented columns and dtypes.
    columns = load_file(table)
    assert {k: (str(v.dtype), v.shape) for k, v in columns.items()} == {
        "step": ("int64", (20,)), "loss": ("float64", (20,)), "lr": ("float64", (20,)),
        "grad_norm": ("float64", (20,)), "tokens": ("int64", (20,)), "batch": ("uint8", (20, 8)),
        "seconds": ("float64", (20,)),
    }
    assert columns["step"].tolist() == list(range(1, 21))
    assert main(["verify", str(smoke_run)]) == 0


def test_the_lazy_steps_view_matches_what_the_run_recorded(smoke_run: Path) -> None:
    """The checkpoint's records.json is written by the training process itself, as JSON."""
    recorded = load_records(run_folder(smoke_run) / "checkpoints" / "step-000020")
    m = load_manifest(smoke_run).manifest
    steps = m.steps
    assert len(steps) == 20 and list(steps) == list(recorded.steps) and steps == recorded.steps
    assert steps[0] == recorded.steps[0] and steps[-1] == recorded.steps[-1]
    assert list(steps[5:9]) == recorded.steps[5:9] and list(steps[::-3]) == recorded.steps[::-3]
    assert all(isinstance(s, StepRecord) for s in steps)
    with pytest.raises(IndexError):
        steps[20]
    assert m.timing.step_seconds == recorded.step_seconds
    columns = m.step_columns()
    assert columns.loss.tolist() == [s.loss for s in recorded.steps]
    assert [b.decode() for b in columns.batch.tolist()] == [s.batch for s in recorded.steps]


def test_the_version_1_reference_run_still_verifies(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    reference = copy_run(REFERENCE, tmp_path / "v1")
    raw = json.loads(reference.read_text())
    assert raw["schema_version"] == 1 and len(raw["steps"]) == 20
    assert main(["verify", str(reference), "--trusted-keys", str(REFERENCE.parent.parent / "trusted-keys.txt")]) == 0
    assert "verified" in capsys.readouterr().out
    loaded = load_manifest(reference)
    m = loaded.manifest
    assert m.schema_version == 2 and m.step_table is None and loaded.raw["schema_version"] == 1
    assert [s.model_dump() for s in m.steps] == raw["steps"]
    assert m.timing.step_seconds == raw["timing"]["step_seconds"]
    # Migrated, it is still tamper-checked as written.
    raw["steps"][3]["loss"] += 1e-7
    reference.write_text(json.dumps(raw))
    assert main(["verify", str(reference)]) == 3


def test_a_version_1_manifest_with_malformed_steps_is_an_input_error(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    reference = copy_run(REFERENCE, tmp_path / "v1")
    raw = json.loads(reference.read_text())
    raw["steps"][2]["loss"] = "six"
    _resign(reference, raw, tmp_path / "key.pem")
    assert main(["verify", str(reference)]) == 2
    err = capsys.readouterr().err
    assert "field steps.2.loss" in err and "Traceback" not in err
    raw["steps"][2]["loss"] = 6.0
    raw["timing"]["step_seconds"].pop()
    _resign(reference, raw, tmp_path / "key.pem")
    assert main(["verify", str(reference)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "timing.step_seconds has 19 entries for 20 steps" in err and "Traceback" not in err


def _flip_loss_bit(data: bytes) -> bytes:
    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    at = 8 + struct.unpack("<Q", data[:8])[0] + header["loss"]["data_offsets"][0] + 8 * 7  # step 8's loss
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _drop_last_row(data: bytes) -> bytes:
    columns = parse_table(data, 20, "test")
    return table_bytes(columns.take(slice(0, 19)))


@pytest.mark.parametrize(
    "change", ["flip a loss bit", "drop a row", "another run's table", "truncate", "garbage", "empty"]
)
def test_any_change_to_the_sidecar_is_an_integrity_failure(
    smoke_copy: Path, tmp_path: Path, change: str, capsys: pytest.CaptureFixture
) -> None:
    table = _table(smoke_copy)
    data = table.read_bytes()
    if change == "another run's table":  # a real table of another run: the v1 reference's steps
        other = load_manifest(REFERENCE).manifest.step_columns()
        changed = table_bytes(other)
        assert changed != data and len(changed) == len(data)
    else:
        changed = {
            "flip a loss bit": _flip_loss_bit, "drop a row": _drop_last_row,
            "truncate": lambda d: d[: len(d) // 2], "garbage": lambda d: b"\x00garbage" * 40,
            "empty": lambda d: b"",
        }[change](data)
    table.write_bytes(changed)
    assert main(["verify", str(smoke_copy)]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert f"steps {run_folder(smoke_copy).name}/{FILE_NAME}" in err and "changed since the run" in err
    assert "Traceback" not in err
    assert main(["audit", str(smoke_copy)]) == 3  # an audit checks it like any artifact, before rerunning


def test_a_missing_sidecar_means_verify_could_not_check(smoke_copy: Path, capsys: pytest.CaptureFixture) -> None:
    _table(smoke_copy).unlink()
    assert main(["verify", str(smoke_copy)]) == 4
    assert "missing" in capsys.readouterr().err


def test_a_signed_but_inconsistent_table_is_an_integrity_failure(smoke_copy: Path, repro_home: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """Only the signer can make one (the hash is signed): steps 2..21 instead of 1..20. Like any
    self-contradicting signed manifest it is not a valid record (exit 3, repro.trust.consistency)."""
    m = load_manifest(smoke_copy).manifest
    good = m.step_columns()
    shifted = StepColumns(step=good.step + 1, loss=good.loss, lr=good.lr, grad_norm=good.grad_norm,
                          tokens=good.tokens, batch=good.batch, seconds=good.seconds)
    sha256, size = write_table(_table(smoke_copy), shifted)
    raw = json.loads(smoke_copy.read_text())
    raw["step_table"].update(sha256=sha256, size=size)
    _resign(smoke_copy, raw, repro_home / "key.pem")
    assert main(["verify", str(smoke_copy)]) == 3
    err = capsys.readouterr().err
    assert "steps are not numbered 1..20" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["dtype", "offsets", "extra column", "metadata", "rows"])
def test_parse_rejects_tables_that_are_not_the_documented_layout(smoke_run: Path, damage: str) -> None:
    data = _table(smoke_run).read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    rows = 20
    if damage == "dtype":
        header["tokens"]["dtype"] = "F64"
    elif damage == "offsets":
        header["loss"]["data_offsets"], header["lr"]["data_offsets"] = header["lr"]["data_offsets"], [0, 8]
    elif damage == "extra column":
        header["extra"] = {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}
    elif damage == "metadata":
        header["__metadata__"]["version"] = "9"
    else:
        rows = 19
    text = json.dumps(header).encode()
    with pytest.raises(ManifestFormatError):
        parse_table(struct.pack("<Q", len(text)) + text + data[8 + size :], rows, "test")


def test_fingerprints_must_be_16_hex_digits_to_be_written(tmp_path: Path) -> None:
    record = StepRecord(step=1, loss=1.0, lr=0.1, grad_norm=1.0, tokens=4, batch="not-a-fingerprint")
    with pytest.raises(InputError, match="16 lowercase hex digits"):
        write_table(tmp_path / FILE_NAME, StepColumns.from_records([record], [0.5]))
    upper = record.model_copy(update={"batch": "ABCDEF0123456789"})
    with pytest.raises(InputError, match="16 lowercase hex digits"):
        write_table(tmp_path / FILE_NAME, StepColumns.from_records([upper], [0.5]))
    assert not (tmp_path / FILE_NAME).exists()


def test_schemas_are_published_and_a_real_table_header_matches(smoke_run: Path) -> None:
    assert (DOCS / "step-table.schema.json").read_text() == schema_text(step_table_schema()), (
        "regenerate with: python -m repro.records.schema docs"
    )
    data = _table(smoke_run).read_bytes()
    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    jsonschema.validate(header, json.loads((DOCS / "step-table.schema.json").read_text()))
    manifest_schema = json.loads((DOCS / "manifest.schema.json").read_text())
    jsonschema.validate(json.loads(smoke_run.read_text()), manifest_schema)
    v1_schema = json.loads((DOCS / "manifest-v1.schema.json").read_text())
    jsonschema.validate(json.loads(REFERENCE.read_text()), v1_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(smoke_run.read_text()), v1_schema)
    assert set(COLUMNS) == set(header) - {"__metadata__"}


def test_columns_round_trip_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 1000
    losses = rng.standard_normal(n).astype(np.float32).astype(np.float64)
    losses[3] = 0.1  # not a float32 number: still exact
    columns = StepColumns(
        step=np.arange(1, n + 1), loss=losses, lr=rng.random(n), grad_norm=rng.random(n),
        tokens=rng.integers(0, 2**40, n), batch=np.array([f"{i:016x}".encode() for i in range(n)]),
        seconds=rng.random(n),
    )
    sha256, size = write_table(tmp_path / FILE_NAME, columns)
    data = (tmp_path / FILE_NAME).read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha256 and len(data) == size
    back = parse_table(data, n, "test")
    for name in ("step", "loss", "lr", "grad_norm", "tokens", "batch", "seconds"):
        assert np.array_equal(getattr(back, name), getattr(columns, name)), name
    assert back.loss[3] == 0.1
