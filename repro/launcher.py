"""Starting training in a child process with a controlled environment, and following it.

The child (:mod:`repro.worker`) gets ``PYTHONHASHSEED``, thread counts and CUDA settings at
interpreter start (:func:`repro.determinism.controlled_environment`). Its progress arrives as JSON
lines on a dedicated pipe; its stdout and stderr go to a log file so trainer output never
garbles the console. A multi-process (torch.distributed) launch would start one such child per
rank with ``RANK``/``WORLD_SIZE`` added to the same environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from repro import atomic, errors
from repro.determinism import controlled_environment
from repro.job import Job, JobResult, WorkerFailure

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
    read_fd, write_fd = os.pipe()
    env = controlled_environment(job.settings)
    env.update(extra_env or {})
    env["REPRO_EVENT_FD"] = str(write_fd)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "repro.worker", str(job_path)],
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
    result_path = Path(job.result_path)
    if not result_path.exists():
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        raise errors.TrainingProcessError(f"the training process {how} without a result; see {log_path}")
    result = JobResult.model_validate_json(result_path.read_text(encoding="utf-8"))
    if result.failure is not None:
        raise _error_from(result.failure, log_path)
    return result
