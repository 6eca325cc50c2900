"""Pictures drawn on the server as SVG (no script, no CDN, no inline style): QR codes for
voucher cards and, through :mod:`hotspot.svgchart`, bar charts for the ledger. Everything is
escaped; nothing comes from a request unescaped."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from hotspot import svgchart


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
    return Markup(
        f'<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'role="img" shape-rendering="crispEdges">{label}'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#000" d="{"".join(parts)}"/></svg>'
    )


def bars(
    points: Sequence[tuple[str, float, str]],
    *,
    title: str,
    unit_label: str = "",
    width: int = 360,
    height: int = 180,
) -> Markup:
    """A console bar chart (:data:`hotspot.svgchart.CONSOLE`): ``points`` are (axis label,
    value, tooltip); every bar's ``<title>`` is its tooltip (the exact figure)."""
    return svgchart.bars(
        [label for label, _, _ in points],
        [(title, [value for _, value, _ in points])],
        tips=[tip for _, _, tip in points],
        title=title,
        unit_label=unit_label,
        fmt=svgchart.short_figure,
        style=svgchart.CONSOLE,
        width=width,
        height=height,
    )
