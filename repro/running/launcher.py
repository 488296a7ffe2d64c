"""Starting training in a child process with a controlled environment, and following it.

The child (:mod:`repro.running.worker`) gets ``PYTHONHASHSEED``, thread counts and CUDA settings at
interpreter start (:func:`repro.running.determinism.controlled_environment`). Its progress arrives as JSON
lines on a dedicated pipe; its stdout and stderr go to a log file so trainer output never
garbles the console.

A distributed run (``settings.world_size > 1``) starts torch.distributed's elastic launcher
(``python -m torch.distributed.run``, the machinery behind ``torchrun``) in the same controlled
environment, with ``max_restarts=0`` so that a rank that dies takes the job down; it starts one
worker per rank and gives each ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``. One node uses ``--standalone``; several find each other through c10d rendezvous at
``--rdzv-endpoint``. The launcher's file descriptors do not reach the ranks, so the leader's
progress comes through an events file that is followed here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from repro import errors
from repro.files import atomic
from repro.running.determinism import controlled_environment
from repro.running.job import Job, JobResult, WorkerFailure

EventHandler = Callable[[dict[str, Any]], None]


def _error_class(name: str) -> type[errors.ReproError]:
    """The :mod:`repro.errors` class the child named; a name not there is a crash of the child."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.ReproError):
        return cls
    return errors.TrainingProcessError


def _error_from(failure: WorkerFailure, log_path: Path) -> errors.ReproError:
    """The error the child reported, with its category and exit code kept."""
    cls = _error_class(failure.error_type)
    message = failure.message
    if cls in (errors.TrainerError, errors.TrainingProcessError) or cls is errors.ReproError:
        message += f" (log: {log_path})"
    exc = cls(message)
    if failure.exit_code is not None and failure.exit_code in set(errors.ExitCode):
        exc.exit_code = errors.ExitCode(failure.exit_code)
    return exc


def launch(job: Job, job_path: Path, log_path: Path, on_event: EventHandler | None = None, *,
           extra_env: Mapping[str, str] | None = None, cwd: Path | None = None) -> JobResult:
    """Run ``job`` in a child process; return its result or raise the error it reported.

    ``extra_env`` and ``cwd`` change the child's conditions on purpose (``repro audit --vary``).
    """
    atomic.write_text(job_path, job.model_dump_json(indent=1))
    # A result left by an earlier attempt (e.g. a run killed after its child finished) must not
    # be mistaken for this child's.
    Path(job.result_path).unlink(missing_ok=True)
    for stale in Path(job.result_path).parent.glob("result.rank-*.json"):
        stale.unlink()
    if job.settings.world_size > 1:
        returncode = _launch_distributed(job, job_path, log_path, on_event)
        return _result(job, returncode, log_path)
    read_fd, write_fd = os.pipe()
    env = controlled_environment(job.settings)
    env.update(extra_env or {})
    env["REPRO_EVENT_FD"] = str(write_fd)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "repro.running.worker", str(job_path)],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(write_fd,), cwd=cwd,
            )
            os.close(write_fd)
            write_fd = -1
            with os.fdopen(read_fd, "r", encoding="utf-8") as events:
                read_fd = -1
                for line in events:
                    if on_event is not None and line.strip():
                        on_event(json.loads(line))
            returncode = proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
    return _result(job, returncode, log_path)


def distributed_command(job: Job, job_path: Path) -> list[str]:
    """The ``torch.distributed.run`` command line of a distributed job."""
    settings = job.settings
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={settings.nproc}",
               f"--nnodes={settings.nnodes}", "--max-restarts=0", "--monitor-interval=0.2"]
    if settings.nnodes == 1:
        command.append("--standalone")
    else:
        if not job.rdzv_endpoint:
            raise errors.UsageError(
                f"--nnodes {settings.nnodes} needs --rdzv-endpoint HOST:PORT (the same on every node)"
            )
        # Every node derives the same rendezvous id from the config; node rank 0 hosts the store.
        command += ["--rdzv-backend=c10d", f"--rdzv-endpoint={job.rdzv_endpoint}",
                    f"--rdzv-id=repro-{job.config_sha256[:16]}",
                    f"--rdzv-conf=is_host={1 if job.node_rank == 0 else 0}"]
    return [*command, "-m", "repro.running.worker", str(job_path)]


def _launch_distributed(job: Job, job_path: Path, log_path: Path, on_event: EventHandler | None) -> int:
    """Run the elastic launcher until every rank has ended; follow the leader's events file."""
    from repro.running.distributed import NODE_RANK_ENV, collective_environment

    events_path = job_path.with_name("events.jsonl")
    events_path.unlink(missing_ok=True)
    events_path.touch()
    env = controlled_environment(job.settings)
    env.update(collective_environment(job.settings, env))
    env.update({"REPRO_EVENT_FILE": str(events_path), NODE_RANK_ENV: str(job.node_rank)})
    env.pop("REPRO_EVENT_FD", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log, open(events_path, encoding="utf-8") as events:
        proc = subprocess.Popen(distributed_command(job, job_path), env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            pending = ""
            while True:
                finished = proc.poll() is not None
                pending += events.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    if on_event is not None and line.strip():
                        on_event(json.loads(line))
                if finished:
                    return proc.returncode
                time.sleep(0.1)
        except BaseException:
            proc.send_signal(signal.SIGTERM)  # the elastic agent stops its ranks on SIGTERM
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise


_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.S)


def _killed_rank(log_path: Path) -> tuple[int, int] | None:
    """The rank and signal of the first failure the elastic agent reported, if a signal ended it.

    A rank killed from outside (OOM killer, SIGKILL) writes nothing; the others then fail in their
    next collective, which must not be mistaken for the cause.
    """
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = _ROOT_CAUSE.search(text)
    if found is None or int(found.group(2)) >= 0:
        return None
    return int(found.group(1)), -int(found.group(2))


def _result(job: Job, returncode: int, log_path: Path) -> JobResult:
    """The result the training process(es) left, or the error one of them reported."""
    result_path = Path(job.result_path)
    killed = _killed_rank(log_path) if job.settings.world_size > 1 and returncode != 0 else None
    if killed is not None:
        rank, signum = killed
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        raise errors.TrainingProcessError(
            f"rank {rank} of the distributed job was killed by signal {signum} ({name}) and the launcher stopped "
            f"the others; continue from the last checkpoint with `repro run ... --resume` (logs: {log_path}, "
            f"{Path(job.artifact_dir) / 'logs'})"
        )
    if not result_path.exists():
        failed = sorted(result_path.parent.glob("result.rank-*.json"), key=lambda p: int(p.stem.split("-")[-1]))
        if failed:
            result_path = failed[0]
        else:
            how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
            where = f"{log_path} and the per-rank logs in {Path(job.artifact_dir) / 'logs'}" \
                if job.settings.world_size > 1 else str(log_path)
            what = "a rank of the distributed job ended and the job" if job.settings.world_size > 1 \
                else "the training process"
            raise errors.TrainingProcessError(f"{what} {how} without a result; see {where}")
    result = JobResult.model_validate_json(result_path.read_text(encoding="utf-8"))
    if result.failure is not None:
        raise _error_from(result.failure, log_path)
    return result
