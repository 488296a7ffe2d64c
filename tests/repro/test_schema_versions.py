"""Schema versions: a newer manifest says "upgrade repro"; an older supported one is
migrated after its signature is checked over the bytes as written.

The real version 1 -> 2 migration is tested in test_steptable.py with the committed version-1
reference run. A chain of two migrations is proven here with a version 0 that exists only inside
these tests (registered with monkeypatch): a version-1 manifest whose validation losses were called
``val_losses``. No such format was ever written by repro.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from repro.cli import main
from repro.records import manifest_file as manifest_module
from repro.records.manifest_file import load_manifest, supported_schema_versions
from repro.trust.keys import load_or_create_key
from repro.trust.signing import sign_body
from repro.trust.verify import verify_manifest
from tests.conftest import copy_run

REFERENCE = Path(__file__).resolve().parents[2] / "manifests" / "reference" / "smoke.json"


def _v0_to_v1(raw: dict[str, Any]) -> dict[str, Any]:
    raw["validation"] = raw.pop("val_losses")
    raw["schema_version"] = 1
    return raw


def _signed(body: dict[str, Any], key_path: Path) -> dict[str, Any]:
    body = {k: v for k, v in body.items() if k != "signature"}
    return {**body, "signature": sign_body(body, load_or_create_key(key_path)[0]).model_dump(mode="json")}


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    """A private copy of the committed version-1 reference run."""
    return copy_run(REFERENCE, tmp_path / "v1")


@pytest.fixture
def v0_manifest(v1_copy: Path, repro_home: Path) -> Path:
    """The version-1 reference run, rewritten in the test-only version 0 form and signed as such."""
    raw = json.loads(v1_copy.read_text())
    assert raw["schema_version"] == 1
    v0 = {k: v for k, v in raw.items() if k != "validation"}
    v0.update(schema_version=0, val_losses=raw["validation"])
    v1_copy.write_text(json.dumps(_signed(v0, repro_home / "key.pem"), indent=1))
    return v1_copy


def test_newer_schema_version_asks_to_upgrade(smoke_copy: Path, capsys: pytest.CaptureFixture) -> None:
    raw = json.loads(smoke_copy.read_text())
    smoke_copy.write_text(json.dumps({**raw, "schema_version": 3}))
    assert main(["verify", str(smoke_copy)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "uses manifest schema version 3, newer than this repro (reads [1, 2]); upgrade repro to check it" in err


def test_an_old_version_without_a_migration_is_refused(v0_manifest: Path, capsys) -> None:
    assert supported_schema_versions() == {1, 2}
    assert main(["verify", str(v0_manifest)]) == 2
    assert "schema version 0, which this repro cannot read (reads [1, 2])" in " ".join(capsys.readouterr().err.split())


def test_an_older_supported_version_verifies_through_its_migrations(
    v0_manifest: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setitem(manifest_module.MIGRATIONS, 0, _v0_to_v1)
    assert supported_schema_versions() == {0, 1, 2}
    assert main(["verify", str(v0_manifest)]) == 0
    assert "verified" in capsys.readouterr().out
    loaded = load_manifest(v0_manifest)
    assert loaded.manifest.schema_version == 2  # 0 -> 1 (this test's) -> 2 (repro's)
    reference = load_manifest(REFERENCE).manifest
    assert loaded.manifest.validation == reference.validation
    assert list(loaded.manifest.steps) == list(reference.steps) and len(reference.steps) == 20
    # The document as written (version 0) is kept, and it is what the signature covers.
    assert loaded.raw["schema_version"] == 0 and "val_losses" in loaded.raw
    assert verify_manifest(v0_manifest).loaded.raw == loaded.raw


def test_an_older_version_is_still_tamper_checked(
    v0_manifest: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setitem(manifest_module.MIGRATIONS, 0, _v0_to_v1)
    raw = json.loads(v0_manifest.read_text())
    raw["val_losses"][0]["loss"] += 1.0
    v0_manifest.write_text(json.dumps(raw))
    assert main(["verify", str(v0_manifest)]) == 3
    assert "changed after it was signed" in capsys.readouterr().err


def test_a_migration_that_cannot_read_its_input_is_an_input_error(
    v0_manifest: Path, repro_home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A validly signed version-0 document that lacks what version 0 has: exit 2, no traceback."""
    monkeypatch.setitem(manifest_module.MIGRATIONS, 0, _v0_to_v1)
    raw = json.loads(v0_manifest.read_text())
    del raw["val_losses"]
    v0_manifest.write_text(json.dumps(_signed(raw, repro_home / "key.pem")))
    assert main(["verify", str(v0_manifest)]) == 2
    err = capsys.readouterr().err
    assert "is not a valid version-0 manifest" in err and "Traceback" not in err


def test_a_broken_migration_chain_supports_nothing_older(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(manifest_module.MIGRATIONS, -1, _v0_to_v1)  # -1 -> 0, but no 0 -> 1
    assert supported_schema_versions() == {1, 2}
