"""A manifest on disk: reading it (schema versions, migrations, validation), its bytes, and the
paths beside it (the run folder, the marker of an unfinished run).

The models are in :mod:`repro.records.manifest`; checking a manifest's signature and artifacts is
:mod:`repro.trust.verify`'s job.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from repro.errors import IncompleteRunError, InputError, ManifestFormatError, MissingArtifactError
from repro.files.confine import open_regular
from repro.records.canonical import parse_json
from repro.records.manifest import SCHEMA_VERSION, RunManifest
from repro.records.validation import describe

Migration = Callable[[dict[str, Any]], dict[str, Any]]

_INLINE_STEPS = "__inline_steps_v1__"
"""Key under which :func:`_v1_to_v2` hands a version-1 manifest's inline steps to
:func:`manifest_from_json` (never part of a file: it is removed before validation)."""


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept ``steps`` and ``timing.step_seconds`` inline (signed with the manifest);
    version 2 keeps them in the step table. A migrated manifest has ``step_table: null`` and its
    steps in memory, taken from the signed JSON."""
    raw[_INLINE_STEPS] = (raw.pop("steps"), raw["timing"].pop("step_seconds"))
    raw["step_table"] = None
    raw["schema_version"] = 2
    return raw


MIGRATIONS: dict[int, Migration] = {1: _v1_to_v2}
"""How this release reads older manifests: version N -> a function that rewrites the JSON of a
version-N manifest into version N+1's form (``schema_version`` included).

Chained, they bring any supported older manifest up to :data:`SCHEMA_VERSION` before validation.
The signature is always checked over the manifest as written, before any migration. A migration
gets a copy of the JSON that shares the version-1 ``steps`` and ``timing.step_seconds`` lists with
the original: it may move them, never change them in place. The
committed reference run ``manifests/reference/smoke.json`` is a real version-1 manifest that
tests keep verifying.
"""

