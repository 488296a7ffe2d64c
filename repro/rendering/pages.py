"""Self-contained HTML pages (``--html FILE``): one file, every style, script and chart inline.

Pages are rendered from the Jinja2 templates in ``repro/rendering/templates`` with autoescaping always on:
a manifest is untrusted input, so a tensor, package or file name containing markup shows as text.
Charts are inline SVG (:mod:`repro.rendering.charts`); the only script is a few lines for hover read-outs and
sortable tables, so a page opens offline, from an archive or a CI artifact, with no network.

This module renders ``repro show``'s page; the audit and gate pages (``repro.audits.formats.html``)
use the same environment and templates.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro import __version__
from repro.files import atomic
from repro.records.hashing import short_digest
from repro.records.manifest import RunManifest
from repro.rendering.charts import HALF, Chart, Series, line_chart

BLUE, ORANGE, GREEN, RED, GREY, PURPLE = "#1565c0", "#e65100", "#2e7d32", "#c62828", "#616161", "#6a1b9a"


def number(value: float | None, digits: int = 6) -> str:
    """A float for people: ``digits`` significant digits, "-" for none."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def size(n: int | None) -> str:
    """Bytes in binary units."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def hover_data(chart: Chart) -> list[dict[str, Any]]:
    """What the page's script reads for hover read-outs: per series, (pixel x, pixel y, step, value)."""
    return [{"label": s.label, "colour": s.colour,
             "points": [[x, y, step, float(f"{v:.7g}")] for x, y, step, v in s.hover]}
            for s in chart.series if s.hover]


@functools.cache
def environment() -> Any:
    """The Jinja2 environment: templates from the package, autoescaping on, undefined is an error."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("repro.rendering", "templates"),
        autoescape=True,  # every template, whatever its name: manifests are untrusted input
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.do"],
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(short=short_digest, num=number, size=size)
    env.globals.update(tool_version=__version__, hover_data=hover_data)
    return env


def render(template: str, **context: Any) -> str:
    """Render ``template`` (a file in ``repro/rendering/templates``) with ``context``."""
    return str(environment().get_template(template).render(**context))


def write_html(path: Path, text: str) -> None:
    """Write a page atomically (errors are :class:`~repro.errors.OutputError`)."""
    atomic.write_text(Path(path), text)


@dataclass(frozen=True)
class Banner:
    """The verdict at the top of a page: a word or two, its colour class, and one sentence."""

    headline: str
    tone: str  # "good", "warn", "bad", "unknown"
    summary: str
    details: list[tuple[str, str]] = field(default_factory=list)


def run_charts(manifest: RunManifest) -> list[Chart]:
    """The recorded run's curves: training and validation loss, learning rate, gradient norm."""
    losses, lrs, grads = [], [], []
    for s in manifest.steps:  # one pass: the step records may be many
        losses.append((s.step, s.loss))
        lrs.append((s.step, s.lr))
        grads.append((s.step, s.grad_norm))
    validation = [(v.step, v.loss) for v in manifest.validation]
    return [
        line_chart("loss", [Series("training loss", losses, BLUE),
                            Series("validation loss", validation, ORANGE, "dots")], y_label="loss"),
        line_chart("learning rate", [Series("learning rate", lrs, PURPLE)], y_label="lr", width=HALF),
        line_chart("gradient norm (before clipping)", [Series("gradient norm", grads, GREY)], y_label="‖g‖",
                   width=HALF),
    ]


