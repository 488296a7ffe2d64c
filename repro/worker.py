"""The training child process: apply determinism, drive the trainer's loop, report back.

Started by :mod:`repro.launcher` as ``python -m repro.worker JOB.json`` in a controlled
environment. Progress goes to the file descriptor in ``REPRO_EVENT_FD`` as JSON lines; the result
is written atomically to the job's ``result_path``. Everything the trainer prints goes to the log.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from repro import atomic
from repro.checkpoint import CheckpointRecords, load_records, load_state, save_checkpoint
from repro.crashpoint import crash_point
from repro.errors import ReproError, TrainerError
from repro.hashing import sha256_tensor
from repro.job import DataResult, Job, JobResult, JobTiming, WorkerFailure
from repro.manifest import StepRecord, ValidationRecord


class _Events:
    """JSON-lines progress events to the launcher (no-op when run by hand)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def emit(self, **event: Any) -> None:
        if self.stream is not None:
            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()


def _cadence(every: int, total: int) -> set[int]:
    """Every ``every``-th step, and always the last one."""
    return set(range(every, total + 1, every)) | {total}


def _call(trainer_name: str, what: str, func: Any, *args: Any) -> Any:
    """Call into the trainer, turning its exceptions into a TrainerError that names it."""
    try:
        return func(*args)
    except ReproError:
        raise
    except Exception as exc:  # the trainer is third-party code: report, do not crash deep inside
        traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise TrainerError(
            f"trainer {trainer_name} failed in {what}: {type(exc).__name__}: {first}"
        ) from exc


def run_job(job: Job, events: _Events) -> JobResult:
    """Run a job in this process (which must have the controlled environment)."""
    from repro.capture.environment import capture_environment
    from repro.determinism import apply_determinism, load_rng_state_tensors, rng_state_tensors
    from repro.registry import import_reference
    from repro.trainer_api import TrainerContext

    t0 = time.perf_counter()
    device = apply_determinism(job.settings)
    cls = import_reference(job.trainer_entry)
    name = job.trainer_name
    config = _call(name, "config validation", cls.config_model.model_validate, job.config)
    context = TrainerContext(
        settings=job.settings,
        device=device,
        cache_dir=Path(job.cache_dir),
        artifact_dir=Path(job.artifact_dir),
    )
    trainer = _call(name, "__init__", cls, config, context)
    events.emit(event="phase", phase="preparing data")
    summary = _call(name, "prepare_data", trainer.prepare_data)
    events.emit(event="phase", phase="building model")
    _call(name, "build", trainer.build)

    total = config.steps
    stop = min(job.stop_after or total, total)
    start = 0
    prior_steps: list[StepRecord] = []
    prior_val: list[ValidationRecord] = []
    prior_seconds: list[float] = []
    if job.start_checkpoint:
        state = load_state(Path(job.start_checkpoint), job.start_checkpoint_sha256)
        records = load_records(Path(job.start_checkpoint).parent)
        start, prior_steps, prior_val = records.step, list(records.steps), list(records.validation)
        prior_seconds = list(records.step_seconds)
        load_rng_state_tensors(state)
        own = {k: v for k, v in state.items() if not k.startswith("repro.rng.")}
        _call(name, "load_state_tensors", trainer.load_state_tensors, own)
        _check_restored(name, own, _trainer_state(name, trainer))
    capture_start = time.perf_counter()
    environment = capture_environment()
    capture_seconds = time.perf_counter() - capture_start
    setup_seconds = time.perf_counter() - t0 - capture_seconds
    events.emit(event="start", start=start, stop=stop, total=total)

    ckpt_steps, eval_steps = _cadence(job.settings.checkpoint_every, total), _cadence(job.settings.eval_every, total)
    steps: list[StepRecord] = []
    validation: list[ValidationRecord] = []
    saved = []
    step_seconds: list[float] = []
    train_seconds = eval_seconds = ckpt_seconds = 0.0
    for step in range(start + 1, stop + 1):
        t = time.perf_counter()
        out = _call(name, f"train_step({step})", trainer.train_step, step)
        dt = time.perf_counter() - t
        record = _step_record(name, step, out)
        loss = record.loss
        steps.append(record)
        step_seconds.append(dt)
        train_seconds += dt
        events.emit(event="step", step=step, loss=loss, seconds=dt)
        if step in eval_steps:
            t = time.perf_counter()
            val = float(_call(name, "validate", trainer.validate))
            if not math.isfinite(val):
                raise TrainerError(f"trainer {name} returned a non-finite validation loss at step {step}")
            validation.append(ValidationRecord(step=step, loss=val))
            eval_seconds += time.perf_counter() - t
            events.emit(event="eval", step=step, loss=val)
        crash_point("step", step)
        if job.write_checkpoints and step in ckpt_steps:
            tensors = _trainer_state(name, trainer)
            tensors.update(rng_state_tensors())
            records = CheckpointRecords(
                step=step, config_sha256=job.config_sha256,
                steps=prior_steps + steps, validation=prior_val + validation,
                step_seconds=prior_seconds + step_seconds,
            )
            ckpt = save_checkpoint(Path(job.checkpoint_root), step, tensors, records)
            saved.append(ckpt)
            ckpt_seconds += ckpt.seconds
            events.emit(event="checkpoint", step=step, seconds=ckpt.seconds)

    return JobResult(
        environment=environment,
        data=DataResult(
            source=summary.source, files=summary.files, corpus_sha256=summary.corpus_sha256,
            tokenizer_path=str(summary.tokenizer_file) if summary.tokenizer_file else None,
            token_stream_sha256=summary.token_stream_sha256, train_tokens=summary.train_tokens,
            val_tokens=summary.val_tokens, extra=summary.extra,
        ),
        start_step=start,
        steps=steps,
        validation=validation,
        checkpoints=saved,
        timing=JobTiming(
            setup_seconds=setup_seconds, train_seconds=train_seconds, eval_seconds=eval_seconds,
            checkpoint_seconds=ckpt_seconds, capture_seconds=capture_seconds,
            step_seconds=step_seconds,
        ),
    )


