"""Writing to the collector's database: applying a batch, registering gateways, API tokens.

A batch is applied in the caller's transaction with upsert semantics that can never count
twice: usage as the per-field maximum of what is stored and what arrived (reports carry
absolute totals), the daily roll-ups (per device, and per village: ``village_daily``) moved
by exactly the difference, health samples inserted once per (gateway, time), sales, the
uplink's outages and the gateway's description replaced only by a higher revision.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import FromClause, Table, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collector.models import (
    ApiToken,
    Gateway,
    HealthSample,
    SalesMonthly,
    UplinkOutage,
    UsageDaily,
    UsageHourly,
    VillageDaily,
)
from hotspot.errors import ErrorCode, NotFound, Refused, UsageError
from hotspot.timeutil import local_day, utcnow

GATEWAY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


def _insert(session: Session, table: FromClause):  # a model's __table__: typed FromClause, a Table
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(cast(Table, table))
    if name == "sqlite":
        return sqlite.insert(cast(Table, table))
    raise RuntimeError(f"unsupported database {name}")  # pragma: no cover


def _upsert(
    session: Session,
    table: FromClause,
    key: list[str],
    rows: list[dict[str, Any]],
    *,
    replace: tuple[str, ...],
    only_if_higher: str | None = None,
) -> None:
    """Insert ``rows``; where a row with the same ``key`` is stored, take the arriving values
    of the ``replace`` columns instead — if ``only_if_higher`` names a revision column, only
    where the arriving revision is higher (a late report never undoes a newer one)."""
    ins = _insert(session, table)
    newer = None
    if only_if_higher is not None:
        newer = table.c[only_if_higher] < ins.excluded[only_if_higher]
    session.execute(
        ins.on_conflict_do_update(
            index_elements=key,
            set_={column: ins.excluded[column] for column in replace},
            where=newer,
        ),
        rows,
    )


def _chunks(items: list[Any], n: int = 400) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def apply_records(
    session: Session,
    gateway_id: str,
    records: list[dict[str, Any]],
    tz: zoneinfo.ZoneInfo,
    now: dt.datetime,
) -> dict[str, int]:
    """Apply validated records (hotspot.wire.validate_record) of one gateway. The caller holds
    the gateway's row lock, so the read-compute-write of usage is not raced."""
    counts: dict[str, int] = defaultdict(int)
    usage: dict[tuple[str, dt.datetime], tuple[int, int, int]] = {}
    health: dict[dt.datetime, dict[str, Any]] = {}
    sales: dict[tuple[str, str], dict[str, Any]] = {}
    outages: dict[dt.datetime, dict[str, Any]] = {}
    info: dict[str, Any] | None = None
    for r in records:
        kind = r["kind"]
        counts[kind] += 1
        if kind == "usage":
            k = (r["client"], r["period_start"])
            new = (r["seconds"], r["bytes_down"], r["bytes_up"])
            old = usage.get(k)
            usage[k] = new if old is None else tuple(max(a, b) for a, b in zip(old, new))
        elif kind == "health":
            health[r["sampled_at"]] = r
        elif kind == "sales":
            k2 = (r["month"], r["package"])
            if k2 not in sales or sales[k2]["rev"] < r["rev"]:
                sales[k2] = r
        elif kind == "outage":
            k3 = r["started_at"]
            if k3 not in outages or outages[k3]["rev"] < r["rev"]:
                outages[k3] = r
        elif info is None or info["rev"] < r["rev"]:
            info = r

    if usage:
        existing: dict[tuple[str, dt.datetime], tuple[int, int, int]] = {}
        H = UsageHourly
        for chunk in _chunks(sorted(usage, key=lambda k: k[1])):
            for client, period, sec, down, up in session.execute(
                select(H.client, H.period_start, H.seconds, H.bytes_down, H.bytes_up).where(
                    H.gateway_id == gateway_id,
                    # the bounds let PostgreSQL read only the partitions of these months
                    H.period_start >= chunk[0][1],
                    H.period_start <= chunk[-1][1],
                    tuple_(H.client, H.period_start).in_(chunk),
                )
            ):
                existing[(client, period)] = (sec, down, up)
        hourly_rows = []
        daily: dict[tuple[dt.date, str], list[int]] = {}
        for (client, period), new in usage.items():
            old = existing.get((client, period))
            base = old or (0, 0, 0)
            val = tuple(max(a, b) for a, b in zip(base, new))
            if old is not None and val == old:
                continue
            hourly_rows.append(
                {
                    "gateway_id": gateway_id,
                    "client": client,
                    "period_start": period,
                    "seconds": val[0],
                    "bytes_down": val[1],
                    "bytes_up": val[2],
                    "updated_at": now,
                }
            )
            d = daily.setdefault((local_day(period, tz), client), [0, 0, 0])
            for i in range(3):
                d[i] += val[i] - base[i]
        if hourly_rows:
            village = _village_deltas(session, gateway_id, daily)
            _upsert(
                session,
                H.__table__,
                ["gateway_id", "client", "period_start"],
                hourly_rows,
                replace=("seconds", "bytes_down", "bytes_up", "updated_at"),
            )
            D = UsageDaily.__table__
            ins = _insert(session, D)
            session.execute(
                ins.on_conflict_do_update(
                    index_elements=["gateway_id", "day", "client"],
                    set_={
                        "seconds": D.c.seconds + ins.excluded.seconds,
                        "bytes_down": D.c.bytes_down + ins.excluded.bytes_down,
                        "bytes_up": D.c.bytes_up + ins.excluded.bytes_up,
                    },
                ),
                [
                    {
                        "gateway_id": gateway_id,
                        "day": day,
                        "client": client,
                        "seconds": v[0],
                        "bytes_down": v[1],
                        "bytes_up": v[2],
                    }
                    for (day, client), v in daily.items()
                ],
            )
            V = VillageDaily.__table__
            ins = _insert(session, V)
            session.execute(
                ins.on_conflict_do_update(
                    index_elements=["gateway_id", "day"],
                    set_={
                        c: V.c[c] + ins.excluded[c]
                        for c in ("devices", "seconds", "bytes_down", "bytes_up")
                    },
                ),
                [
                    {
                        "gateway_id": gateway_id,
                        "day": day,
                        "devices": v[0],
                        "seconds": v[1],
                        "bytes_down": v[2],
                        "bytes_up": v[3],
                    }
                    for day, v in village.items()
                ],
            )
        counts["usage_changed"] = len(hourly_rows)
    if health:
        ins = _insert(session, HealthSample.__table__)
        session.execute(
            ins.on_conflict_do_nothing(index_elements=["gateway_id", "sampled_at"]),
            [
                {
                    # the columns the collector keeps (a newer gateway may send more)
                    **{k: v for k, v in r.items() if k in HealthSample.__table__.c},
                    "gateway_id": gateway_id,
                    "received_at": now,
                }
                for r in health.values()
            ],
        )
        newest = max(health)
        session.execute(
            update(Gateway)
            .where(
                Gateway.id == gateway_id,
                (Gateway.last_health_at.is_(None)) | (Gateway.last_health_at < newest),
            )
            .values(last_health_at=newest, policy_version=health[newest].get("policy_version"))
        )
    if sales:
        _upsert(
            session,
            SalesMonthly.__table__,
            ["gateway_id", "month", "package"],
            [
                {
                    "gateway_id": gateway_id,
                    "month": r["month"],
                    "package": r["package"],
                    "count": r["count"],
                    "rupiah": r["rupiah"],
                    "rev": r["rev"],
                    "updated_at": now,
                }
                for r in sales.values()
            ],
            replace=("count", "rupiah", "rev", "updated_at"),
            only_if_higher="rev",
        )
    if outages:
        _upsert(
            session,
            UplinkOutage.__table__,
            ["gateway_id", "started_at"],
            [
                {
                    "gateway_id": gateway_id,
                    "started_at": r["started_at"],
                    "ended_at": r["ended_at"],
                    "cause": r["cause"],
                    "rev": r["rev"],
                    "updated_at": now,
                }
                for r in outages.values()
            ],
            replace=("ended_at", "cause", "rev", "updated_at"),
            only_if_higher="rev",
        )
    if info is not None:
        session.execute(
            update(Gateway)
            .where(Gateway.id == gateway_id, Gateway.info_rev < info["rev"])
            .values(
                village=info["village"],
                timezone=info["timezone"],
                version=info["version"],
                info_rev=info["rev"],
            )
        )
    return dict(counts)


