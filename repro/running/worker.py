"""The training child process: apply determinism, drive the trainer's loop, report back.

Started by :mod:`repro.running.launcher` as ``python -m repro.running.worker JOB.json`` in a controlled
environment. Progress goes to the file descriptor in ``REPRO_EVENT_FD`` as JSON lines; the result
is written atomically to the job's ``result_path``. Everything the trainer prints goes to the log.

In a distributed run (started by ``torch.distributed.run``, one worker per rank) every rank runs
the same loop; only the leader (node rank 0, local rank 0) reports progress (to the file in
``REPRO_EVENT_FILE``), writes checkpoints and the result. Each rank's output goes to
``logs/rank-R.log`` in the run folder; a rank that fails writes ``result.rank-R.json`` beside the
result so that the launcher can say which rank failed and why.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from repro.errors import ReproError, TrainerError, TrainingProcessError, UsageError, category
from repro.files import atomic
from repro.records.checkpoint import CheckpointRecords, SavedCheckpoint, load_records, load_state, save_checkpoint
from repro.records.hashing import sha256_tensor
from repro.records.manifest import StepRecord, ValidationRecord
from repro.running import distributed as dist
from repro.running.crashpoint import crash_point
from repro.running.job import DataResult, Job, JobResult, JobTiming, SpanJob, WorkerFailure


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
    from repro.capture.modules import capture_executed
    from repro.running.determinism import apply_determinism
    from repro.running.registry import import_reference
    from repro.trainer_api import TrainerContext, VerifiedData

    t0 = time.perf_counter()
    device = apply_determinism(job.settings)
    info = dist.join(job.settings) if dist.launched_distributed() else None
    if info is not None and device.type == "cuda":
        import torch

        device = torch.device("cuda", info.local_rank)
    cls = import_reference(job.trainer_entry)
    name = job.trainer_name
    config = _call(name, "config validation", cls.config_model.model_validate, job.config)
    context = TrainerContext(
        settings=job.settings,
        device=device,
        cache_dir=Path(job.cache_dir),
        artifact_dir=Path(job.artifact_dir),
        data=None if job.verified_data is None else VerifiedData(
            source=job.verified_data.source,
            root=Path(job.verified_data.root) if job.verified_data.root is not None else None,
            files=tuple(job.verified_data.files),
        ),
        rank=info.rank if info else 0, local_rank=info.local_rank if info else 0,
        world_size=info.world_size if info else 1,
    )
    trainer = _call(name, "__init__", cls, config, context)
    events.emit(event="phase", phase="preparing data")
    summary = _call(name, "prepare_data", trainer.prepare_data)
    events.emit(event="phase", phase="building model")
    _call(name, "build", trainer.build)

    total = config.steps
    spans = _spans(job, total)
    progress = _Progress()
    start, prior = _resume(name, trainer, spans[0], job)
    if info is not None:
        dist.check_same_start(info, start)
    capture_start = time.perf_counter()
    # In a distributed run one process per node captures its node; the leader's is the run's.
    environment = capture_environment() if info is None or info.local_rank == 0 else None
    layout = dist.describe(info, job.settings, environment, _LAUNCHER) if info is not None else None
    capture_seconds = time.perf_counter() - capture_start
    setup_seconds = time.perf_counter() - t0 - capture_seconds
    starts = []
    for index, span in enumerate(spans):
        if index > 0:
            start, prior = _resume(name, trainer, span, job)
            if info is not None:
                dist.check_same_start(info, start)
        starts.append(start)
        _train(job, name, trainer, start=start, stop=span.stop, total=total, prior=prior, info=info, events=events,
               progress=progress)

    if layout is None and info is not None:  # a rank other than the leader: nothing to report
        return JobResult()
    assert environment is not None
    # Last, so modules imported lazily during training are included.
    fingerprint_start = time.perf_counter()
    executed = capture_executed(cache_file=Path(job.cache_dir) / "module-digests.json")
    fingerprint_seconds = time.perf_counter() - fingerprint_start
    files = sum(d.files for d in executed.distributions) + len(executed.files)
    sys.stdout.write(f"repro: fingerprinted {files} imported module files in {fingerprint_seconds:.3f} s "
                     f"(training {progress.train_seconds:.3f} s)\n")
    sys.stdout.flush()
    return JobResult(
        distributed=layout[0].model_copy(update={"replica_checks": progress.checked}) if layout else None,
        environment=environment,
        executed=executed,
        data=DataResult(
            source=summary.source, files=summary.files, corpus_sha256=summary.corpus_sha256,
            tokenizer_path=str(summary.tokenizer_file) if summary.tokenizer_file else None,
            token_stream_sha256=summary.token_stream_sha256, train_tokens=summary.train_tokens,
            val_tokens=summary.val_tokens, extra=summary.extra,
        ),
        start_step=starts[0],
        span_starts=starts if job.spans is not None else [],
        steps=progress.steps,
        validation=progress.validation,
        checkpoints=progress.saved,
        timing=JobTiming(
            setup_seconds=setup_seconds, train_seconds=progress.train_seconds, eval_seconds=progress.eval_seconds,
            checkpoint_seconds=progress.ckpt_seconds, capture_seconds=capture_seconds + fingerprint_seconds,
            step_seconds=progress.step_seconds, fingerprint_seconds=fingerprint_seconds,
            replica_check_seconds=progress.replica_seconds,
        ),
    )


@dataclass
class _Progress:
    """What the training loop produced so far, over every stretch of a job."""

    steps: list[StepRecord] = field(default_factory=list)
    validation: list[ValidationRecord] = field(default_factory=list)
    saved: list[SavedCheckpoint] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    checked: list[int] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    ckpt_seconds: float = 0.0
    replica_seconds: float = 0.0


@dataclass
class _Prior:
    """The records up to a resumed checkpoint, and the state the next update is measured from."""

    steps: list[StepRecord]
    validation: list[ValidationRecord]
    seconds: list[float]
    state: dict[str, Any] | None


def _spans(job: Job, total: int) -> list[SpanJob]:
    """The stretches a job trains: its ``spans``, or the one from its start checkpoint to ``stop_after``."""
    if job.spans is None:
        return [SpanJob(start_checkpoint=job.start_checkpoint, start_checkpoint_sha256=job.start_checkpoint_sha256,
                        stop=min(job.stop_after or total, total))]
    if not job.spans:
        raise UsageError("the job lists no stretches to train")
    if any(span.start_checkpoint is None for span in job.spans[1:]):
        raise UsageError("only the first stretch of a job may start from scratch; the others resume a checkpoint")
    return [span.model_copy(update={"stop": min(span.stop, total)}) for span in job.spans]


def _floating(tensors: dict[str, Any]) -> dict[str, Any]:
    """A private copy of what an update norm measures: the floating-point tensors of a state that
    are not scalars (a 0-d tensor is a counter, e.g. AdamW's step count, which grows by the same
    amount in every segment and would drown the weights' movement)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()
            if v.is_floating_point() and v.dim() > 0 and not k.startswith("repro.")}


