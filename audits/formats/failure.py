"""Reports for a command that ended without a verdict: every requested report, for every outcome.

A CI job that publishes ``--junit`` and ``--json`` after every run must never show the previous
run's green files for a job that failed. So when ``audit``, ``audit --vary``, ``diff`` or ``gate``
stops with an error (usage or input 2, integrity 3, could not check 4, internal 70, interrupted
130), each report it was asked for is still written, saying what stopped it
(:class:`CommandFailure` as JSON, a JUnit suite with one errored case, an HTML page with the
banner); a report that cannot be written is removed instead, and a plot (a picture of nothing) is
always removed. See :func:`reports_on_failure`.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from repro import __version__
from repro.audits.formats.junit import junit_document
from repro.audits.report import ReportRecord
from repro.errors import DataChangedError, ExitCode, ReproError, exit_code_for
from repro.files import atomic
from repro.text import utc_now

FAILURE_SCHEMA_FILE = "command-failure.schema.json"

FailureOutcome = Literal["input_error", "integrity_failure", "data_changed", "could_not_check", "internal_error",
                         "interrupted"]

_OUTCOME_OF_CODE: dict[ExitCode, FailureOutcome] = {
    ExitCode.USAGE: "input_error", ExitCode.INTEGRITY: "integrity_failure",
    ExitCode.COULD_NOT_CHECK: "could_not_check", ExitCode.INTERNAL: "internal_error",
    ExitCode.INTERRUPTED: "interrupted",
}

_HEADLINE: dict[FailureOutcome, tuple[str, str]] = {
    "input_error": ("INPUT ERROR", "bad"), "integrity_failure": ("INTEGRITY FAILURE", "bad"),
    "data_changed": ("DATA CHANGED", "bad"), "could_not_check": ("COULD NOT CHECK", "unknown"),
    "internal_error": ("INTERNAL ERROR", "unknown"), "interrupted": ("INTERRUPTED", "unknown"),
}


class CommandFailure(ReportRecord):
    """What ``--json`` holds when the command stopped before a verdict (schema version 1)."""

    schema_version: Literal[1] = 1
    kind: Literal["repro.command-failure"] = "repro.command-failure"
    tool_version: str
    created_at: str
    command: str = Field(description="audit, vary, diff or gate.")
    subject: str = Field(description="What was checked: the manifest (or policy) as named on the command line.")
    outcome: FailureOutcome
    exit_code: int = Field(description="The command's exit code (README, 'Exit codes').")
    message: str = Field(description="The one-line error the command printed.")
    reproduced: Literal[False] = Field(False, description="Never true: nothing was judged.")


def failure_of(command: str, subject: str, exc: BaseException) -> CommandFailure:
    """The failure record of ``exc`` (its outcome by its exit code; a changed data file by name)."""
    code = exit_code_for(exc)
    outcome: FailureOutcome = "data_changed" if isinstance(exc, DataChangedError) else _OUTCOME_OF_CODE.get(
        code, "internal_error")
    message = str(exc) if isinstance(exc, ReproError) else f"{type(exc).__name__} (a bug in repro)"
    if isinstance(exc, KeyboardInterrupt):
        message = "interrupted"
    return CommandFailure(tool_version=__version__, created_at=utc_now(),
                          command=command, subject=subject, outcome=outcome, exit_code=int(code),
                          message=message[:2000])


def failure_json(failure: CommandFailure) -> bytes:
    """The JSON document of a failure."""
    return (failure.model_dump_json(indent=2) + "\n").encode("utf-8")


def failure_junit(failure: CommandFailure) -> bytes:
    """A JUnit suite with one case, errored with the outcome as its type: CI shows it red."""
    suite = ET.Element("testsuite", name=f"repro {failure.command}", timestamp=failure.created_at, time="0")
    case = ET.SubElement(suite, "testcase", name=failure.subject, classname=f"repro.{failure.command}", time="0")
    node = ET.SubElement(case, "error", message=failure.message, type=failure.outcome)
    node.text = f"{failure.outcome} (exit {failure.exit_code}): {failure.message}"
    return junit_document(suite)


def failure_html(failure: CommandFailure) -> str:
    """A self-contained page that says what stopped the command."""
    from repro.rendering.pages import Banner, Verification, show_page

    headline, tone = _HEADLINE[failure.outcome]
    banner = Banner(headline, tone, failure.message,
                    [("command", f"repro {failure.command}"), ("exit code", str(failure.exit_code)),
                     ("what this means", "nothing was judged: this is not a verdict on the run")])
    return show_page(None, failure.subject, Verification(banner), title=f"repro {failure.command} {failure.subject}")


def _resolved(name: str) -> Path:
    try:
        return Path(name).resolve()
    except (OSError, RuntimeError):
        return Path(name).absolute()


def _replace_or_remove(path: Path, data: bytes) -> None:
    try:
        atomic.write_bytes(path, data)
    except (ReproError, OSError):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                path.unlink()


@contextlib.contextmanager
def reports_on_failure(command: str, subject: str, *, json: str | None = None, junit: str | None = None,
                       html: str | None = None, remove: tuple[str | None, ...] = (),
                       protect: tuple[str, ...] = ()) -> Iterator[None]:
    """Run the block; if it raises anything, write each requested report as a failure (or remove
    the old file when that fails), remove the files in ``remove`` (plots), and re-raise.

    Nothing is written over ``subject`` or the files in ``protect`` (the inputs being checked)."""
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, GeneratorExit):
            raise
        failure = failure_of(command, subject, exc)
        protected = {_resolved(name) for name in (subject, *protect)}  # never over what was checked
        for value, render in ((json, failure_json), (junit, failure_junit),
                              (html, lambda f: failure_html(f).encode("utf-8"))):
            if value:
                path = Path(value)
                if not atomic.is_stream(path) and _resolved(value) not in protected:
                    _replace_or_remove(path, render(failure))
        for value in remove:
            if value and Path(value).is_file() and not Path(value).is_symlink():
                with contextlib.suppress(OSError):
                    Path(value).unlink()
        raise
