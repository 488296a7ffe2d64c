"""The ``repro`` command line. The only place that prints errors and chooses exit codes.

Exit codes (every command):
  0  ok (verified / reproduced)
  1  not reproduced (audit, gate)
  2  usage or input error: bad arguments, malformed or unreadable manifest, bad key file
  3  integrity failure: bad signature, untrusted key, artifact hash mismatch
  4  could not check: missing artifact, incomplete run, device unavailable, trainer missing
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from repro import __version__, attest_cli, errors
from repro.audits import gate_cli  # CLI wiring only: the core never imports audits
from repro.audits.cli import add_audit_command

EXIT_OK, EXIT_NOT_REPRODUCED, EXIT_USAGE, EXIT_INTEGRITY, EXIT_COULD_NOT_CHECK = 0, 1, 2, 3, 4

_EXIT_CODES: list[tuple[type[errors.ReproError], int]] = [
    (errors.IntegrityError, EXIT_INTEGRITY),
    (errors.CouldNotCheckError, EXIT_COULD_NOT_CHECK),
    (errors.UsageError, EXIT_USAGE),
    (errors.InputError, EXIT_USAGE),
    (errors.OutputError, EXIT_USAGE),
    (errors.SigningKeyError, EXIT_USAGE),
    (errors.ReproError, EXIT_USAGE),
]


def exit_code_for(exc: errors.ReproError) -> int:
    """The documented exit code of an error type."""
    return next(code for cls, code in _EXIT_CODES if isinstance(exc, cls))


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() decides the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise errors.UsageError(f"{self.prog}: {message}")


@contextmanager
def _reported(outcome: list[int]) -> Iterator[None]:
    from rich.markup import escape

    from repro.console import err_console

    try:
        yield
    except errors.ReproError as exc:
        # One line, whatever the message quotes (paths, JSON keys), and never read as rich markup.
        message = escape(" ".join(str(exc).split("\n")))
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
        outcome.append(exit_code_for(exc))
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        outcome.append(130)


def _add_run(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--nproc", type=int, help="data-parallel processes on this node (default 1; gloo on CPU, NCCL on CUDA)")
    p.add_argument("--nnodes", type=int, help="nodes the run spans (default 1); run the same command on each")
    p.add_argument("--node-rank", type=int, default=0, help="this node's rank, 0 to nnodes-1 (node 0 writes the manifest)")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="c10d rendezvous address, the same on every node")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Train and record."""
    from repro.config import resolve_run
    from repro.console import TrainingProgress, err_console, out_console, run_summary
    from repro.run import execute_run

    resolved = resolve_run(
        args.preset, args.trainer,
        settings_overrides={"seed": args.seed, "device": args.device, "threads": args.threads,
                            "nproc": args.nproc, "nnodes": args.nnodes},
        config_overrides={"steps": args.steps, "data": args.data},
        assignments=args.assignments,
    )
    with TrainingProgress(f"{resolved.trainer.name}/{resolved.preset or 'default'}") as progress:
        outcome = execute_run(resolved, Path(args.out), Path(args.key) if args.key else None,
                              resume=args.resume, on_event=progress, node_rank=args.node_rank,
                              rdzv_endpoint=args.rdzv_endpoint)
    if outcome.key_created:
        err_console.print(f"created signing key {outcome.key.path} (public: {outcome.key.path}.pub)")
    if outcome.manifest is None:
        out_console.print(f"node {args.node_rank}: its ranks finished; node rank 0 writes the manifest", highlight=False)
        return EXIT_OK
    out_console.print(run_summary(outcome.manifest, str(args.out)))
    return EXIT_OK


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check a manifest's signature and artifacts without rerunning")
    p.add_argument("manifest")
    p.add_argument("--trusted-keys", help="trust list: a valid signature from another key fails")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify signature and artifact hashes."""
    from rich.markup import escape

    from repro.console import err_console, out_console
    from repro.keys import load_trusted_keys
    from repro.manifest import incomplete_marker
    from repro.verify import verify_manifest

    trusted = load_trusted_keys(Path(args.trusted_keys)) if args.trusted_keys else None
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
    return EXIT_OK


def _add_keygen(sub: argparse._SubParsersAction) -> None:
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
    out_console.print(f"private key: {path} (mode 600)\npublic key:  {public_key_path(path)}\nkey id:      {key.key_id}", highlight=False)
    return EXIT_OK


def _add_trainers(sub: argparse._SubParsersAction) -> None:
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
        except Exception as exc:  # a broken third-party trainer must not hide the others
            presets = "[red]unavailable[/]"
            problems.append(f"{t.name}: presets() failed: {type(exc).__name__}: {exc}")
        table.add_row(t.name, t.distribution or "-", t.version or "-", t.entry, presets)
    out_console.print(table)
    for line in problems:
        out_console.print(line, highlight=False, markup=False, soft_wrap=True)
    return EXIT_OK


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_run, _add_verify, _add_keygen, _add_trainers, attest_cli.add_parser, gate_cli.add_parser, add_audit_command]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(prog="repro", description="Make training runs checkable: record, sign, audit.")
    parser.add_argument("--version", action="version", version=f"repro {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (the console script exits with it)."""
    outcome: list[int] = []
    with _reported(outcome):
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        return args.func(args)
    return outcome[0]


if __name__ == "__main__":
    sys.exit(main())
