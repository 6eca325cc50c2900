"""The daily summary to the BUMDes head (issue #13, item 7): what the day's message says, and
the queue as the console and the CLI read it. Sending is the summary service's
(``sync/summary.py``); this module holds no network code.

The message is short plain text in Bahasa Indonesia, well under Telegram's 4096 characters:
the village and the day, sales (count and Rupiah), cash per kasir and per agent, devices
served and data used, and the gateway's health (uptime, disk, the day's internet outages).
It names no device and no villager: devices are a count, and the only names are the staff's
(kasir and agents) — the same as the console's cash count.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hotspot import health as health_mod
from hotspot.config import Config, SummaryConfig
from hotspot.model_summary import DailySummary, SummaryState, UplinkEvent
from hotspot.timeutil import iso, local_time, naive_utc
from hotspot.usage import usage_by_day
from hotspot.village_days import day_bounds
from hotspot.vouchers import agents as agents_mod
from hotspot.vouchers import ledger

MAX_CHARS = 4000  # Telegram takes 4096 characters in one message; leave some room
MAX_NAMES = 15  # kasir or agents listed one by one; the rest as "dan N lainnya"

DAYS = ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu")
MONTHS = (
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
)


@dataclass(frozen=True)
class Outages:
    count: int  # times the internet went away during the day
    minutes: int  # how long it was away in all, within the day


@dataclass(frozen=True)
class Facts:
    """Everything the message says, gathered once; :func:`compose` only formats it."""

    village: str
    day: dt.date
    zone: str  # WIB, WITA, WIT
    sales_count: int
    sales_rupiah: int
    kasir_cash: Sequence[tuple[str, int]]  # (kasir, Rupiah in the drawer) — the cash count
    agent_cash: Sequence[tuple[str, int]] = ()  # (agent, Rupiah owed) — empty without agents
    unrecorded: int = 0  # vouchers used that no kasir marked sold
    devices: int = 0
    data_bytes: int = 0
    uptime_s: int | None = None
    disk_pct: float | None = None
    outages: Outages | None = None  # None: the summary service did not watch that day
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "village": self.village,
            "day": self.day.isoformat(),
            "zone": self.zone,
            "sales_count": self.sales_count,
            "sales_rupiah": self.sales_rupiah,
            "kasir_cash": [{"name": n, "rupiah": r} for n, r in self.kasir_cash],
            "agent_cash": [{"name": n, "rupiah": r} for n, r in self.agent_cash],
            "unrecorded": self.unrecorded,
            "devices": self.devices,
            "data_bytes": self.data_bytes,
            "uptime_s": self.uptime_s,
            "disk_pct": self.disk_pct,
            "outages": None
            if self.outages is None
            else {"count": self.outages.count, "minutes": self.outages.minutes},
        }


def rupiah(n: int) -> str:
    """150000 → 'Rp 150.000' (Indonesian thousands separator)."""
    return f"Rp {n:,}".replace(",", ".")


def data_amount(n: int) -> str:
    """Bytes the Indonesian way: 1234567890 → '1,2 GB'."""
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            break
        value /= 1000
    return f"{value:.1f} {unit}".replace(".", ",")


def duration(seconds: int) -> str:
    """3 hari 4 jam, 5 jam 12 menit, 7 menit."""
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} hari {hours} jam"
    if hours:
        return f"{hours} jam {minutes} menit"
    return f"{minutes} menit"


def long_date(day: dt.date) -> str:
    return f"{DAYS[day.weekday()]}, {day.day} {MONTHS[day.month - 1]} {day.year}"


def _names(rows: Sequence[tuple[str, int]]) -> list[str]:
    shown = sorted(rows, key=lambda r: (-r[1], r[0]))
    lines = [f"- {name[:40]}: {rupiah(amount)}" for name, amount in shown[:MAX_NAMES]]
    if len(shown) > MAX_NAMES:
        rest = sum(a for _, a in shown[MAX_NAMES:])
        lines.append(f"- dan {len(shown) - MAX_NAMES} lainnya: {rupiah(rest)}")
    return lines


def compose(f: Facts) -> str:
    """The message (plain text, no markup: nothing in it is interpreted by Telegram)."""
    lines = [
        f"Ringkasan WiFi {f.village[:100]}",
        f"{long_date(f.day)} ({f.zone})",
        "",
        f"Penjualan: {f.sales_count} voucher, {rupiah(f.sales_rupiah)}",
    ]
    if f.kasir_cash:
        lines.append("Uang per kasir:")
        lines += _names(f.kasir_cash)
    else:
        lines.append("Uang per kasir: tidak ada penjualan tercatat")
    if f.agent_cash:
        lines.append("Setoran per agen:")
        lines += _names(f.agent_cash)
    if f.unrecorded:
        lines.append(f"Dipakai tanpa dicatat kasir: {f.unrecorded} voucher")
    lines += [
        "",
        f"Perangkat dilayani: {f.devices}",
        f"Data terpakai: {data_amount(f.data_bytes)}",
        "",
    ]
    health = []
    if f.uptime_s is not None:
        health.append(f"menyala {duration(f.uptime_s)}")
    if f.disk_pct is not None:
        health.append(f"penyimpanan terisi {f.disk_pct:.0f}%")
    lines.append("Gateway: " + (", ".join(health) if health else "tidak terbaca"))
    if f.outages is None:
        lines.append("Internet putus: tidak tercatat")
    elif f.outages.count == 0:
        lines.append("Internet putus: tidak pernah")
    else:
        lines.append(
            f"Internet putus: {f.outages.count} kali, total {duration(f.outages.minutes * 60)}"
        )
    text = "\n".join(lines)
    if len(text) > MAX_CHARS:  # only with absurd names; never split into two messages
        text = text[: MAX_CHARS - 1] + "…"
    return text


# -- gathering ------------------------------------------------------------------------------


def zone_name(config: Config, day: dt.date) -> str:
    """The village zone's short name on that day (WIB, WITA, WIT), not "Asia/Jakarta"."""
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=config.village.tz)
    return noon.tzname() or config.village.timezone


