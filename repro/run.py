"""``repro run``: launch a trainer, capture what the run depended on, sign and write the manifest.

Order matters: everything that can fail cheaply (output folder, signing key, config) is checked
before any compute; the manifest is written last, atomically, and only for a finished run. While a
run is in flight ``<manifest>.incomplete`` marks it, so a crash leaves a state ``verify`` and
``audit`` refuse, and ``--resume`` continues from the last complete checkpoint. A run writes its
files into a staging folder (:mod:`repro.layout`), so an earlier manifest at the same path stays
valid until the finished run replaces it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from repro import __version__
from repro.capture.git import capture_code
from repro.checkpoint import STATE_FILE, discard_partial, latest_checkpoint, load_records, load_state
from repro.config import ResolvedRun
from repro.errors import InputError, UsageError
from repro.hashing import sha256_file, sha256_tensor
from repro.job import Job, JobResult
from repro.keys import SigningKey, load_or_create_key
from repro.launcher import EventHandler, launch
from repro.layout import InFlightRun, RunLayout
from repro.manifest import (
    CheckpointRecord,
    CodeRecord,
    DataRecord,
    FileDigest,
    ManifestBody,
    RunIdentity,
    RunManifest,
    StepRecord,
    StepTableRef,
    Timing,
    ValidationRecord,
    manifest_bytes,
)
from repro.paths import cache_dir
from repro.sbom import record_sbom
from repro.signing import sign_manifest
from repro.steptable import FILE_NAME, StepColumns, write_table


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: its manifest, where it was written, and the key that signed it."""

    manifest: RunManifest
    path: Path
    key: SigningKey
    key_created: bool


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def build_job(resolved: ResolvedRun, folder: Path, scratch: Path, **overrides: object) -> Job:
    """The job for a run of ``resolved`` whose artifacts go to ``folder``."""
    fields = dict(
        trainer_name=resolved.trainer.name,
        trainer_entry=resolved.trainer.entry,
        settings=resolved.settings,
        config=resolved.config.model_dump(mode="json"),
        config_sha256=resolved.config_sha256,
        artifact_dir=str(folder),
        cache_dir=str(cache_dir()),
        checkpoint_root=str(folder / "checkpoints"),
        result_path=str(scratch / "result.json"),
    )
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
    resume: bool = False,
    code_path: Path | None = None,
    on_event: EventHandler | None = None,
) -> RunOutcome:
    """Run ``resolved`` and write its signed manifest to ``manifest_path``.

    The run's files go to a staging folder (see :mod:`repro.layout`), so the manifest already at
    ``manifest_path`` and its files stay valid until the finished run replaces them. With
    ``resume``, the unfinished run continues from its last complete checkpoint.
    """
    started = time.perf_counter()
    manifest_path = Path(manifest_path).resolve()
    if manifest_path.suffix != ".json":
        raise UsageError(f"--out {manifest_path} must name a .json file")
    layout = RunLayout(manifest_path)
    folder = layout.staging

    # Fail before compute: signing key readable, config resumable, output folder writable.
    key, created = load_or_create_key(key_path)
    layout.settle()
    if resume:
        run = layout.resumable().model_copy(update={"committing": None})
        if run.config_sha256 != resolved.config_sha256:
            raise UsageError(
                f"the unfinished run in {folder} was made with a different config; resume with the "
                "same preset and overrides, or start afresh without --resume"
            )
    else:
        run = InFlightRun(started_at=_now(), config_sha256=resolved.config_sha256)
    layout.write_marker(run)
    layout.discard_leftovers()
    if not resume:
        shutil.rmtree(folder, ignore_errors=True)  # an earlier unfinished run is superseded
    discard_partial(folder / "checkpoints")
    latest = latest_checkpoint(folder / "checkpoints") if resume else None
    if latest is not None and load_records(latest).config_sha256 != resolved.config_sha256:
        raise UsageError(
            f"the checkpoint in {latest} was made with a different config; resume with the "
            "same preset and overrides, or start afresh without --resume"
        )
    outputs = [layout.marker, layout.staging, layout.replaced, layout.root, manifest_path]
    code = capture_code(Path(code_path or Path.cwd()), exclude=outputs)

    scratch = folder / ".job"
    scratch.mkdir(parents=True, exist_ok=True)
    start_state = latest / STATE_FILE if latest is not None else None
    job = build_job(resolved, folder, scratch, start_checkpoint=str(start_state) if start_state else None)
    result = launch(job, scratch / "job.json", folder / "train.log", on_event)
    shutil.rmtree(scratch, ignore_errors=True)

    manifest = _assemble(resolved, result, _earlier(latest, layout), layout, code, run, started, key)
    layout.commit(manifest_bytes(manifest), run)
    return RunOutcome(manifest=manifest, path=manifest_path, key=key, key_created=created)


def _assemble(
    resolved: ResolvedRun, result: JobResult, earlier: _Earlier, layout: RunLayout,
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
                         size=c.size, tensors=c.tensors)
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
    body = ManifestBody(
        run=RunIdentity(
            tool_version=__version__, trainer=resolved.trainer, preset=resolved.preset,
            settings=resolved.settings, config=resolved.config.model_dump(mode="json"),
            config_sha256=resolved.config_sha256,
        ),
        environment=result.environment,
        code=code,
        data=DataRecord(
            source=data.source, files=data.files, corpus_sha256=data.corpus_sha256,
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
        ),
    )
    manifest = sign_manifest(body, key)
    manifest.attach_steps(columns)
    return manifest
