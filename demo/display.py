"""The demo's live summary: a ``rich`` table refreshed about once a second on a terminal,
plain periodic lines otherwise (CI logs, ``| tee``), and the same event lines in both."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from hotspot.units import fmt_bytes  # noqa: F401 - the demo's tables use it

if TYPE_CHECKING:
    from rich.console import JustifyMethod

PLAIN_EVERY = 5.0  # seconds between tables in plain mode
DROP_ORDER = ("mac", "up", "ip", "doing")  # live-table columns a narrow terminal loses first


def fmt_rate(bps: float | None) -> str:
    if not bps:
        return "-"
    if bps >= 1e6:
        return f"{bps / 1e6:.2f} Mbit/s"
    return f"{bps / 1e3:.0f} kbit/s"


@dataclass
class Row:
    phone: str
    role: str
    mac: str
    ip: str
    tier: str
    state: str
    down: str
    up: str
    rate: str
    doing: str


@dataclass
class Snapshot:
    title: str
    rows: list[Row]
    footer: list[str]
    checks: list[tuple[bool | None, str]]  # (True/False/None as "✓"/"✗"/"…", text)


@dataclass
class Display:
    """``snapshot`` is called (from the display's thread too) to get what to show."""

    snapshot: Callable[[], Snapshot]
    out: TextIO = field(default_factory=lambda: sys.stdout)
    start: float = field(default_factory=time.monotonic)
    live_mode: bool | None = None

    def __post_init__(self) -> None:
        if self.live_mode is None:
            self.live_mode = self.out.isatty() and _have_rich()
        self._events: deque[str] = deque(maxlen=6)
        self._lock = threading.Lock()
        self._live: Any = None
        self._last_plain = 0.0
        self._begun = False
        self._console: Any = None
        if self.live_mode:
            from rich.console import Console

            self._console = Console(file=self.out)

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.start:6.1f}s]"

    # -- lines that always go out ----------------------------------------------------------

    def say(self, text: str) -> None:
        """A line of its own (set-up progress, the URLs, the verdict)."""
        with self._lock:
            if self._console is not None:
                self._console.print(text, highlight=False, markup=False)
            else:
                self.out.write(text + "\n")
                self.out.flush()

    def event(self, text: str) -> None:
        line = f"{self.stamp()} {text}"
        with self._lock:
            self._events.append(line)
            if self._live is None:
                if self._console is not None:
                    self._console.print(line, highlight=False, markup=False)
                else:
                    self.out.write(line + "\n")
                    self.out.flush()

    # -- the table ---------------------------------------------------------------------------

    def begin(self) -> None:
        self._begun = True
        if self.live_mode:
            from rich.live import Live

            self._live = Live(
                console=self._console,
                get_renderable=self._render,
                refresh_per_second=1,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def tick(self) -> None:
        """Called by the demo about once a second."""
        if self.live_mode:
            return  # rich refreshes on its own
        now = time.monotonic()
        if now - self._last_plain >= PLAIN_EVERY:
            self._last_plain = now
            self.print_plain()

    def end(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self._begun and not self.live_mode and time.monotonic() - self._last_plain > 1.5:
            self._last_plain = time.monotonic()
            self.print_plain()

    def print_plain(self) -> None:
        snap = self.snapshot()
        cols = ("phone", "role", "ip", "tier", "state", "down", "up", "rate down", "doing")
        widths = (8, 8, 13, 17, 13, 9, 9, 12, 0)
        lines = [
            f"{self.stamp()} {snap.title}",
            "  " + "  ".join(f"{c:{w}}" if w else c for c, w in zip(cols, widths)),
        ]
        for r in snap.rows:
            vals = (r.phone, r.role, r.ip, r.tier, r.state, r.down, r.up, r.rate, r.doing)
            lines.append("  " + "  ".join(f"{v[:w]:{w}}" if w else v for v, w in zip(vals, widths)))
        lines += ["  " + f for f in snap.footer]
        with self._lock:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        snap = self.snapshot()
        # (header, Row field, width it needs, justify); on a narrow terminal the columns
        # of DROP_ORDER go first, "doing" takes what is left.
        cols: list[tuple[str, str, int, JustifyMethod]] = [
            ("phone", "phone", 6, "left"),
            ("role", "role", 7, "left"),
            ("MAC", "mac", 17, "left"),
            ("IP", "ip", 11, "left"),
            ("tier", "tier", max([4] + [len(r.tier) for r in snap.rows]), "left"),
            ("state", "state", max([6] + [len(r.state) for r in snap.rows]), "left"),
            ("↓ bytes", "down", 8, "right"),
            ("↑ bytes", "up", 8, "right"),
            ("↓ rate", "rate", 11, "right"),
            ("doing", "doing", 20, "left"),
        ]
        width = self._console.width if self._console is not None else 160
        for drop in DROP_ORDER:
            if sum(w + 3 for _, _, w, _ in cols) + 1 <= width:
                break
            cols = [c for c in cols if c[1] != drop]
        table = Table(title=snap.title, title_justify="left", expand=False)
        for name, key, w, just in cols:
            table.add_column(
                name, justify=just, no_wrap=key != "doing", min_width=w if key != "doing" else None
            )
        for r in snap.rows:
            style = {"online": "green", "walled": "yellow"}.get(r.state.split(" ")[0], "")
            if r.state.startswith("ended"):
                style = "red"
            table.add_row(
                *[
                    Text(r.state, style=style) if key == "state" else getattr(r, key)
                    for _, key, _, _ in cols
                ]
            )
        parts: list[Any] = [table]
        parts += [Text(f) for f in snap.footer]
        checks = Text()
        marks: dict[bool | None, tuple[str, str]] = {True: ("✓", "green"), False: ("✗", "red")}
        for ok, text in snap.checks:
            mark, style = marks.get(ok, ("…", "dim"))
            checks.append(f" {mark} ", style=style)
            checks.append(text + "\n")
        parts.append(checks)
        with self._lock:
            events = list(self._events)
        if events:
            parts.append(Text("\n".join(events), style="dim"))
        return Group(*parts)


def _have_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
