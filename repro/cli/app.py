"""``repro``'s entry: the parser of every command, and the one place that maps errors to exit codes.

Exit codes: :class:`repro.errors.ExitCode` (README, "Exit codes"); each error class carries its
own. Every command is a module of this package with ``add_parser(sub)`` and a ``cmd_*`` function;
the command modules import heavy libraries (torch, pydantic models, :mod:`repro.audits`) only
when their command runs, so ``repro --help`` and every error path stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import Any, cast

from repro import __version__, errors
from repro.cli import attest, audit, diff, gate, init, keygen, run, show, trainers, verify
from repro.cli.parsing import Parser, Subparsers
from repro.errors import ExitCode, exit_code_for

__all__ = ["ExitCode", "build_parser", "exit_code_for", "main"]


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


def _print_error(exc: errors.ReproError) -> None:
    from repro.rendering.console import say

    # One line, whatever the message quotes (paths, JSON keys, control characters), never read as markup.
    say(("error:", "bold red"), " ", _one_line(str(exc)), err=True)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = Parser(prog="repro", description="Make training runs checkable: record, sign, audit.")
    parser.add_argument("--version", action="version", version=f"repro {__version__}")
    sub = cast("Subparsers", parser.add_subparsers(dest="command", required=True, parser_class=Parser))
    for command in (run, verify, show, audit, diff, gate, attest, keygen, trainers, init):
        command.add_parser(sub)
    return parser


def _run(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except errors.ReproError as exc:
        _print_error(exc)
        return exit_code_for(exc)


def _interrupted() -> int:
    try:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError, KeyboardInterrupt):
        pass
    return ExitCode.INTERRUPTED


def _internal_error(exc: BaseException) -> int:
    """One line naming a file that holds the traceback; never a traceback on the console."""
    from repro.cli.crashlog import write_crash_report
    from repro.text import escape_text

    try:
        where = f"traceback written to {escape_text(write_crash_report(exc))}"
    except Exception as problem:  # noqa: BLE001 - the report must not turn one crash into two
        where = f"the traceback could not be written ({type(problem).__name__})"
    detail = escape_text(_one_line(f"{type(exc).__name__}: {exc}")[:300])
    try:
        sys.stderr.write(f"internal error: {detail} ({where}; please report it)\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return ExitCode.INTERNAL


class _InterruptWatch:
    """Remembers a Ctrl-C while raising it as usual, so that an error it causes on its way up
    (e.g. an extension module whose import it broke, which then panics) reads as the interruption
    it is (130), not as a bug in repro (70)."""

    def __init__(self) -> None:
        self.seen = False
        self.installed = False
        self.installed_term = False
        self.previous: Any = None
        self.previous_term: Any = None

    def __call__(self, signum: int, frame: object) -> None:
        # SIGTERM is handled as Ctrl-C is: the same clean-up (training processes stopped, the run's
        # marker, lock and temporary folders), exit 130.
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> _InterruptWatch:
        import signal

        self.previous = signal.getsignal(signal.SIGINT)
        self.previous_term = signal.getsignal(signal.SIGTERM)
        if self.previous is signal.default_int_handler:  # leave any other handler (a test's, an embedder's) alone
            with contextlib.suppress(ValueError):  # not the main thread: handlers cannot be set there
                signal.signal(signal.SIGINT, self)
                self.installed = True
        if self.installed and self.previous_term == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, self)
            self.installed_term = True
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self.installed:
            signal.signal(signal.SIGINT, self.previous)
        if self.installed_term:
            signal.signal(signal.SIGTERM, self.previous_term)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (the console script exits with it). Never raises."""
    with _InterruptWatch() as interrupt:
        try:
            return _run(list(sys.argv[1:] if argv is None else argv))
        except KeyboardInterrupt:
            return _interrupted()
        except SystemExit as exc:  # --help and --version, or a library that calls sys.exit
            return exc.code if isinstance(exc.code, int) else (ExitCode.OK if exc.code is None else ExitCode.USAGE)
        except BaseException as exc:  # the last line of defence: no traceback, never exit 1
            # BaseException: an extension's panic (pyo3's PanicException) is not an Exception.
            if isinstance(exc, GeneratorExit):
                raise
            if interrupt.seen:
                return _interrupted()
            try:
                return _internal_error(exc)
            except KeyboardInterrupt:
                return _interrupted()


if __name__ == "__main__":
    sys.exit(main())
