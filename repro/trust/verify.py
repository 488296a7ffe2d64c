"""Verification of a manifest: the one path ``verify``, ``audit``, ``gate`` and ``attest`` go through.

:func:`verify_manifest` reads the manifest's bytes once and checks, in this order (each step names
its problem for what it is; see docs/security.md "What `repro verify` checks, in order"):

1. the file: missing or only an unfinished run's marker (exit 4); unreadable, not a regular file or
   not strict JSON (exit 2);
2. that it is a manifest at all, and not from a newer repro (exit 2);
3. the signature over the JSON as written, then the trust list (exit 3): any edit to any field,
   schema-breaking or not, is an integrity failure;
4. the schema, after migrating an older version (exit 2: validly signed but not a manifest);
5. the run folder beside it (a manifest copied without it: exit 4, saying so);
6. the step table, read once beside it and checked against the signed record (the model reads no file);
7. the manifest's own consistency (:mod:`repro.trust.consistency`; exit 3);
8. every file it names (:mod:`repro.trust.artifacts`, read through :mod:`repro.files.confine`): changed or
   unsafe is exit 3, missing exit 4.

Everything a command reports about the manifest comes from the :class:`VerifyResult`, whose
``document`` is the bytes that were verified; nothing reads the manifest file again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from repro.errors import ArtifactMismatchError, ManifestFormatError, MissingArtifactError
from repro.records.canonical import parse_json
from repro.records.manifest_file import (
    LoadedManifest,
    check_not_newer,
    load_step_table,
    manifest_from_json,
    read_manifest_bytes,
)
from repro.trust.artifacts import ArtifactCheck, check_data, check_run_files, describe
from repro.trust.consistency import check_consistency
from repro.trust.data_location import data_source_root
from repro.trust.signing import verify_document

__all__ = ["ArtifactCheck", "VerifyResult", "data_source_root", "raise_for_checks", "verify_manifest"]


@dataclass(frozen=True)
class VerifyResult:
    """A verified manifest: the bytes verified, who signed them, every file check, and how long it took.

    ``artifacts`` (tokenizer, checkpoints, SBOM) are all ``ok``; ``data`` are all ``ok`` unless
    verification was asked to report data differences rather than raise for them.
    """

    loaded: LoadedManifest
    key_id: str
    trusted: bool
    document: bytes
    artifacts: list[ArtifactCheck] = field(default_factory=list)
    data: list[ArtifactCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def checks(self) -> list[ArtifactCheck]:
        """Every file check, data last."""
        return self.artifacts + self.data


def check_step_table(loaded: LoadedManifest) -> ArtifactCheck:
    """Load the step table once (:func:`~repro.records.manifest_file.load_step_table`): hash it
    against the manifest, then parse its columns. A valid hash over an invalid table is malformed
    input (raised); missing or changed is returned as the check's status."""
    path = loaded.manifest.step_table.path if loaded.manifest.step_table else "(inline)"
    try:
        load_step_table(loaded)
    except MissingArtifactError:
        return ArtifactCheck("steps", path, "missing")
    except ArtifactMismatchError:
        return ArtifactCheck("steps", path, "changed")
    return ArtifactCheck("steps", path, "ok")


def raise_for_checks(checks: list[ArtifactCheck]) -> None:
    """Raise for changed files (integrity, first) or missing ones (could not check)."""
    changed = [c for c in checks if c.status == "changed"]
    if changed:
        raise ArtifactMismatchError(
            f"{len(changed)} file(s) changed since the run: {describe(changed)}; "
            "the manifest no longer describes these files"
        )
    missing = [c for c in checks if c.status == "missing"]
    if missing:
        raise MissingArtifactError(f"{len(missing)} file(s) missing: {describe(missing)}; restore them to verify")


_OTHER_KINDS = {
    "repro.audit-report": "an audit report", "repro.vary-report": "an audit --vary report",
    "repro.diff-report": "a diff report", "repro.gate-report": "a gate report",
}
"""Documents repro writes that people pass as a manifest by mistake (each names its ``kind``)."""


