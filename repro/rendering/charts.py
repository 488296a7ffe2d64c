"""Line charts as data for inline SVG: the HTML reports draw them without any script or network.

A :class:`Chart` holds only numbers and fixed words in pixel space; the Jinja template
(``templates/macros.html.j2``) turns it into ``<svg>`` elements with autoescaping, so nothing a
manifest contains is ever pasted into markup unescaped. Curves are downsampled to at most
:data:`MAX_POINTS` points each (keeping every bucket's extremes, so spikes survive), so a
million-step run's page stays small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_POINTS = 2000
WIDTH, HEIGHT, HALF = 900, 260, 560
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 14, 38

Point = tuple[float, float]


@dataclass(frozen=True)
class Series:
    """One curve or set of markers in data coordinates."""

    label: str
    points: Sequence[Point]
    colour: str
    kind: str = "line"  # "line", "dashed", "marked" (line and dots), "dots", "crosses", "ticks" (marks on the floor)


@dataclass(frozen=True)
class DrawnSeries:
    """A series in pixel space: an SVG path for lines, coordinates for markers, data for hover."""

    label: str
    colour: str
    kind: str
    path: str
    markers: list[Point]
    hover: list[tuple[float, float, float, float]]  # (pixel x, pixel y, step, value)


@dataclass(frozen=True)
class Chart:
    """Everything the template needs to draw one chart."""

    title: str
    x_label: str
    y_label: str
    width: int
    height: int
    series: list[DrawnSeries]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    spans: list[tuple[float, float]] = field(default_factory=list)  # shaded x ranges (spot-check segments)
    band: str = ""  # SVG path of a shaded area (the tolerance band)
    band_label: str = ""
    note: str = ""

    @property
    def plot_box(self) -> tuple[int, int, int, int]:
        """Left, top, right, bottom of the plotting area."""
        return LEFT, TOP, self.width - RIGHT, self.height - BOTTOM


def downsample(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most about ``limit`` points: per bucket the first, smallest, largest and last, in x order."""
    if len(points) <= limit:
        return list(points)
    buckets = max(limit // 4, 1)
    size = len(points) / buckets
    kept: list[Point] = []
    for b in range(buckets):
        chunk = points[int(b * size):int((b + 1) * size)]
        if not chunk:
            continue
        finite = [p for p in chunk if math.isfinite(p[1])] or list(chunk)
        picks = {id(p): p for p in (chunk[0], min(finite, key=lambda p: p[1]), max(finite, key=lambda p: p[1]),
                                    chunk[-1])}
        kept.extend(sorted(picks.values(), key=lambda p: p[0]))
    return kept


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), 10 * magnitude)


