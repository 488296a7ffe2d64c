"""The contract between the launcher and a training child: the job it runs, what it returns.

Both are pydantic models written as JSON files, so a job can be inspected and replayed by hand
(``python -m repro.running.worker job.json``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from repro.records.base import FrozenRecord
from repro.records.checkpoint import CheckpointRecords, SavedCheckpoint
from repro.records.manifest import (
    DataSource,
    DistributedRecord,
    EnvironmentRecord,
    ExecutedCode,
    FileDigest,
    RunSettings,
    StepRecord,
    ValidationRecord,
)

COMMAND_ENTRY = "repro.running.command:CommandTrainer"
"""The trainer entry of a user's own command (``repro run -- python train.py``): the training
process runs the script instead of a plugin's loop (:mod:`repro.running.command_job`)."""


class JobModel(FrozenRecord):
    """Base: frozen, strict about fields."""


class VerifiedDataSpec(JobModel):
    """The data an audit verified before its rerun: the trainer reads exactly these files
    (:class:`repro.trainer_api.VerifiedData`), not whatever path the recorded config names."""

    source: DataSource
    root: str | None = Field(description="The source's folder here (absolute); None for generated data.")
    files: list[str] = Field(description="The recorded file names, relative to root, in corpus order.")


class SpanJob(JobModel):
    """One stretch of training in a multi-segment job: resume from a state file, train to ``stop``."""

    start_checkpoint: str | None = Field(None, description="Resume from this state file; None: from the start.")
    start_checkpoint_sha256: str | None = None
    start_records: CheckpointRecords | None = Field(
        None, description="The records up to start_checkpoint, from the verified manifest (never records.json).")
    stop: int = Field(ge=1, description="Last step of the stretch.")


class Job(JobModel):
    """One training process's work: a trainer, its config, and which steps to run."""

    trainer_name: str
    trainer_entry: str
    settings: RunSettings
    config: dict[str, Any]
    config_sha256: str
    artifact_dir: str
    cache_dir: str
    checkpoint_root: str
    result_path: str
    start_checkpoint: str | None = Field(None, description="Resume from this state file.")
    start_checkpoint_sha256: str | None = None
    start_records: CheckpointRecords | None = Field(
        None, description="The records up to start_checkpoint, from a verified manifest (an audit): "
        "the unsigned records.json beside the checkpoint is then not read."
    )
    stop_after: int | None = Field(None, description="Last step to run; default: config steps.")
    write_checkpoints: bool = True
    spans: list[SpanJob] | None = Field(
        None, description="An audit's spot-check: train these stretches in turn, in this one process (one start-up, "
        "one data preparation); replaces start_checkpoint and stop_after. Only the first may start from scratch.",
    )
    verified_data: VerifiedDataSpec | None = Field(
        None, description="An audit's rerun: read exactly this data (see TrainerContext.data)."
    )
    node_rank: int = Field(0, ge=0, description="This node's rank in a multi-node run (--node-rank).")
    rdzv_endpoint: str | None = Field(None, description="HOST:PORT of the c10d rendezvous (multi-node runs).")
    rdzv_timeout: int = Field(600, ge=1, le=86400, description="Seconds to wait for every node (--rdzv-timeout).")


class DataResult(JobModel):
    """The trainer's data summary, in serialisable form (tokenizer path absolute)."""

    source: DataSource
    files: list[FileDigest]
    corpus_sha256: str
    tokenizer_path: str | None
    token_stream_sha256: str | None
    train_tokens: int
    val_tokens: int
    extra: dict[str, Any]


class WorkerFailure(JobModel):
    """Why a training child failed: its category (a :mod:`repro.errors` class), exit code and message.

    ``error_type`` is the nearest class of :mod:`repro.errors` in the error's type, so a plugin's
    own subclass keeps its category; ``exit_code`` is the error's own code (it may override it).
    """

    error_type: str
    message: str
    exit_code: int | None = Field(None, description="The error's exit code in the child.")
    original_type: str | None = Field(None, description="The error's own class name, e.g. a plugin's.")


class JobTiming(JobModel):
    """Where the child's time went."""

    setup_seconds: float
    train_seconds: float
    eval_seconds: float
    checkpoint_seconds: float
    capture_seconds: float
    step_seconds: list[float]
    fingerprint_seconds: float = Field(0.0, description="Fingerprinting the executed code (in capture_seconds).")
    replica_check_seconds: float = Field(0.0, description="Hashing and comparing replicas (distributed runs).")


class JobResult(JobModel):
    """What a training child reports back."""

    environment: EnvironmentRecord | None = None
    data: DataResult | None = None
    start_step: int = 0
    span_starts: list[int] = Field(default_factory=list, description="Start step of each stretch (Job.spans).")
    steps: list[StepRecord] = Field(default_factory=list)
    validation: list[ValidationRecord] = Field(default_factory=list)
    checkpoints: list[SavedCheckpoint] = Field(default_factory=list)
    timing: JobTiming | None = None
    executed: ExecutedCode | None = None
    failure: WorkerFailure | None = None
    distributed: DistributedRecord | None = None
    follower: bool = Field(False, description="From a node other than node rank 0: it ran ranks, records nothing.")
