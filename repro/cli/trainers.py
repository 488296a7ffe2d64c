"""``repro trainers``: list the installed trainer plugins and their presets."""

from __future__ import annotations

import argparse

from repro import errors
from repro.cli.parsing import Subparsers
from repro.errors import ExitCode


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("trainers", help="list installed trainer plugins")
    p.set_defaults(func=cmd_trainers)


def cmd_trainers(args: argparse.Namespace) -> int:
    """List trainers and their presets."""
    from rich.table import Table
    from rich.text import Text

    from repro.rendering.console import out_console, safe, say
    from repro.running.registry import import_reference, installed_trainers, trainer_presets

    table = Table(title="installed trainers (entry-point group repro.trainers)")
    for col in ("name", "distribution", "version", "entry point", "presets"):
        table.add_column(col)
    problems: list[str] = []
    for t in installed_trainers().values():
        try:
            presets = safe(", ".join(trainer_presets(import_reference(t.entry))) or "-")
        except errors.OptionalTrainerMissing:
            continue  # a built-in trainer whose extra is not installed: not this user's concern here
        except errors.ReproError as exc:
            presets, problem = Text("unavailable", "red"), str(exc)
            problems.append(f"{t.name}: {problem}")
        except Exception as exc:  # noqa: BLE001 - a broken third-party trainer must not hide the others
            presets = Text("unavailable", "red")
            problems.append(f"{t.name}: presets() failed: {type(exc).__name__}: {exc}")
        table.add_row(safe(t.name), safe(t.distribution or "-"), safe(t.version or "-"), safe(t.entry), presets)
    out_console.print(table)
    for line in problems:
        say(line)
    return ExitCode.OK
