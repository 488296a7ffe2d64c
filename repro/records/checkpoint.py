"""Checkpoints: a folder per step holding the full resumable state and the records so far.

Layout (LitGPT-style, every checkpoint describes itself)::

    <run>/checkpoints/step-000100/state.safetensors   model, optimizer, RNG states
    <run>/checkpoints/step-000100/records.json        step and validation records up to here

A checkpoint folder is written under a temporary name and renamed when complete, so a folder
with the final name is always whole. safetensors files are byte-identical for identical tensors
(``torch.save`` embeds the file name).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from repro.errors import ArtifactMismatchError, InputError, MissingArtifactError, OutputError
from repro.files import atomic
from repro.files.confine import open_regular, read_recorded
from repro.records.base import FrozenRecord
from repro.records.hashing import sha256_bytes, sha256_tensor
from repro.records.manifest import StepRecord, ValidationRecord
from repro.running.crashpoint import crash_point

if TYPE_CHECKING:  # torch is imported lazily, where tensors are loaded
    import torch

STATE_FILE = "state.safetensors"
RECORDS_FILE = "records.json"
PARTIAL_SUFFIX = ".partial"


class CheckpointRecords(FrozenRecord):
    """The records of the steps up to a checkpoint, saved beside it for resuming."""

    step: int
    config_sha256: str
    steps: list[StepRecord]
    validation: list[ValidationRecord]
    step_seconds: list[float] = Field(default_factory=list, description="Wall time of each step so far.")
    world_size: int = Field(1, ge=1, description="Data-parallel processes that trained up to here.")


class SavedCheckpoint(FrozenRecord):
    """What saving a checkpoint produced: absolute path, digests, cost."""

    step: int
    path: str
    sha256: str
    size: int
    tensors: dict[str, str]
    seconds: float
    update_norm: float | None = Field(None, description="L2 norm of the state's change since the last checkpoint.")


def checkpoint_dir(root: Path, step: int) -> Path:
    """The folder of the checkpoint after ``step``."""
    return Path(root) / f"step-{step:06d}"


def save_checkpoint(
    root: Path, step: int, tensors: dict[str, torch.Tensor], records: CheckpointRecords
) -> SavedCheckpoint:
    """Write a checkpoint folder atomically; return its digests.

    The folder is built as ``step-NNNNNN.partial`` and renamed when whole, so a crash at any
    moment leaves either no ``step-NNNNNN`` folder or a complete one. On failure (e.g. a full
    disk) the partial folder is removed and earlier checkpoints are untouched.
    """
    import time

    from safetensors.torch import save

    start = time.perf_counter()
    final = checkpoint_dir(root, step)
    staging = final.with_name(final.name + PARTIAL_SUFFIX)
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    digests = {name: sha256_tensor(t) for name, t in sorted(cpu.items())}
    # Serialised in memory so that every byte goes through repro.files.atomic (one error path).
    data = save(cpu)
    try:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        atomic.write_bytes(staging / STATE_FILE, data)
        crash_point("checkpoint", step)
        atomic.write_text(staging / RECORDS_FILE, records.model_dump_json(indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        atomic.fsync_dir(final.parent)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(atomic.describe_os_error(exc, final)) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    state = final / STATE_FILE
    return SavedCheckpoint(
        step=step,
        path=str(state),
        sha256=sha256_bytes(data),
        size=len(data),
        tensors=digests,
        seconds=time.perf_counter() - start,
    )


def discard_partial(root: Path) -> None:
    """Remove what a killed process left mid-write under ``root``: partial folders, temp files."""
    root = Path(root)
    if not root.is_dir():
        return
    for partial in root.glob(f"step-*{PARTIAL_SUFFIX}"):
        shutil.rmtree(partial, ignore_errors=True)
    for tmp in root.rglob(f".*{atomic.TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


def load_state(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a checkpoint's tensors, verifying the file hash first when one is given.

    The file is read once (a regular file, never blocking on a FIFO) and the tensors are parsed
    from the very bytes that were hashed, so it cannot change between the check and the load.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        with open_regular(path, "checkpoint") as handle:
            data = handle.read()
    except FileNotFoundError as exc:
        raise MissingArtifactError(f"checkpoint {path} is missing; it cannot be loaded") from exc
    except OSError as exc:
        raise InputError(f"checkpoint {path} cannot be read: {exc.strerror}") from exc
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        raise ArtifactMismatchError(f"checkpoint {path} does not match its recorded SHA-256")
    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        if expected_sha256 is not None:  # the bytes are the recorded ones: the record vouches for garbage
            raise ArtifactMismatchError(
                f"checkpoint {path} matches its recorded SHA-256 but is not a readable safetensors file ({exc})"
            ) from exc
        raise InputError(f"checkpoint {path} is not a readable safetensors file: {exc}") from exc


MAX_RECORDS_BYTES = 256 << 20
"""Largest records.json read (a resume of one's own run; an audit never reads it)."""


def load_records(folder: Path) -> CheckpointRecords:
    """Read the records saved beside a checkpoint (resuming one's own unfinished run).

    Read through :mod:`repro.files.confine`: a regular file inside the checkpoint folder (no
    symlink out, no FIFO or device), at most :data:`MAX_RECORDS_BYTES`. The error never quotes
    the file's content."""
    path = Path(folder) / RECORDS_FILE
    try:
        data = read_recorded(Path(folder), RECORDS_FILE, "checkpoint records", MAX_RECORDS_BYTES)
    except OSError as exc:
        raise InputError(f"checkpoint records {path} cannot be read ({exc.strerror})") from exc
    if data is None:
        raise InputError(f"checkpoint records {path} are missing; start afresh without --resume")
    try:
        return CheckpointRecords.model_validate_json(data)
    except ValueError as exc:
        raise InputError(
            f"checkpoint records {path} are not valid records ({_first_problem(exc)}); start afresh without --resume"
        ) from exc


def _first_problem(exc: ValueError) -> str:
    """Where a records file is wrong, without quoting its content."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))[:100]
        return f"{first.get('type', 'invalid')} at {where or 'the top level'}"
    return "not JSON"


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint folder under ``root`` (partial folders are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return None
    complete = [
        d for d in root.iterdir()
        if d.is_dir() and d.name.startswith("step-") and not d.name.endswith(PARTIAL_SUFFIX)
        and (d / STATE_FILE).exists() and (d / RECORDS_FILE).exists()
    ]
    return max(complete, key=lambda d: d.name, default=None)