def _village_deltas(
    session: Session, gateway_id: str, daily: dict[tuple[dt.date, str], list[int]]
) -> dict[dt.date, list[int]]:
    """What ``daily`` (per-device deltas of one gateway, not yet applied) adds to each day of
    the village: ``[devices, seconds, bytes_down, bytes_up]``. A device counts once a day:
    only if it has no ``usage_daily`` row yet that day (however many batches it reports in;
    the caller holds the gateway's row lock, so no other batch of it is between the read and
    the write)."""
    D = UsageDaily
    seen: set[tuple[dt.date, str]] = set()
    for chunk in _chunks(sorted(daily)):
        seen.update(
            (day, client)
            for day, client in session.execute(
                select(D.day, D.client).where(
                    D.gateway_id == gateway_id,
                    D.day >= chunk[0][0],
                    D.day <= chunk[-1][0],
                    tuple_(D.day, D.client).in_(chunk),
                )
            )
        )
    out: dict[dt.date, list[int]] = {}
    for (day, client), (sec, down, up) in daily.items():
        v = out.setdefault(day, [0, 0, 0, 0])
        v[0] += (day, client) not in seen
        v[1] += sec
        v[2] += down
        v[3] += up
    return out


def rebuild_village_daily(session: Session, first: dt.date, last: dt.date) -> int:
    """Recompute ``village_daily`` for the days [first, last] from ``usage_daily`` (a repair;
    idempotent). Days whose per-device rows were purged are left as they are."""
    D = UsageDaily
    rows = [
        {
            "gateway_id": gid,
            "day": day,
            "devices": int(n),
            "seconds": int(sec or 0),
            "bytes_down": int(down or 0),
            "bytes_up": int(up or 0),
        }
        for gid, day, n, sec, down, up in session.execute(
            select(
                D.gateway_id,
                D.day,
                func.count(),
                func.sum(D.seconds),
                func.sum(D.bytes_down),
                func.sum(D.bytes_up),
            )
            .where(D.day >= first, D.day <= last)
            .group_by(D.gateway_id, D.day)
        )
    ]
    for chunk in _chunks(rows, 1000):
        _upsert(
            session,
            VillageDaily.__table__,
            ["gateway_id", "day"],
            chunk,
            replace=("devices", "seconds", "bytes_down", "bytes_up"),
        )
    return len(rows)


