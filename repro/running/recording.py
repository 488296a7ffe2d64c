"""What a training process accumulates and reports, whoever owns the loop.

A plugin's loop (:mod:`repro.running.worker`) and a user's own script (:mod:`repro.running.command`,
through :mod:`repro.record`) report the same things the same way: a :class:`RunRecorder` takes each
step, validation and checkpoint, sends the progress events to the launcher, writes checkpoints
(safetensors + per-tensor digests, global RNG states added, the replica check in a data-parallel
run) and finally builds the :class:`~repro.running.job.JobResult`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from repro.errors import UsageError
from repro.records.checkpoint import CheckpointRecords, SavedCheckpoint, load_records, load_state, save_checkpoint
from repro.records.manifest import DistributedRecord, EnvironmentRecord, StepRecord, ValidationRecord
from repro.running import distributed as dist
from repro.running import faults, lifeline
from repro.running.job import DataResult, Job, JobResult, JobTiming, SpanJob
from repro.trainer_api import DataSummary
from repro.trust.data_location import as_verified


class Events:
    """JSON-lines progress events to the launcher (no-op when run by hand)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def emit(self, **event: Any) -> None:
        """Send one event (a JSON object on one line)."""
        if self.stream is not None:
            import json

            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()


@dataclass(frozen=True)
class Start:
    """Where a job starts: step 0, or a checkpoint's step with its tensors and earlier records."""

    step: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    validation: list[ValidationRecord] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)


def load_start(job: Job, span: SpanJob | None = None) -> Start:
    """The start checkpoint (the job's, or ``span``'s; hash-checked), or a fresh start."""
    if span is None:
        checkpoint, sha256, start_records = job.start_checkpoint, job.start_checkpoint_sha256, job.start_records
    else:
        checkpoint, sha256, start_records = span.start_checkpoint, span.start_checkpoint_sha256, span.start_records
    if not checkpoint:
        return Start()
    state = load_state(Path(checkpoint), sha256)
    # An audit's records come from its verified manifest: the unsigned records.json is then not read.
    records = start_records or load_records(Path(checkpoint).parent)
    if records.world_size != job.settings.world_size:
        raise UsageError(
            f"the checkpoint at step {records.step} was trained by {records.world_size} processes, this run has "
            f"{job.settings.world_size}; resume with the world size it was made with"
        )
    return Start(records.step, dict(state), list(records.steps), list(records.validation),
                 list(records.step_seconds))


def floating_state(tensors: dict[str, Any]) -> dict[str, Any]:
    """A private copy of what an update norm measures: the floating-point tensors of a state that
    are not scalars (a 0-d tensor is a counter, e.g. AdamW's step count, which grows by the same
    amount in every segment and would drown the weights' movement), repro's own (RNG) left out."""
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()
            if v.is_floating_point() and v.dim() > 0 and not k.startswith("repro.")}