def outages(engine: Engine, config: Config, day: dt.date, now: dt.datetime) -> Outages | None:
    """The day's outages from the summary service's uplink log (changes only). None when
    the service recorded nothing up to the day's end (it was not running, or is new)."""
    lo, hi = day_bounds(day, day, config.village.tz)
    hi = min(hi, now)
    with engine.connect() as conn:
        before = conn.execute(
            select(UplinkEvent.ok).where(UplinkEvent.at < lo).order_by(UplinkEvent.at.desc())
        ).first()
        events = conn.execute(
            select(UplinkEvent.at, UplinkEvent.ok)
            .where(UplinkEvent.at >= lo, UplinkEvent.at < hi)
            .order_by(UplinkEvent.at, UplinkEvent.id)
        ).all()
    if before is None and not events:
        return None
    ok = True if before is None else bool(before[0])
    count, down = 0, 0.0
    since = lo
    for at, now_ok in events:
        at = naive_utc(at)
        if ok and not now_ok:
            count += 1
            since = at
        elif not ok and now_ok:
            down += (at - since).total_seconds()
        ok = bool(now_ok)
    if not ok:
        down += max(0.0, (hi - since).total_seconds())
        if before is not None and not before[0] and count == 0:
            count = 1  # down since before the day began: that is one outage of this day too
    return Outages(count, int(down // 60))


def agents_paid(engine: Engine, config: Config, day: dt.date) -> list[tuple[str, int]]:
    """What each agent paid the BUMDes on village day ``day`` (the settlements the admin
    recorded), largest first. An agent's own sales are already in the cash per seller."""
    lo, hi = day_bounds(day, day, config.village.tz)
    paid: dict[str, int] = {}
    for row in agents_mod.settlements(engine):
        if lo <= naive_utc(row["recorded_at"]) < hi:
            paid[row["agent"]] = paid.get(row["agent"], 0) + int(row["amount"])
    return sorted(paid.items(), key=lambda item: (-item[1], item[0]))


def gather(
    engine: Engine,
    config: Config,
    day: dt.date,
    now: dt.datetime,
    *,
    agent_cash: Sequence[tuple[str, int]] | None = None,
    machine: dict[str, Any] | None = None,
) -> Facts:
    """The facts of village day ``day`` from the ledger, the usage rows and the machine.
    ``agent_cash`` (default: the agents' payments to the BUMDes recorded that day, from
    the agents' ledger) and ``machine`` (default: the live health probe) are for tests."""
    if agent_cash is None:
        agent_cash = agents_paid(engine, config, day)
    rows = ledger.sales(engine, config, day, day)
    cash = [(r["kasir"], int(r["net"])) for r in ledger.cash_count(engine, config, day, day)]
    unrecorded = sum(1 for s in rows if s.kasir == ledger.NOT_RECORDED)
    usage = usage_by_day(engine, config, day, day)[0]
    if machine is None:
        machine = health_mod.snapshot(config, engine)
    return Facts(
        village=config.village.name,
        day=day,
        zone=zone_name(config, day),
        sales_count=len(rows),
        sales_rupiah=sum(s.price for s in rows),
        kasir_cash=cash,
        agent_cash=list(agent_cash),
        unrecorded=unrecorded,
        devices=int(usage["devices"]),
        data_bytes=int(usage["bytes"]),
        uptime_s=machine.get("uptime"),
        disk_pct=machine.get("disk"),
        outages=outages(engine, config, day, now),
    )


def today(config: Config, now: dt.datetime) -> dt.date:
    return local_time(now, config.village.tz).date()


# -- the queue as people read it ------------------------------------------------------------


def fingerprint(s: SummaryConfig) -> str:
    """Which bot and chat (a short hash: the token is never stored or shown)."""
    raw = f"{s.telegram_bot_token}\0{s.telegram_chat_id}\0{s.api_base}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def masked_token(token: str) -> str:
    """``123456789:AAE…xYz0`` → ``123456789:••••xYz0`` (the bot's number and four letters:
    enough to tell two bots apart, useless to anyone else); '' when unset."""
    if not token:
        return ""
    bot, _, secret = token.partition(":")
    return f"{bot}:••••{secret[-4:]}"


def settings(s: SummaryConfig) -> dict[str, Any]:
    return {
        "enabled": s.enabled,
        "chat_id": s.telegram_chat_id,
        "token": masked_token(s.telegram_bot_token),
        "send_at": f"{s.send_at:%H:%M}",
        "api_base": s.api_base,
    }


def row_json(r: DailySummary) -> dict[str, Any]:
    return {
        "id": r.id,
        "day": r.day.isoformat(),
        "scheduled": r.scheduled_day is not None,
        "state": r.state.value,
        "attempts": r.attempts,
        "created_at": iso(r.created_at),
        "next_attempt_at": iso(r.next_attempt_at),
        "last_attempt_at": iso(r.last_attempt_at),
        "sent_at": iso(r.sent_at),
        "last_error": r.last_error,
        "message_id": r.message_id,
    }


def queue(engine: Engine, *, limit: int = 30) -> list[dict[str, Any]]:
    """Every summary not yet sent, then the latest sent or refused ones; newest first."""
    try:
        with Session(engine) as s:
            waiting = s.scalars(
                select(DailySummary)
                .where(DailySummary.state.in_((SummaryState.PENDING, SummaryState.SENDING)))
                .order_by(DailySummary.id.desc())
            ).all()
            done = s.scalars(
                select(DailySummary)
                .where(DailySummary.state.in_((SummaryState.SENT, SummaryState.FAILED)))
                .order_by(DailySummary.id.desc())
                .limit(limit)
            ).all()
            rows = sorted([*waiting, *done], key=lambda r: -r.id)
            return [row_json(r) for r in rows]
    except SQLAlchemyError:  # a database not migrated yet: nothing queued
        return []
