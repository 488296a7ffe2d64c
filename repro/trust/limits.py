"""Bounds on the work a stranger's manifest can ask of this machine: one table, checked once.

A manifest is input: its ``settings.nproc = 1024, nnodes = 4096`` would have an audit start
4,194,304 processes. Every count a manifest controls is therefore bounded here, checked after the
manifest is verified and before anything starts (no process, no rerun), in ``repro audit``,
``repro audit --vary`` and ``repro gate`` alike. A count over its bound is a
:class:`~repro.errors.UsageError` (exit 2) naming the flag (or the gate policy's ``limits`` field)
that allows more. The training steps an audit replays are bounded by ``--max-steps``
(:mod:`repro.audits.options`), checked with the audit's plan.

| bound | what it counts | flag |
| --- | --- | --- |
| ``max_processes`` | processes a rerun starts here (the recorded world size, or ``--nproc``) | ``--max-processes`` |
| ``max_checkpoints`` | checkpoints the manifest records | ``--max-checkpoints`` |
| ``max_tensors`` | tensors in one recorded checkpoint | ``--max-tensors`` |
| ``max_data_files`` | data files the manifest records | ``--max-data-files`` |
| ``max_step_rows`` | rows of the step table (recorded steps) | ``--max-step-rows`` |
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from pydantic import Field

from repro.errors import UsageError
from repro.records.base import FrozenRecord

if TYPE_CHECKING:
    from repro.records.manifest import RunManifest


class Limits(FrozenRecord):
    """The bounds (defaults fit any run this project documents, with a wide margin)."""

    max_processes: int = Field(64, ge=1, description="Most processes a rerun may start on this machine.")
    max_checkpoints: int = Field(10_000, ge=1, description="Most checkpoints a manifest may record.")
    max_tensors: int = Field(100_000, ge=1, description="Most tensors one recorded checkpoint may hold.")
    max_data_files: int = Field(100_000, ge=1, description="Most data files a manifest may record.")
    max_step_rows: int = Field(10_000_000, ge=1, description="Most steps a manifest's step table may record.")


def flag(name: str) -> str:
    """The command-line flag of a bound (``max_processes`` -> ``--max-processes``)."""
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--max-*`` flag per bound (default: the table's value)."""
    for name, info in Limits.model_fields.items():
        parser.add_argument(flag(name), dest=name, type=int, default=None, metavar="N",
                            help=f"{info.description} (default {info.default:,})")


def from_arguments(args: argparse.Namespace) -> Limits:
    """The bounds the user gave on the command line (unset flags keep their defaults)."""
    given: dict[str, Any] = {name: getattr(args, name, None) for name in Limits.model_fields}
    try:
        return Limits(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise UsageError(f"a --max-* bound must be a positive integer ({exc.__class__.__name__})") from None


def counts(manifest: RunManifest, processes: int) -> dict[str, int]:
    """What ``manifest`` (and a rerun of ``processes`` processes) asks for, by bound."""
    return {
        "max_processes": processes,
        "max_checkpoints": len(manifest.checkpoints),
        "max_tensors": max((len(c.tensors) for c in manifest.checkpoints), default=0),
        "max_data_files": len(manifest.data.files),
        "max_step_rows": manifest.step_table.rows if manifest.step_table is not None else 0,
    }


def check(manifest: RunManifest, limits: Limits, *, processes: int, where: str = "flag") -> None:
    """Refuse (exit 2) a manifest that asks for more than ``limits`` allows, naming how to allow it.

    ``processes`` is the number of processes the rerun would start here; ``where`` is ``"flag"``
    (audit, --vary) or ``"policy"`` (the gate, whose policy's ``limits`` field allows more).
    """
    for name, wanted in counts(manifest, processes).items():
        bound = getattr(limits, name)
        if wanted > bound:
            allow = f"pass {flag(name)} {wanted}" if where == "flag" else f"set limits.{name}: {wanted} in the policy"
            what = name.removeprefix("max_").replace("_", " ")
            raise UsageError(
                f"the manifest asks for {wanted:,} {what}, more than the {bound:,} repro allows by default "
                f"({flag(name)}); {allow} if you expect that much work from this manifest"
            )
