"""The run manifest: the signed, complete record of one training run.

Every model here is frozen and forbids unknown fields, so a manifest that gained or lost a field
does not load. Fields that must reproduce (``run``, ``environment``, ``code``, ``data``, ``steps``,
``validation``, ``checkpoints``) are kept apart from those that cannot (``timing``). The JSON Schema
of :class:`RunManifest` is published as ``docs/manifest.schema.json``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from repro.canonical import parse_json
from repro.errors import IncompleteRunError, InputError, ManifestFormatError, MissingArtifactError

SCHEMA_VERSION = 1
"""The manifest schema version this release writes."""

Migration = Callable[[dict[str, Any]], dict[str, Any]]

MIGRATIONS: dict[int, Migration] = {}
"""How this release reads older manifests: version N -> a function that rewrites the JSON of a
version-N manifest into version N+1's form (``schema_version`` included).

Chained, they bring any supported older manifest up to :data:`SCHEMA_VERSION` before validation.
The signature is always checked over the manifest as written, before any migration. Empty while
version 1 is the only version; when version 2 is introduced, ``1: <v1 to v2>`` goes here, with a
real version-1 manifest kept in ``tests/assets/`` that must go on verifying.
"""

SUPPORTED_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION, *MIGRATIONS})
"""Schema versions this release can read and verify (see :func:`supported_schema_versions`)."""

MANIFEST_KIND = "repro.run-manifest"


class Record(BaseModel):
    """Base of every on-disk model: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainerRef(Record):
    """Which trainer plugin produced the run."""

    name: str = Field(description="Registry name of the trainer (entry-point name).")
    version: str = Field(description="Version the trainer reports (usually its distribution's).")
    distribution: str | None = Field(description="Distribution that provides it, if installed.")
    entry: str = Field(description="Import reference 'package.module:Class'.")


class RunSettings(Record):
    """Settings repro itself controls for every trainer: seeding, device, threads, cadence, and
    the numeric mode (precision, compilation) a trainer must honour."""

    seed: int = Field(1337, ge=0, description="Seed for every random source.")
    device: Literal["cpu", "cuda"] = Field("cpu", description="Device the run trains on.")
    threads: int = Field(2, ge=1, le=512, description="torch intra-op threads (and OMP/MKL).")
    pythonhashseed: int = Field(1337, ge=0, le=4294967295, description="PYTHONHASHSEED.")
    checkpoint_every: int = Field(100, ge=1, description="Steps between checkpoints.")
    eval_every: int = Field(100, ge=1, description="Steps between validation passes.")
    precision: Literal["32", "bf16-mixed"] = Field(
        "32", description="'32': float32 throughout; 'bf16-mixed': float32 weights, bfloat16 autocast."
    )
    compile: bool = Field(False, description="Train through torch.compile (inductor, per-run cache).")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        # `--set precision=32` parses as the JSON number 32; the setting is the text "32".
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class RunIdentity(Record):
    """What was run: tool, trainer, preset, settings and the trainer's full resolved config."""

    tool: str = "repro"
    tool_version: str
    trainer: TrainerRef
    preset: str | None
    settings: RunSettings
    config: dict[str, Any] = Field(description="The trainer's resolved config (its own model).")
    config_sha256: str = Field(description="SHA-256 of the canonical JSON of settings + config.")


class EnvironmentRecord(Record):
    """The software and hardware the training process actually ran with."""

    python: str
    python_implementation: str
    os: str
    kernel: str
    machine: str
    cpu_model: str | None
    cpu_flags: list[str]
    cpu_capability: str | None = Field(description="torch's CPU kernel level, e.g. AVX512.")
    cpu_count: int | None
    torch_version: str
    torch_build: str = Field(description="torch.__config__.show(): compiler, BLAS, oneDNN.")
    torch_threads: int
    torch_interop_threads: int
    cuda_version: str | None
    cudnn_version: int | None
    devices: list[str]
    distributions: dict[str, str] = Field(description="Every installed distribution: version.")
    env_vars: dict[str, str | None] = Field(description="Variables that affect numerics.")
    determinism: dict[str, bool | str | int | None] = Field(description="Flags in force.")


class CodeRecord(Record):
    """The code's version control state when the run started; unknown outside a git repository."""

    available: bool
    reason: str | None = Field(None, description="Why the state is unknown, when it is.")
    commit: str | None = None
    branch: str | None = None
    remotes: dict[str, str] = Field(default_factory=dict)
    dirty: bool | None = None
    diff_sha256: str | None = Field(None, description="SHA-256 of `git diff HEAD` bytes.")
    untracked: list[str] = Field(default_factory=list)


class FileDigest(Record):
    """A file by path (relative to some root) with its size and SHA-256."""

    path: str
    sha256: str
    size: int


class DataSource(Record):
    """Where the data came from: an installed distribution, a path on disk, or the trainer itself."""

    kind: Literal["distribution", "path", "generated"] = Field(
        description="'generated': made by the trainer (e.g. from the seed); no files to check."
    )
    name: str = Field(description="Distribution name, absolute path, or what generated the data.")
    version: str | None = None


