"""Every file a manifest names, checked against everything the manifest says about it.

A recorded fact that has a counterpart on disk is checked against it:

- every file: its size (before reading a byte) and its SHA-256;
- a checkpoint: also the tensors in it, parsed and hashed one by one, against the per-tensor
  digests (names both ways: none missing, none added), so the file digest, the per-tensor digests
  and the content cannot disagree (:mod:`repro.records.safetensors_digest`, one pass over the file);
- the SBOM: also that it lists exactly the recorded environment's distributions and the run's
  start time, so it is the SBOM of this record;
- the data files: size and digest each, and the corpus digest over their concatenation, from the
  same single read.

The token stream digest is not recomputed here: it is the trainer's own function of the data
(tokenizing needs the trainer), so it is checked by ``repro audit``, whose rerun recomputes it.

Every read goes through :mod:`repro.files.confine`. A check returns :class:`ArtifactCheck` results;
the caller (:func:`repro.trust.verify.verify_manifest`) decides what a result means.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from repro.files.confine import open_recorded
from repro.records.manifest import CheckpointRecord, DataRecord, FileDigest, RunManifest
from repro.records.safetensors_digest import MalformedCheckpoint, digest_checkpoint
from repro.trust.data_location import data_source_root, describe_location

Status = Literal["ok", "changed", "missing"]
SBOM_NAME = "sbom.cdx.json"  # repro.records.sbom.SBOM_NAME, without importing the SBOM models
_CHUNK = 1 << 20
_MAX_SBOM = 64 * 1024 * 1024


@dataclass(frozen=True)
class ArtifactCheck:
    """The result of checking one file the manifest names; ``detail`` says what differs."""

    kind: str
    path: str
    status: Status
    detail: str = ""


def _size_differs(handle: BinaryIO, recorded: int) -> str:
    size = os.fstat(handle.fileno()).st_size
    return f"size {size} bytes, recorded {recorded}" if size != recorded else ""


def _hash(handle: BinaryIO, *also: Any) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        for other in also:
            other.update(chunk)
    return digest.hexdigest()


def check_file(kind: str, root: Path, record: FileDigest) -> ArtifactCheck:
    """Size and SHA-256 of one recorded file under ``root``."""
    with open_recorded(root, record.path, kind) as handle:
        if handle is None:
            return ArtifactCheck(kind, record.path, "missing")
        if detail := _size_differs(handle, record.size):
            return ArtifactCheck(kind, record.path, "changed", detail)
        if _hash(handle) != record.sha256:
            return ArtifactCheck(kind, record.path, "changed", "SHA-256 differs")
    return ArtifactCheck(kind, record.path, "ok")


def _tensor_problem(recorded: dict[str, str], found: dict[str, str]) -> str:
    missing, added = sorted(set(recorded) - set(found)), sorted(set(found) - set(recorded))
    if missing:
        return f"tensor {missing[0]} recorded but not in the file" + (f" (+{len(missing) - 1})" * (len(missing) > 1))
    if added:
        return f"tensor {added[0]} in the file but not recorded" + (f" (+{len(added) - 1})" * (len(added) > 1))
    differ = sorted(n for n in recorded if recorded[n] != found[n])
    if differ:
        more = f" and {len(differ) - 1} more" if len(differ) > 1 else ""
        return f"tensor {differ[0]}{more} differs from its recorded digest"
    return ""


def check_checkpoint(root: Path, record: CheckpointRecord) -> ArtifactCheck:
    """A checkpoint's size, file digest and every tensor's digest, from one read of its content."""
    with open_recorded(root, record.path, "checkpoint") as handle:
        if handle is None:
            return ArtifactCheck("checkpoint", record.path, "missing")
        if detail := _size_differs(handle, record.size):
            return ArtifactCheck("checkpoint", record.path, "changed", detail)
        try:
            found = digest_checkpoint(handle)
        except MalformedCheckpoint as exc:
            return ArtifactCheck("checkpoint", record.path, "changed", f"not a valid safetensors file: {exc}")
    if found.sha256 != record.sha256:
        return ArtifactCheck("checkpoint", record.path, "changed", "SHA-256 differs")
    if problem := _tensor_problem(record.tensors, found.tensors):
        return ArtifactCheck("checkpoint", record.path, "changed", problem)
    return ArtifactCheck("checkpoint", record.path, "ok")


def _sbom_problem(data: bytes, manifest: RunManifest) -> str:
    try:
        document = json.loads(data)
        components = {c["name"]: c["version"] for c in document["components"] if c.get("type") == "library"}
        timestamp = document["metadata"]["timestamp"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return "not a CycloneDX SBOM repro wrote"
    if components != manifest.environment.distributions:
        return "does not list the recorded environment's distributions"
    if timestamp != manifest.timing.started_at:
        return "is not the SBOM of this run (its timestamp is not the run's start)"
    return ""


def check_sbom(root: Path, record: FileDigest, manifest: RunManifest) -> ArtifactCheck:
    """The SBOM's size and digest, and that it describes the recorded environment of this run."""
    with open_recorded(root, record.path, "SBOM") as handle:
        if handle is None:
            return ArtifactCheck("artifact", record.path, "missing")
        if detail := _size_differs(handle, record.size):
            return ArtifactCheck("artifact", record.path, "changed", detail)
        data = handle.read(min(record.size, _MAX_SBOM) + 1)
    if hashlib.sha256(data).hexdigest() != record.sha256:
        return ArtifactCheck("artifact", record.path, "changed", "SHA-256 differs")
    if problem := _sbom_problem(data, manifest):
        return ArtifactCheck("artifact", record.path, "changed", problem)
    return ArtifactCheck("artifact", record.path, "ok")


