"""The training process of a command run: the user's script, run in this process, recorded.

The launcher starts ``python -m repro.running.worker JOB.json`` (under ``torch.distributed.run``
for a data-parallel run) exactly as for a plugin; for a job of the command trainer the worker
comes here. Determinism is applied and, in a data-parallel run, the default process group is
initialised (a script must not initialise it again: ``if not dist.is_initialized()``); then the
script runs as ``__main__`` with its own ``sys.argv``, and :mod:`repro.record` reports to a
:class:`~repro.running.recording.RunRecorder`, the same one a plugin's loop reports to.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
import time
import traceback
from pathlib import Path

import repro.record
from repro.errors import ReproError, TrainerError, UsageError
from repro.record.session import Session, StopRun
from repro.running import distributed as dist
from repro.running.command import CommandConfig, ParsedCommand, parse_command
from repro.running.job import Job, JobResult
from repro.running.recording import Events, RunRecorder, capture_node, load_start


def run_command_job(job: Job, events: Events, launcher: str) -> JobResult:
    """Run the job's command in this process (which must have the controlled environment)."""
    from repro.running.determinism import apply_determinism

    began = time.perf_counter()
    apply_determinism(job.settings)
    info = dist.join(job.settings) if dist.launched_distributed() else None
    config = CommandConfig.model_validate(job.config)
    parsed = parse_command(config.command)
    start = load_start(job)
    environment, layout, capture_seconds = capture_node(info, job, launcher)
    recorder = RunRecorder(job, events, info, start)
    session = Session(job, recorder, info)
    events.emit(event="start", start=start.step, stop=job.stop_after, total=job.stop_after)
    setup_seconds = time.perf_counter() - began - capture_seconds
    main_file = _run(parsed, session)
    if not recorder.steps and not session.resumed:
        raise TrainerError(
            f"the command {' '.join(config.command)!r} finished without reporting a step; call "
            "repro.record.step(loss) once per optimizer step (docs/record.md). Nothing was recorded"
        )
    return recorder.result(session.summary(), environment, layout, setup_seconds=setup_seconds,
                           capture_seconds=capture_seconds, main_file=main_file)


def _main_file(parsed: ParsedCommand) -> str:
    """The file that runs as ``__main__``: the script, or the module's source."""
    if parsed.kind == "script":
        path = Path(parsed.target)
        if not path.is_file():
            raise UsageError(f"the command's script {parsed.target} is not a file here (in {Path.cwd()})")
        return str(path.resolve())
    try:
        spec = importlib.util.find_spec(parsed.target)
    except (ImportError, ValueError) as exc:
        raise UsageError(f"cannot find module {parsed.target!r} ({exc})") from exc
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise UsageError(f"cannot find module {parsed.target!r} to run (python -m); check the name and the folder")
    return spec.origin


def _run(parsed: ParsedCommand, session: Session) -> str:
    """Run the script as ``__main__`` with ``session`` recording; return its file."""
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    if parsed.kind == "module":
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` does
    main_file = _main_file(parsed)
    sys.argv = [parsed.target, *parsed.args]
    repro.record._activate(session)
    try:
        if parsed.kind == "script":
            sys.path.insert(0, str(Path(main_file).parent))  # as `python script.py` does
            runpy.run_path(main_file, run_name="__main__")
        else:
            runpy.run_module(parsed.target, run_name="__main__", alter_sys=True)
    except StopRun:
        pass  # an audit's last step is done
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise TrainerError(f"the command exited with status {exc.code}") from exc
    except ReproError:
        raise
    except Exception as exc:  # the user's code failed: the traceback goes to the log
        traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise TrainerError(f"the command failed: {type(exc).__name__}: {first}") from exc
    finally:
        repro.record._activate(None)
        sys.argv, sys.path[:] = saved_argv, saved_path
        sys.stdout.flush()
    return main_file
