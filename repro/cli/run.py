"""``repro run``: train a preset (or a trainer's default config) and write a signed manifest."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repro.cli.parsing import Parser, Subparsers
from repro.errors import ExitCode, UsageError


class _RunParser(Parser):
    """``repro run``'s parser: everything after the first ``--`` is the user's own command
    (``repro run --seed 1 -- python train.py --lr 3e-4``), kept verbatim, options included."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(args or [])
        command = None
        if "--" in words:
            cut = words.index("--")
            words, command = words[:cut], words[cut + 1:]
        parsed, extras = super().parse_known_args(words, namespace)
        parsed.train_command = command
        return parsed, extras


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("run", help="train a preset, or your own command after --, and write a signed manifest",
                       usage="%(prog)s [preset] [options] [-- python train.py ARGS]")
    p.__class__ = _RunParser  # argparse builds every subparser with one class; this one splits at --
    p.add_argument("preset", nargs="?", default=None, help="preset name, e.g. baseline, smoke")
    p.add_argument("--trainer", help="trainer name or package.module:Class")
    p.add_argument("--steps", type=int, help="total optimizer steps")
    p.add_argument("--seed", type=int, help="seed for every random source")
    p.add_argument("--device", choices=["cpu", "cuda"], help="training device (default cpu)")
    p.add_argument("--threads", type=int, help="torch/OMP threads (default 2)")
    p.add_argument("--data", metavar="PATH",
                   help="the training data, a file or folder, given to the trainer's `data` option (the built-in "
                   "GPT trainer: a text file or a folder of .txt/.md files instead of its built-in corpus)")
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
    p.add_argument("--rdzv-timeout", type=int, default=600, metavar="SECONDS",
                   help="how long to wait for every node to join (default 600)")
    p.set_defaults(func=cmd_run)


def _preset_hint(trainer_class: type, trainer: str | None) -> str:
    """How to name one of *this* trainer's presets, or that it has none."""
    from repro.running.registry import trainer_presets

    presets = sorted(trainer_presets(trainer_class))
    if not presets:
        return "this trainer has no presets; set its fields with --set KEY=VALUE"
    flag = f"--trainer {trainer} " if trainer else ""
    return f"name one to choose, e.g. `repro run {flag}{presets[0]}` (its presets: {', '.join(presets)})"


def cmd_run(args: argparse.Namespace) -> int:
    """Train and record."""
    from repro.rendering.console import say
    from repro.running.config import resolve_run
    from repro.text import plural

    if args.data is not None:  # a typo fails first: no output, no run folder, no marker
        data = Path(args.data).expanduser()
        if not data.exists():
            raise UsageError(f"--data {args.data}: no such file or folder (looked for {data.resolve()})")
    if args.plot:
        from repro.rendering.plotting import check_png_target

        check_png_target("--plot", Path(args.plot))  # before training, not after it
    settings = {"seed": args.seed, "device": args.device, "threads": args.threads,
                "nproc": args.nproc, "nnodes": args.nnodes}
    if args.train_command is not None:
        return _run_command(args, settings)
    resolved = resolve_run(
        args.preset, args.trainer,
        settings_overrides=settings,
        config_overrides={"steps": args.steps, "data": args.data},
        assignments=args.assignments,
    )
    max_files = getattr(resolved.config, "max_files", None)
    if args.data and max_files is not None:  # a preset's file limit applies to --data too: say so
        say(f"note: {resolved.preset or 'this config'} reads only the first {plural(max_files, 'file')} of "
            f"{args.data} (max_files); add --set max_files=null to read them all", err=True)
    if args.preset is None:  # say what runs, rather than silently training a default
        say(f"no preset named: training {resolved.trainer.name}'s default config "
            f"({plural(resolved.config.steps, 'step')}); {_preset_hint(resolved.trainer_class, args.trainer)}",
            err=True)
    return _execute(args, resolved, f"{resolved.trainer.name}/{resolved.preset or 'default'}")


def _run_command(args: argparse.Namespace, settings: dict[str, Any]) -> int:
    """``repro run [options] -- CMD``: record the user's own training command."""
    from repro.running.command import resolve_command

    given = [name for name, value in (("a preset", args.preset), ("--trainer", args.trainer),
                                      ("--steps", args.steps), ("--data", args.data)) if value]
    if given:
        raise UsageError(f"repro run -- CMD runs your own command; {', '.join(given)} do not apply to it "
                         "(pass the script's options after --, declare data with repro.record.data)")
    resolved = resolve_command(args.train_command, settings, args.assignments)
    return _execute(args, resolved, " ".join(args.train_command)[:60])


def _execute(args: argparse.Namespace, resolved: Any, title: str) -> int:
    """Train ``resolved``, print the summary (and the plot) of the manifest it wrote."""
    from repro.rendering.console import TrainingProgress, out_console, run_summary, say
    from repro.running.run import execute_run

    with TrainingProgress(title) as progress:
        outcome = execute_run(resolved, Path(args.out), Path(args.key) if args.key else None,
                              resume=args.resume, on_event=progress, node_rank=args.node_rank,
                              rdzv_endpoint=args.rdzv_endpoint, rdzv_timeout=args.rdzv_timeout)
    if outcome.key_created:
        say(f"created signing key {outcome.key.path} (public: {outcome.key.path}.pub)", err=True)
    if outcome.manifest is None:
        say(f"node {args.node_rank}: its ranks finished; node rank 0 writes the manifest")
        return ExitCode.OK
    out_console.print(run_summary(outcome.manifest, str(args.out)))
    if args.plot:
        from repro.rendering.plotting import write_run_plot

        write_run_plot(outcome.manifest, Path(args.plot))
        say(f"wrote {args.plot}", err=True)
    return ExitCode.OK
