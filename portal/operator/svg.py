"""Pictures drawn on the server as SVG (no script, no CDN, no inline style): QR codes for
voucher cards and bar charts for the ledger. Everything is escaped; nothing comes from a
request unescaped."""

from __future__ import annotations

from typing import Sequence

from markupsafe import Markup, escape


def qr(text: str, title: str = "") -> Markup:
    """A QR code (error correction M) as an inline ``<svg>``: one path, crisp edges."""
    import segno

    code = segno.make_qr(text, error="m", boost_error=False)
    matrix = code.matrix
    n = len(matrix)
    quiet = 2
    parts = []
    for y, row in enumerate(matrix):
        x = 0
        while x < n:
            if row[x]:
                start = x
                while x < n and row[x]:
                    x += 1
                parts.append(f"M{start + quiet} {y + quiet}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    size = n + 2 * quiet
    label = f"<title>{escape(title)}</title>" if title else ""
    return Markup(f'<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
                  f'role="img" shape-rendering="crispEdges">{label}'
                  f'<rect width="{size}" height="{size}" fill="#fff"/>'
                  f'<path fill="#000" d="{"".join(parts)}"/></svg>')


def bars(points: Sequence[tuple[str, float, str]], *, title: str, unit_label: str = "",
         width: int = 360, height: int = 180) -> Markup:
    """A bar chart: ``points`` are (axis label, value, tooltip). Labels are thinned out to fit;
    every bar has its own ``<title>`` (the exact figure)."""
    left, right, top, bottom = 6, 6, 20, 24
    w, h = width - left - right, height - top - bottom
    n = max(1, len(points))
    peak = max([v for _, v, _ in points] + [0]) or 1
    step = w / n
    bar_w = max(1.0, step * 0.75)
    every = max(1, -(-n // 6))
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
           f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#5c6670"/>',
           f'<text x="{left}" y="14" font-size="12" fill="#4a545e">{escape(unit_label)}</text>']
    for i, (label, value, tip) in enumerate(points):
        bh = 0 if value <= 0 else max(1.5, h * value / peak)
        x = left + i * step + (step - bar_w) / 2
        out.append(f'<rect x="{x:.1f}" y="{top + h - bh:.1f}" width="{bar_w:.1f}" '
                   f'height="{bh:.1f}" fill="#0b5d43"><title>{escape(tip)}</title></rect>')
        if i % every == 0:
            out.append(f'<text x="{left + i * step + step / 2:.1f}" y="{top + h + 16}" '
                       f'font-size="10" text-anchor="middle" fill="#1b1f23">{escape(label)}</text>')
    out.append(f'<text x="{left + w}" y="14" font-size="12" text-anchor="end" fill="#4a545e">'
               f'max {escape(_short(peak))}</text></svg>')
    return Markup("".join(out))


def _short(v: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{v:.0f}"