def linear_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values covering ``[low, high]``."""
    if high <= low:
        return [low]
    step = _nice_step(high - low, count)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(low / step) * step
    ticks = []
    index = 0
    while (value := first + index * step) <= high + step * 1e-9:  # no accumulated rounding error
        ticks.append(0.0 if abs(value) < step * 1e-9 else float(f"{value:.12g}"))
        index += 1
    return ticks


def tick_label(value: float) -> str:
    """A tick value as written, never rounded to fewer digits than it has: ``2.5e-4`` stays
    ``"0.00025"`` (not ``"3e-4"``), ``2.5e-05`` is ``"2.5e-5"``, ``1500000`` is ``"1.5e6"``."""
    if value == 0:
        return "0"
    text = f"{value:.6g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


_label = tick_label


class _Scale:
    def __init__(self, low: float, high: float, start: float, end: float, log: bool = False) -> None:
        self.log = log
        self.low, self.high = (math.log10(low), math.log10(high)) if log else (low, high)
        if self.high == self.low:
            pad = abs(self.low) * 0.05 or 1.0
            self.low, self.high = self.low - pad, self.high + pad
        self.start, self.end = start, end

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        return round(self.start + (v - self.low) / (self.high - self.low) * (self.end - self.start), 1)


def _path(points: list[Point]) -> str:
    """An SVG path; non-finite values break the line instead of joining across them."""
    parts, pen_down = [], False
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{x:g} {y:g}")
        pen_down = True
    return " ".join(parts)


def line_chart(title: str, series: Sequence[Series], *, x_label: str = "step", y_label: str = "",
               log_y: bool = False, floor: float | None = None, band: Sequence[Point] = (), band_label: str = "",
               spans: Sequence[tuple[float, float]] = (), note: str = "",
               width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """Lay ``series`` out on shared axes; ``log_y`` needs positive values (``floor`` for ticks at zero).

    ``band`` is an upper boundary (x, y) shaded down to the bottom of the chart, e.g. a tolerance.
    """
    sampled = [(s, downsample([p for p in s.points if math.isfinite(p[0])])) for s in series]
    xs = [x for _, pts in sampled for x, _ in pts] + [x for x, _ in band] + [v for span in spans for v in span]
    ys = [y for s, pts in sampled if s.kind != "ticks" for _, y in pts if math.isfinite(y)]
    ys += [y for _, y in band]
    if log_y:
        ys = [y for y in ys if y > 0]
        if floor is not None:
            ys.append(floor)
    if not xs or not ys:
        return Chart(title, x_label, y_label, width, height, [], [], [], note=note or "no data to draw")
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if log_y:
        y_low, y_high = y_low / 3, y_high * 3
    else:
        pad = (y_high - y_low) * 0.05 or abs(y_high) * 0.05 or 1.0
        y_low, y_high = y_low - pad, y_high + pad
    sx = _Scale(x_low, x_high, LEFT, width - RIGHT)
    sy = _Scale(y_low, y_high, height - BOTTOM, TOP, log=log_y)

    drawn = []
    for s, pts in sampled:
        if s.kind == "ticks":
            y = floor if floor is not None else y_low
            pixel = [(sx(x), sy(y)) for x, _ in pts]
            drawn.append(DrawnSeries(s.label, s.colour, s.kind, "", pixel, []))
            continue
        usable = [(x, y) for x, y in pts if math.isfinite(y) and (y > 0 or not log_y)]
        pixel = [(sx(x), sy(y)) if math.isfinite(y) and (y > 0 or not log_y) else (math.nan, math.nan)
                 for x, y in pts]
        hover = [(sx(x), sy(y), x, y) for x, y in usable]
        if s.kind in ("line", "dashed"):
            drawn.append(DrawnSeries(s.label, s.colour, s.kind, _path(pixel), [], hover))
        elif s.kind == "marked":  # a line with a dot per point: isolated points stay visible
            drawn.append(DrawnSeries(s.label, s.colour, s.kind, _path(pixel),
                                     [p for p in pixel if math.isfinite(p[0])], hover))
        else:
            drawn.append(DrawnSeries(s.label, s.colour, s.kind, "", [p for p in pixel if math.isfinite(p[0])], hover))

    x_ticks = [(sx(v), _label(v)) for v in linear_ticks(x_low, x_high, 8, integer=True)]
    if log_y:
        decades = range(math.ceil(math.log10(y_low)), math.floor(math.log10(y_high)) + 1)
        every = max(1, math.ceil(len(decades) / 6))
        y_ticks = [(sy(10.0 ** d), f"1e{d}") for d in decades if d % every == 0]
    else:
        y_ticks = [(sy(v), _label(v)) for v in linear_ticks(y_low, y_high, 5)]
    band_path = ""
    if band:
        edge = downsample(sorted(band))
        base = sy(10 ** sy.low) if log_y else sy(y_low)
        band_path = (f"M{sx(edge[0][0]):g} {base:g} " + " ".join(f"L{sx(x):g} {sy(y):g}" for x, y in edge)
                     + f" L{sx(edge[-1][0]):g} {base:g} Z")
    return Chart(title, x_label, y_label, width, height, drawn, x_ticks, y_ticks,
                 spans=[(sx(a), sx(b)) for a, b in spans], band=band_path, band_label=band_label, note=note)
