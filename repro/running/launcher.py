"""Starting training in a child process with a controlled environment, and following it.

The child (:mod:`repro.running.worker`) gets ``PYTHONHASHSEED``, thread counts and CUDA settings at
interpreter start (:func:`repro.running.determinism.controlled_environment`). Its progress arrives as JSON
lines on a dedicated pipe; its stdout and stderr go to a log file so trainer output never
garbles the console.

A distributed run (``settings.world_size > 1``) starts torch.distributed's elastic launcher
(``torch.distributed.run``, the machinery behind ``torchrun``) through :mod:`repro.running.agent`,
which adds repro's rendezvous (stores bound to one address, the rendezvous state checked before
torch unpickles it), in the same controlled environment, with ``max_restarts=0`` so that a rank
that dies takes the job down; it starts one worker per rank and gives each ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. One node uses a private
rendezvous on ``127.0.0.1``; several find each other at ``--rdzv-endpoint``. The launcher's file
descriptors do not reach the ranks, so the leader's progress comes through an events file that
is followed here. Every child dies with its parent (:mod:`repro.running.lifeline`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from repro import errors
from repro.files import atomic
from repro.running import lifeline
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
    env[lifeline.PARENT_ENV] = str(os.getpid())
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
    except BaseException:  # Ctrl-C, SIGTERM (raised as KeyboardInterrupt by the CLI), a failing handler
        proc.kill()
        proc.wait()
        raise
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
    return _result(job, returncode, log_path)


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address) of ``--rdzv-endpoint``; exit 2 for anything else."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})", endpoint)
    port = int(match.group(3)) if match else 0
    if match is None or not 0 < port < 65536:
        raise errors.UsageError(
            f"--rdzv-endpoint {endpoint[:100]!r} is not HOST:PORT (a host name or address, a port from 1 to 65535); "
            "give node rank 0's address and a free port, the same on every node"
        )
    host = match.group(1) or match.group(2)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise errors.UsageError(
            f"--rdzv-endpoint host {host!r} cannot be resolved here ({exc}); give node rank 0's address"
        ) from exc
    return host, port


def local_address(host: str, port: int) -> str:
    """The address of this machine's interface that reaches ``host`` (no packet is sent)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(address)
        return str(probe.getsockname()[0])


def distributed_command(job: Job, job_path: Path) -> list[str]:
    """The launcher command line of a distributed job: ``repro.running.agent`` (torch's elastic
    launcher with repro's rendezvous, :mod:`repro.running.agent`), every store bound to one address."""
    from repro.running.agent import BACKEND

    settings = job.settings
    command = [sys.executable, "-m", "repro.running.agent", f"--nproc-per-node={settings.nproc}",
               f"--nnodes={settings.nnodes}", "--max-restarts=0", "--monitor-interval=0.2",
               f"--rdzv-backend={BACKEND}"]
    if settings.nnodes == 1:
        # One node: a private rendezvous on the loopback interface (torch's --standalone binds every interface).
        command += ["--rdzv-endpoint=127.0.0.1:0", f"--rdzv-id=repro-{os.getpid()}-{time.time_ns()}",
                    "--rdzv-conf=is_host=1", "--local-addr=127.0.0.1"]
    else:
        if not job.rdzv_endpoint:
            raise errors.UsageError(
                f"--nnodes {settings.nnodes} needs --rdzv-endpoint HOST:PORT (the same on every node)"
            )
        host, port = parse_endpoint(job.rdzv_endpoint)
        # Every node derives the same rendezvous id from the config; node rank 0 hosts the store.
        is_host = job.node_rank == 0
        command += [f"--rdzv-endpoint={job.rdzv_endpoint}", f"--rdzv-id=repro-{job.config_sha256[:16]}",
                    f"--rdzv-conf=is_host={int(is_host)},join_timeout={job.rdzv_timeout}",
                    f"--local-addr={host if is_host else local_address(host, port)}"]
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
    env[lifeline.PARENT_ENV] = str(os.getpid())
    # The agent's temporary files (torchelastic_*) go to the job's own folder, removed with it.
    private_tmp = job_path.parent / "tmp"
    private_tmp.mkdir(mode=0o700, exist_ok=True)
    env["TMPDIR"] = str(private_tmp)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _follow_agent(job, job_path, log_path, env, events_path=events_path, on_event=on_event)
    finally:
        shutil.rmtree(private_tmp, ignore_errors=True)


def _follow_agent(job: Job, job_path: Path, log_path: Path, env: dict[str, str], *, events_path: Path,
                  on_event: EventHandler | None) -> int:
    if on_event is not None and job.settings.nnodes > 1:
        on_event({"event": "phase", "phase": f"waiting up to {job.rdzv_timeout} s for {job.settings.nnodes} nodes "
                  f"at {job.rdzv_endpoint} (--rdzv-timeout)"})
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
