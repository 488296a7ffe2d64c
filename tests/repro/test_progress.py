"""Progress a person can follow: phases named, and plain lines in a log (stdout not a terminal)."""

from __future__ import annotations

import io

from repro.rendering.console import ProgressEvents, SafeConsole, TrainingProgress


def _feed(progress: TrainingProgress, steps: int) -> None:
    progress({"event": "phase", "phase": "building model"})
    progress({"event": "start", "start": 0, "stop": steps})
    for step in range(1, steps + 1):
        progress({"event": "step", "step": step, "loss": 5.0 - step / steps, "seconds": 0.5})
        if step == steps // 2:
            progress({"event": "eval", "loss": 4.25})
    progress({"event": "phase", "phase": "comparing steps, checkpoints and environment"})


def test_off_a_terminal_a_line_every_tenth_of_the_steps_and_per_phase() -> None:
    console = SafeConsole(file=io.StringIO(), width=80)
    assert not console.is_terminal
    with TrainingProgress("audit run[/x].json\x1b]0;t\x07", console) as progress:
        _feed(progress, 200)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    title = "audit run[/x].json\\x1b]0;t\\a"
    assert lines[0] == f"{title}: building model"
    assert lines[1] == f"{title}: training steps 1-200"
    steps = [line for line in lines if ": step " in line]
    assert [line.split(": step ")[1].split("/")[0] for line in steps] == [str(s) for s in range(20, 201, 20)]
    assert steps[-1] == f"{title}: step 200/200 (100%), loss 4.0000, val 4.2500, 0.50 s/step"
    assert lines[-1] == f"{title}: comparing steps, checkpoints and environment"


def test_off_a_terminal_a_slow_run_prints_every_30_seconds(monkeypatch) -> None:
    clock = iter(range(0, 10_000, 40))  # each step takes 40 s
    monkeypatch.setattr("repro.rendering.console.time.monotonic", lambda: float(next(clock)))
    console = SafeConsole(file=io.StringIO(), width=80)
    progress = TrainingProgress("run", console, every_fraction=1.0)
    progress({"event": "start", "start": 0, "stop": 1000})
    for step in range(1, 4):
        progress({"event": "step", "step": step, "loss": 1.0, "seconds": 40.0})
    steps = [line for line in console.file.getvalue().splitlines() if ": step " in line]  # type: ignore[attr-defined]
    assert len(steps) == 3


def test_on_a_terminal_the_bar_names_the_phase() -> None:
    console = SafeConsole(file=io.StringIO(), width=100, force_terminal=True)
    events = ProgressEvents("gate rerun", "gate", console)
    events({"event": "notice", "message": "auditing runs/a.json"})
    events({"event": "phase", "phase": "preparing data"})
    assert events.progress is not None
    description = events.progress.progress.tasks[0].description
    assert description == "gate rerun: preparing data"
    events.close()
    assert "auditing runs/a.json" in console.file.getvalue()  # type: ignore[attr-defined]
