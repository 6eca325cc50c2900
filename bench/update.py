"""Update-path benchmark: ``python3 -m bench.update [--quick]`` (no root needed).

What a field update costs on a village's database, and what the splash page pays for
announcements (issue #15 items 3 and 5):

* ``backup``: ``hotspot.backup.make_backup`` (SQLite's online backup API, checked, synced) of a
  device database at revision 0008 grown to a village's year — against a plain copy of the same
  file with ``fsync`` (``copy``), the baseline measured in the same run;
* ``migrate``: ``hotspot.db.migrate`` of a copy of it to the newest revision (the automatic
  backup included, then every migration in one transaction) — also as a ratio to ``copy``;
* ``announcements_active``: one ``hotspot.announcements.active`` call (what each splash and
  status page adds) with 200 notices in the table and 5 showing, against ``SELECT 1`` on the
  same engine (the floor of any query).

Trials are interleaved (copy, backup, migrate, copy, …) so that the machine's load, shared
with other work, falls on all of them alike; the load average is recorded before and after.
Writes ``bench/results/update.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import text

from hotspot import announcements, backup
from hotspot.audit import Actor
from hotspot.db import alembic_config, make_engine, migrate, open_database

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
OLD_REVISION = "0008"
T0 = dt.datetime(2025, 12, 1)


def build_old_database(path: Path, scale: float) -> dict[str, int]:
    """A device database at revision 0008 with a village's year of rows (``scale`` = 1: 600
    devices, 20,000 vouchers, 60,000 sessions, 150,000 hourly usage rows)."""
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, OLD_REVISION)
    engine.dispose()
    devices, vouchers = int(600 * scale), int(20_000 * scale)
    sessions, hourly = int(60_000 * scale), int(150_000 * scale)
    macs = [
        f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}" for i in range(devices)
    ]
    ts = T0.isoformat(sep=" ")
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO device (mac, first_seen, last_seen, blocked) VALUES (?, ?, ?, 0)",
            [(m, ts, ts) for m in macs],
        )
        db.execute(
            "INSERT INTO package (id, name, title, price, tier, hours, data_mb, devices, "
            "active, source, created_at, updated_at) VALUES "
            "(1, 'harian', 'Harian', 5000, 'premium', 24, 1000, 1, 1, 'config', ?, ?)",
            (ts, ts),
        )
        db.execute(
            "INSERT INTO voucher_batch (id, package_id, package_name, price, tier, hours, "
            "data_mb, devices, count, salt, created_at) VALUES "
            "(1, 1, 'harian', 5000, 'premium', 24, 1000, 1, ?, 'salt', ?)",
            (vouchers, ts),
        )
        db.executemany(
            "INSERT INTO voucher (id, batch_id, serial, code_hash, state, created_at, sold_at) "
            "VALUES (?, 1, ?, ?, 'active', ?, ?)",
            [(i, i, f"{i:064x}", ts, ts) for i in range(1, vouchers + 1)],
        )
        db.executemany(
            "INSERT INTO voucher_sale (voucher_id, sold_at, operator_id, operator, price) "
            "VALUES (?, ?, 1, 'budi', 5000)",
            [(i, ts) for i in range(1, vouchers + 1)],
        )
        db.executemany(
            "INSERT INTO voucher_device (voucher_id, mac, bound_at, last_seen_at) "
            "VALUES (?, ?, ?, ?)",
            [(i, macs[i % devices], ts, ts) for i in range(1, vouchers + 1)],
        )
        db.executemany(
            "INSERT INTO client_session (id, mac, ip, tier, source, down_kbps, up_kbps, "
            "idle_minutes, started_at, last_activity_at, ended_at, end_reason, bytes_down, "
            "bytes_up) VALUES (?, ?, '10.10.0.11', 'free', 'free', 1024, 512, 15, ?, ?, ?, "
            "'idle-timeout', 1000000, 100000)",
            [(i, macs[i % devices], ts, ts, ts) for i in range(1, sessions + 1)],
        )
        hours = [
            (T0 + dt.timedelta(hours=h)).isoformat(sep=" ") for h in range(hourly // devices + 1)
        ]
        db.executemany(
            "INSERT INTO hourly_usage (mac, hour, seconds, bytes_down, bytes_up) "
            "VALUES (?, ?, 3600, 1000000, 100000)",
            [(macs[i % devices], hours[i // devices]) for i in range(hourly)],
        )
    return {"devices": devices, "vouchers": vouchers, "sessions": sessions, "hourly_usage": hourly}


def plain_copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    with open(target, "rb+") as fh:
        os.fsync(fh.fileno())


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def run(scale: float, trials: int, calls: int) -> dict[str, Any]:
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
        work = Path(tmp)
        old = work / "old.db"
        rows = build_old_database(old, scale)
        size = old.stat().st_size
        copy_s, backup_s, migrate_s = [], [], []
        for i in range(trials):
            copy_s.append(timed(lambda: plain_copy(old, work / f"copy-{i}.db")))
            backup_s.append(timed(lambda: backup.make_backup(old, work / f"backup-{i}.db")))
            target = work / f"device-{i}.db"
            plain_copy(old, target)
            engine = make_engine(f"sqlite:///{target}")
            migrate_s.append(timed(lambda: migrate(engine)))
            engine.dispose()
            for name in (f"copy-{i}.db", f"backup-{i}.db"):
                (work / name).unlink()

        engine = open_database(f"sqlite:///{work / 'device-0.db'}")
        admin = Actor("bench", 1, "admin")
        for n in range(announcements.MAX_ROWS):
            # 5 show now; the rest ended (the table a busy year leaves)
            start = T0 if n < 5 else T0 - dt.timedelta(days=30)
            announcements.add(
                engine,
                f"Pengumuman {n}",
                None,
                start,
                start + dt.timedelta(days=7),
                actor=admin,
                at=T0,
            )
        now = T0 + dt.timedelta(hours=1)
        assert len(announcements.active(engine, now)) == 5
        floor_s, active_s = [], []
        with engine.connect() as conn:
            for _ in range(calls):
                floor_s.append(timed(lambda: conn.execute(text("SELECT 1")).all()))
                active_s.append(timed(lambda: announcements.active(engine, now)))
        engine.dispose()
    copy_ms = median_ms(copy_s)
    return {
        "meta": {
            "machine": platform.node(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "loadavg_before": load_before,
            "loadavg_after": list(os.getloadavg()),
            "trials": trials,
            "calls": calls,
            "scale": scale,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "database": {"rows": rows, "size_mb": round(size / 1e6, 1), "revision": OLD_REVISION},
        "copy_ms": copy_ms,
        "backup_ms": median_ms(backup_s),
        "backup_to_copy_ratio": round(median_ms(backup_s) / copy_ms, 2),
        "migrate_ms": median_ms(migrate_s),
        "migrate_to_copy_ratio": round(median_ms(migrate_s) / copy_ms, 2),
        "select1_us": round(statistics.median(floor_s) * 1e6, 1),
        "announcements_active_us": round(statistics.median(active_s) * 1e6, 1),
        "announcements_to_select1_ratio": round(
            statistics.median(active_s) / statistics.median(floor_s), 1
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.update", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a tenth of the rows, 2 trials")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--output", default=str(RESULTS / "update.json"))
    args = p.parse_args(argv)
    scale, trials, calls = (0.1, 2, 200) if args.quick else (1.0, args.trials, 2000)
    report = run(scale, trials, calls)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "meta"}, indent=2))
    print(f"load {report['meta']['loadavg_before']} → {report['meta']['loadavg_after']}; {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
