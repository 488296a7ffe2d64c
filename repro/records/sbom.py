"""A CycloneDX SBOM of the environment a run trained in, written beside its manifest.

The SBOM lists every distribution the training child had installed (the manifest's
``environment.distributions``, captured in that child, not in the parent). It is a pure function
of what the manifest records: the distributions, the run's start time and the tool version. So
anyone holding a manifest can rebuild its SBOM byte for byte, and two runs with the same
environment and start time write the same bytes.

CycloneDX's usual serial number is a random UUID and its timestamp is "now"; both would make the
file differ on every write. Here the timestamp is the run's ``started_at`` and the serial number is
a name-based UUID (RFC 4122 version 5) of the SHA-256 of the document without its serial, so it
still identifies one document.

Why our own models rather than cyclonedx-python-lib's: the subset written here is small, pydantic
models pin every byte we emit, and the library's API has broken between majors. A test validates
the output against the official CycloneDX 1.6 JSON schema that the library ships.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Final, Literal

from packageurl import PackageURL
from pydantic import ConfigDict, Field

from repro import __version__
from repro.files import atomic
from repro.records.base import FrozenRecord
from repro.records.canonical import canonical_bytes
from repro.records.hashing import sha256_bytes
from repro.records.manifest import EnvironmentRecord, FileDigest
from repro.records.manifest_file import run_folder

SBOM_NAME = "sbom.cdx.json"
"""File name of the SBOM inside a run folder."""

SPEC_VERSION: Final = "1.6"


class _Model(FrozenRecord):
    model_config = ConfigDict(populate_by_name=True)


class Property(_Model):
    """A CycloneDX name/value property (namespaced ``repro:``)."""

    name: str
    value: str


class Component(_Model):
    """One CycloneDX component: an installed distribution, a tool, or the run itself."""

    type: Literal["library", "application", "machine-learning-model"]
    bom_ref: str = Field(alias="bom-ref")
    name: str
    version: str | None = None
    purl: str | None = None


class Tools(_Model):
    """The tools that wrote the SBOM (CycloneDX 1.5+ object form)."""

    components: list[Component]


class Metadata(_Model):
    """When, by what and about what the SBOM was written."""

    timestamp: str
    tools: Tools
    component: Component
    properties: list[Property]


class Bom(_Model):
    """The subset of a CycloneDX 1.6 BOM that repro writes."""

    schema_: str = Field("http://cyclonedx.org/schema/bom-1.6.schema.json", alias="$schema")
    bomFormat: Literal["CycloneDX"] = "CycloneDX"
    specVersion: Literal["1.6"] = SPEC_VERSION
    serialNumber: str | None = None
    version: int = 1
    metadata: Metadata
    components: list[Component]


def pypi_purl(name: str, version: str) -> str:
    """The package URL of a PyPI distribution (name normalised, version percent-encoded)."""
    # The purl spec's own rule for pypi names (lowercase, "_" as "-"), which keeps dots: not PEP 503.
    return PackageURL(type="pypi", name=name.lower().replace("_", "-"), version=version).to_string()


def _serial(document: dict[str, Any]) -> str:
    """``urn:uuid:`` of a version-5 UUID named by the SHA-256 of the document's canonical JSON."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"urn:repro:sbom:sha256:{sha256_bytes(canonical_bytes(document))}").urn


def build_sbom(environment: EnvironmentRecord, timestamp: str, subject: str) -> Bom:
    """The SBOM of ``environment``; ``timestamp`` is the run's start, ``subject`` names the run."""
    components = [
        Component(type="library", bom_ref=pypi_purl(name, version), name=name, version=version,
                  purl=pypi_purl(name, version))
        for name, version in sorted(environment.distributions.items())
    ]
    bom = Bom(
        metadata=Metadata(
            timestamp=timestamp,
            tools=Tools(components=[Component(type="application", bom_ref="repro-tool", name="repro",
                                              version=__version__)]),
            component=Component(type="machine-learning-model", bom_ref="repro-run", name=subject),
            properties=[
                Property(name="repro:python", value=f"{environment.python_implementation} {environment.python}"),
                Property(name="repro:platform", value=environment.os),
                Property(name="repro:torch", value=environment.torch_version),
            ],
        ),
        components=components,
    )
    return bom.model_copy(update={"serialNumber": _serial(_dump(bom))})


def _dump(bom: Bom) -> dict[str, Any]:
    return bom.model_dump(mode="json", by_alias=True, exclude_none=True)


def sbom_bytes(bom: Bom) -> bytes:
    """The bytes written for an SBOM: indented JSON, field order fixed by the models."""
    return (json.dumps(_dump(bom), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def record_sbom(
    manifest_path: Path, environment: EnvironmentRecord, timestamp: str, subject: str,
    folder: Path | None = None,
) -> FileDigest:
    """Write the run's SBOM into its run folder (atomically) and return its manifest entry.

    ``folder`` is the folder of this run's files (``repro run`` passes its own run folder, see
    :mod:`repro.running.layout`); by default the folder beside the manifest.
    """
    manifest_path = Path(manifest_path)
    path = Path(folder or run_folder(manifest_path)) / SBOM_NAME
    data = sbom_bytes(build_sbom(environment, timestamp, subject))
    atomic.write_bytes(path, data)
    relative = path.resolve().relative_to(manifest_path.parent.resolve()).as_posix()
    return FileDigest(path=relative, sha256=sha256_bytes(data), size=len(data))
