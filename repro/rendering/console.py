"""What a person sees: a progress bar while training, a summary table when a run is done, and the
one safe way to print.

All rich output goes to stderr except tables a user may want to pipe, so machine-readable
outputs (``--json``) stay clean. Nothing printed is ever read as rich markup or emoji codes, and
every control character in text that reaches a console is shown escaped (:func:`repro.text.escape_text`):
:class:`SafeConsole` does it for every plain string it renders (table cells, titles, prints), and
:func:`say` / :func:`safe` build the lines and cells whose text comes from a manifest, a report,
a file name or an error message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.style import Style
from rich.table import Table
from rich.text import Text

from repro.records.manifest import RunManifest
from repro.text import escape_text, plural

__all__ = ["ProgressEvents", "SafeConsole", "TrainingProgress", "err_console", "line", "loss_curve_lines",
           "out_console", "plural", "run_summary", "safe", "say", "sparkline"]


class SafeConsole(Console):
    """A rich console that never parses markup or emoji codes and shows control characters escaped.

    Every plain string rich turns into text goes through :meth:`render_str` (a printed string, a
    table cell, a table title), so a ``[/x]`` in a path cannot crash the print, ``[draft]`` is not
    swallowed as a style, and an escape sequence cannot erase a line or set the window title. Text
    objects are printed as built: build them with :func:`safe` or :func:`say` from outside text.
    Our own line structure (``\n`` in a string we wrote) is kept."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("emoji", False)
        kwargs.setdefault("highlight", False)
        super().__init__(*args, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs["markup"] = False
        kwargs["emoji"] = False
        return super().render_str(escape_text(text, keep_newlines=True), **kwargs)


err_console = SafeConsole(stderr=True)
out_console = SafeConsole()

Piece = str | Text | tuple[str, str | Style]


def safe(text: object, style: str | Style = "") -> Text:
    """``text`` (from a manifest, a report, a file name, an error) as a one-line rich Text: control
    characters and newlines escaped, never read as markup. Use it for table cells and panel bodies."""
    return Text(escape_text(text), style=style)


def line(*pieces: Piece) -> Text:
    """One line from pieces: a ``str`` is outside text (escaped, newlines too), a ``(text, style)``
    tuple is our own styled label, a ``Text`` is already safe (made by :func:`safe` or :func:`line`)."""
    out = Text()
    for piece in pieces:
        if isinstance(piece, Text):
            out.append_text(piece)
        elif isinstance(piece, tuple):
            out.append(escape_text(piece[0], keep_newlines=True), style=piece[1])
        else:
            out.append(escape_text(piece))
    return out


def say(*pieces: Piece, console: Console | None = None, err: bool = False) -> None:
    """Print one line built by :func:`line` to ``console`` (default: stdout, or stderr with ``err``),
    soft-wrapped (a long path is never cut) and never highlighted. The one way commands print a line."""
    target = console if console is not None else (err_console if err else out_console)
    target.print(line(*pieces), soft_wrap=True, highlight=False, markup=False, emoji=False)


class TrainingProgress:
    """Progress fed by the launcher's events (phase, start, step, eval) and the audit's (phase).

    On a terminal: a rich bar whose description names the phase (``audit run.json: building model``,
    ``...: comparing``). Elsewhere (a CI log, ``> file``), where a bar would print nothing until the
    end: one plain line per phase and one every ``every_fraction`` of the steps or ``every_seconds``,
    whichever comes first, so a long rerun is seen advancing."""

    def __init__(self, title: str, console: Console = err_console, *, every_fraction: float = 0.1,
                 every_seconds: float = 30.0, plain: bool | None = None) -> None:
        self.console = console
        self.title = escape_text(title)
        self.plain = (not console.is_terminal) if plain is None else plain
        self.every_fraction, self.every_seconds = every_fraction, every_seconds
        self.total: int | None = None
        self.last_step: int | None = None
        self.printed_step: int | None = None
        self.last_line = time.monotonic()
        self.loss, self.val = "-", "-"
        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}", markup=False),
            TextColumn("val {task.fields[val]}", markup=False),
            TextColumn("{task.fields[rate]}", markup=False),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(self.title, total=None, loss="-", val="-", rate="")
        self.entered = False

    def __enter__(self) -> TrainingProgress:
        if not self.plain:
            self.progress.__enter__()
            self.entered = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.entered:
            self.progress.__exit__(exc_type, exc, tb)
            self.entered = False
        elif self.plain and self.last_step is not None and exc_type is None:
            self._line(self.last_step, force=True)

    def _line(self, step: int, force: bool = False, rate: str = "") -> None:
        now = time.monotonic()
        if step == self.printed_step:
            return
        if not force:
            stride = max(int(self.total * self.every_fraction), 1) if self.total else 0
            if not ((stride and step % stride == 0) or now - self.last_line >= self.every_seconds):
                return
        self.last_line, self.printed_step = now, step
        of = f"/{self.total}" if self.total else ""
        share = f" ({step / self.total:.0%})" if self.total else ""
        say(f"{self.title}: step {step}{of}{share}, loss {self.loss}, val {self.val}{rate}", console=self.console)

    def phase(self, name: str) -> None:
        """Name the phase the work is in (shown in the bar, or as a line in a log)."""
        if self.plain:
            say(f"{self.title}: {name}", console=self.console)
        else:
            self.progress.update(self.task, description=f"{self.title}: {escape_text(name)}")

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "phase":
            self.phase(str(event.get("phase")))
        elif kind == "start":
            # A recorded command's step count is the script's business: no total then (an open bar).
            stop = event.get("stop")
            self.total = int(stop) if stop is not None else 0
            if self.plain:
                upto = f"-{self.total}" if self.total else " onwards"
                say(f"{self.title}: training steps {int(event['start']) + 1}{upto}", console=self.console)
            self.progress.update(
                self.task, description=self.title, total=self.total or None, completed=event["start"]
            )
        elif kind == "step":
            self.loss = f"{event['loss']:.4f}"
            rate = f"{event['seconds']:.2f} s/step"
            self.progress.update(self.task, completed=event["step"], loss=self.loss, rate=rate)
            self.last_step = int(event["step"])
            if self.plain:
                self._line(self.last_step, rate=f", {rate}")
        elif kind == "eval":
            self.val = f"{event['loss']:.4f}"
            self.progress.update(self.task, val=self.val)


