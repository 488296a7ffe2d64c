"""The run's CycloneDX SBOM: recorded, hashed in the manifest, valid, and deterministic."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from repro.cli import main
from repro.records.hashing import sha256_file
from repro.records.manifest_file import load_manifest
from repro.records.sbom import SBOM_NAME, build_sbom, pypi_purl, sbom_bytes


def test_run_records_its_sbom_as_a_hashed_artifact(smoke_run: Path) -> None:
    manifest = load_manifest(smoke_run).manifest
    [artifact] = [a for a in manifest.artifacts if a.path.endswith(SBOM_NAME)]
    path = smoke_run.parent / artifact.path
    assert artifact.path.startswith(f"{smoke_run.stem}/")  # inside the run's own folder
    assert sha256_file(path) == artifact.sha256 and path.stat().st_size == artifact.size

    bom = json.loads(path.read_text())
    listed = {c["name"]: c["version"] for c in bom["components"]}
    assert listed == manifest.environment.distributions  # every distribution the child had
    assert bom["metadata"]["timestamp"] == manifest.timing.started_at


def test_sbom_is_rebuilt_byte_for_byte_from_the_manifest(smoke_run: Path) -> None:
    manifest = load_manifest(smoke_run).manifest
    rebuilt = sbom_bytes(build_sbom(manifest.environment, manifest.timing.started_at, "gpt/smoke"))
    assert rebuilt == (smoke_run.parent / manifest.artifacts[0].path).read_bytes()


def test_sbom_validates_against_the_cyclonedx_1_6_schema(smoke_run: Path) -> None:
    text = (smoke_run.parent / load_manifest(smoke_run).manifest.artifacts[0].path).read_text()
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, str(error)[:500]


def test_serial_number_is_a_uuid_derived_from_the_content(smoke_run: Path) -> None:
    env = load_manifest(smoke_run).manifest.environment
    first = build_sbom(env, "2026-01-01T00:00:00+00:00", "gpt/smoke")
    again = build_sbom(env, "2026-01-01T00:00:00+00:00", "gpt/smoke")
    assert sbom_bytes(first) == sbom_bytes(again)
    assert first.serialNumber is not None
    assert uuid.UUID(first.serialNumber.removeprefix("urn:uuid:")).version == 5

    changed_env = env.model_copy(update={"distributions": {**env.distributions, "torch": "9.9.9"}})
    assert build_sbom(changed_env, "2026-01-01T00:00:00+00:00", "gpt/smoke").serialNumber != first.serialNumber
    assert build_sbom(env, "2026-01-02T00:00:00+00:00", "gpt/smoke").serialNumber != first.serialNumber


def test_purl_normalises_names_and_encodes_local_versions() -> None:
    assert pypi_purl("Typing_Extensions", "4.12.2") == "pkg:pypi/typing-extensions@4.12.2"
    assert pypi_purl("torch", "2.13.0+cpu") == "pkg:pypi/torch@2.13.0%2Bcpu"


def test_a_changed_sbom_fails_verification(smoke_copy: Path, capsys) -> None:
    sbom = smoke_copy.parent / load_manifest(smoke_copy).manifest.artifacts[0].path
    sbom.write_text(sbom.read_text().replace('"version": 1,', '"version": 2,', 1))
    assert main(["verify", str(smoke_copy)]) == 3
    assert SBOM_NAME in capsys.readouterr().err
