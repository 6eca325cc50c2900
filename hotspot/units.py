"""Plain-text figures for terminals (the CLI and the demo)."""

from __future__ import annotations


def fmt_bytes(n: float | None) -> str:
    """1234567 → '1.2 MB' (decimal units, as carriers and phones count)."""
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
