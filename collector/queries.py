"""Reading the collector's database: the dashboard's figures and the pull API's pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypedDict

from sqlalchemy import Select, and_, distinct, extract, func, select, tuple_
from sqlalchemy.orm import Session

from collector.config import CollectorConfig
from collector.models import (
    Gateway,
    HealthSample,
    SalesMonthly,
    UsageDaily,
    UsageHourly,
    VillageDaily,
)
from hotspot.pull_api.query import BadRequest, cursor_time
from hotspot.timeutil import iso, local_day
from hotspot.wire import HEALTH_FIELDS


def local_today(cfg: CollectorConfig, now: dt.datetime) -> dt.date:
    return local_day(now, cfg.tz)


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def health_dict(h: Any) -> dict[str, Any] | None:
    if h is None:
        return None
    return {f: getattr(h, f) for f in HEALTH_FIELDS}


def warnings(cfg: CollectorConfig, gw: Any, health: Any, now: dt.datetime) -> list[str]:
    """``gw`` and ``health``: a Gateway and a HealthSample, or plain rows of their columns."""
    """Codes (translated by the dashboard): never, offline, disk, temp, mem, uplink, clock."""
    out = []
    if gw.last_seen_at is None:
        out.append("never")
    elif now - gw.last_seen_at > dt.timedelta(minutes=cfg.offline_after_minutes):
        out.append("offline")
    if health is not None:
        if health.disk_pct >= cfg.warn_disk_pct:
            out.append("disk")
        if health.temp_c is not None and health.temp_c >= cfg.warn_temp_c:
            out.append("temp")
        if health.mem_pct >= cfg.warn_mem_pct:
            out.append("mem")
        if health.uplink_ok is False:
            out.append("uplink")
        if health.clock_synced is False:
            out.append("clock")
    return out


def online(cfg: CollectorConfig, gw: Any, now: dt.datetime) -> bool:
    return gw.last_seen_at is not None and now - gw.last_seen_at <= dt.timedelta(
        minutes=cfg.offline_after_minutes
    )


def latest_health(s: Session, gateway_ids: list[str] | None = None) -> dict[str, Any]:
    """The newest sample of each gateway (a primary-key lookup through gateway.last_health_at,
    however many samples the years have piled up), as plain rows (attribute access like the
    model's; no object per row: 1,000 villages on the overview)."""
    H = HealthSample.__table__
    q = select(*H.columns).join(
        Gateway,
        and_(
            HealthSample.gateway_id == Gateway.id, HealthSample.sampled_at == Gateway.last_health_at
        ),
    )
    if gateway_ids is not None:
        q = q.where(Gateway.id.in_(gateway_ids))
    return {h.gateway_id: h for h in s.execute(q)}


@dataclass
class DaySeries:
    days: list[dt.date]
    users: list[int] = field(default_factory=list)
    down: list[int] = field(default_factory=list)
    up: list[int] = field(default_factory=list)


def day_series(
    s: Session, first: dt.date, last: dt.date, gateway_id: str | None = None
) -> DaySeries:
    """Users (distinct devices of each village, summed), bytes down and up, per local day;
    from the villages' roll-ups (``village_daily``), one row per village and day."""
    V = VillageDaily
    q = (
        select(V.day, func.sum(V.devices), func.sum(V.bytes_down), func.sum(V.bytes_up))
        .where(V.day >= first, V.day <= last)
        .group_by(V.day)
    )
    if gateway_id is not None:
        q = q.where(V.gateway_id == gateway_id)
    got = {d: (int(n or 0), int(dn or 0), int(u or 0)) for d, n, dn, u in s.execute(q)}
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    out = DaySeries(days)
    for d in days:
        n, dn, u = got.get(d, (0, 0, 0))
        out.users.append(n)
        out.down.append(dn)
        out.up.append(u)
    return out


def overview(s: Session, cfg: CollectorConfig, now: dt.datetime) -> dict[str, Any]:
    """Every village: last seen, online, users today/yesterday, traffic over 7 days, sales
    this month, warnings; and the province's totals."""
    today = local_today(cfg, now)
    week = today - dt.timedelta(days=6)
    # plain rows, not objects: 1,000 villages (bench.collector)
    gateways = list(
        s.execute(select(*Gateway.__table__.columns).order_by(Gateway.village, Gateway.id))
    )
    health = latest_health(s)
    per_day: dict[tuple[str, dt.date], tuple[int, int]] = {}
    week_bytes: dict[str, int] = {}
    for gid, day, n, b in s.execute(
        select(
            VillageDaily.gateway_id,
            VillageDaily.day,
            VillageDaily.devices,
            VillageDaily.bytes_down + VillageDaily.bytes_up,
        ).where(VillageDaily.day >= week)
    ):
        per_day[(gid, day)] = (int(n), int(b or 0))
        if day <= today:
            week_bytes[gid] = week_bytes.get(gid, 0) + int(b or 0)
    month = month_of(today)
    sales = {
        gid: (int(c or 0), int(r or 0))
        for gid, c, r in s.execute(
            select(
                SalesMonthly.gateway_id, func.sum(SalesMonthly.count), func.sum(SalesMonthly.rupiah)
            )
            .where(SalesMonthly.month == month)
            .group_by(SalesMonthly.gateway_id)
        )
    }
    rows = []
    for gw in gateways:
        h = health.get(gw.id)
        rows.append(
            {
                "id": gw.id,
                "village": gw.village or gw.id,
                "kabupaten": gw.kabupaten,
                "kecamatan": gw.kecamatan,
                "latitude": gw.latitude,
                "longitude": gw.longitude,
                "last_seen": gw.last_seen_at,
                "online": online(cfg, gw, now),
                "disabled": gw.disabled,
                "users_today": per_day.get((gw.id, today), (0, 0))[0],
                "users_yesterday": per_day.get((gw.id, today - dt.timedelta(days=1)), (0, 0))[0],
                "bytes_7d": week_bytes.get(gw.id, 0),
                "sales_month_count": sales.get(gw.id, (0, 0))[0],
                "sales_month_rupiah": sales.get(gw.id, (0, 0))[1],
                "warnings": warnings(cfg, gw, h, now),
            }
        )
    series = day_series(s, today - dt.timedelta(days=29), today)
    return {
        "today": today,
        "month": month,
        "villages": rows,
        "series": series,
        "online": sum(1 for r in rows if r["online"]),
        "total": len(rows),
        "warned": sum(1 for r in rows if r["warnings"]),
        "sales_month_rupiah": sum(r["sales_month_rupiah"] for r in rows),
    }


class _MonthSales(TypedDict):
    """One package's sales in one month, as the village page lists them."""

    month: str
    package: str
    count: int
    rupiah: int


def village(
    s: Session, cfg: CollectorConfig, gateway_id: str, now: dt.datetime
) -> dict[str, Any] | None:
    gw = s.get(Gateway, gateway_id)
    if gw is None:
        return None
    today = local_today(cfg, now)
    h = latest_health(s, [gateway_id]).get(gateway_id)
    since = now - dt.timedelta(hours=24)
    samples = list(
        s.scalars(
            select(HealthSample)
            .where(HealthSample.gateway_id == gateway_id, HealthSample.sampled_at >= since)
            .order_by(HealthSample.sampled_at)
        )
    )
    probed = [x for x in samples if x.uplink_ok is not None]
    first_month = today.replace(day=1)
    for _ in range(11):
        first_month = (first_month - dt.timedelta(days=1)).replace(day=1)
    sales: list[_MonthSales] = [
        {"month": m, "package": p, "count": c, "rupiah": r}
        for m, p, c, r in s.execute(
            select(
                SalesMonthly.month, SalesMonthly.package, SalesMonthly.count, SalesMonthly.rupiah
            )
            .where(
                SalesMonthly.gateway_id == gateway_id, SalesMonthly.month >= month_of(first_month)
            )
            .order_by(SalesMonthly.month.desc(), SalesMonthly.package)
        )
    ]
    months: dict[str, list[int]] = {}
    for row in sales:
        t = months.setdefault(row["month"], [0, 0])
        t[0] += row["count"]
        t[1] += row["rupiah"]
    return {
        "gateway": gw,
        "online": online(cfg, gw, now),
        "health": health_dict(h),
        "warnings": warnings(cfg, gw, h, now),
        "today": today,
        "series": day_series(s, today - dt.timedelta(days=29), today, gateway_id),
        "samples": samples,
        "uplink_availability": (sum(1 for x in probed if x.uplink_ok) / len(probed))
        if probed
        else None,
        "sales": sales,
        "sales_months": sorted(months.items(), reverse=True),
        "devices_months": devices_per_month(s, gateway_id, first_month, today),
    }


def devices_per_month(
    s: Session, gateway_id: str, first: dt.date, last: dt.date
) -> list[tuple[str, int]]:
    """Distinct devices of one village in each month from ``first`` to ``last`` (newest
    first). A device is its pseudonym, which the gateway renews every period (monthly by
    default, at the village's midnight: hotspot/pseudonym.py): within a month it is one
    device, whenever its records arrived (a backlog from before the rotation carries the
    old period's pseudonyms and its own hours)."""
    D = UsageDaily
    year, month = extract("year", D.day), extract("month", D.day)
    rows = s.execute(
        select(year, month, func.count(distinct(D.client)))
        .where(D.gateway_id == gateway_id, D.day >= first, D.day <= last)
        .group_by(year, month)
    ).all()
    return sorted(((f"{int(y):04d}-{int(m):02d}", int(n)) for y, m, n in rows), reverse=True)


# -- pull API pages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PagedTable:
    """A table the pull API reads in keyset pages: rows in ``keys`` order (a cursor holds the
    last row's key values, read back with ``cursor_types``), each answered as ``item(row)``.
    The first key is the row's period, which from/to bound."""

    model: Any
    keys: tuple[Any, ...]
    cursor_types: tuple[Callable[[Any], Any], ...]
    item: Callable[[Any], dict[str, Any]]

    @property
    def period(self) -> Any:
        return self.keys[0]


def _keyset_rows(
    s: Session,
    q: Select[Any],
    keys: tuple[Any, ...],
    cursor_types: tuple[Callable[[Any], Any], ...],
    cursor: list[Any] | None,
    limit: int,
    plain: bool = False,
) -> tuple[list[Any], list[Any] | None]:
    """Up to ``limit`` rows of ``q`` in ``keys`` order after ``cursor``; and the next page's
    cursor (the last row's key values) if more rows follow."""
    q = q.order_by(*keys).limit(limit + 1)
    if cursor is not None:
        q = q.where(tuple_(*keys) > tuple_(*(cast(v) for cast, v in zip(cursor_types, cursor))))
    # ``plain``: rows of a select of columns, not ORM objects (a page of 10,000 usage rows is
    # 1.6-2.5 times faster without building an object per row: bench.collector)
    rows: list[Any]
    if plain:
        rows = list(s.execute(q))
    else:
        rows = list(s.scalars(q))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, [getattr(rows[-1], key.key) for key in keys]


def table_page(
    s: Session,
    table: PagedTable,
    *,
    lo: Any,
    hi: Any,
    gateway: str | None,
    cursor: list[Any] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """One page of ``table`` (within [lo, hi) of its period; of one gateway, or all) after
    ``cursor``; and the next page's cursor, if more rows follow."""
    q = select(*table.model.__table__.columns)
    if lo is not None:
        q = q.where(table.period >= lo)
    if hi is not None:
        q = q.where(table.period < hi)
    if gateway:
        q = q.where(table.model.gateway_id == gateway)
    rows, nxt = _keyset_rows(s, q, table.keys, table.cursor_types, cursor, limit, plain=True)
    return [table.item(r) for r in rows], nxt


def _usage_item(r: UsageHourly) -> dict[str, Any]:
    return {
        "gateway_id": r.gateway_id,
        "client": r.client,
        "period_start": r.period_start,
        "period_end": r.period_start + dt.timedelta(hours=1),
        "seconds": r.seconds,
        "bytes_down": r.bytes_down,
        "bytes_up": r.bytes_up,
    }


def _sales_item(r: SalesMonthly) -> dict[str, Any]:
    return {
        "gateway_id": r.gateway_id,
        "month": r.month,
        "package": r.package,
        "count": r.count,
        "rupiah": r.rupiah,
    }


# /api/v1/usage: device-hours, from/to bound the hour's start.
USAGE = PagedTable(
    UsageHourly,
    (UsageHourly.period_start, UsageHourly.gateway_id, UsageHourly.client),
    (cursor_time, str, str),
    _usage_item,
)
# /api/v1/sales: packages sold per month, from/to bound the month ("YYYY-MM").
SALES = PagedTable(
    SalesMonthly,
    (SalesMonthly.month, SalesMonthly.gateway_id, SalesMonthly.package),
    (str, str, str),
    _sales_item,
)


def _cursor_day(value: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise BadRequest("cursor: not one of ours") from None


def _daily_item(r: VillageDaily) -> dict[str, Any]:
    return {
        "gateway_id": r.gateway_id,
        "day": r.day.isoformat(),
        "devices": r.devices,
        "seconds": r.seconds,
        "bytes_down": r.bytes_down,
        "bytes_up": r.bytes_up,
    }


# /api/v1/daily: the villages' roll-ups per local day, from/to bound the day.
DAILY = PagedTable(
    VillageDaily, (VillageDaily.day, VillageDaily.gateway_id), (_cursor_day, str), _daily_item
)


def gateways_page(
    s: Session, cfg: CollectorConfig, now: dt.datetime, *, cursor: list[Any] | None, limit: int
) -> tuple[list[dict], list | None]:
    """A page of gateways with each one's newest health sample: one query of plain rows
    (the gateway joined to the sample its ``last_health_at`` names), no object per row and
    no list of ids sent back (1,000 gateways: bench.collector)."""
    G, H = Gateway.__table__, HealthSample.__table__
    q = select(G, *(H.c[f].label("h_" + f) for f in HEALTH_FIELDS)).select_from(
        G.outerjoin(H, and_(H.c.gateway_id == G.c.id, H.c.sampled_at == G.c.last_health_at))
    )
    rows, nxt = _keyset_rows(s, q, (G.c.id,), (str,), cursor, limit, plain=True)
    items = []
    for g in rows:
        health = (
            {f: getattr(g, "h_" + f) for f in HEALTH_FIELDS} if g.h_sampled_at is not None else None
        )
        h = SimpleNamespace(**health) if health is not None else None
        items.append(
            {
                "gateway_id": g.id,
                "village": g.village,
                "timezone": g.timezone,
                "version": g.version,
                "registered_at": g.created_at,
                "last_seen": g.last_seen_at,
                "online": online(cfg, g, now),
                "disabled": g.disabled,
                "warnings": warnings(cfg, g, h, now),
                "health": {
                    k: (iso(v) if isinstance(v, dt.datetime) else v)
                    for k, v in (health or {}).items()
                }
                or None,
                # where the village is (issue #14): as the dashboard groups and maps it
                "kabupaten": g.kabupaten,
                "kecamatan": g.kecamatan,
                "latitude": g.latitude,
                "longitude": g.longitude,
            }
        )
    return items, nxt