def _config_rows(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in config.items():
        if isinstance(value, dict):
            rows += _config_rows(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", str(value)))
    return rows


def run_facts(manifest: RunManifest) -> dict[str, list[tuple[str, str]]]:
    """What a reader of someone else's run wants to know, grouped, as (label, value) rows."""
    m, env, t = manifest, manifest.environment, manifest.timing
    steps = len(t.step_seconds)
    code = m.code
    facts = {
        "run": [
            ("trainer", f"{m.run.trainer.name} {m.run.trainer.version} ({m.run.trainer.entry})"),
            ("preset", m.run.preset or "-"),
            ("seed / device / threads", f"{m.run.settings.seed} / {m.run.settings.device} / {m.run.settings.threads}"),
            ("checkpoint / eval every", f"{m.run.settings.checkpoint_every} / {m.run.settings.eval_every} steps"),
            ("recorded with", f"{m.run.tool} {m.run.tool_version}"),
        ],
        "config": _config_rows(m.run.config),
        "data": [
            ("source", f"{m.data.source.kind}: {m.data.source.name}"
                       + (f" {m.data.source.version}" if m.data.source.version else "")),
            ("files", f"{len(m.data.files)} ({size(sum(f.size for f in m.data.files))})"),
            ("corpus sha256", m.data.corpus_sha256),
            ("tokens (train + val)", f"{m.data.train_tokens:,} + {m.data.val_tokens:,}"),
            ("tokenizer", f"{m.data.tokenizer.path} ({m.data.tokenizer.sha256})" if m.data.tokenizer else "-"),
        ],
        "code": [("state", f"unknown: {code.reason}")] if not code.available else [
            ("commit", code.commit or "-"),
            ("branch", code.branch or "-"),
            ("working tree", "DIRTY: uncommitted changes" if code.dirty else "clean"),
            ("untracked files", str(len(code.untracked))),
            ("remotes", ", ".join(f"{k}: {v}" for k, v in code.remotes.items()) or "-"),
        ],
        "environment": [
            ("python", f"{env.python} ({env.python_implementation})"),
            ("os / machine", f"{env.os}, {env.kernel}, {env.machine}"),
            ("cpu", f"{env.cpu_model or '-'} ({env.cpu_count or '?'} cores, kernels {env.cpu_capability or '-'})"),
            ("torch", f"{env.torch_version}, {env.torch_threads} threads ({env.torch_interop_threads} inter-op)"),
            ("cuda / cudnn", f"{env.cuda_version or '-'} / {env.cudnn_version or '-'}"),
            ("devices", ", ".join(env.devices) or "-"),
            ("determinism", ", ".join(f"{k}={v}" for k, v in env.determinism.items()) or "-"),
            ("packages recorded", str(len(env.distributions))),
        ],
        "timing": [
            ("started / finished", f"{t.started_at} / {t.finished_at}"),
            ("wall", f"{t.wall_seconds:.1f} s (set-up {t.setup_seconds:.1f} s, training {t.train_seconds:.1f} s, "
                     f"repro overhead {t.overhead_seconds:.1f} s)"),
            ("per step", f"{t.train_seconds / max(steps, 1):.3f} s over {steps} steps"),
            ("resumed from step", str(t.resumed_from_step) if t.resumed_from_step is not None else "-"),
        ],
    }
    return facts


@dataclass(frozen=True)
class Verification:
    """What verifying the manifest found, for the page: a banner and the artifact checks."""

    banner: Banner
    checks: Sequence[tuple[str, str, str]] = ()  # (kind, path, status)


def show_page(manifest: RunManifest | None, path: str, verification: Verification, *, title: str | None = None) -> str:
    """``repro show --html``: the verdict of verifying it, then the run's facts and curves.

    ``manifest`` is None when the file is not a readable manifest (the page then says only why;
    other commands use this for a page that says why they stopped, with their own ``title``).
    """
    context: dict[str, Any] = {"title": title or f"repro show {path}", "path": path, "banner": verification.banner,
                               "checks": list(verification.checks), "manifest": manifest}
    if manifest is not None:
        final_val = manifest.validation[-1] if manifest.validation else None
        last = None
        count = 0
        for record in manifest.steps:
            last, count = record, count + 1
        context.update(
            facts=run_facts(manifest), charts=run_charts(manifest), steps=count,
            final_loss=last.loss if last else None, final_val=final_val,
            checkpoints=manifest.checkpoints, artifacts=manifest.artifacts,
            distributions=sorted(manifest.environment.distributions.items()),
            env_vars=sorted(manifest.environment.env_vars.items()),
        )
    return render("show.html.j2", **context)
