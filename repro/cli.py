"""The ``repro`` command line. The only place that prints errors and chooses exit codes.

Exit codes: :class:`repro.errors.ExitCode` (README, "Exit codes"); each error class carries its
own. Subcommands outside the core (``audit``, ``gate``, ``attest``) are named in :data:`COMMANDS`
as ``"module:function"`` strings and imported when the parser is built, so no module of the core
imports ``repro.audits`` at import time and the CLI module needs only the standard library and
:mod:`repro.errors`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias, cast

from repro import __version__, errors
from repro.errors import ExitCode, exit_code_for

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

__all__ = ["COMMANDS", "ExitCode", "build_parser", "exit_code_for", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() decides the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise errors.UsageError(f"{self.prog}: {message}")


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


def _print_error(exc: errors.ReproError) -> None:
    from rich.markup import escape

    from repro.console import err_console

    # One line, whatever the message quotes (paths, JSON keys), and never read as rich markup.
    err_console.print(f"[bold red]error:[/] {escape(_one_line(str(exc)))}", highlight=False, markup=True,
                      soft_wrap=True)


def _add_run(sub: Subparsers) -> None:
    p = sub.add_parser("run", help="train a preset and write a signed manifest")
    p.add_argument("preset", nargs="?", default=None, help="preset name, e.g. baseline, smoke")
    p.add_argument("--trainer", help="trainer name or package.module:Class")
    p.add_argument("--steps", type=int, help="total optimizer steps")
    p.add_argument("--seed", type=int, help="seed for every random source")
    p.add_argument("--device", choices=["cpu", "cuda"], help="training device (default cpu)")
    p.add_argument("--threads", type=int, help="torch/OMP threads (default 2)")
    p.add_argument("--data", help="text file or folder of .txt/.md files instead of the built-in corpus")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting or config field (repeatable)")
    p.add_argument("--out", default="manifests/run.json", help="manifest path (default manifests/run.json)")
    p.add_argument("--key", help="signing key (default $REPRO_SIGNING_KEY or ~/.config/repro/signing-key.pem)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the finished run's loss, learning-rate and gradient-norm curves")
    p.add_argument("--nproc", type=int,
                   help="data-parallel processes on this node (default 1; gloo on CPU, NCCL on CUDA)")
    p.add_argument("--nnodes", type=int, help="nodes the run spans (default 1); run the same command on each")
    p.add_argument("--node-rank", type=int, default=0,
                   help="this node's rank, 0 to nnodes-1 (node 0 writes the manifest)")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="c10d rendezvous address, the same on every node")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Train and record."""
    from repro.config import resolve_run
    from repro.console import TrainingProgress, err_console, out_console, run_summary
    from repro.run import execute_run

    if args.plot:
        from repro.plotting import check_png_target

        check_png_target("--plot", Path(args.plot))  # before training, not after it
    resolved = resolve_run(
        args.preset, args.trainer,
        settings_overrides={"seed": args.seed, "device": args.device, "threads": args.threads,
                            "nproc": args.nproc, "nnodes": args.nnodes},
        config_overrides={"steps": args.steps, "data": args.data},
        assignments=args.assignments,
    )
    max_files = getattr(resolved.config, "max_files", None)
    if args.data and max_files is not None:  # a preset's file limit applies to --data too: say so
        err_console.print(
            f"note: {resolved.preset or 'this config'} reads only the first {max_files} file(s) of {args.data} "
            "(max_files); add --set max_files=null to read them all",
            highlight=False, markup=False, soft_wrap=True,
        )
    if args.preset is None:  # say what runs, rather than silently training a default
        err_console.print(
            f"no preset named: training {resolved.trainer.name}'s default config "
            f"({resolved.config.steps} steps); name one to choose, e.g. `repro run smoke`",
            highlight=False, markup=False, soft_wrap=True,
        )
    with TrainingProgress(f"{resolved.trainer.name}/{resolved.preset or 'default'}") as progress:
        outcome = execute_run(resolved, Path(args.out), Path(args.key) if args.key else None,
                              resume=args.resume, on_event=progress, node_rank=args.node_rank,
                              rdzv_endpoint=args.rdzv_endpoint)
    if outcome.key_created:
        err_console.print(f"created signing key {outcome.key.path} (public: {outcome.key.path}.pub)")
    if outcome.manifest is None:
        out_console.print(f"node {args.node_rank}: its ranks finished; node rank 0 writes the manifest",
                          highlight=False)
        return ExitCode.OK
    out_console.print(run_summary(outcome.manifest, str(args.out)))
    if args.plot:
        from repro.plotting import write_run_plot

        write_run_plot(outcome.manifest, Path(args.plot))
        err_console.print(f"wrote {args.plot}", highlight=False, markup=False)
    return ExitCode.OK


