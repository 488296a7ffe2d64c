"""``repro run``: launch a trainer, capture what the run depended on, sign and write the manifest.

Order matters: everything that can fail cheaply (output folder, signing key, config) is checked
before any compute; the manifest is written last, atomically, and only for a finished run. While a
run is in flight ``<manifest>.incomplete`` marks it, so a crash leaves a state ``verify`` and
``audit`` refuse, and ``--resume`` continues from the last complete checkpoint. A run writes its
files into a staging folder (:mod:`repro.running.layout`), so an earlier manifest at the same path stays
valid until the finished run replaces it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro import __version__
from repro.capture.git import capture_code
from repro.errors import InputError, UsageError
from repro.files.paths import cache_dir, private_folder
from repro.records.checkpoint import STATE_FILE, discard_partial, latest_checkpoint, load_records, load_state
from repro.records.hashing import sha256_file, sha256_tensor
from repro.records.manifest import (
    CheckpointRecord,
    CodeRecord,
    DataRecord,
    DistributedRecord,
    FileDigest,
    ManifestBody,
    RunIdentity,
    RunManifest,
    StepRecord,
    StepTableRef,
    Timing,
    ValidationRecord,
)
from repro.records.manifest_file import manifest_bytes
from repro.records.sbom import record_sbom
from repro.records.steptable import FILE_NAME, StepColumns, write_table
from repro.running.config import ResolvedRun
from repro.running.determinism import require_device
from repro.running.job import Job, JobResult
from repro.running.launcher import EventHandler, launch, parse_endpoint
from repro.running.layout import InFlightRun, RunLayout
from repro.text import utc_now
from repro.trust.data_location import portable_source, repository_root
from repro.trust.keys import SigningKey, load_or_create_key
from repro.trust.signing import sign_manifest


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: its manifest, where it was written, and the key that signed it."""

    manifest: RunManifest | None
    """None on a node other than node rank 0 of a multi-node run: node rank 0 writes the manifest."""
    path: Path
    key: SigningKey
    key_created: bool


def _now() -> str:
    return utc_now()


