"""``repro verify``: check a manifest's signature and every artifact it names, without rerunning.

Everything is checked before anything is reported, so the user sees every changed or missing
file at once. A changed file is an integrity failure (exit 3); a missing one means the check could
not be completed (exit 4).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from repro.errors import ArtifactMismatchError, ManifestFormatError, MissingArtifactError
from repro.hashing import sha256_concat, sha256_file
from repro.manifest import DataSource, LoadedManifest, check_not_newer, manifest_from_json, read_manifest_json
from repro.signing import verify_document

Status = Literal["ok", "changed", "missing"]


@dataclass(frozen=True)
class ArtifactCheck:
    """The result of checking one file the manifest names."""

    kind: str
    path: str
    status: Status


@dataclass(frozen=True)
class VerifyResult:
    """A verified manifest: who signed it, and every artifact check (all ``ok``)."""

    loaded: LoadedManifest
    key_id: str
    trusted: bool
    checks: list[ArtifactCheck] = field(default_factory=list)


def data_source_root(source: DataSource) -> Path | None:
    """The folder a data source's file paths are relative to, or None if it is not here."""
    if source.kind == "generated":
        return None
    if source.kind == "distribution":
        try:
            return Path(importlib.metadata.distribution(source.name).locate_file(""))
        except importlib.metadata.PackageNotFoundError:
            return None
    path = Path(source.name)
    if path.is_file():
        return path.parent
    return path if path.is_dir() else None


def _check_file(kind: str, path: Path, label: str, sha256: str) -> ArtifactCheck:
    if not path.is_file():
        return ArtifactCheck(kind, label, "missing")
    return ArtifactCheck(kind, label, "ok" if sha256_file(path) == sha256 else "changed")


def check_data(loaded: LoadedManifest) -> list[ArtifactCheck]:
    """Check every input data file and the concatenated corpus hash."""
    data = loaded.manifest.data
    if data.source.kind == "generated":
        return []  # nothing on disk; a rerun regenerates the data and compares its digest
    root = data_source_root(data.source)
    if root is None:
        where = f"distribution {data.source.name}" if data.source.kind == "distribution" else data.source.name
        return [ArtifactCheck("data", f.path, "missing") for f in data.files] or [
            ArtifactCheck("data", where, "missing")
        ]
    checks = [_check_file("data", root / f.path, f.path, f.sha256) for f in data.files]
    if all(c.status == "ok" for c in checks):
        corpus = sha256_concat((root / f.path).read_bytes() for f in data.files)
        checks.append(ArtifactCheck("corpus", "(all data files)", "ok" if corpus == data.corpus_sha256 else "changed"))
    return checks


def check_artifacts(loaded: LoadedManifest) -> list[ArtifactCheck]:
    """Check the tokenizer, checkpoints and other artifacts (paths relative to the manifest)."""
    m, folder = loaded.manifest, loaded.folder
    checks = []
    if m.data.tokenizer is not None:
        checks.append(_check_file("tokenizer", folder / m.data.tokenizer.path, m.data.tokenizer.path, m.data.tokenizer.sha256))
    for ckpt in m.checkpoints:
        checks.append(_check_file("checkpoint", folder / ckpt.path, ckpt.path, ckpt.sha256))
    for art in m.artifacts:
        checks.append(_check_file("artifact", folder / art.path, art.path, art.sha256))
    if m.step_table is not None:
        checks.append(check_step_table(loaded))
    return checks


def check_step_table(loaded: LoadedManifest) -> ArtifactCheck:
    """Read the step table once: hash it against the manifest, then check its columns (steps
    1..N, the recorded row count). A valid hash over an invalid table is malformed input."""
    path = loaded.manifest.step_table.path if loaded.manifest.step_table else "(inline)"
    try:
        loaded.manifest.step_columns()
    except MissingArtifactError:
        return ArtifactCheck("steps", path, "missing")
    except ArtifactMismatchError:
        return ArtifactCheck("steps", path, "changed")
    return ArtifactCheck("steps", path, "ok")


def raise_for_checks(checks: list[ArtifactCheck]) -> None:
    """Raise for changed files (integrity, first) or missing ones (could not check)."""
    for status, error, verb in (
        ("changed", ArtifactMismatchError, "changed since the run"),
        ("missing", MissingArtifactError, "missing"),
    ):
        bad = [c for c in checks if c.status == status]
        if bad:
            names = ", ".join(f"{c.kind} {c.path}" for c in bad[:3])
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            advice = "the manifest no longer describes these files" if status == "changed" else "restore them to verify"
            raise error(f"{len(bad)} file(s) {verb}: {names}{more}; {advice}")


def authenticate(raw: Any, path: Path, trusted: dict[str, bytes] | None = None) -> tuple[LoadedManifest, str]:
    """Check parsed manifest JSON in the order that names each problem for what it is.

    1. Not a JSON object, or an object with none of ``kind``/``schema_version``/``signature``:
       not a manifest at all (:class:`ManifestFormatError`, exit 2).
    2. A newer ``schema_version``: "upgrade repro" (exit 2); its rules are unknown here.
    3. The signature over the JSON as written, and the trust list: any edit to any field of a
       manifest, schema-breaking or not, is an integrity failure (exit 3).
    4. Only then the schema (and migrations from older versions): a validly signed document that
       is not a valid manifest is malformed input (exit 2).

    Returns the loaded manifest and the signer's key id.
    """
    what = f"manifest {path}"
    if not isinstance(raw, dict):
        raise ManifestFormatError(f"{what} is not a JSON object; it is not a repro manifest")
    if not {"kind", "schema_version", "signature"} & raw.keys():
        raise ManifestFormatError(f"{what} has no kind, schema_version or signature; it is not a repro manifest")
    check_not_newer(raw, what)
    key_id = verify_document(raw, str(path), trusted)
    return LoadedManifest(manifest=manifest_from_json(raw, what), raw=raw, path=Path(path)), key_id


def load_authentic(path: Path, trusted: dict[str, bytes] | None = None) -> tuple[LoadedManifest, str]:
    """Read a manifest file and :func:`authenticate` it (artifacts are not checked here)."""
    return authenticate(read_manifest_json(Path(path)), Path(path), trusted)


def verify_manifest(path: Path, trusted: dict[str, bytes] | None = None) -> VerifyResult:
    """Load ``path``, verify its signature (against ``trusted`` if given) and all artifacts."""
    loaded, key_id = load_authentic(path, trusted)
    checks = check_data(loaded) + check_artifacts(loaded)
    raise_for_checks(checks)
    return VerifyResult(loaded=loaded, key_id=key_id, trusted=trusted is not None, checks=checks)
