"""Plain figures for people reading a terminal or a chart (the CLI, the demo, the collector's
dashboard). The captive portal and the console say the same in the villager's language:
``portal/fmt.py``."""

from __future__ import annotations

MB = 1_000_000  # a megabyte as allowances, quotas and phones count it (decimal)


def fmt_bytes(n: float | None) -> str:
    """1234567 → '1.2 MB' (decimal units, as carriers and phones count); None → '-'."""
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover - the loop always returns
