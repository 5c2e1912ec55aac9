"""Charts an operator would rather look at than read: figures with their 95% bands and the line
they are held to, as self-contained SVG.

Dagster's own plots draw one number per materialization, with no band and no threshold. These
charts go into Markdown metadata as `data:` images (the UI's Markdown allows that protocol), so
they render in the asset's metadata without any server or extra dependency. Pure functions of the
figures: no I/O, no Dagster.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 236, 36, 48  # margins: the legend sits on the right
LEGEND_CHARS = 30  # a legend label's length at most (11 px text: about 190 px)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
# After the palette's colours, the next series repeat them with these dashes: every series of a
# chart (the fairness chart has one per protected value) keeps a style of its own.
CYCLE_DASHES = ("", "1 3", "8 3 2 3")


@dataclass(frozen=True)
class Series:
    """One line; `low`/`high` (optional, per point) draw its 95% band."""

    label: str
    y: Sequence[float | None]
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None
    dashed: bool = False
    colour: str = ""
    markers_only: bool = False  # points that are not a series over time (e.g. refused nights)


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    x_labels: Sequence[str]
    series: Sequence[Series]
    y_label: str
    thresholds: Sequence[Threshold] = field(default_factory=tuple)
    y_range: tuple[float, float] | None = None  # default: the data's, thresholds included


def _finite(values: Sequence[float | None] | None) -> list[float]:
    return [float(v) for v in values or [] if v is not None and math.isfinite(v)]


def _y_range(chart: Chart) -> tuple[float, float]:
    if chart.y_range is not None:
        return chart.y_range
    values = [t.value for t in chart.thresholds]
    for s in chart.series:
        values += _finite(s.y) + _finite(s.low) + _finite(s.high)
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or 0.05
    return low - pad, high + pad


def render_svg(chart: Chart) -> str:
    """The chart as an SVG document."""
    y_min, y_max = _y_range(chart)
    n = len(chart.x_labels)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(i: float) -> float:
        return LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def py(v: float) -> float:
        clipped = min(max(v, y_min), y_max)
        return TOP + plot_h * (1 - (clipped - y_min) / ((y_max - y_min) or 1.0))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="13" font-weight="bold">{escape(chart.title)}</text>',
    ]
    for k in range(5):  # horizontal grid with its values
        v = y_min + (y_max - y_min) * k / 4
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(v):.1f}" y2="{py(v):.1f}" '
            'stroke="#e5e5e5"/>'
            f'<text x="{LEFT - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>'
        )
    step = max(1, math.ceil(n / 10))
    for i, label in enumerate(chart.x_labels):
        if i % step == 0 or i == n - 1:
            out.append(
                f'<text x="{px(i):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    out.append(
        f'<text x="14" y="{TOP + plot_h / 2:.1f}" transform="rotate(-90 14 '
        f'{TOP + plot_h / 2:.1f})" text-anchor="middle">{escape(chart.y_label)}</text>'
    )
    legend: list[tuple[str, str, str]] = []  # (label, colour, dash)
    for t in chart.thresholds:
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(t.value):.1f}" '
            f'y2="{py(t.value):.1f}" stroke="#555" stroke-dasharray="2 3"/>'
        )
        legend.append((f"{t.label} {t.value:g}", "#555", "2 3"))
    for index, s in enumerate(chart.series):
        colour = s.colour or PALETTE[index % len(PALETTE)]
        cycle = CYCLE_DASHES[(index // len(PALETTE)) % len(CYCLE_DASHES)]
        dash = "6 4" if s.dashed else cycle
        out += _band(s, colour, px, py)
        out += _line(s, colour, dash, px, py)
        legend.append((s.label, colour, dash))
    for row, (label, colour, dash) in enumerate(legend):
        y = TOP + 8 + row * 16
        x = WIDTH - RIGHT + 12
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{colour}" '
            f'stroke-width="2"{dash_attr}/>'
            f'<text x="{x + 24}" y="{y + 4}">{escape(label[:LEGEND_CHARS])}</text>'
        )
    out.append("</svg>")
    return "".join(out)


Scale = Callable[[float], float]


def _band(s: Series, colour: str, x_of: Scale, y_of: Scale) -> list[str]:
    """The band as one polygon per run of consecutive points with both bounds."""
    if s.low is None or s.high is None:
        return []
    runs: list[list[tuple[int, float, float]]] = [[]]  # (index, low, high)
    for i, (lo, hi) in enumerate(zip(s.low, s.high, strict=True)):
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
            runs.append([])
        else:
            runs[-1].append((i, lo, hi))
    shapes = []
    for run in runs:
        if len(run) == 1:  # a single point: an error bar
            i, lo, hi = run[0]
            shapes.append(
                f'<line x1="{x_of(i):.1f}" x2="{x_of(i):.1f}" y1="{y_of(lo):.1f}" '
                f'y2="{y_of(hi):.1f}" stroke="{colour}" stroke-width="6" stroke-opacity="0.25"/>'
            )
        elif run:
            upper = [f"{x_of(i):.1f},{y_of(hi):.1f}" for i, _, hi in run]
            lower = [f"{x_of(i):.1f},{y_of(lo):.1f}" for i, lo, _ in reversed(run)]
            shapes.append(
                f'<polygon points="{" ".join(upper + lower)}" fill="{colour}" '
                'fill-opacity="0.18" stroke="none"/>'
            )
    return shapes


def _line(s: Series, colour: str, dash: str, x_of: Scale, y_of: Scale) -> list[str]:
    points = [(x_of(i), y_of(v)) for i, v in enumerate(s.y) if v is not None and math.isfinite(v)]
    if not points:
        return []
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    radius = 4.5 if s.markers_only else 2.5
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}"/>' for x, y in points
    )
    if s.markers_only:
        return [dots]
    return [
        f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>',
        dots,
    ]


def markdown_image(chart: Chart) -> str:
    """The chart as a Markdown image with a `data:` URI, for Dagster's Markdown metadata."""
    encoded = base64.b64encode(render_svg(chart).encode()).decode()
    return f"![{chart.title}](data:image/svg+xml;base64,{encoded})"
