"""Charts drawn on the server as small inline SVG: no JavaScript, nothing from a CDN, no inline
``style`` (the console's Content-Security-Policy forbids it). Every text that reaches the
picture is escaped, so labels and titles may come from a request or a database.

One data API for every page: ``labels`` along the x axis and ``series`` of values, stacked in
:func:`bars`, drawn as polylines in :func:`lines`. What differs between pages is only the
look, a :class:`ChartStyle`:

* :data:`DASHBOARD` (the provincial collector): value grid lines, a round top of the scale,
  a colour per series and a legend.
* :data:`CONSOLE` (the BUMDes operator console): small cards, a baseline, the unit in the
  corner and the peak figure opposite it, one colour.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from markupsafe import Markup, escape


def _whole(v: float) -> str:
    return f"{v:.0f}"


def nice_max(value: float) -> float:
    """A round number ≥ value for the top of an axis (1, 2, 2.5, 5 × 10^n)."""
    if value <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * exp:
            return m * exp
    return 10 * exp  # pragma: no cover


def short_figure(v: float) -> str:
    """1500000 → ``1.5M``: a figure short enough for a chart's corner."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{v:.0f}"


@dataclass(frozen=True)
class ChartStyle:
    """The look of the charts of one family of pages."""

    left: int
    right: int
    top: int
    bottom: int
    colors: tuple[str, ...]  # one per series, in turn
    axis: Literal["grid", "baseline"]  # value grid lines, or a baseline with unit and peak
    round_top: bool  # the scale ends at nice_max(peak) rather than at the peak itself
    bar_width: float  # share of its slot a bar fills
    min_bar: float  # a bar of any value above zero is at least this tall (px)
    max_labels: int  # x labels are thinned out to about this many
    label_last: bool  # the last x label is always shown
    label_gap: int  # from the plot's bottom edge to the x labels' baseline (px)
    label_color: str


DASHBOARD = ChartStyle(
    left=64,
    right=5,
    top=10,
    bottom=34,
    colors=("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"),
    axis="grid",
    round_top=True,
    bar_width=0.8,
    min_bar=0.0,
    max_labels=8,
    label_last=True,
    label_gap=14,
    label_color="#555",
)
CONSOLE = ChartStyle(
    left=6,
    right=6,
    top=20,
    bottom=24,
    colors=("#0b5d43",),
    axis="baseline",
    round_top=False,
    bar_width=0.75,
    min_bar=1.5,
    max_labels=6,
    label_last=False,
    label_gap=16,
    label_color="#1b1f23",
)


def _frame(width: int, height: int, title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>' + "".join(body) + "</svg>"
    )


def _grid(
    style: ChartStyle, width: int, height: int, top_value: float, fmt: Callable[[float], str]
) -> list[str]:
    """Five horizontal lines from 0 to ``top_value``, each with its figure on the left."""
    out = []
    plot_h = height - style.top - style.bottom
    for i in range(5):
        v = top_value * i / 4
        y = style.top + plot_h - plot_h * i / 4
        out.append(
            f'<line x1="{style.left}" y1="{y:.1f}" x2="{width - style.right}" '
            f'y2="{y:.1f}" stroke="#ddd" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{style.left - 4}" y="{y + 4:.1f}" font-size="10" '
            f'text-anchor="end" fill="#555">{escape(fmt(v))}</text>'
        )
    return out


def _legend_entry(style: ChartStyle, height: int, k: int, name: str) -> str:
    x = style.left + k * 130
    return (
        f'<rect x="{x}" y="{height - 12}" width="10" height="10" '
        f'fill="{style.colors[k % len(style.colors)]}"/><text x="{x + 14}" y="{height - 3}" '
        f'font-size="10" fill="#333">{escape(name)}</text>'
    )


def _label_every(style: ChartStyle, n: int) -> int:
    return max(1, math.ceil(n / style.max_labels))


