"""What a person sees: a progress bar while training, a summary table when a run is done.

All rich output goes to stderr except tables a user may want to pipe, so machine-readable
outputs (``--json``) stay clean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from repro.records.manifest import RunManifest

err_console = Console(stderr=True)
out_console = Console()


class TrainingProgress:
    """A rich progress bar fed by the launcher's events (phase, start, step, eval, checkpoint)."""

    def __init__(self, title: str, console: Console = err_console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(title, total=None, loss="-", val="-", rate="")
        self.title = title

    def __enter__(self) -> TrainingProgress:
        self.progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "phase":
            self.progress.update(self.task, description=f"{self.title}: {event['phase']}")
        elif kind == "start":
            self.progress.update(
                self.task, description=self.title, total=event["stop"], completed=event["start"]
            )
        elif kind == "step":
            self.progress.update(
                self.task, completed=event["step"], loss=f"{event['loss']:.4f}",
                rate=f"{event['seconds']:.2f} s/step",
            )
        elif kind == "eval":
            self.progress.update(self.task, val=f"{event['loss']:.4f}")



def plural(count: int, noun: str) -> str:
    """``"1 file"``, ``"2 files"``: a count with its noun, as a person writes it."""
    return f"{count} {noun}" + ("" if count == 1 else "s")

def run_summary(manifest: RunManifest, path: str, title: str | None = None) -> Table:
    """A table summarising a finished run (``title`` defaults to "run recorded: PATH")."""
    m = manifest
    table = Table(title=title or f"run recorded: {path}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("trainer", f"{m.run.trainer.name} {m.run.trainer.version} (preset {m.run.preset or '-'})")
    count, last = 0, None
    for record in m.steps:  # iterate: the step records of a long run may not be an in-memory list
        count, last = count + 1, record
    table.add_row("steps", str(count))
    if last is not None:
        table.add_row("final train loss", f"{last.loss:.4f}")
    if m.validation:
        table.add_row("final val loss", f"{m.validation[-1].loss:.4f} (step {m.validation[-1].step})")
    t = m.timing
    per_step = t.train_seconds / max(len(t.step_seconds), 1)
    table.add_row("wall time", f"{t.wall_seconds:.1f} s ({per_step:.3f} s/step, "
                               f"repro overhead {t.overhead_seconds:.1f} s)")
    table.add_row("device / threads", f"{m.run.settings.device} / {m.environment.torch_threads}")
    if m.distributed is not None:
        d = m.distributed
        nodes = f"{d.nnodes} node{'s' if d.nnodes != 1 else ''}"
        table.add_row("processes", f"{d.world_size} ({nodes} x {d.nproc_per_node}, {d.backend}, "
                                   f"{d.threads_per_process} thread(s) each; replicas identical at "
                                   f"{len(d.replica_checks)} checkpoint(s))")
    table.add_row("torch", m.environment.torch_version)
    code = m.code
    if code.available and code.commit is not None:
        code_text = f"{code.commit[:12]}{' (dirty)' if code.dirty else ''}"
    else:
        code_text = f"unknown: {code.reason}"
    table.add_row("code", code_text)
    table.add_row("data", f"{plural(len(m.data.files), 'file')}, corpus {m.data.corpus_sha256[:12]}, "
                          f"{m.data.train_tokens}+{m.data.val_tokens} tokens")
    table.add_row("checkpoints", ", ".join(str(c.step) for c in m.checkpoints) or "none")
    table.add_row("signed by", m.signature.key_id)
    return table


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 60) -> str:
    """``values`` as one line of block characters, averaged into at most ``width`` buckets."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    buckets = min(width, len(values))
    means = []
    for b in range(buckets):
        chunk = [v for v in values[b * len(values) // buckets:(b + 1) * len(values) // buckets] if math.isfinite(v)]
        means.append(sum(chunk) / len(chunk) if chunk else math.nan)
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    return "".join(" " if not math.isfinite(v) else SPARK[min(int((v - low) / span * len(SPARK)), len(SPARK) - 1)]
                   for v in means)


def loss_curve_lines(manifest: RunManifest, width: int = 60) -> list[str]:
    """The run's loss curves as sparklines with their first, lowest and last values."""
    train, first_step, last_step = [], None, None
    for record in manifest.steps:
        train.append(record.loss)
        first_step = record.step if first_step is None else first_step
        last_step = record.step
    lines = []
    if train:
        lines.append(f"train loss {train[0]:.4f} {sparkline(train, width)} {train[-1]:.4f}  "
                     f"(steps {first_step}-{last_step}, lowest {min(train):.4f})")
    val = [v.loss for v in manifest.validation]
    if len(val) > 1:
        lines.append(f"val loss   {val[0]:.4f} {sparkline(val, width)} {val[-1]:.4f}  "
                     f"({len(val)} evaluations, lowest {min(val):.4f})")
    return lines