def _add_verify(sub: Subparsers) -> None:
    p = sub.add_parser("verify", help="check a manifest's signature and artifacts without rerunning")
    p.add_argument("manifest")
    p.add_argument("--trusted-keys", help="trust list: a valid signature from another key fails")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify signature and artifact hashes."""
    from rich.markup import escape

    from repro.console import err_console, out_console
    from repro.keys import load_trusted_keys
    from repro.manifest_file import incomplete_marker
    from repro.verify import verify_manifest

    trusted = load_trusted_keys(Path(args.trusted_keys)) if args.trusted_keys is not None else None
    result = verify_manifest(Path(args.manifest), trusted)
    if incomplete_marker(Path(args.manifest)).exists():
        err_console.print(
            f"note: {incomplete_marker(Path(args.manifest))} is present: a run writing this manifest "
            "did not finish (continue it with --resume); what was verified is the last run that did",
            highlight=False, markup=False, soft_wrap=True,
        )
    trust = "a trusted key" if result.trusted else "a key not checked against a trust list"
    out_console.print(
        f"[bold green]verified[/] {escape(str(args.manifest))}: signature by {result.key_id} ({trust}); "
        f"{len(result.checks)} artifacts match", highlight=False,
    )
    return ExitCode.OK


def _add_keygen(sub: Subparsers) -> None:
    p = sub.add_parser("keygen", help="create an Ed25519 signing key pair")
    p.add_argument("--key", help="where to write the private key (default ~/.config/repro/signing-key.pem)")
    p.add_argument("--force", action="store_true", help="overwrite an existing key")
    p.set_defaults(func=cmd_keygen)


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create a key pair."""
    from repro.console import out_console
    from repro.keys import default_key_path, generate_key, public_key_path

    path = Path(args.key) if args.key else default_key_path()
    key = generate_key(path, overwrite=args.force)
    out_console.print(f"private key: {path} (mode 600)\npublic key:  {public_key_path(path)}\n"
                      f"key id:      {key.key_id}", highlight=False)
    return ExitCode.OK


def _add_trainers(sub: Subparsers) -> None:
    p = sub.add_parser("trainers", help="list installed trainer plugins")
    p.set_defaults(func=cmd_trainers)


def cmd_trainers(args: argparse.Namespace) -> int:
    """List trainers and their presets."""
    from rich.table import Table

    from repro.console import out_console
    from repro.registry import import_reference, installed_trainers

    table = Table(title="installed trainers (entry-point group repro.trainers)")
    for col in ("name", "distribution", "version", "entry point", "presets"):
        table.add_column(col)
    problems: list[str] = []
    for t in installed_trainers().values():
        try:
            presets = ", ".join(import_reference(t.entry).presets()) or "-"
        except errors.ReproError as exc:
            presets, problem = "[red]unavailable[/]", str(exc)
            problems.append(f"{t.name}: {problem}")
        except Exception as exc:  # noqa: BLE001 - a broken third-party trainer must not hide the others
            presets = "[red]unavailable[/]"
            problems.append(f"{t.name}: presets() failed: {type(exc).__name__}: {exc}")
        table.add_row(t.name, t.distribution or "-", t.version or "-", t.entry, presets)
    out_console.print(table)
    for line in problems:
        out_console.print(line, highlight=False, markup=False, soft_wrap=True)
    return ExitCode.OK


def _command(reference: str) -> Callable[[Subparsers], None]:
    import importlib

    module, _, function = reference.partition(":")
    add: Callable[[Subparsers], None] = getattr(importlib.import_module(module), function)
    return add


COMMANDS: list[str] = [
    "repro.cli:_add_run", "repro.cli:_add_verify", "repro.cli:_add_keygen", "repro.cli:_add_trainers",
    "repro.attest_cli:add_parser", "repro.show_cli:add_parser", "repro.audits.gate_cli:add_parser",
    "repro.audits.cli:add_audit_command", "repro.audits.diff_cli:add_parser",
]
"""Every subcommand, as ``"module:function"`` adding it to the subparsers; imported lazily."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(prog="repro", description="Make training runs checkable: record, sign, audit.")
    parser.add_argument("--version", action="version", version=f"repro {__version__}")
    sub = cast("Subparsers", parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    for reference in COMMANDS:
        _command(reference)(sub)
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
    from repro.crashlog import write_crash_report

    try:
        where = f"traceback written to {write_crash_report(exc)}"
    except Exception as problem:  # noqa: BLE001 - the report must not turn one crash into two
        where = f"the traceback could not be written ({type(problem).__name__})"
    detail = _one_line(f"{type(exc).__name__}: {exc}")[:300]
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
        self.previous: Any = None

    def __call__(self, signum: int, frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> _InterruptWatch:
        import signal

        self.previous = signal.getsignal(signal.SIGINT)
        if self.previous is signal.default_int_handler:  # leave any other handler (a test's, an embedder's) alone
            with contextlib.suppress(ValueError):  # not the main thread: handlers cannot be set there
                signal.signal(signal.SIGINT, self)
                self.installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self.installed:
            signal.signal(signal.SIGINT, self.previous)


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