def update_norm(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """The L2 norm of ``after - before`` over the floating-point, non-scalar tensors of ``after`` (in
    float64; a tensor absent ``before``, e.g. optimizer moments made by the first step, counts from
    zero); None when a tensor changed shape."""
    import math

    now = floating_state(after)
    if any(k in before and before[k].shape != v.shape for k, v in now.items()):
        return None
    total = 0.0
    for key in sorted(now):
        change = now[key].double() - before[key].double() if key in before else now[key].double()
        total += float(change.square().sum())
    return math.sqrt(total)


class RunRecorder:
    """Steps, validation and checkpoints of one training process, and the result they make."""

    def __init__(self, job: Job, events: Events, info: dist.RankInfo | None, start: Start) -> None:
        self.job, self.events, self.info, self.start = job, events, info, start
        self.steps: list[StepRecord] = []
        self.validation: list[ValidationRecord] = []
        self.saved: list[SavedCheckpoint] = []
        self.step_seconds: list[float] = []
        self.checked: list[int] = []
        self.span_starts: list[int] = [start.step]
        self.train_seconds = self.eval_seconds = self.ckpt_seconds = self.replica_seconds = 0.0
        # This stretch's records (a spot-check replays several stretches in one process), and the
        # state the next checkpoint's update norm is measured from.
        self._span_steps: list[StepRecord] = []
        self._span_validation: list[ValidationRecord] = []
        self._span_seconds: list[float] = []
        self._before: dict[str, Any] | None = None

    def begin(self, start: Start) -> None:
        """Start the next stretch of a multi-segment job from ``start`` (its records go on being
        collected; a checkpoint's own records are the start's plus this stretch's)."""
        self.start = start
        self.span_starts.append(start.step)
        self._span_steps, self._span_validation, self._span_seconds = [], [], []
        self._before = None

    def measure_from(self, tensors: dict[str, Any]) -> None:
        """The state the next checkpoint's update norm (``SavedCheckpoint.update_norm``) is measured from."""
        self._before = floating_state(tensors)

    @property
    def last_step(self) -> int:
        """The last step recorded (the start step before any)."""
        return self.steps[-1].step if self.steps else self.start.step

    def step(self, record: StepRecord, seconds: float) -> None:
        """Record one optimizer step that took ``seconds``."""
        self.steps.append(record)
        self._span_steps.append(record)
        self.step_seconds.append(seconds)
        self._span_seconds.append(seconds)
        self.train_seconds += seconds
        self.events.emit(event="step", step=record.step, loss=record.loss, seconds=seconds)

    def validate(self, step: int, loss: float, seconds: float) -> None:
        """Record a validation loss after ``step``."""
        self.validation.append(ValidationRecord(step=step, loss=loss))
        self._span_validation.append(self.validation[-1])
        self.eval_seconds += seconds
        self.events.emit(event="eval", step=step, loss=loss)

    def checkpoint(self, step: int, tensors: dict[str, Any]) -> None:
        """Save ``tensors`` (plus the global RNG states) as the checkpoint after ``step``.

        In a data-parallel run every rank calls it: the replicas are compared first, and only the
        leader writes.
        """
        from repro.running.determinism import rng_state_tensors

        if self.info is not None:
            t = time.perf_counter()
            faults.before_replica_check(self.info, step, tensors)
            dist.check_replicas(self.info, step, dist.state_digests(tensors))
            self.checked.append(step)
            self.replica_seconds += time.perf_counter() - t
            if not self.info.leader:
                return
        moved = update_norm(self._before, tensors) if self._before is not None else None
        self._before = floating_state(tensors)
        tensors = {**tensors, **rng_state_tensors()}
        lifeline.check_parent()  # a checkpoint is never written once the parent (and its lock) is gone
        records = CheckpointRecords(
            step=step, config_sha256=self.job.config_sha256,
            steps=self.start.steps + self._span_steps, validation=self.start.validation + self._span_validation,
            step_seconds=self.start.step_seconds + self._span_seconds, world_size=self.job.settings.world_size,
        )
        saved = save_checkpoint(Path(self.job.checkpoint_root), step, tensors, records)
        saved = saved.model_copy(update={"update_norm": moved})
        self.saved.append(saved)
        self.ckpt_seconds += saved.seconds
        self.events.emit(event="checkpoint", step=step, seconds=saved.seconds)

    def result(self, summary: DataSummary, environment: EnvironmentRecord | None,
               layout: tuple[DistributedRecord, list[str]] | None, *, setup_seconds: float,
               capture_seconds: float, main_file: str | None = None) -> JobResult:
        """The job's result; a rank other than the leader reports nothing. Fingerprints the
        executed code last, so modules imported lazily during training are included
        (``main_file``: a script run as ``__main__``, which ``sys.modules`` no longer holds)."""
        from repro.capture.modules import capture_executed

        if layout is None and self.info is not None:
            return JobResult()
        assert environment is not None
        fingerprint_start = time.perf_counter()
        modules = dict(sys.modules)
        if main_file is not None:
            import types

            main = types.ModuleType("__main__")
            main.__file__ = main_file
            modules["__main__"] = main
        executed = capture_executed(modules, cache_file=Path(self.job.cache_dir) / "module-digests.json")
        fingerprint_seconds = time.perf_counter() - fingerprint_start
        files = sum(d.files for d in executed.distributions) + len(executed.files)
        sys.stdout.write(f"repro: fingerprinted {files} imported module files in {fingerprint_seconds:.3f} s "
                         f"(training {self.train_seconds:.3f} s)\n")
        sys.stdout.flush()
        return JobResult(
            distributed=layout[0].model_copy(update={"replica_checks": self.checked}) if layout else None,
            environment=environment,
            executed=executed,
            data=DataResult(
                # A rerun that read the verified data reports it by the recorded source (a clone's path
                # for repository data, or the --data folder, is where it was found, not a different source).
                source=as_verified(summary.source, *(
                    (self.job.verified_data.source, self.job.verified_data.root) if self.job.verified_data
                    else (None, None))),
                files=summary.files, corpus_sha256=summary.corpus_sha256,
                tokenizer_path=str(summary.tokenizer_file) if summary.tokenizer_file else None,
                token_stream_sha256=summary.token_stream_sha256, train_tokens=summary.train_tokens,
                val_tokens=summary.val_tokens, extra=summary.extra,
            ),
            start_step=self.span_starts[0],
            span_starts=self.span_starts if self.job.spans is not None else [],
            steps=self.steps,
            validation=self.validation,
            checkpoints=self.saved,
            timing=JobTiming(
                setup_seconds=setup_seconds, train_seconds=self.train_seconds, eval_seconds=self.eval_seconds,
                checkpoint_seconds=self.ckpt_seconds, capture_seconds=capture_seconds + fingerprint_seconds,
                step_seconds=self.step_seconds, fingerprint_seconds=fingerprint_seconds,
                replica_check_seconds=self.replica_seconds,
            ),
        )


def capture_node(info: dist.RankInfo | None, job: Job, launcher: str, data: list[str] | None = None) -> tuple[
        EnvironmentRecord | None, tuple[DistributedRecord, list[str]] | None, float]:
    """This node's environment (one process per node captures it) and, in a data-parallel run,
    the run's distributed record (collective: every rank calls it; ``data`` is this rank's corpus
    and token-stream digests, which every rank must share); with the seconds it took."""
    from repro.capture.environment import capture_environment

    began = time.perf_counter()
    environment = capture_environment() if info is None or info.local_rank == 0 else None
    layout = dist.describe(info, job.settings, environment, launcher, data=data) if info is not None else None
    return environment, layout, time.perf_counter() - began