def bars(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    fmt: Callable[[float], str] = _whole,
    tips: Sequence[str] | None = None,
    unit_label: str = "",
    style: ChartStyle = DASHBOARD,
    width: int = 640,
    height: int = 200,
) -> Markup:
    """Stacked bars, one per label; ``series`` = [(name, values)], a legend when > 1.

    Every bar segment has its own ``<title>`` (the exact figure): ``tips[i]`` when given (one
    text per label), else ``"<label> <series>: <fmt(value)>"``. ``unit_label`` names the
    values in a :data:`CONSOLE` chart's corner."""
    left, top, bottom = style.left, style.top, style.bottom
    n = max(1, len(labels))
    peak = max([sum(values[i] for _, values in series) for i in range(len(labels))] + [0])
    top_value = nice_max(peak) if style.round_top else (peak or 1)
    plot_w = width - left - style.right
    plot_h = height - top - bottom
    slot = plot_w / n
    bar_w = max(1.0, slot * style.bar_width)
    every = _label_every(style, n)
    if style.axis == "grid":
        body = _grid(style, width, height, top_value, fmt)
    else:
        body = [
            f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
            f'y2="{top + plot_h}" stroke="#5c6670"/>',
            f'<text x="{left}" y="14" font-size="12" fill="#4a545e">{escape(unit_label)}</text>',
        ]
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar_w) / 2
        y: float = top + plot_h
        for k, (name, values) in enumerate(series):
            v = values[i]
            h = max(style.min_bar, plot_h * v / top_value) if v > 0 else 0
            y -= h
            if h > 0:
                tip = tips[i] if tips is not None else f"{label} {name}: {fmt(v)}"
                body.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                    f'height="{h:.1f}" fill="{style.colors[k % len(style.colors)]}">'
                    f"<title>{escape(tip)}</title></rect>"
                )
        if i % every == 0 or (style.label_last and i == n - 1):
            body.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" '
                f'y="{height - bottom + style.label_gap}" font-size="10" '
                f'text-anchor="middle" fill="{style.label_color}">{escape(label)}</text>'
            )
    if style.axis == "baseline":
        body.append(
            f'<text x="{left + plot_w}" y="14" font-size="12" text-anchor="end" '
            f'fill="#4a545e">max {escape(fmt(top_value))}</text>'
        )
    if len(series) > 1:
        body += [_legend_entry(style, height, k, name) for k, (name, _) in enumerate(series)]
    return _frame(width, height, title, body)


def lines(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    title: str,
    fmt: Callable[[float], str] = _whole,
    style: ChartStyle = DASHBOARD,
    width: int = 640,
    height: int = 180,
    top_value: float | None = None,
) -> Markup:
    """Lines over the same x positions, a legend entry each; None values leave gaps."""
    left, top, bottom = style.left, style.top, style.bottom
    n = max(1, len(labels))
    peak = max((v for _, vals in series for v in vals if v is not None), default=0)
    top_value = top_value or nice_max(peak)
    plot_w = width - left - style.right
    plot_h = height - top - bottom
    body = _grid(style, width, height, top_value, fmt)

    def xy(i: int, v: float) -> str:
        x = left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)
        y = top + plot_h - plot_h * min(v, top_value) / top_value
        return f"{x:.1f},{y:.1f}"

    for k, (name, values) in enumerate(series):
        color = style.colors[k % len(style.colors)]
        path: list[str] = []
        for i, v in enumerate(values):
            if v is None:  # a gap ends the line so far
                if len(path) > 1:
                    body.append(
                        f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                        f'points="{" ".join(path)}"/>'
                    )
                path = []
                continue
            path.append(xy(i, v))
        if len(path) > 1:
            body.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                f'points="{" ".join(path)}"/>'
            )
        elif len(path) == 1:  # a lone last point: a dot, so it shows at all
            x, y = path[0].split(",")
            body.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{color}"/>')
        body.append(_legend_entry(style, height, k, name))
    every = _label_every(style, n)
    for i, label in enumerate(labels):
        if i % every == 0:
            x = xy(i, 0).split(",")[0]
            body.append(
                f'<text x="{x}" y="{height - bottom + style.label_gap}" font-size="10" '
                f'text-anchor="middle" fill="{style.label_color}">{escape(label)}</text>'
            )
    return _frame(width, height, title, body)