def check_run_folder(loaded: LoadedManifest) -> None:
    """Raise :class:`MissingArtifactError` naming the run folder when none of the run's files'
    folders is beside the manifest (a manifest copied without its folder), rather than listing files."""
    m = loaded.manifest
    paths = [c.path for c in m.checkpoints] + [a.path for a in m.artifacts]
    paths += [m.step_table.path] if m.step_table is not None else []
    paths += [m.data.tokenizer.path] if m.data.tokenizer is not None else []
    tops = {PurePosixPath(p).parts[0] for p in paths if len(PurePosixPath(p).parts) > 1}
    if tops and not any((loaded.folder / top).is_dir() for top in tops):
        folder = loaded.folder / sorted(tops)[0]
        raise MissingArtifactError(
            f"the run folder {folder}/ is missing: a manifest is checked together with the folder "
            f"`repro run` wrote beside it (step table, checkpoints, SBOM); copy {folder.name}/ along with "
            f"{loaded.path.name}"
        )


def _authenticate(raw: Any, path: Path, trusted: dict[str, bytes] | None) -> tuple[LoadedManifest, str]:
    """Steps 2-4 of :func:`verify_manifest` on parsed JSON (the tamper tests walk thousands of
    edits through this in-process). Returns the loaded manifest and the signer's key id."""
    what = f"manifest {path}"
    if not isinstance(raw, dict):
        raise ManifestFormatError(f"{what} is not a JSON object; it is not a repro manifest")
    other = _OTHER_KINDS.get(str(raw.get("kind")))
    if other is not None:
        raise ManifestFormatError(
            f"{path} is {other}, not a run manifest; pass the manifest of the run (the .json file "
            "`repro run` wrote, beside its run folder)"
        )
    if not {"kind", "schema_version", "signature"} & raw.keys():
        raise ManifestFormatError(f"{what} has no kind, schema_version or signature; it is not a repro manifest")
    check_not_newer(raw, what)
    key_id = verify_document(raw, str(path), trusted)
    return LoadedManifest(manifest=manifest_from_json(raw, what), raw=raw, path=Path(path)), key_id


def verify_manifest(path: Path, trusted: dict[str, bytes] | None = None, *,
                    data: Literal["enforce", "report"] = "enforce", data_path: Path | None = None) -> VerifyResult:
    """Verify the manifest at ``path`` and every file it names; raise the specific error if not.

    ``trusted`` is the trust list (key id -> raw public key), None for none. With
    ``data="report"`` (the audit, which decides itself what changed data means) the data file
    checks are returned, not raised for; the run's own files always raise. ``data_path`` (the
    user's ``--data``) is where to look for the data instead of the recorded location; the files
    there are accepted only if they hash as recorded, and the returned manifest carries it on
    (``LoadedManifest.data_path``) so an audit's rerun reads exactly the files checked.
    """
    began = time.perf_counter()
    path = Path(path)
    document = read_manifest_bytes(path)
    loaded, key_id = _authenticate(parse_json(document, f"manifest {path}"), path, trusted)
    # 5. The run folder is there at all; 6. the step table, read once and checked against the signed
    # record; 7. the record against itself (it needs the steps); 8. every file against the record.
    # Missing or changed files are judged together at the end, by one rule (raise_for_checks).
    check_run_folder(loaded)
    steps = check_step_table(loaded)
    if steps.status == "ok":
        check_consistency(loaded.manifest, f"manifest {path}")
    artifacts = check_run_files(loaded.manifest, loaded.folder)
    if loaded.manifest.step_table is not None:
        artifacts.append(steps)
    if data_path is not None:
        loaded = loaded.model_copy(update={"data_path": Path(data_path)})
    data_checks = check_data(loaded.manifest.data, loaded.path, loaded.data_path)
    raise_for_checks(artifacts + data_checks if data == "enforce" else artifacts)
    return VerifyResult(loaded=loaded, key_id=key_id, trusted=trusted is not None, document=document,
                        artifacts=artifacts, data=data_checks, seconds=time.perf_counter() - began)