def _step_record(name: str, step: int, out: Any) -> StepRecord:
    """Check what ``train_step`` returned against the contract and turn it into a record."""
    from repro.trainer_api import StepOutput

    if not isinstance(out, StepOutput):
        raise TrainerError(
            f"trainer {name}: train_step({step}) returned {type(out).__name__}, not a "
            "repro.trainer_api.StepOutput"
        )
    try:
        values = {key: float(getattr(out, key)) for key in ("loss", "lr", "grad_norm")}
        tokens = int(out.tokens)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TrainerError(f"trainer {name}: train_step({step}) returned a non-numeric value ({exc})") from exc
    for key, value in values.items():
        if not math.isfinite(value):
            raise TrainerError(f"trainer {name} returned a non-finite {key.replace('_', ' ')} ({value}) at step {step}")
    batch = str(out.batch)
    if not _FINGERPRINT.fullmatch(batch):  # the step table stores it as 8 bytes
        raise TrainerError(
            f"trainer {name}: train_step({step}) returned batch {batch[:40]!r}, not 16 lowercase hex "
            "digits; use repro.trainer_api.batch_fingerprint(batch)"
        )
    return StepRecord(step=step, tokens=tokens, batch=batch, **values)


_FINGERPRINT = re.compile("[0-9a-f]{16}")


def _trainer_state(name: str, trainer: Any) -> dict[str, Any]:
    """The trainer's ``state_tensors()``, checked: string keys, tensor values, no reserved names."""
    import torch

    state = _call(name, "state_tensors", trainer.state_tensors)
    if not isinstance(state, dict):
        raise TrainerError(f"trainer {name}: state_tensors returned {type(state).__name__}, not a dict")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TrainerError(
                f"trainer {name}: state_tensors entry {key!r} is a {type(value).__name__}; it must map "
                "names to tensors (see repro.torch_state for optimizer and generator state)"
            )
        if key.startswith("repro."):
            raise TrainerError(f"trainer {name}: state_tensors name {key!r} is reserved (repro.*); rename it")
    return dict(state)


def _check_restored(name: str, loaded: dict[str, Any], restored: dict[str, Any]) -> None:
    """A trainer must restore exactly what it saved; otherwise resume silently diverges."""
    missing = sorted(set(loaded) - set(restored))
    if missing:
        raise TrainerError(f"trainer {name} did not restore state {missing[0]!r} after loading a checkpoint")
    for key in sorted(loaded):
        if sha256_tensor(loaded[key]) != sha256_tensor(restored[key]):
            raise TrainerError(
                f"trainer {name} did not restore its state on resume: {key!r} differs from the "
                "checkpoint after load_state_tensors; restore every tensor that state_tensors returns"
            )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child: run the job file, write the result, exit 0 (or 1 on failure)."""
    args = sys.argv[1:] if argv is None else argv
    job = Job.model_validate_json(Path(args[0]).read_text(encoding="utf-8"))
    fd = os.environ.get("REPRO_EVENT_FD")
    events = _Events(os.fdopen(int(fd), "w", buffering=1) if fd else None)
    try:
        result = run_job(job, events)
        code = 0
    except ReproError as exc:
        result = JobResult(failure=WorkerFailure(error_type=type(exc).__name__, message=str(exc)))
        code = 1
    except Exception as exc:  # a bug in repro itself: keep the traceback in the log
        traceback.print_exc()
        result = JobResult(failure=WorkerFailure(
            error_type="ReproError", message=f"training process crashed: {type(exc).__name__}: {exc}"
        ))
        code = 1
    atomic.write_text(Path(job.result_path), result.model_dump_json())
    return code


if __name__ == "__main__":
    sys.exit(main())