class ProgressEvents:
    """An event handler for a command that reruns one or more trainings (audit --vary, gate): notices
    print as ``label: message`` lines, each training gets its own :class:`TrainingProgress` (opened
    at its first event, closed at the next notice); call :meth:`close` when done."""

    def __init__(self, title: str, label: str, console: Console = err_console) -> None:
        self.title, self.label, self.console = title, label, console
        self.progress: TrainingProgress | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("event") == "notice":
            self.close()  # one bar per rerun
            say((f"{self.label}:", "bold"), " ", str(event.get("message")), console=self.console)
            return
        if self.progress is None:
            self.progress = TrainingProgress(self.title, self.console)
            self.progress.__enter__()
        self.progress(event)

    def close(self) -> None:
        """End the current bar, if any."""
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None


def run_summary(manifest: RunManifest, path: str, title: str | None = None) -> Group:
    """A table summarising a finished run under its title (``title`` defaults to "run recorded: PATH"),
    the title a line of its own so that a long path wraps at the screen's width, not the table's."""
    m = manifest
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("trainer", safe(f"{m.run.trainer.name} {m.run.trainer.version} (preset {m.run.preset or '-'})"))
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
    table.add_row("device / threads", safe(f"{m.run.settings.device} / {m.environment.torch_threads}"))
    if m.distributed is not None:
        d = m.distributed
        table.add_row("processes", safe(f"{d.world_size} ({plural(d.nnodes, 'node')} x {d.nproc_per_node}, "
                                        f"{d.backend}, {plural(d.threads_per_process, 'thread')} each; replicas "
                                        f"identical at {plural(len(d.replica_checks), 'checkpoint')})"))
    table.add_row("torch", safe(m.environment.torch_version))
    code = m.code
    if code.available and code.commit is not None:
        code_text = f"{code.commit[:12]}{' (dirty)' if code.dirty else ''}"
    else:
        code_text = f"unknown: {code.reason}"
    table.add_row("code", safe(code_text))
    table.add_row("data", safe(f"{plural(len(m.data.files), 'file')}, corpus {m.data.corpus_sha256[:12]}, "
                          f"{m.data.train_tokens}+{m.data.val_tokens} tokens"))
    table.add_row("checkpoints", ", ".join(str(c.step) for c in m.checkpoints) or "none")
    table.add_row("signed by", safe(m.signature.key_id))
    return Group(safe(title or f"run recorded: {path}", style="italic"), table)


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
