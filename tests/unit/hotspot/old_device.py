"""A device's database as a gateway of an older release left it (issue #15 item 5): migrated
with Alembic to revision :data:`OLD_REVISION` (trusted devices, before the daily summary,
agents, online-time packages, auto-resume, uplink outages and announcements), then filled
through SQL that is valid at that revision — as that release's code wrote it — with what a
village has after some weeks: devices, a package, a batch of vouchers (sold and used, sold
and unused, in stock), sessions, hourly and daily usage, two operators and a login session,
the audit log's hash chain, a trusted device, the sync agent's outbox and state.

``build(path, key)`` returns what a test needs to check that it all survived: the row
counts of every table and the codes of the vouchers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command

from hotspot import audit, operators
from hotspot.audit import Actor
from hotspot.db import alembic_config, make_engine
from hotspot.vouchers.codes import code_hash, derive_code, format_code

OLD_REVISION = "0008"
SALT = "5a17" * 8
ADMIN_PW = "Sungai-Duren-77"
T0 = dt.datetime(2026, 10, 1, 1, 0)  # the first of October, 08.00 WIB
PHONE_A, PHONE_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def _ts(delta: dt.timedelta) -> str:
    return (T0 + delta).isoformat(sep=" ")


def build(path: Path, key: bytes) -> dict[str, Any]:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, OLD_REVISION)
    bare = [derive_code(key, SALT, serial) for serial in (1, 2, 3)]
    codes = [format_code(code) for code in bare]
    day = dt.timedelta(days=1)
    hour = dt.timedelta(hours=1)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO device (mac, first_seen, last_seen, hostname, blocked) "
            "VALUES (?, ?, ?, ?, 0)",
            [
                (PHONE_A, _ts(0 * day), _ts(3 * day), "redmi-9a"),
                (PHONE_B, _ts(day), _ts(day), None),
            ],
        )
        db.execute(
            "INSERT INTO package (id, name, title, price, tier, hours, data_mb, devices, "
            "shelf_days, active, source, created_at, updated_at) VALUES "
            "(1, 'harian', 'Harian', 5000, 'premium', 24, 1000, 1, NULL, 1, 'config', ?, ?)",
            (_ts(0 * day), _ts(0 * day)),
        )
        db.execute(
            "INSERT INTO voucher_batch (id, package_id, package_name, price, tier, hours, "
            "data_mb, devices, count, salt, created_at, valid_until, note, created_by) VALUES "
            "(1, 1, 'harian', 5000, 'premium', 24, 1000, 1, 3, ?, ?, NULL, 'Oktober', 'budi')",
            (SALT, _ts(0 * day)),
        )
        vouchers = [
            # sold and used on phone A (its day is over), sold and not used yet, in stock
            (1, "active", _ts(hour), _ts(2 * hour), _ts(2 * hour + day), 1_000_000_000),
            (2, "new", _ts(hour), None, None, None),
            (3, "new", None, None, None, None),
        ]
        for serial, state, sold, first, expires, total in vouchers:
            db.execute(
                "INSERT INTO voucher (id, batch_id, serial, code_hash, state, created_at, "
                "sold_at, first_used_at, expires_at, bytes_total) "
                "VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    serial,
                    serial,
                    code_hash(key, bare[serial - 1]),
                    state,
                    _ts(0 * day),
                    sold,
                    first,
                    expires,
                    total,
                ),
            )
        db.executemany(
            "INSERT INTO voucher_sale (voucher_id, sold_at, operator_id, operator, price) "
            "VALUES (?, ?, 1, 'budi', 5000)",
            [(1, _ts(hour)), (2, _ts(hour))],
        )
        db.execute(
            "INSERT INTO voucher_device (voucher_id, mac, bound_at, last_seen_at) "
            "VALUES (1, ?, ?, ?)",
            (PHONE_A, _ts(2 * hour), _ts(5 * hour)),
        )
        sessions = [
            (
                1,
                PHONE_A,
                "10.10.0.11",
                "free",
                "free",
                1024,
                512,
                15,
                0 * day,
                "idle-timeout",
                None,
            ),
            (
                2,
                PHONE_A,
                "10.10.0.11",
                "premium",
                "voucher",
                10240,
                2048,
                0,
                2 * hour,
                "session-timeout",
                1,
            ),
            (3, PHONE_B, "10.10.0.12", "free", "free", 1024, 512, 15, day, "logout", None),
        ]
        for sid, mac, ip, tier, source, down, up, idle, start, reason, vid in sessions:
            db.execute(
                "INSERT INTO client_session (id, mac, ip, tier, source, down_kbps, up_kbps, "
                "idle_minutes, started_at, expires_at, last_activity_at, ended_at, end_reason, "
                "bytes_down, bytes_up, bytes_limit, voucher_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, 50000000, 4000000, NULL, ?)",
                (
                    sid,
                    mac,
                    ip,
                    tier,
                    source,
                    down,
                    up,
                    idle,
                    _ts(start),
                    _ts(start + hour),
                    _ts(start + hour),
                    reason,
                    vid,
                ),
            )
        db.executemany(
            "INSERT INTO hourly_usage (mac, hour, seconds, bytes_down, bytes_up) "
            "VALUES (?, ?, 3600, 25000000, 2000000)",
            [(PHONE_A, _ts(0 * day)), (PHONE_A, _ts(2 * hour)), (PHONE_B, _ts(day))],
        )
        db.executemany(
            "INSERT INTO daily_usage (mac, day, tier, seconds, bytes_down, bytes_up) "
            "VALUES (?, ?, ?, 3600, 25000000, 2000000)",
            [
                (PHONE_A, "2026-10-01", "free"),
                (PHONE_A, "2026-10-01", "premium"),
                (PHONE_B, "2026-10-02", "free"),
            ],
        )
        db.execute(
            "INSERT INTO trusted_device (mac, label, tier, created_at, created_by) "
            "VALUES ('3c:5a:b4:12:34:56', 'PC kantor desa', 'unlimited', ?, 'budi')",
            (_ts(0 * day),),
        )
        db.execute(
            "INSERT INTO sync_state (name, value, updated_at) VALUES ('usage_watermark', ?, ?)",
            (_ts(3 * day), _ts(3 * day)),
        )
        db.execute(
            "INSERT INTO sync_outbox (kind, key, payload, rev, sent_rev, period, created_at, "
            "updated_at) VALUES ('sales', '2026-10|harian', '{}', 2, 1, NULL, ?, ?)",
            (_ts(3 * day), _ts(3 * day)),
        )
        for oid, name, role in ((1, "budi", "admin"), (2, "siti", "kasir")):
            db.execute(
                "INSERT INTO operator (id, name, full_name, role, password_hash, active, "
                "session_version, created_at, updated_at) VALUES (?, ?, NULL, ?, ?, 1, 1, ?, ?)",
                (oid, name, role, operators.hash_password(ADMIN_PW), _ts(0 * day), _ts(0 * day)),
            )
        db.execute(
            "INSERT INTO operator_session (token_hash, operator_id, version, created_at, "
            "last_seen_at, expires_at, ip) VALUES (?, 1, 1, ?, ?, ?, '10.10.0.50')",
            ("ab" * 32, _ts(3 * day), _ts(3 * day), _ts(3 * day + 12 * hour)),
        )
    # The audit log's chain, written by the same function the old release used: the columns
    # of audit_log have not changed since.
    budi = Actor("budi", 1, "admin", "10.10.0.50")
    with audit.write(engine) as conn:
        audit.record(conn, budi, "batch.create", "batch:1", after={"count": 3}, at=T0)
        audit.record(conn, budi, "voucher.sell", "voucher:1", after={"price": 5000}, at=T0 + hour)
        audit.record(conn, budi, "voucher.sell", "voucher:2", after={"price": 5000}, at=T0 + hour)
    engine.dispose()
    return {"codes": codes, "counts": counts(path)}


def counts(path: Path) -> dict[str, int]:
    """Rows per table (the migration bookkeeping aside)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        names = [
            n
            for (n,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'"
            )
        ]
        return {n: db.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
