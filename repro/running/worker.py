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

import math
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from repro.errors import ReproError, TrainerError, TrainingProcessError, UsageError, category
from repro.files import atomic
from repro.records.hashing import sha256_tensor
from repro.records.manifest import StepRecord
from repro.running import distributed as dist
from repro.running import faults, lifeline
from repro.running.job import COMMAND_ENTRY, Job, JobResult, SpanJob, WorkerFailure
from repro.running.recording import Events, RunRecorder, Start, capture_node, load_start


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


def run_job(job: Job, events: Events) -> JobResult:
    """Run a job in this process (which must have the controlled environment)."""
    from repro.running.determinism import apply_determinism

    if job.trainer_entry == COMMAND_ENTRY:  # the user's own script owns the loop
        from repro.running.command_job import run_command_job

        return run_command_job(job, events, _LAUNCHER)
    t0 = time.perf_counter()
    device = apply_determinism(job.settings)
    info = dist.join(job.settings) if dist.launched_distributed() else None
    if info is not None and device.type == "cuda":
        import torch

        device = torch.device("cuda", info.local_rank)
    name = job.trainer_name
    trainer, config = _build_trainer(job, device, info)
    events.emit(event="phase", phase="preparing data")
    summary = _call(name, "prepare_data", trainer.prepare_data)
    events.emit(event="phase", phase="building model")
    _call(name, "build", trainer.build)
    total = config.steps
    spans = _spans(job, total)
    start = _restore(job, trainer, spans[0])
    if info is not None:
        dist.check_same_start(info, start.step)
    data = [str(summary.corpus_sha256), str(summary.token_stream_sha256 or "")]
    environment, layout, capture_seconds = capture_node(info, job, _LAUNCHER, data)
    setup_seconds = time.perf_counter() - t0 - capture_seconds
    recorder = RunRecorder(job, events, info, start)
    for index, span in enumerate(spans):
        if index > 0:  # the next stretch of a spot-check: same process, same data, a verified checkpoint
            start = _restore(job, trainer, span)
            if info is not None:
                dist.check_same_start(info, start.step)
            recorder.begin(start)
        if job.write_checkpoints:  # what the next checkpoint's update norm is measured from
            recorder.measure_from(_trainer_state(name, trainer))
        events.emit(event="start", start=start.step, stop=span.stop, total=total)
        _loop(job, trainer, recorder, span.stop, total)
    return recorder.result(summary, environment, layout, setup_seconds=setup_seconds,
                           capture_seconds=capture_seconds)


def _spans(job: Job, total: int) -> list[SpanJob]:
    """The stretches a job trains: its ``spans``, or the one from its start checkpoint to ``stop_after``."""
    if job.spans is None:
        return [SpanJob(start_checkpoint=job.start_checkpoint, start_checkpoint_sha256=job.start_checkpoint_sha256,
                        start_records=job.start_records, stop=min(job.stop_after or total, total))]
    if not job.spans:
        raise UsageError("the job lists no stretches to train")
    if any(span.start_checkpoint is None for span in job.spans[1:]):
        raise UsageError("only the first stretch of a job may start from scratch; the others resume a checkpoint")
    return [span.model_copy(update={"stop": min(span.stop, total)}) for span in job.spans]


def _build_trainer(job: Job, device: Any, info: dist.RankInfo | None) -> tuple[Any, Any]:
    """Import the trainer, validate its config and construct it with its context."""
    from repro.running.registry import import_reference
    from repro.trainer_api import TrainerContext, VerifiedData

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
    return _call(name, "__init__", cls, config, context), config


def _restore(job: Job, trainer: Any, span: SpanJob) -> Start:
    """Load ``span``'s start checkpoint into the trainer (and the global RNGs), checked."""
    from repro.running.determinism import load_rng_state_tensors

    start = load_start(job, span)
    if span.start_checkpoint:
        load_rng_state_tensors(start.state)
        own = {k: v for k, v in start.state.items() if not k.startswith("repro.rng.")}
        _call(job.trainer_name, "load_state_tensors", trainer.load_state_tensors, own)
        _check_restored(job.trainer_name, own, _trainer_state(job.trainer_name, trainer))
    return start


def _loop(job: Job, trainer: Any, recorder: RunRecorder, stop: int, total: int) -> None:
    """The plugin's steps after the start step up to ``stop``, with validation and checkpoints at
    their cadence; the test fault hooks run between a step and its checkpoint."""
    name = job.trainer_name
    ckpt_steps, eval_steps = _cadence(job.settings.checkpoint_every, total), _cadence(job.settings.eval_every, total)
    for step in range(recorder.start.step + 1, stop + 1):
        lifeline.check_parent()  # nothing more is trained or written once the parent is gone
        t = time.perf_counter()
        out = _call(name, f"train_step({step})", trainer.train_step, step)
        dt = time.perf_counter() - t
        recorder.step(_step_record(name, step, out), dt)
        if step in eval_steps:
            t = time.perf_counter()
            val = float(_call(name, "validate", trainer.validate))
            if not math.isfinite(val):
                raise TrainerError(f"trainer {name} returned a non-finite validation loss at step {step}")
            recorder.validate(step, val, time.perf_counter() - t)
        faults.after_step(recorder.info, step)
        if job.write_checkpoints and step in ckpt_steps:
            recorder.checkpoint(step, _trainer_state(name, trainer))


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
    lifeline.tie_to_parent()
    job = Job.model_validate_json(Path(args[0]).read_text(encoding="utf-8"))
    distributed = dist.launched_distributed()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    leader = not distributed or (int(os.environ[dist.NODE_RANK_ENV]) == 0 and local_rank == 0)
    if distributed:
        _redirect_output(Path(job.artifact_dir) / "logs" / f"rank-{rank}.log")
    events = Events(_event_stream(leader))
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