class LoadedManifest(BaseModel):
    """A manifest as read from disk: the model, the raw JSON it came from, and where it lives."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    manifest: RunManifest
    raw: dict[str, Any]
    path: Path
    data_path: Path | None = None
    """Where the user said the data is (``--data``), instead of the recorded location; None: as recorded."""

    @property
    def folder(self) -> Path:
        """The folder artifact paths are relative to."""
        return self.path.parent


def _summarise(exc: ValidationError) -> str:
    return describe(exc)


def supported_schema_versions() -> frozenset[int]:
    """The current version and every older one with a complete chain of migrations to it."""
    return frozenset(
        v for v in {SCHEMA_VERSION, *MIGRATIONS}
        if all(older in MIGRATIONS for older in range(v, SCHEMA_VERSION))
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_not_newer(raw: dict[str, Any], what: str) -> None:
    """Refuse a manifest from a newer repro: its rules (even how it is signed) may differ."""
    version = _int_or_none(raw.get("schema_version"))
    if version is not None and version > SCHEMA_VERSION:
        raise ManifestFormatError(
            f"{what} uses manifest schema version {version}, newer than this repro "
            f"(reads {sorted(supported_schema_versions())}); upgrade repro to check it"
        )


def _migrate(raw: dict[str, Any], version: int, what: str) -> dict[str, Any]:
    if version < SCHEMA_VERSION:
        # The as-written JSON is what the signature covers: keep it. The per-step lists, the bulk
        # of a version-1 manifest, are only read by migrations, so they are shared, not copied.
        timing = raw.get("timing")
        bulk = [raw.get("steps"), timing.get("step_seconds") if isinstance(timing, dict) else None]
        raw = copy.deepcopy(raw, {id(item): item for item in bulk if isinstance(item, list)})
    while version < SCHEMA_VERSION:
        try:
            raw = MIGRATIONS[version](raw)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestFormatError(
                f"{what} is not a valid version-{version} manifest ({type(exc).__name__}: {exc})"
            ) from exc
        version += 1
        if raw.get("schema_version") != version:
            raise AssertionError(f"migration from schema version {version - 1} must produce {version}")
    return raw


def manifest_from_json(raw: Any, what: str) -> RunManifest:
    """Validate parsed JSON as a manifest: schema version first, then migrations, then the model."""
    if not isinstance(raw, dict):
        raise ManifestFormatError(f"{what} is not a JSON object; it is not a repro manifest")
    version = raw.get("schema_version")
    if version is None:
        raise ManifestFormatError(f"{what} has no schema_version; it is not a repro manifest")
    if _int_or_none(version) is None:
        raise ManifestFormatError(f"{what} has a non-integer schema_version {version!r}")
    check_not_newer(raw, what)
    if version not in supported_schema_versions():
        raise ManifestFormatError(
            f"{what} uses manifest schema version {version}, which this repro cannot read "
            f"(reads {sorted(supported_schema_versions())})"
        )
    migrated = _migrate(raw, version, what)
    inline = migrated.pop(_INLINE_STEPS, None) if version < 2 else None
    try:
        manifest = RunManifest.model_validate(migrated, strict=True)
    except ValidationError as exc:
        raise ManifestFormatError(f"{what} is not a valid manifest: {_summarise(exc)}") from exc
    if inline is not None:
        from repro.records.steptable import inline_columns

        manifest.attach_steps(inline_columns(inline, what))
    elif manifest.step_table is None:
        raise ManifestFormatError(f"{what} has no step_table; it is not a valid version-{version} manifest")
    return manifest


def read_manifest_bytes(path: Path) -> bytes:
    """Read a manifest file's bytes, once, from a regular file (never blocking on a FIFO).

    Raises :class:`IncompleteRunError` when only the marker of an unfinished run is there,
    :class:`MissingArtifactError` when nothing is, :class:`InputError` when the file cannot be
    read or is not a regular file.
    """
    path = Path(path)
    if path.is_dir():  # also ".", "/": names with no file name, which the checks below cannot use
        raise InputError(f"manifest {path} is a folder; name the manifest's .json file, e.g. {path / 'run.json'}")
    incomplete = incomplete_marker(path)
    if incomplete.exists() and replaced_folder(path).exists():
        raise IncompleteRunError(
            f"{path} was being replaced by a newer run that was killed halfway "
            f"({replaced_folder(path)} is present); any `repro run` with the same --out (with or "
            "without --resume) first finishes or undoes the replacement"
        )
    if not path.exists():
        if incomplete.exists():
            raise IncompleteRunError(
                f"{path} belongs to a run that did not finish ({incomplete} is present); "
                "resume it with `repro run ... --resume` or run it again"
            )
        raise MissingArtifactError(f"manifest {path} does not exist; check the path")
    try:
        with open_regular(path, "manifest") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise MissingArtifactError(f"manifest {path} does not exist; check the path") from exc
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror}; check the path and its permissions") from exc


def read_manifest_json(path: Path) -> Any:
    """Read and parse a manifest file's JSON, without checking what it holds (see
    :func:`read_manifest_bytes` for the errors; unparsable JSON is :class:`InputError`)."""
    return parse_json(read_manifest_bytes(path), f"manifest {Path(path)}")


def load_step_table(loaded: LoadedManifest) -> None:
    """Read the manifest's step table beside it, check it against the signed record, and attach
    it to the model (a migrated version 1 has its steps already).

    The one place a manifest's step records are read from disk; the model itself reads nothing.
    Raises as :func:`repro.records.steptable.read_table` does: missing
    :class:`MissingArtifactError` (exit 4), not the recorded bytes
    :class:`~repro.errors.ArtifactMismatchError` (exit 3), malformed :class:`ManifestFormatError`.
    """
    from repro.records.steptable import read_table

    m = loaded.manifest
    if m.steps_attached or m.step_table is None:
        return
    ref = m.step_table
    m.attach_steps(read_table(loaded.folder, ref.path, ref.sha256, ref.size, ref.rows))


def load_manifest(path: Path) -> LoadedManifest:
    """Read and validate a manifest file and its step table. Does not check the signature (see
    :mod:`repro.trust.verify`, which verifies before it reads anything beside the manifest)."""
    path = Path(path)
    raw = read_manifest_json(path)
    loaded = LoadedManifest(manifest=manifest_from_json(raw, f"manifest {path}"), raw=raw, path=path)
    load_step_table(loaded)
    return loaded


def manifest_bytes(manifest: RunManifest) -> bytes:
    """The bytes repro writes for a manifest: indented, key-sorted JSON for people to read.

    The signature covers the canonical form of the parsed body, not these bytes, so layout is
    free while every value, key and list element is covered.
    """
    text = json.dumps(
        manifest.model_dump(mode="json"), indent=1, sort_keys=True, ensure_ascii=False,
        allow_nan=False,
    )
    return text.encode("utf-8") + b"\n"


def incomplete_marker(manifest_path: Path) -> Path:
    """Marker file that exists while the run writing ``manifest_path`` has not finished."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(manifest_path.name + ".incomplete")


def run_folder(manifest_path: Path) -> Path:
    """The folder beside a manifest that holds its checkpoints, tokenizer and SBOM."""
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(manifest_path.stem)


def replaced_folder(manifest_path: Path) -> Path:
    """The previous run's folder while a finished run replaces it (see :mod:`repro.running.layout`)."""
    folder = run_folder(manifest_path)
    return folder.with_name(folder.name + ".replaced")


def refuse_overwriting_inputs(output: Path, flag: str, manifest: Path, *others: Path) -> None:
    """Refuse (exit 2) a report path that is the manifest, a file of its run (its run folder, the
    incomplete marker) or another input being read (``others``: a trust list, a policy), even
    through a symlink: writing a report must never destroy what the command reads."""
    from repro.errors import UsageError

    target = os.path.realpath(output)
    runs = [run_folder(manifest), run_folder(manifest).with_name(run_folder(manifest).name + ".incomplete"),
            replaced_folder(manifest)]
    files = [manifest, incomplete_marker(manifest), *others]
    if any(target == os.path.realpath(f) for f in files) or any(
        os.path.commonpath([target, os.path.realpath(r)]) == os.path.realpath(r) for r in runs
    ):
        raise UsageError(
            f"{flag} {output} would overwrite the manifest, a file of its run or another input being read; "
            "write the report somewhere else"
        )
