"""PNG plots with matplotlib's Agg backend (no display): a finished run's curves (``repro run --plot``).

Shared by the core and the audit's ``--plot`` (:mod:`repro.audits.formats.plot`), which draws on
the same figure set-up and writes through :func:`save_png`. matplotlib is imported only when a plot
is drawn.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from repro.errors import OutputError, UsageError
from repro.files import atomic
from repro.records.manifest import RunManifest

RECORDED, VALIDATION, LR, GRAD = "#1565c0", "#e65100", "#6a1b9a", "#616161"


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg backend, laid out with constrained layout."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def save_png(fig: Any, path: Path) -> None:
    """Render ``fig`` to ``path`` as PNG, atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic.write_bytes(Path(path), buffer.getvalue())


def check_png_target(flag: str, path: Path) -> None:
    """Fail before any work if ``path`` is not a writable ``.png`` file path."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"{flag} {path}: the plot is a PNG; name a .png file")
    folder = path.resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{flag} {path}: cannot create {folder} ({exc.strerror}); choose another path") from exc
    if not os.access(folder, os.W_OK) or path.is_dir():
        raise OutputError(f"{flag} {path}: cannot write there; choose a writable file path")


def run_figure(manifest: RunManifest) -> Any:
    """Training and validation loss (top), learning rate and gradient norm (bottom)."""
    steps, losses, lrs, grads = [], [], [], []
    for s in manifest.steps:
        steps.append(s.step)
        losses.append(s.loss)
        lrs.append(s.lr)
        grads.append(s.grad_norm)
    fig = new_figure(9, 6.5)
    grid = fig.add_gridspec(2, 2, height_ratios=[3, 2])
    top, left, right = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    top.plot(steps, losses, color=RECORDED, lw=1.4, label="training loss")
    val = [(v.step, v.loss) for v in manifest.validation]
    if val:
        top.scatter(*zip(*val, strict=True), marker="o", s=30, facecolors="none", edgecolors=VALIDATION,
                    label="validation loss", zorder=3)
    top.set_ylabel("loss")
    top.set_xlabel("step")
    top.grid(alpha=0.3)
    top.legend(loc="upper right", fontsize=8)
    run = manifest.run
    top.set_title(f"{run.trainer.name}/{run.preset or '-'}: {len(steps)} steps on {run.settings.device}, "
                  f"seed {run.settings.seed}", fontsize=10)
    left.plot(steps, lrs, color=LR, lw=1.2)
    left.set_title("learning rate", fontsize=9)
    left.set_xlabel("step")
    left.grid(alpha=0.3)
    right.plot(steps, grads, color=GRAD, lw=1.0)
    right.set_title("gradient norm (before clipping)", fontsize=9)
    right.set_xlabel("step")
    right.grid(alpha=0.3)
    return fig


def write_run_plot(manifest: RunManifest, path: Path) -> None:
    """Draw a run's curves into ``path`` (PNG)."""
    save_png(run_figure(manifest), path)
