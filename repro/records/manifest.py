"""The run manifest: the signed, complete record of one training run.

Every model here is frozen and forbids unknown fields, so a manifest that gained or lost a field
does not load. Fields that must reproduce (``run``, ``environment``, ``code``, ``data``, the steps,
``validation``, ``checkpoints``) are kept apart from those that cannot (``timing``). The JSON Schema
of :class:`RunManifest` is published as ``docs/manifest.schema.json``.

Since schema version 2 the per-step records live in a columnar sidecar in the run folder
(``steps.safetensors``, see :mod:`repro.records.steptable`) whose SHA-256, size and row count the signed
manifest records in ``step_table``. The models read no file: loading the table is an explicit step
(:func:`repro.records.manifest_file.load_step_table`, part of verification), after which
:attr:`RunManifest.steps` presents it as a ``Sequence[StepRecord]``. Reading a manifest file (and
migrating version 1, steps inline) is :mod:`repro.records.manifest_file`'s job.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field, PrivateAttr, SerializerFunctionWrapHandler, field_validator, model_serializer

from repro.errors import ManifestFormatError
from repro.records.base import FrozenRecord
from repro.records.steps import StepColumns, StepRecord, StepView

__all__ = ["MANIFEST_KIND", "SCHEMA_VERSION", "CheckpointRecord", "CodeRecord", "DataRecord", "DataSource",
           "DistributedRecord", "EnvironmentRecord", "ExecutedCode", "FileDigest", "ManifestBody", "NodeRecord",
           "RunIdentity", "RunManifest", "RunSettings", "Signature", "StepRecord", "StepTableRef", "Timing",
           "TrainerRef", "ValidationRecord"]

SCHEMA_VERSION: Final = 2
"""The manifest schema version this release writes."""


MANIFEST_KIND: Final = "repro.run-manifest"

REPOSITORY_ROOT: Final = "repository"
"""``DataSource.root`` of a path recorded relative to the git work tree's root."""


class Record(FrozenRecord):
    """Base of every on-disk model: immutable, unknown fields rejected."""


class TrainerRef(Record):
    """Which trainer plugin produced the run."""

    name: str = Field(description="Registry name of the trainer (entry-point name).")
    version: str = Field(description="Version the trainer reports (usually its distribution's).")
    distribution: str | None = Field(description="Distribution that provides it, if installed.")
    entry: str = Field(description="Import reference 'package.module:Class'.")


class RunSettings(Record):
    """Settings repro itself controls for every trainer: seeding, device, threads, cadence, and
    the numeric mode (precision, compilation) a trainer must honour."""

    # torch seeds are 64-bit; at most 2**63 - 1 so a trainer's seed + offset stays a valid seed.
    seed: int = Field(1337, ge=0, le=2**63 - 1, description="Seed for every random source.")
    device: Literal["cpu", "cuda"] = Field("cpu", description="Device the run trains on.")
    threads: int = Field(2, ge=1, le=512, description="torch intra-op threads (and OMP/MKL), per process.")
    pythonhashseed: int = Field(1337, ge=0, le=4294967295, description="PYTHONHASHSEED.")
    checkpoint_every: int = Field(100, ge=1, description="Steps between checkpoints.")
    eval_every: int = Field(100, ge=1, description="Steps between validation passes.")
    nproc: int = Field(1, ge=1, le=1024, description="Training processes per node (data-parallel ranks).")
    nnodes: int = Field(1, ge=1, le=4096, description="Nodes the run spans; world size is nproc * nnodes.")
    precision: Literal["32", "bf16-mixed"] = Field(
        "32", description="'32': float32 throughout; 'bf16-mixed': float32 weights, bfloat16 autocast."
    )
    compile: bool = Field(False, description="Train through torch.compile (inductor, per-run cache).")

    @property
    def world_size(self) -> int:
        """Data-parallel ranks in all: ``nproc * nnodes`` (1 for a single-process run)."""
        return self.nproc * self.nnodes

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