def relative_to(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` as a POSIX string (manifests name artifacts this way)."""
    return Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()


def _final_digest(layout: RunLayout, digest: FileDigest) -> FileDigest:
    """A file digest recorded in the staging folder, with its path as it will be once committed."""
    return digest.model_copy(update={"path": layout.final_path(digest.path)})


def describe_checkpoint(state_file: Path, step: int, folder: Path) -> CheckpointRecord:
    """Hash an existing checkpoint file and its tensors (used for checkpoints before a resume)."""
    tensors = load_state(state_file)
    return CheckpointRecord(
        step=step, path=relative_to(state_file, folder), sha256=sha256_file(state_file),
        size=state_file.stat().st_size,
        tensors={name: sha256_tensor(t) for name, t in sorted(tensors.items())},
    )


def check_distributed(resolved: ResolvedRun) -> None:
    """Refuse a multi-process run of a trainer that does not declare data-parallel support."""
    settings = resolved.settings
    if settings.world_size > 1 and not getattr(resolved.trainer_class, "supports_distributed", False):
        raise UsageError(
            f"trainer {resolved.trainer.name} does not support data-parallel training (--nproc {settings.nproc}, "
            f"--nnodes {settings.nnodes}); run it with --nproc 1 (see docs/plugins.md)"
        )


def build_job(resolved: ResolvedRun, folder: Path, scratch: Path, **overrides: object) -> Job:
    """The job for a run of ``resolved`` whose artifacts go to ``folder``."""
    fields: dict[str, Any] = {
        "trainer_name": resolved.trainer.name,
        "trainer_entry": resolved.trainer.entry,
        "settings": resolved.settings,
        "config": resolved.config.model_dump(mode="json"),
        "config_sha256": resolved.config_sha256,
        "artifact_dir": str(folder),
        "cache_dir": str(private_folder(cache_dir())),
        "checkpoint_root": str(folder / "checkpoints"),
        "result_path": str(scratch / "result.json"),
    }
    fields.update(overrides)
    return Job(**fields)


@dataclass(frozen=True)
class _Earlier:
    """What a resumed run takes over from the checkpoint it starts at (empty for a fresh run)."""

    steps: list[StepRecord] = field(default_factory=list)
    validation: list[ValidationRecord] = field(default_factory=list)
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)


def _earlier(latest: Path | None, layout: RunLayout) -> _Earlier:
    """Records and checkpoints up to ``latest`` (a checkpoint folder), re-hashed from disk."""
    if latest is None:
        return _Earlier()
    records = load_records(latest)
    checkpoints = []
    for ckpt_dir in sorted((layout.staging / "checkpoints").glob("step-*")):
        step = ckpt_dir.name.removeprefix("step-")
        if step.isdigit() and int(step) <= records.step:
            ckpt = describe_checkpoint(ckpt_dir / STATE_FILE, int(step), layout.manifest.parent)
            checkpoints.append(ckpt.model_copy(update={"path": layout.final_path(ckpt.path)}))
    return _Earlier(list(records.steps), list(records.validation), checkpoints, list(records.step_seconds))


def execute_run(
    resolved: ResolvedRun,
    manifest_path: Path,
    key_path: Path | None = None,
    *,
    resume: bool = False,
    code_path: Path | None = None,
    on_event: EventHandler | None = None,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    rdzv_timeout: int = 600,
) -> RunOutcome:
    """Run ``resolved`` and write its signed manifest to ``manifest_path``.

    The run's files go to a staging folder (see :mod:`repro.running.layout`), so the manifest already at
    ``manifest_path`` and its files stay valid until the finished run replaces them. With
    ``resume``, the unfinished run continues from its last complete checkpoint. A distributed run
    (``settings.world_size > 1``) runs on this node as node ``node_rank``; only node rank 0
    writes a manifest.
    """
    started = time.perf_counter()
    check_distributed(resolved)
    if not 0 <= node_rank < resolved.settings.nnodes:
        raise UsageError(f"--node-rank {node_rank} must be from 0 to {resolved.settings.nnodes - 1} (--nnodes)")
    if resolved.settings.nnodes > 1:  # a bad endpoint is a usage error here, not torchrun's traceback later
        if not rdzv_endpoint:
            raise UsageError(
                f"--nnodes {resolved.settings.nnodes} needs --rdzv-endpoint HOST:PORT (the same on every node)"
            )
        parse_endpoint(rdzv_endpoint)
    if not 1 <= rdzv_timeout <= 86400:
        raise UsageError(f"--rdzv-timeout {rdzv_timeout} must be from 1 to 86400 seconds")
    manifest_path = Path(manifest_path).resolve()
    if manifest_path.suffix != ".json":
        raise UsageError(f"--out {manifest_path} must name a .json file")
    # Node rank 0 owns --out. Another node keeps its own files (rank logs, scratch) beside it, so
    # nodes sharing storage and the same --out never touch each other's; on resume it starts from
    # node 0's checkpoints when they are readable here (shared storage).
    checkpoints = RunLayout(manifest_path).staging / "checkpoints"
    if node_rank > 0:
        manifest_path = manifest_path.with_name(f"{manifest_path.stem}.node-{node_rank}.json")
    layout = RunLayout(manifest_path)

    # Fail before compute: signing key readable, device here, output folder ours and writable.
    key, created = load_or_create_key(key_path)
    with layout.locked():
        layout.check_owned()
        require_device(resolved.settings.device)
        result, latest, run, code = _train(resolved, layout, resume, code_path, on_event,
                                           checkpoints=checkpoints, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint,
                                           rdzv_timeout=rdzv_timeout)
        if result.follower:  # another node holds rank 0 and writes the manifest; nothing to record here
            shutil.rmtree(layout.staging, ignore_errors=True)
            layout.marker.unlink(missing_ok=True)
            return RunOutcome(manifest=None, path=manifest_path, key=key, key_created=created)
        manifest = _assemble(resolved, result, _earlier(latest, layout), layout,
                             code=code, run=run, started=started, key=key)
        layout.commit(manifest_bytes(manifest), run)
    return RunOutcome(manifest=manifest, path=manifest_path, key=key, key_created=created)


def _train(
    resolved: ResolvedRun, layout: RunLayout, resume: bool, code_path: Path | None,
    on_event: EventHandler | None, *, checkpoints: Path, node_rank: int, rdzv_endpoint: str | None,
    rdzv_timeout: int = 600,
) -> tuple[JobResult, Path | None, InFlightRun, CodeRecord]:
    """Mark the run in flight, prepare its staging folder and train (the caller holds the lock).

    ``checkpoints`` is node 0's checkpoint folder (the one a resume starts from on every node).
    """
    folder = layout.staging
    layout.settle()
    if resume:
        run = layout.resumable().model_copy(update={"committing": None})
        _check_world_size(checkpoints, resolved.settings.world_size)
        if run.config_sha256 != resolved.config_sha256:
            raise UsageError(
                f"the unfinished run in {folder} was made with a different config; resume with the "
                "same preset and overrides, or start afresh without --resume"
            )
    else:
        run = InFlightRun(started_at=_now(), config_sha256=resolved.config_sha256)
    layout.write_marker(run)
    try:
        layout.discard_leftovers()
        if not resume:
            shutil.rmtree(folder, ignore_errors=True)  # an earlier unfinished run is superseded
        layout.mark(folder)
        if node_rank == 0:
            discard_partial(checkpoints)
        latest = _resume_point(checkpoints, resolved) if resume else None
        outputs = [layout.marker, layout.staging, layout.replaced, layout.root, layout.manifest, layout.lock_path]
        code = capture_code(Path(code_path or Path.cwd()), exclude=outputs)

        scratch = folder / ".job"
        scratch.mkdir(parents=True, exist_ok=True)
        start_state = latest / STATE_FILE if latest is not None else None
        job = build_job(resolved, folder, scratch, start_checkpoint=str(start_state) if start_state else None,
                        node_rank=node_rank, rdzv_endpoint=rdzv_endpoint, rdzv_timeout=rdzv_timeout)
        result = launch(job, scratch / "job.json", folder / "train.log", on_event)
        shutil.rmtree(scratch, ignore_errors=True)
    except BaseException:
        if not resume and not _resumable(folder):
            # Nothing to resume: no marker may tell verify to "resume it" (the log stays in the folder).
            layout.marker.unlink(missing_ok=True)
        raise
    return result, latest, run, code


def _resume_point(checkpoints: Path, resolved: ResolvedRun) -> Path | None:
    """The last complete checkpoint in ``checkpoints``, checked against the config."""
    latest = latest_checkpoint(checkpoints)
    if latest is not None and load_records(latest).config_sha256 != resolved.config_sha256:
        raise UsageError(
            f"the checkpoint in {latest} was made with a different config; resume with the "
            "same preset and overrides, or start afresh without --resume"
        )
    return latest


def _resumable(folder: Path) -> bool:
    """Whether a failed fresh run left a complete checkpoint to resume from."""
    try:
        return latest_checkpoint(folder / "checkpoints") is not None
    except OSError:
        return False



def _check_world_size(checkpoints: Path, world_size: int) -> None:
    """Refuse to resume a checkpoint with another number of processes than trained it."""
    latest = latest_checkpoint(checkpoints)
    if latest is None:
        return
    made = load_records(latest).world_size
    if made != world_size:
        raise UsageError(
            f"the unfinished run in {checkpoints.parent} was trained by {made} process{'es' if made != 1 else ''} "
            f"and cannot continue with {world_size}; resume with the same --nproc and --nnodes (world size {made}), or "
            "start afresh without --resume"
        )


def _assemble(
    resolved: ResolvedRun, result: JobResult, earlier: _Earlier, layout: RunLayout, *,
    code: CodeRecord, run: InFlightRun, started: float, key: SigningKey,
) -> RunManifest:
    """Build and sign the manifest. Paths are relative to the manifest's folder, as they will be
    once the staging folder is renamed into place."""
    manifest_path, folder = layout.manifest, layout.staging
    manifest_dir = manifest_path.parent

    def final(path: Path) -> str:
        return layout.final_path(relative_to(path, manifest_dir))

    data = result.data
    assert data is not None and result.environment is not None and result.timing is not None
    tokenizer = None
    if data.tokenizer_path:
        tok = Path(data.tokenizer_path)
        if not tok.exists():
            raise InputError(f"the trainer named tokenizer {tok}, which does not exist")
        tokenizer = FileDigest(path=final(tok), sha256=sha256_file(tok), size=tok.stat().st_size)
    checkpoints = earlier.checkpoints + [
        CheckpointRecord(step=c.step, path=final(Path(c.path)), sha256=c.sha256,
                         size=c.size, tensors=c.tensors, update_norm=c.update_norm)
        for c in result.checkpoints
    ]
    timing = result.timing
    step_seconds = earlier.step_seconds + timing.step_seconds
    started_at = run.started_at  # a resumed run keeps its first start; wall/setup/overhead are this attempt's
    wall = time.perf_counter() - started
    sbom = record_sbom(manifest_path, result.environment, started_at,
                       f"{resolved.trainer.name}/{resolved.preset or 'custom'}", folder=folder)
    columns = StepColumns.from_records(earlier.steps + result.steps, step_seconds)
    sha256, size = write_table(folder / FILE_NAME, columns)
    step_table = StepTableRef(path=final(folder / FILE_NAME), sha256=sha256, size=size, rows=len(columns))
    config = resolved.config
    if "steps" in getattr(type(config), "digest_excludes", ()):  # a command: its length is known now
        config = config.model_copy(update={"steps": max(len(columns), 1)})
    body = ManifestBody(
        run=RunIdentity(
            tool_version=__version__, trainer=resolved.trainer, preset=resolved.preset,
            settings=resolved.settings, config=config.model_dump(mode="json"),
            config_sha256=resolved.config_sha256,
        ),
        environment=result.environment,
        code=code,
        data=DataRecord(
            # Data in the git work tree that holds the manifest is recorded relative to its root, so
            # a clone (the manifest with its data) finds it wherever it is checked out.
            source=portable_source(data.source, repository_root(manifest_dir)),
            files=data.files, corpus_sha256=data.corpus_sha256,
            tokenizer=tokenizer, token_stream_sha256=data.token_stream_sha256,
            train_tokens=data.train_tokens, val_tokens=data.val_tokens, extra=data.extra,
        ),
        step_table=step_table,
        validation=earlier.validation + result.validation,
        checkpoints=checkpoints,
        artifacts=[_final_digest(layout, sbom)],
        timing=Timing(
            started_at=started_at, finished_at=_now(), wall_seconds=wall,
            setup_seconds=timing.setup_seconds, train_seconds=sum(step_seconds),
            overhead_seconds=max(wall - timing.setup_seconds - timing.train_seconds - timing.eval_seconds, 0.0),
            resumed_from_step=result.start_step if result.start_step else None,
            eval_seconds=timing.eval_seconds,
        ),
        executed=result.executed,
        distributed=_distributed_record(result, earlier, resolved),
    )
    manifest = sign_manifest(body, key)
    manifest.attach_steps(columns)
    return manifest


def _distributed_record(result: JobResult, earlier: _Earlier, resolved: ResolvedRun) -> DistributedRecord | None:
    """The run's distributed record, with the replica checks of a resumed run's earlier part."""
    record = result.distributed
    if record is None:
        return None
    # Checkpoints before a resume were only written after their replica check passed.
    before = [c.step for c in earlier.checkpoints]
    return record.model_copy(update={"replica_checks": sorted(set(before) | set(record.replica_checks))})
