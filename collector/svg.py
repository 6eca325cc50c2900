"""Charts drawn on the server as small inline SVG (no JavaScript, nothing from a CDN)."""

from __future__ import annotations

import math
from html import escape
from typing import Callable, Sequence

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def nice_max(value: float) -> float:
    """A round number ≥ value for the top of an axis (1, 2, 2.5, 5 × 10^n)."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * exp:
            return m * exp
    return 10 * exp  # pragma: no cover


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def _frame(width: int, height: int, title: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="100%" role="img" aria-label="{escape(title)}" class="chart">'
            f'<title>{escape(title)}</title>' + "".join(body) + "</svg>")


def _axes(width: int, height: int, left: int, top: int, bottom: int, top_value: float,
          fmt: Callable[[float], str]) -> list[str]:
    out = []
    plot_h = height - top - bottom
    for i in range(5):
        v = top_value * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 5}" y2="{y:.1f}" '
                   f'stroke="#ddd" stroke-width="1"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
                   f'fill="#555">{escape(fmt(v))}</text>')
    return out


def bars(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, title: str,
         fmt: Callable[[float], str] = lambda v: f"{v:.0f}", width: int = 640,
         height: int = 200) -> str:
    """Stacked bars, one per label; ``series`` = [(name, values)]; a legend when > 1."""
    left, top, bottom = 64, 10, 34
    n = max(1, len(labels))
    totals = [sum(s[1][i] for s in series) for i in range(len(labels))]
    top_value = nice_max(max(totals, default=0))
    plot_w = width - left - 5
    plot_h = height - top - bottom
    slot = plot_w / n
    bw = max(1.0, slot * 0.8)
    body = _axes(width, height, left, top, bottom, top_value, fmt)
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bw) / 2
        y = top + plot_h
        for k, (name, values) in enumerate(series):
            v = values[i]
            h = plot_h * v / top_value if top_value else 0
            y -= h
            if h > 0:
                body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                            f'fill="{COLORS[k % len(COLORS)]}"><title>{escape(label)} '
                            f'{escape(name)}: {escape(fmt(v))}</title></rect>')
        step = max(1, math.ceil(n / 8))
        if i % step == 0 or i == n - 1:
            body.append(f'<text x="{x + bw / 2:.1f}" y="{height - bottom + 14}" font-size="10" '
                        f'text-anchor="middle" fill="#555">{escape(label)}</text>')
    if len(series) > 1:
        for k, (name, _) in enumerate(series):
            x = left + k * 130
            body.append(f'<rect x="{x}" y="{height - 12}" width="10" height="10" '
                        f'fill="{COLORS[k % len(COLORS)]}"/>')
            body.append(f'<text x="{x + 14}" y="{height - 3}" font-size="10" fill="#333">'
                        f'{escape(name)}</text>')
    return _frame(width, height, title, body)


def lines(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *,
          title: str, fmt: Callable[[float], str] = lambda v: f"{v:.0f}", width: int = 640,
          height: int = 180, top_value: float | None = None) -> str:
    """Lines over the same x positions; None values leave gaps."""
    left, top, bottom = 64, 10, 34
    n = max(1, len(labels))
    peak = max((v for _, vals in series for v in vals if v is not None), default=0)
    top_value = top_value or nice_max(peak)
    plot_w = width - left - 5
    plot_h = height - top - bottom
    body = _axes(width, height, left, top, bottom, top_value, fmt)

    def xy(i: int, v: float) -> str:
        x = left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)
        y = top + plot_h - plot_h * min(v, top_value) / top_value
        return f"{x:.1f},{y:.1f}"

    for k, (name, values) in enumerate(series):
        path: list[str] = []
        for i, v in enumerate(values):
            if v is None:
                if len(path) > 1:
                    body.append(f'<polyline fill="none" stroke="{COLORS[k % len(COLORS)]}" '
                                f'stroke-width="1.5" points="{" ".join(path)}"/>')
                path = []
                continue
            path.append(xy(i, v))
        if len(path) > 1:
            body.append(f'<polyline fill="none" stroke="{COLORS[k % len(COLORS)]}" '
                        f'stroke-width="1.5" points="{" ".join(path)}"/>')
        elif len(path) == 1:
            x, y = path[0].split(",")
            body.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{COLORS[k % len(COLORS)]}"/>')
        body.append(f'<rect x="{left + k * 130}" y="{height - 12}" width="10" height="10" '
                    f'fill="{COLORS[k % len(COLORS)]}"/><text x="{left + k * 130 + 14}" '
                    f'y="{height - 3}" font-size="10" fill="#333">{escape(name)}</text>')
    step = max(1, math.ceil(n / 8))
    for i, label in enumerate(labels):
        if i % step == 0:
            x = xy(i, 0).split(",")[0]
            body.append(f'<text x="{x}" y="{height - bottom + 14}" font-size="10" '
                        f'text-anchor="middle" fill="#555">{escape(label)}</text>')
    return _frame(width, height, title, body)