def check_run_files(manifest: RunManifest, folder: Path) -> list[ArtifactCheck]:
    """The tokenizer, checkpoints and other artifacts (paths relative to ``folder``)."""
    checks = []
    if manifest.data.tokenizer is not None:
        checks.append(check_file("tokenizer", folder, manifest.data.tokenizer))
    checks += [check_checkpoint(folder, c) for c in manifest.checkpoints]
    for art in manifest.artifacts:
        is_sbom = art.path.rsplit("/", 1)[-1] == SBOM_NAME
        checks.append(check_sbom(folder, art, manifest) if is_sbom else check_file("artifact", folder, art))
    return checks


def _data_file(root: Path, record: FileDigest, corpus: Any) -> ArtifactCheck:
    with open_recorded(root, record.path, "data file") as handle:
        if handle is None:
            return ArtifactCheck("data", record.path, "missing", f"looked for {root / record.path}")
        if detail := _size_differs(handle, record.size):
            return ArtifactCheck("data", record.path, "changed", detail)
        if _hash(handle, corpus) != record.sha256:
            return ArtifactCheck("data", record.path, "changed", "SHA-256 differs")
    return ArtifactCheck("data", record.path, "ok")


def check_data(data: DataRecord, manifest_path: Path | None = None,
               override: Path | None = None) -> list[ArtifactCheck]:
    """Every input data file (size and digest) and the corpus digest, from one read of each file.

    The files are looked for where :func:`repro.trust.data_location.data_source_root` says (the
    recorded location, resolved against the repository of ``manifest_path`` where it is
    repository-relative, or ``override``); a missing check's detail names the absolute path looked at.
    """
    if data.source.kind == "generated":
        return []  # nothing on disk; a rerun regenerates the data and compares its digest
    root = data_source_root(data.source, manifest_path, files=[f.path for f in data.files], override=override)
    if root is None:
        where = describe_location(data.source, manifest_path)
        missing = [ArtifactCheck("data", f.path, "missing", f"looked for {where}") for f in data.files]
        return missing or [ArtifactCheck("data", where, "missing", f"looked for {where}")]
    corpus = hashlib.sha256()
    checks = [_data_file(root, f, corpus) for f in data.files]
    if all(c.status == "ok" for c in checks):
        ok = corpus.hexdigest() == data.corpus_sha256
        checks.append(ArtifactCheck("corpus", "(all data files)", "ok" if ok else "changed",
                                    "" if ok else "corpus SHA-256 differs"))
    return checks


def describe(checks: Iterable[ArtifactCheck], limit: int = 3) -> str:
    """``kind path (detail)`` for the first ``limit`` checks, and how many more."""
    listed = list(checks)
    names = ", ".join(f"{c.kind} {c.path}" + (f" ({c.detail})" if c.detail else "") for c in listed[:limit])
    return names + (f" and {len(listed) - limit} more" if len(listed) > limit else "")
