"""``repro run``: launch a trainer, capture what the run depended on, sign and write the manifest.

Order matters: everything that can fail cheaply (output folder, signing key, config) is checked
before any compute; the manifest is written last, atomically, and only for a finished run. While a
run is in flight ``<manifest>.incomplete`` marks it, so a crash leaves a state ``verify`` and
``audit`` refuse, and ``--resume`` continues from the last complete checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from repro import __version__, atomic
from repro.capture.git import capture_code
from repro.checkpoint import load_records, load_state, latest_checkpoint
from repro.config import ResolvedRun
from repro.errors import InputError, UsageError
from repro.hashing import sha256_file, sha256_tensor
from repro.job import Job, JobResult
from repro.keys import SigningKey, load_or_create_key
from repro.launcher import EventHandler, launch
from repro.manifest import (
    CheckpointRecord,
    DataRecord,
    FileDigest,
    RunIdentity,
    RunManifest,
    Timing,
    incomplete_marker,
    manifest_bytes,
    run_folder,
)
from repro.paths import cache_dir
from repro.signing import sign_body


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


def execute_run(
    resolved: ResolvedRun,
    manifest_path: Path,
    key_path: Path | None = None,
    resume: bool = False,
    code_path: Path | None = None,
    on_event: EventHandler | None = None,
) -> RunOutcome:
    """Run ``resolved`` and write its signed manifest to ``manifest_path``."""
    started = time.perf_counter()
    started_at = _now()
    manifest_path = Path(manifest_path).resolve()
    if manifest_path.suffix != ".json":
        raise UsageError(f"--out {manifest_path} must name a .json file")
    folder = run_folder(manifest_path)
    marker = incomplete_marker(manifest_path)

    start_state: Path | None = None
    prior: list[CheckpointRecord] = []
    if resume:
        if not marker.exists():
            raise UsageError(f"nothing to resume: {marker} is absent (the run finished or never started)")
        latest = latest_checkpoint(folder / "checkpoints")
        if latest is not None:
            records = load_records(latest)
            if records.config_sha256 != resolved.config_sha256:
                raise UsageError(
                    f"the checkpoint in {latest} was made with a different config; resume with the "
                    "same preset and overrides, or start afresh without --resume"
                )
            start_state = latest / "state.safetensors"
    # Fail before compute: output folder writable, key readable.
    atomic.write_text(marker, json.dumps({"started_at": started_at, "config_sha256": resolved.config_sha256}) + "\n")
    key, created = load_or_create_key(key_path)
    if not resume:
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    code = capture_code(Path(code_path or Path.cwd()))

    scratch = folder / ".job"
    scratch.mkdir(parents=True, exist_ok=True)
    job = build_job(resolved, folder, scratch, start_checkpoint=str(start_state) if start_state else None)
    result = launch(job, scratch / "job.json", folder / "train.log", on_event)

    if start_state is not None:
        records = load_records(start_state.parent)
        steps, validation = list(records.steps) + result.steps, list(records.validation) + result.validation
        for ckpt_dir in sorted((folder / "checkpoints").glob("step-*")):
            step = int(ckpt_dir.name.split("-")[1]) if ckpt_dir.name.split("-")[1].isdigit() else -1
            if 0 <= step <= records.step:
                prior.append(describe_checkpoint(ckpt_dir / "state.safetensors", step, manifest_path.parent))
    else:
        steps, validation = result.steps, result.validation
    manifest = _assemble(resolved, result, steps, validation, prior, manifest_path, code, started_at, started, key)
    atomic.write_bytes(manifest_path, manifest_bytes(manifest))
    marker.unlink(missing_ok=True)
    shutil.rmtree(scratch, ignore_errors=True)
    return RunOutcome(manifest=manifest, path=manifest_path, key=key, key_created=created)


def _assemble(resolved, result: JobResult, steps, validation, prior, manifest_path: Path, code, started_at, started, key) -> RunManifest:  # noqa: ANN001
    folder = manifest_path.parent
    data = result.data
    assert data is not None and result.environment is not None and result.timing is not None
    tokenizer = None
    if data.tokenizer_path:
        tok = Path(data.tokenizer_path)
        if not tok.exists():
            raise InputError(f"the trainer named tokenizer {tok}, which does not exist")
        tokenizer = FileDigest(path=relative_to(tok, folder), sha256=sha256_file(tok), size=tok.stat().st_size)
    checkpoints = prior + [
        CheckpointRecord(step=c.step, path=relative_to(Path(c.path), folder), sha256=c.sha256,
                         size=c.size, tensors=c.tensors)
        for c in result.checkpoints
    ]
    timing = result.timing
    wall = time.perf_counter() - started
    body = dict(
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
        steps=steps,
        validation=validation,
        checkpoints=checkpoints,
        artifacts=[],
        timing=Timing(
            started_at=started_at, finished_at=_now(), wall_seconds=wall,
            setup_seconds=timing.setup_seconds, train_seconds=timing.train_seconds,
            overhead_seconds=max(wall - timing.setup_seconds - timing.train_seconds - timing.eval_seconds, 0.0),
            step_seconds=timing.step_seconds,
            resumed_from_step=result.start_step if result.start_step else None,
        ),
    )
    unsigned = {k: (v.model_dump(mode="json") if hasattr(v, "model_dump") else [x.model_dump(mode="json") for x in v]) for k, v in body.items()}
    unsigned["schema_version"] = 1
    unsigned["kind"] = "repro.run-manifest"
    signature = sign_body(unsigned, key)
    return RunManifest.model_validate({**unsigned, "signature": signature.model_dump(mode="json")})
