"""What a person sees: a progress bar while training, a summary table when a run is done.

All rich output goes to stderr except tables a user may want to pipe, so machine-readable
outputs (``--json``) stay clean.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from repro.manifest import RunManifest

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

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

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


def run_summary(manifest: RunManifest, path: str) -> Table:
    """A table summarising a finished run."""
    m = manifest
    table = Table(title=f"run recorded: {path}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("trainer", f"{m.run.trainer.name} {m.run.trainer.version} (preset {m.run.preset or '-'})")
    table.add_row("steps", str(len(m.steps)))
    if m.steps:
        table.add_row("final train loss", f"{m.steps[-1].loss:.4f}")
    if m.validation:
        table.add_row("final val loss", f"{m.validation[-1].loss:.4f} (step {m.validation[-1].step})")
    t = m.timing
    per_step = t.train_seconds / max(len(t.step_seconds), 1)
    table.add_row("wall time", f"{t.wall_seconds:.1f} s ({per_step:.3f} s/step, repro overhead {t.overhead_seconds:.1f} s)")
    table.add_row("device / threads", f"{m.run.settings.device} / {m.environment.torch_threads}")
    if m.distributed is not None:
        d = m.distributed
        nodes = f"{d.nnodes} node{'s' if d.nnodes != 1 else ''}"
        table.add_row("processes", f"{d.world_size} ({nodes} x {d.nproc_per_node}, {d.backend}, "
                                   f"{d.threads_per_process} thread(s) each; replicas identical at "
                                   f"{len(d.replica_checks)} checkpoint(s))")
    table.add_row("torch", m.environment.torch_version)
    code = m.code
    table.add_row("code", f"{code.commit[:12]}{' (dirty)' if code.dirty else ''}" if code.available else f"unknown: {code.reason}")
    table.add_row("data", f"{len(m.data.files)} files, corpus {m.data.corpus_sha256[:12]}, {m.data.train_tokens}+{m.data.val_tokens} tokens")
    table.add_row("checkpoints", ", ".join(str(c.step) for c in m.checkpoints) or "none")
    table.add_row("signed by", m.signature.key_id)
    return table