# -- gateways ---------------------------------------------------------------------------------


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 43 characters, 256 bits


def add_gateway(session: Session, gateway_id: str) -> dict[str, str]:
    if not GATEWAY_ID.match(gateway_id or ""):
        raise UsageError(
            f"not a valid gateway id: {gateway_id!r} "
            "(2-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)"
        )
    if session.get(Gateway, gateway_id) is not None:
        raise Refused(
            f"gateway {gateway_id} is already registered (use 'gateways rotate' for a new secret)",
            code=ErrorCode.EXISTS,
        )
    secret = new_secret()
    session.add(Gateway(id=gateway_id, secret=secret, created_at=utcnow()))
    try:
        session.flush()
    except IntegrityError:
        raise Refused(
            f"gateway {gateway_id} is already registered", code=ErrorCode.EXISTS
        ) from None
    return {"id": gateway_id, "secret": secret}


def rotate_gateway(session: Session, gateway_id: str) -> dict[str, str]:
    gw = session.get(Gateway, gateway_id)
    if gw is None:
        raise NotFound(f"no gateway {gateway_id!r}")
    gw.secret = new_secret()
    return {"id": gateway_id, "secret": gw.secret}


def set_gateway_disabled(session: Session, gateway_id: str, disabled: bool) -> dict[str, Any]:
    gw = session.get(Gateway, gateway_id)
    if gw is None:
        raise NotFound(f"no gateway {gateway_id!r}")
    gw.disabled = disabled
    return {"id": gateway_id, "disabled": disabled}


def set_gateway_place(
    session: Session,
    gateway_id: str,
    *,
    kabupaten: str | None = None,
    kecamatan: str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
) -> dict[str, Any]:
    """Where a village is (None leaves a field as it is, "" clears a name)."""
    gw = session.get(Gateway, gateway_id)
    if gw is None:
        raise NotFound(f"no gateway {gateway_id!r}")
    for name, value in (("kabupaten", kabupaten), ("kecamatan", kecamatan)):
        if value is None:
            continue
        value = value.strip()
        if len(value) > 100 or any(ord(c) < 32 for c in value):
            raise UsageError(f"--{name}: at most 100 characters on one line")
        setattr(gw, name, value or None)
    if (latitude is None) != (longitude is None):
        raise UsageError("--lat and --lon go together")
    if latitude is not None and longitude is not None:
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise UsageError("--lat must be within -90..90 and --lon within -180..180")
        gw.latitude, gw.longitude = latitude, longitude
    return {
        "id": gw.id,
        "kabupaten": gw.kabupaten,
        "kecamatan": gw.kecamatan,
        "latitude": gw.latitude,
        "longitude": gw.longitude,
    }


# -- API tokens -------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str) -> dict[str, str]:
    if not TOKEN_NAME.match(name or ""):
        raise UsageError(
            f"not a valid token name: {name!r} (letters, digits, space . _ -; at most 64)"
        )
    if session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
        raise Refused(f"a token named {name!r} exists (revoke it first)", code=ErrorCode.EXISTS)
    token = "hdc_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(token), created_at=utcnow()))
    session.flush()
    return {"name": name, "token": token}


def revoke_token(session: Session, name: str) -> dict[str, str]:
    tok = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if tok is None:
        raise NotFound(f"no token named {name!r}")
    session.delete(tok)
    return {"name": name, "revoked": "yes"}


def check_token(session: Session, token: str, now: dt.datetime) -> ApiToken | None:
    if not token:
        return None
    tok = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )
    if tok is not None and (
        tok.last_used_at is None or now - tok.last_used_at > dt.timedelta(minutes=1)
    ):
        tok.last_used_at = now  # at most one write a minute per token
    return tok