def update_norm(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """The L2 norm of ``after - before`` over the floating-point, non-scalar tensors of ``after``
    (in float64; a tensor absent ``before``, e.g. optimizer moments made by the first step, counts
    from zero);
    None when a tensor changed shape."""
    now = _floating(after)
    if any(k in before and before[k].shape != v.shape for k, v in now.items()):
        return None
    total = 0.0
    for key in sorted(now):
        change = now[key].double() - before[key].double() if key in before else now[key].double()
        total += float(change.square().sum())
    return math.sqrt(total)


def _resume(name: str, trainer: Any, span: SpanJob, job: Job) -> tuple[int, _Prior]:
    """Load ``span``'s start checkpoint into the trainer (hash-verified; restoring checked), or, for
    a span from scratch, take the freshly built state; return its step and the records before it."""
    from repro.running.determinism import load_rng_state_tensors

    if not span.start_checkpoint:
        state = _floating(_trainer_state(name, trainer)) if job.write_checkpoints else None
        return 0, _Prior([], [], [], state)
    state = load_state(Path(span.start_checkpoint), span.start_checkpoint_sha256)
    records = load_records(Path(span.start_checkpoint).parent)
    if records.world_size != job.settings.world_size:
        raise UsageError(
            f"the checkpoint at step {records.step} was trained by {records.world_size} processes, this run has "
            f"{job.settings.world_size}; resume with the world size it was made with"
        )
    load_rng_state_tensors(state)
    own = {k: v for k, v in state.items() if not k.startswith("repro.rng.")}
    _call(name, "load_state_tensors", trainer.load_state_tensors, own)
    _check_restored(name, own, _trainer_state(name, trainer))
    prior = _Prior(list(records.steps), list(records.validation), list(records.step_seconds),
                   _floating(own) if job.write_checkpoints else None)
    return records.step, prior


def _train(job: Job, name: str, trainer: Any, *, start: int, stop: int, total: int, prior: _Prior,
           info: Any, events: _Events, progress: _Progress) -> None:
    """Train steps ``start + 1`` to ``stop``, validating and checkpointing at the recorded cadence."""
    from repro.running.determinism import rng_state_tensors

    events.emit(event="start", start=start, stop=stop, total=total)
    ckpt_steps, eval_steps = _cadence(job.settings.checkpoint_every, total), _cadence(job.settings.eval_every, total)
    steps: list[StepRecord] = []
    validation: list[ValidationRecord] = []
    step_seconds: list[float] = []
    for step in range(start + 1, stop + 1):
        t = time.perf_counter()
        out = _call(name, f"train_step({step})", trainer.train_step, step)
        dt = time.perf_counter() - t
        record = _step_record(name, step, out)
        steps.append(record)
        step_seconds.append(dt)
        progress.train_seconds += dt
        events.emit(event="step", step=step, loss=record.loss, seconds=dt)
        if step in eval_steps:
            t = time.perf_counter()
            val = float(_call(name, "validate", trainer.validate))
            if not math.isfinite(val):
                raise TrainerError(f"trainer {name} returned a non-finite validation loss at step {step}")
            validation.append(ValidationRecord(step=step, loss=val))
            progress.eval_seconds += time.perf_counter() - t
            events.emit(event="eval", step=step, loss=val)
        crash_point("step", step)
        if info is not None:
            dist.kill_point(info, step)
        if job.write_checkpoints and step in ckpt_steps:
            tensors = _trainer_state(name, trainer)
            if info is not None:
                t = time.perf_counter()
                dist.drift_point(info, step, tensors)
                dist.check_replicas(info, step, dist.state_digests(tensors))
                progress.checked.append(step)
                progress.replica_seconds += time.perf_counter() - t
                if not info.leader:
                    continue
            moved = update_norm(prior.state, tensors) if prior.state is not None else None
            prior.state = _floating(tensors)
            tensors.update(rng_state_tensors())
            records = CheckpointRecords(
                step=step, config_sha256=job.config_sha256,
                steps=prior.steps + steps, validation=prior.validation + validation,
                step_seconds=prior.seconds + step_seconds, world_size=job.settings.world_size,
            )
            ckpt = save_checkpoint(Path(job.checkpoint_root), step, tensors, records)
            ckpt = ckpt.model_copy(update={"update_norm": moved})
            progress.saved.append(ckpt)
            progress.ckpt_seconds += ckpt.seconds
            events.emit(event="checkpoint", step=step, seconds=ckpt.seconds)
    progress.steps.extend(steps)
    progress.validation.extend(validation)
    progress.step_seconds.extend(step_seconds)


_LAUNCHER = "torch.distributed.run (elastic, max_restarts=0)"


def _redirect_output(log: Path) -> None:
    """Send this process's stdout and stderr (and its C libraries') to its own per-rank log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _event_stream(leader: bool) -> TextIO | None:
    """The leader's progress stream: the launcher's pipe, or the events file of a distributed run."""
    if not leader:
        return None
    fd, path = os.environ.get("REPRO_EVENT_FD"), os.environ.get("REPRO_EVENT_FILE")
    if fd:
        return os.fdopen(int(fd), "w", buffering=1)
    if path:
        return open(path, "a", buffering=1, encoding="utf-8")
    return None


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
                f"trainer {name}: state_tensors entry {key!r} is of type {type(value).__name__}; it must map "
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


def _failure(exc: ReproError) -> WorkerFailure:
    """What the launcher needs to raise the same category of error with the same exit code."""
    return WorkerFailure(error_type=category(exc).__name__, message=str(exc),
                         exit_code=int(exc.exit_code), original_type=type(exc).__name__)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child: run the job file, write the result, exit 0 (or 1 on failure)."""
    args = sys.argv[1:] if argv is None else argv
    job = Job.model_validate_json(Path(args[0]).read_text(encoding="utf-8"))
    distributed = dist.launched_distributed()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    leader = not distributed or (int(os.environ[dist.NODE_RANK_ENV]) == 0 and local_rank == 0)
    if distributed:
        _redirect_output(Path(job.artifact_dir) / "logs" / f"rank-{rank}.log")
    events = _Events(_event_stream(leader))
    try:
        result = run_job(job, events)
        code = 0
    except ReproError as exc:
        sys.stderr.write(f"repro: {type(exc).__name__}: {exc}\n")  # the log says why, too
        result = JobResult(failure=_failure(exc))
        code = 1
    except Exception as exc:  # noqa: BLE001 - a bug in repro itself: keep the traceback in the log
        traceback.print_exc()
        result = JobResult(failure=_failure(TrainingProcessError(
            f"training process crashed: {type(exc).__name__}: {exc}"
        )))
        code = 1
    finally:
        if distributed:
            dist.leave()
    if leader:
        atomic.write_text(Path(job.result_path), result.model_dump_json())
    elif result.failure is not None:
        atomic.write_text(Path(job.result_path).with_name(f"result.rank-{rank}.json"), result.model_dump_json())
    elif local_rank == 0:  # another node's local rank 0: tell its `repro run` that it wrote nothing
        atomic.write_text(Path(job.result_path), JobResult(follower=True).model_dump_json())
    return code


if __name__ == "__main__":
    sys.exit(main())