class DistributionCode(Record):
    """An installed distribution's modules that the training process imported."""

    name: str = Field(description="Distribution name ('python-stdlib': the standard library).")
    version: str
    files: int = Field(description="How many of its module files were loaded.")
    packages: list[str] = Field(default_factory=list, description="Top-level import names of the loaded files.")
    sha256: str = Field(description="SHA-256 over the sorted (path, SHA-256) of the loaded files.")
    modified: list[FileDigest] = Field(
        default_factory=list,
        description="Loaded files whose bytes differ from the distribution's RECORD (edited after install).",
    )


class ExecutedCode(Record):
    """Every module the training process imported, fingerprinted at the end of training."""

    distributions: list[DistributionCode] = Field(description="One digest per distribution imported from.")
    files: list[FileDigest] = Field(
        description="Modules in no distribution (plugins on PYTHONPATH, the project's own code), by path "
                    "relative to their import root."
    )


class DataSource(Record):
    """Where the data came from: an installed distribution, a path on disk, or the trainer itself."""

    kind: Literal["distribution", "path", "generated"] = Field(
        description="'generated': made by the trainer (e.g. from the seed); no files to check."
    )
    name: str = Field(description="Distribution name, path (absolute; or relative to the repository root "
                                  "when `root` is 'repository'), or what generated the data.")
    version: str | None = None
    root: Literal["repository"] | None = Field(
        None,
        description="'repository': `name` is relative to the root of the git work tree the run was recorded "
        "in, and is found against the work tree holding the manifest (a clone elsewhere finds its copy). "
        "Absent: `name` is absolute (and every manifest made before this field).",
    )

    @model_serializer(mode="wrap")
    def _omit_unset_root(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Absent rather than null, so a source outside any repository is written exactly as before.
        data: dict[str, Any] = handler(self)
        if data.get("root") is None:
            data.pop("root", None)
        return data


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
    update_norm: float | None = Field(
        None, ge=0.0,
        description="L2 norm of the change of every floating-point, non-scalar state tensor since the previous "
        "checkpoint (or the start of training or of the resume); absent in manifests made before it was recorded.",
    )


def not_attached() -> ManifestFormatError:
    return ManifestFormatError(
        "this manifest's steps are not loaded; load them with repro.records.manifest_file.load_step_table "
        "(load_manifest and verification do)"
    )


class Timing(Record):
    """Wall-clock facts; never compared by an audit. Per-step seconds are in the step table."""

    started_at: str
    finished_at: str
    wall_seconds: float
    setup_seconds: float
    train_seconds: float
    overhead_seconds: float = Field(description="Time repro spent on capture, hashing, writing.")
    resumed_from_step: int | None = Field(None, description="Set when the run was resumed.")
    eval_seconds: float | None = Field(
        None, ge=0.0, description="Seconds of validation passes (this attempt's, like wall and setup); absent in "
        "manifests made before it was recorded.",
    )
    _columns: StepColumns | None = PrivateAttr(None)

    @property
    def step_seconds(self) -> list[float]:
        """Wall-clock seconds of every step (the step table's ``seconds`` column)."""
        if self._columns is None:
            raise not_attached()
        seconds = self._columns.seconds
        return [] if seconds is None else [float(x) for x in seconds.tolist()]

    def __eq__(self, other: object) -> bool:
        # The recorded fields; where the step times are read from is not part of the record.
        return isinstance(other, Timing) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # as before: equal values, no hash



class Signature(Record):
    """Ed25519 signature over the canonical bytes of every other field."""

    algorithm: Literal["ed25519"] = "ed25519"
    key_id: str
    public_key: str = Field(description="Raw 32-byte public key, base64.")
    value: str = Field(description="Signature, base64.")


class NodeRecord(Record):
    """One node of a distributed run: its host facts, devices and packages, as its local rank 0 saw them."""

    node_rank: int = Field(ge=0)
    ranks: list[int] = Field(description="Global ranks that ran on this node.")
    hostname: str
    os: str
    kernel: str
    machine: str
    cpu_model: str | None
    cpu_count: int | None
    torch_version: str
    devices: list[str]
    distributions_sha256: str = Field(description="SHA-256 of the canonical JSON of its distributions.")
    differences: list[str] = Field(
        default_factory=list,
        description="How this node differs from node 0 (empty for node 0 and for identical nodes).",
    )


class DistributedRecord(Record):
    """How a data-parallel run was laid out and connected (absent for a single-process run)."""

    world_size: int = Field(ge=1)
    nnodes: int = Field(ge=1)
    nproc_per_node: int = Field(ge=1)
    backend: Literal["gloo", "nccl"] = Field(description="torch.distributed backend.")
    launcher: str = Field(description="How the ranks were started, e.g. torch.distributed.run (c10d).")
    threads_per_process: int = Field(ge=1)
    nccl_version: str | None = Field(None, description="NCCL version (CUDA runs).")
    env_vars: dict[str, str | None] = Field(
        default_factory=dict, description="Collective-communication variables in force (NCCL_ALGO, ...)."
    )
    replica_checks: list[int] = Field(
        default_factory=list, description="Steps at which every rank's state was hashed and found bit-identical."
    )
    nodes: list[NodeRecord]


class StepTableRef(Record):
    """The step table file (``steps.safetensors``, see :mod:`repro.records.steptable`), manifest-relative."""

    path: str
    sha256: str = Field(description="SHA-256 of the file's bytes.")
    size: int = Field(ge=0, description="Size of the file in bytes.")
    rows: int = Field(ge=0, description="Number of steps N: every column has N rows, steps 1..N.")
    format: Literal["repro.step-table/1"] = Field(
        "repro.step-table/1", description="safetensors, one column per field (docs/manifest.md)."
    )


class ManifestBody(Record):
    """Everything a manifest records except its signature: exactly what is signed."""

    schema_version: Literal[2] = SCHEMA_VERSION
    kind: Literal["repro.run-manifest"] = MANIFEST_KIND
    run: RunIdentity
    environment: EnvironmentRecord
    code: CodeRecord
    data: DataRecord
    step_table: StepTableRef | None = Field(
        description="The per-step records' file. Null only in a manifest migrated from schema "
        "version 1, whose steps were inline (repro never writes null)."
    )
    validation: list[ValidationRecord]
    checkpoints: list[CheckpointRecord]
    artifacts: list[FileDigest] = Field(description="Other files (e.g. the SBOM), manifest-relative.")
    timing: Timing
    executed: ExecutedCode | None = Field(
        None, description="The code the training process imported; None in manifests made before it was recorded."
    )
    distributed: DistributedRecord | None = Field(None, description="Set for a run of more than one process.")


class RunManifest(ManifestBody):
    """The signed record of a training run (schema version 2)."""

    signature: Signature
    _columns: StepColumns | None = PrivateAttr(None)

    def body(self) -> dict[str, Any]:
        """The JSON body that is signed: everything but ``signature``."""
        return self.model_dump(mode="json", exclude={"signature"})

    def attach_steps(self, columns: StepColumns) -> None:
        """Give the manifest its step records, already read and checked: a run that just made
        them, a migrated version 1, or :func:`repro.records.manifest_file.load_step_table`."""
        self._columns = columns
        self.timing._columns = columns

    @property
    def steps_attached(self) -> bool:
        """Whether the step records were loaded (the model itself never reads a file)."""
        return self._columns is not None

    def step_columns(self) -> StepColumns:
        """The per-step records as NumPy columns (for hot paths: comparisons, plots)."""
        if self._columns is None:
            raise not_attached()
        return self._columns

    @property
    def steps(self) -> StepView:
        """The per-step records, a read-only ``Sequence[StepRecord]`` made on demand."""
        return StepView(self.step_columns())

    def __eq__(self, other: object) -> bool:
        # The signed record (which holds the step table's digest), not where it is read from.
        return isinstance(other, RunManifest) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # as before: equal values, no hash
