"""The dashboard's map: each village a dot at its registered coordinates, drawn here as inline
SVG (as hotspot.svgchart draws the charts) — no tiles, no script, nothing fetched from the
internet. The projection is equirectangular around the villages' middle latitude, which at a
province's size (a few hundred kilometres) keeps distances within a percent or two.

Every text that reaches the picture (village names come from the gateways, kabupaten and
kecamatan from the province) is escaped, in element text and in attributes alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

COLORS = {"online": "#1a7f37", "offline": "#b42318", "alert": "#d97706", "disabled": "#999"}


@dataclass(frozen=True)
class MapPoint:
    label: str
    latitude: float
    longitude: float
    status: str  # a key of COLORS
    href: str
    note: str = ""  # the tooltip's second line


def _step(span: float) -> float:
    """A round grid step giving about four lines across ``span`` degrees."""
    raw = span / 4
    exp = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * exp:
            return m * exp
    return 10 * exp  # pragma: no cover


def village_map(
    points: Sequence[MapPoint],
    *,
    title: str,
    legend: dict[str, str],
    width: int = 800,
    height: int = 560,
) -> Markup:
    """The SVG; ``legend`` names each status shown (already translated)."""
    pad = 30
    lats = [p.latitude for p in points] or [0.0]
    lons = [p.longitude for p in points] or [0.0]
    mid = (min(lats) + max(lats)) / 2
    kx = math.cos(math.radians(mid))  # a degree of longitude is shorter away from the equator
    span_x = max((max(lons) - min(lons)) * kx, 0.05) * 1.15
    span_y = max(max(lats) - min(lats), 0.05) * 1.15
    scale = min((width - 2 * pad) / span_x, (height - 2 * pad - 20) / span_y)
    cx, cy = (min(lons) + max(lons)) / 2, mid

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return width / 2 + (lon - cx) * kx * scale, (height - 20) / 2 - (lat - cy) * scale

    body = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f4f7f9"/>']
    step = _step(max(span_x / kx, span_y))
    lat0 = math.floor((cy - span_y) / step) * step
    lon0 = math.floor((cx - span_x / kx) / step) * step
    for i in range(40):
        lat = lat0 + i * step
        y = xy(lat, cx)[1]
        if 0 <= y <= height - 20:
            body.append(
                f'<line x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dde3e8"/>'
                f'<text x="4" y="{y - 3:.1f}" font-size="10" fill="#777">{lat:.2f}°</text>'
            )
        lon = lon0 + i * step
        x = xy(cy, lon)[0]
        if 0 <= x <= width:
            body.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height - 20}" stroke="#dde3e8"/>'
                f'<text x="{x + 3:.1f}" y="{height - 24}" font-size="10" fill="#777">'
                f"{lon:.2f}°</text>"
            )
    for p in points:
        x, y = xy(p.latitude, p.longitude)
        color = COLORS.get(p.status, "#555")
        tip = p.label + (f" — {p.note}" if p.note else "")
        # a label near the right edge goes on the dot's left, so it stays in the picture
        left = x > width * 0.75
        anchor = ' text-anchor="end"' if left else ""
        body.append(
            f'<a href="{escape(p.href)}"><title>{escape(tip)}</title>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{color}" stroke="#fff"/>'
            f'<text x="{x - 9 if left else x + 9:.1f}" y="{y + 4:.1f}" font-size="11" '
            f'fill="#222"{anchor}>{escape(p.label)}</text></a>'
        )
    lx = 8
    for status, name in legend.items():
        body.append(
            f'<circle cx="{lx + 5}" cy="{height - 8}" r="5" fill="{COLORS.get(status, "#555")}"/>'
            f'<text x="{lx + 14}" y="{height - 4}" font-size="11" fill="#333">{escape(name)}</text>'
        )
        lx += 24 + 7 * len(name)
    return Markup(
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>' + "".join(body) + "</svg>"
    )