class DataRecord(Record):
    """Data identity: every input file, the corpus, tokenizer, token stream and split."""

    source: DataSource
    files: list[FileDigest] = Field(description="Input files, relative to the source root.")
    corpus_sha256: str = Field(description="SHA-256 of the concatenated corpus bytes.")
    tokenizer: FileDigest | None = Field(description="Tokenizer model, relative to the manifest.")
    token_stream_sha256: str | None
    train_tokens: int
    val_tokens: int
    extra: dict[str, Any] = Field(default_factory=dict)


class StepRecord(Record):
    """One optimizer step. ``loss`` is the exact float32 value (float64 repr round-trips it)."""

    step: int = Field(ge=1)
    loss: float
    lr: float
    grad_norm: float
    tokens: int
    batch: str = Field(description="Fingerprint of the step's input batch (data-order check).")


class ValidationRecord(Record):
    """Validation loss on the trainer's fixed validation batches after ``step``."""

    step: int = Field(ge=0)
    loss: float


class CheckpointRecord(Record):
    """A checkpoint file (relative to the manifest) with a SHA-256 per tensor."""

    step: int = Field(ge=0)
    path: str
    sha256: str
    size: int
    tensors: dict[str, str]


class Timing(Record):
    """Wall-clock facts; never compared by an audit."""

    started_at: str
    finished_at: str
    wall_seconds: float
    setup_seconds: float
    train_seconds: float
    overhead_seconds: float = Field(description="Time repro spent on capture, hashing, writing.")
    step_seconds: list[float]
    resumed_from_step: int | None = Field(None, description="Set when the run was resumed.")


class Signature(Record):
    """Ed25519 signature over the canonical bytes of every other field."""

    algorithm: Literal["ed25519"] = "ed25519"
    key_id: str
    public_key: str = Field(description="Raw 32-byte public key, base64.")
    value: str = Field(description="Signature, base64.")


class ManifestBody(Record):
    """Everything a manifest records except its signature: exactly what is signed."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["repro.run-manifest"] = MANIFEST_KIND
    run: RunIdentity
    environment: EnvironmentRecord
    code: CodeRecord
    data: DataRecord
    steps: list[StepRecord]
    validation: list[ValidationRecord]
    checkpoints: list[CheckpointRecord]
    artifacts: list[FileDigest] = Field(description="Other files (e.g. the SBOM), manifest-relative.")
    timing: Timing


class RunManifest(ManifestBody):
    """The signed record of a training run (schema version 1)."""

    signature: Signature

    def body(self) -> dict[str, Any]:
        """The JSON body that is signed: everything but ``signature``."""
        return self.model_dump(mode="json", exclude={"signature"})


class LoadedManifest(BaseModel):
    """A manifest as read from disk: the model, the raw JSON it came from, and where it lives."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    manifest: RunManifest
    raw: dict[str, Any]
    path: Path

    @property
    def folder(self) -> Path:
        """The folder artifact paths are relative to."""
        return self.path.parent


def _summarise(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"field {where}: {first['msg']}{more}"


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
        raw = copy.deepcopy(raw)  # the as-written JSON is what the signature covers: keep it
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
    try:
        return RunManifest.model_validate(_migrate(raw, version, what), strict=True)
    except ValidationError as exc:
        raise ManifestFormatError(f"{what} is not a valid manifest: {_summarise(exc)}") from exc


def read_manifest_json(path: Path) -> Any:
    """Read and parse a manifest file's JSON, without checking what it holds.

    Raises :class:`IncompleteRunError` when only the marker of an unfinished run is there,
    :class:`MissingArtifactError` when nothing is, :class:`InputError` when the file cannot be
    read or parsed.
    """
    path = Path(path)
    incomplete = incomplete_marker(path)
    if incomplete.exists() and replaced_folder(path).exists():
        raise IncompleteRunError(
            f"{path} was being replaced by a newer run that was killed halfway "
            f"({replaced_folder(path)} is present); run `repro run ... --resume` with the same "
            "--out to finish or undo the replacement"
        )
    if not path.exists():
        if incomplete.exists():
            raise IncompleteRunError(
                f"{path} belongs to a run that did not finish ({incomplete} is present); "
                "resume it with `repro run ... --resume` or run it again"
            )
        raise MissingArtifactError(f"manifest {path} does not exist; check the path")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror}; check the path and its permissions") from exc
    return parse_json(data, f"manifest {path}")


def load_manifest(path: Path) -> LoadedManifest:
    """Read and validate a manifest file. Does not check the signature (see ``repro.verify``)."""
    path = Path(path)
    raw = read_manifest_json(path)
    return LoadedManifest(manifest=manifest_from_json(raw, f"manifest {path}"), raw=raw, path=path)


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
    """The previous run's folder while a finished run replaces it (see :mod:`repro.layout`)."""
    folder = run_folder(manifest_path)
    return folder.with_name(folder.name + ".replaced")
