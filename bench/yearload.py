"""The year of ``bench.collector``, loaded fast and faithfully (issue #14, item 1).

A year of 285 villages is ~41.6 M device-hours, ~10.4 M device-days and ~30 M health samples.
Inserted into the migrated tables row by row through their primary keys, secondary indexes
and foreign-key triggers, with every page in the WAL, that took ~10,000 rows/s here (2.5 h
for the year). So the load runs on the bench's own cluster started for it with settings no
production database would use (:data:`LOAD_SETTINGS`: no WAL beyond ``minimal``, no
autovacuum), and fills each monthly partition the way a bulk load does:

1. the month's rows go into a *stage* table (``LIKE`` the parent: the same columns, types,
   defaults and NOT NULLs) emptied by ``TRUNCATE`` in the same transaction, so with
   ``wal_level=minimal`` nothing of it is WAL-logged; no index, no trigger while rows go in;
2. in that transaction, the partition's indexes are built on it (their definitions read from
   the empty partition the migrations and the daily job made), and a CHECK of the month's
   range (so attaching it needs no scan);
3. then, one month at a time (a lock shared by the loaders): the empty partition is dropped,
   the stage renamed to its name, its indexes to the names the dropped one's had, attached
   (``ATTACH PARTITION``: the foreign key to ``gateway`` is added and checked in one query,
   the indexes become partitions of the parent's), the CHECK dropped, and the month's
   ``village_daily`` rows computed from its ``usage_daily`` partition;
4. ``VACUUM ANALYZE`` of the month's partitions (visibility map and statistics, as
   autovacuum would leave them on a collector in service).

Two loaders (connections, threads) take months from one queue. ``usage_daily`` of a month is
the sum of its ``usage_hourly`` stage; ``village_daily`` of a loaded day is the aggregate of
``collector.store.rebuild_village_daily``. The loaded database's schema is then compared with
a freshly migrated one's (``pg_dump --schema-only``): :func:`schema_difference`.

Progress is logged per month; with ``--keep DIR`` each finished month is recorded in
``DIR/bench-collector.json``, and the same command again continues with the months not done.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from collector import maintenance

# The load phase's server settings (after testsupport.postgres's fsync=off,
# synchronous_commit=off, full_page_writes=off). wal_level=minimal lets a table created or
# truncated in the same transaction skip the WAL; the cluster is restarted with the
# bench's normal settings before anything is measured.
LOAD_SETTINGS = (
    "wal_level=minimal",
    "max_wal_senders=0",
    "archive_mode=off",
    "max_wal_size=32GB",
    "checkpoint_timeout=1h",
    "shared_buffers=1GB",
    "maintenance_work_mem=1GB",
    "work_mem=256MB",
    "autovacuum=off",
    # two loaders on two cores: parallel workers inside each would only compete
    "max_parallel_maintenance_workers=0",
    "max_parallel_workers_per_gather=0",
)
LOADERS = 2
TABLES = ("usage_hourly", "usage_daily", "health_sample")
RANGE_CHECK = "bench_month_range"


def log(msg: str) -> None:
    import sys

    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Year:
    """What is loaded: ``gateways`` villages with ``devices`` a day for the days
    [``first``, ``last``] (local WIB days) of per-device rows."""

    gateways: int
    devices: int
    first: dt.date
    last: dt.date

    @property
    def health_start(self) -> dt.datetime:  # the first local day's midnight, in UTC
        return dt.datetime.combine(self.first, dt.time()) - dt.timedelta(hours=7)

    @property
    def health_end(self) -> dt.datetime:  # the last sample: the next local midnight
        return dt.datetime.combine(self.last, dt.time(17))

    def months(self) -> list[dt.date]:
        month, out = maintenance.month_start(self.health_start.date()), []
        while month <= self.last:
            out.append(month)
            month = maintenance.next_month(month)
        return out


# Each generator fills one month's stage. A village g has 2 × devices phones; on day d the
# phones (d·7 + k) mod 2N, k < devices, come, each for 4 hours (not always the same hours),
# with bytes that vary. Rows go in time order (day by day), as ingest would write them.
HOURLY = """
INSERT INTO {stage} (gateway_id, client, period_start, seconds, bytes_down, bytes_up,
                     updated_at)
SELECT 'desa-' || lpad(gw::text, 4, '0'),
       lpad(to_hex(gw * 100000 + ((d.i * 7 + k) %% (2 * %(n)s))), 16, '0'),
       d.day - interval '7 hours' + interval '1 hour' * (7 + (k + h * 3 + d.i) %% 15),
       600 + ((gw + k + h) %% 3000),
       (50000 + (gw::bigint * 7919 + k * 104729 + h * 1299709 + d.i * 15485863) %% 40000000),
       (5000 + (gw * 31 + k * 17 + h) %% 4000000),
       d.day
FROM (SELECT s::date AS day, CAST(s::date - DATE '2000-01-01' AS bigint) AS i
      FROM generate_series(CAST(%(lo)s AS date), CAST(%(hi)s AS date), '1 day') s) d
     CROSS JOIN LATERAL generate_series(1, %(g)s) gw
     CROSS JOIN LATERAL generate_series(0, %(n)s - 1) k
     CROSS JOIN LATERAL generate_series(0, 3) h
"""
# usage_daily: the sum of the day's hours (period_start + 7 h is the WIB day), what
# collector.store keeps at ingest.
DAILY = """
INSERT INTO {stage} (gateway_id, day, client, seconds, bytes_down, bytes_up)
SELECT gateway_id, CAST(period_start + interval '7 hours' AS date), client,
       sum(seconds), sum(bytes_down), sum(bytes_up)
FROM {hourly} GROUP BY 1, 2, 3 ORDER BY 2, 1, 3
"""
HEALTH = """
INSERT INTO {stage} (gateway_id, sampled_at, cpu_pct, load1, load5, load15,
    mem_pct, disk_pct, disk_free_mb, temp_c, uptime_s, uplink_ok, uplink_ms,
    clients_online, backlog, received_at)
SELECT 'desa-' || lpad(gw::text, 4, '0'), t,
       (gw + extract(minute from t)) %% 100, 0.4, 0.3, 0.2, 40 + gw %% 30, 30 + gw %% 50,
       8000, 45 + gw %% 20, 86400, (gw + extract(hour from t)) %% 50 <> 0,
       20 + gw %% 200, (gw + extract(hour from t)) %% 40, 0, t
FROM generate_series(CAST(%(lo)s AS timestamp), CAST(%(hi)s AS timestamp),
                     interval '5 minutes') t
     CROSS JOIN LATERAL generate_series(1, %(g)s) gw
"""
VILLAGE_DAILY = """
INSERT INTO village_daily (gateway_id, day, devices, seconds, bytes_down, bytes_up)
SELECT gateway_id, day, count(*), sum(seconds), sum(bytes_down), sum(bytes_up)
FROM {daily} GROUP BY 1, 2
ON CONFLICT (gateway_id, day) DO UPDATE SET devices = excluded.devices,
    seconds = excluded.seconds, bytes_down = excluded.bytes_down, bytes_up = excluded.bytes_up
"""


def stage_name(table: str, month: dt.date) -> str:
    return f"bench_stage_{table}_p{month:%Y%m}"


@dataclass
class Index:
    """One index of a partition: its name there and how to build it on a stage."""

    name: str
    temp: str
    create: str  # CREATE [UNIQUE] INDEX <temp> ON <stage> USING …
    primary_key: bool


def partition_indexes(conn: Any, table: str, month: dt.date) -> list[Index]:
    """The indexes of ``table``'s partition of ``month`` (made by the migrations or the daily
    job), as statements that build the same ones on the month's stage."""
    part, stage = maintenance.partition_name(table, month), stage_name(table, month)
    out = []
    rows = conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), k.contype "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid "
        "WHERE i.indrelid = CAST(%s AS regclass) ORDER BY 1",
        (part,),
    ).fetchall()
    for n, (name, definition, contype) in enumerate(rows):
        if contype not in (None, "p"):
            raise RuntimeError(f"{part}: index {name} backs a constraint of type {contype}")
        head, using = _split(definition)
        temp = f"{stage}_i{n}"
        out.append(Index(name, temp, f"{head} {temp} ON {stage} {using}", contype == "p"))
    if not out:
        raise RuntimeError(f"{part}: no indexes (not made by the migrations?)")
    return out


def _split(definition: str) -> tuple[str, str]:
    m = re.match(r"^(CREATE (?:UNIQUE )?INDEX) \S+ ON \S+ (USING .*)$", definition)
    if not m:
        raise RuntimeError(f"unexpected index definition: {definition}")
    return m.group(1), m.group(2)


class Loader:
    """Loads the months of ``year`` into the database ``dbname`` of the cluster ``pg``."""

    def __init__(
        self,
        pg: Any,
        dbname: str,
        year: Year,
        done: Mapping[str, Any],
        on_month_done: Callable[[str, dict[str, int]], None],
    ):
        self.pg, self.dbname, self.year = pg, dbname, year
        self.done = set(done)
        self.on_month_done = on_month_done
        self.swap_lock = threading.Lock()
        self.timing_lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.rows: dict[str, int] = {t: 0 for t in (*TABLES, "village_daily")}
        self.indexes: dict[tuple[str, dt.date], list[Index]] = {}
        self.stop = threading.Event()

    def _add(self, what: str, seconds: float, rows: int | None = None) -> None:
        with self.timing_lock:
            self.seconds[what] = round(self.seconds.get(what, 0.0) + seconds, 1)
            if rows is not None:
                self.rows[what] = self.rows.get(what, 0) + rows

    def ranges(self, month: dt.date) -> dict[str, tuple[Any, Any] | None]:
        """Per table, the month's [lo, hi] (inclusive) of generated values, or None."""
        y, nxt = self.year, maintenance.next_month(month)
        days = (max(y.first, month), min(y.last, nxt - dt.timedelta(days=1)))
        t0 = max(y.health_start, dt.datetime.combine(month, dt.time()))
        t1 = min(y.health_end, dt.datetime.combine(nxt, dt.time()) - dt.timedelta(minutes=5))
        usage = days if days[0] <= days[1] else None
        return {
            "usage_hourly": usage,
            "usage_daily": usage,
            "health_sample": (t0, t1) if t0 <= t1 else None,
        }

    def prepare(self) -> list[dt.date]:
        """Read the partitions' indexes; (re)make every stage still to load, empty."""
        todo = [m for m in self.year.months() if f"{m:%Y-%m}" not in self.done]
        with self.pg.connect(self.dbname) as conn:
            for month in self.year.months():  # a stage a cut left behind goes
                for table in TABLES:
                    conn.execute(f"DROP TABLE IF EXISTS {stage_name(table, month)}")
            for month in todo:
                for table, rng in self.ranges(month).items():
                    if rng is None:  # nothing of this table in the month (health's first)
                        continue
                    self.indexes[(table, month)] = partition_indexes(conn, table, month)
                    conn.execute(
                        f"CREATE TABLE {stage_name(table, month)} (LIKE {table} INCLUDING DEFAULTS)"
                    )
        return todo

    def run(self) -> float:
        todo = self.prepare()
        if len(todo) < len(self.year.months()):
            log(f"  resuming: {len(self.year.months()) - len(todo)} months already loaded")
        t0 = time.monotonic()
        with ThreadPoolExecutor(LOADERS, thread_name_prefix="loader") as pool:
            futures = [pool.submit(self.month, m) for m in todo]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                self.stop.set()
                for f in futures:
                    f.cancel()
                raise
        return round(time.monotonic() - t0, 1)

    def month(self, month: dt.date) -> None:
        if self.stop.is_set():
            return
        t_month = time.monotonic()
        ranges = self.ranges(month)
        params = {"g": self.year.gateways, "n": self.year.devices}
        counts: dict[str, int] = {}
        with self.pg.connect(self.dbname) as conn:
            conn.execute("SET synchronous_commit = off")
            with conn.transaction():
                for table, sql in (
                    ("usage_hourly", HOURLY),
                    ("usage_daily", DAILY),
                    ("health_sample", HEALTH),
                ):
                    rng = ranges[table]
                    if rng is None:
                        continue
                    stage = stage_name(table, month)
                    t0 = time.monotonic()
                    conn.execute(f"TRUNCATE {stage}")  # a new file: no WAL for what follows
                    counts[table] = conn.execute(
                        sql.format(stage=stage, hourly=stage_name("usage_hourly", month)),
                        {**params, "lo": rng[0], "hi": rng[1]},
                    ).rowcount
                    self._add(table, time.monotonic() - t0, counts[table])
                    t0 = time.monotonic()
                    self._build_indexes(conn, table, month)
                    self._add(f"{table}_indexes", time.monotonic() - t0)
            if self.stop.is_set():
                return
            t0 = time.monotonic()
            with self.swap_lock:
                with conn.transaction():
                    for table in counts:
                        self._swap(conn, table, month)
                    if "usage_daily" in counts:
                        t1 = time.monotonic()
                        daily = maintenance.partition_name("usage_daily", month)
                        counts["village_daily"] = conn.execute(
                            VILLAGE_DAILY.format(daily=daily)
                        ).rowcount
                        self._add("village_daily", time.monotonic() - t1, counts["village_daily"])
                self.on_month_done(f"{month:%Y-%m}", counts)
            self._add("attach_and_village_daily", time.monotonic() - t0)
            t0 = time.monotonic()
            for table in (t for t in TABLES if t in counts):
                conn.execute(f"VACUUM ANALYZE {maintenance.partition_name(table, month)}")
            self._add("vacuum_analyze", time.monotonic() - t0)
        log(
            f"  {month:%Y-%m}: "
            + ", ".join(f"{t} {n:,}" for t, n in counts.items())
            + f" in {time.monotonic() - t_month:.0f} s"
        )

    def _build_indexes(self, conn: Any, table: str, month: dt.date) -> None:
        stage = stage_name(table, month)
        column = dict(maintenance.PARTITIONED)[table]
        lo, hi = month.isoformat(), maintenance.next_month(month).isoformat()
        for index in self.indexes[(table, month)]:
            conn.execute(index.create)
            if index.primary_key:
                conn.execute(
                    f"ALTER TABLE {stage} ADD CONSTRAINT {index.temp} "
                    f"PRIMARY KEY USING INDEX {index.temp}"
                )
        # implies the partition's bound: ATTACH then skips its scan of the month
        conn.execute(
            f"ALTER TABLE {stage} ADD CONSTRAINT {RANGE_CHECK} "
            f"CHECK ({column} >= '{lo}' AND {column} < '{hi}')"
        )

    def _swap(self, conn: Any, table: str, month: dt.date) -> None:
        part, stage = maintenance.partition_name(table, month), stage_name(table, month)
        lo, hi = month.isoformat(), maintenance.next_month(month).isoformat()
        conn.execute(f"DROP TABLE {part}")
        conn.execute(f"ALTER TABLE {stage} RENAME TO {part}")
        for index in self.indexes[(table, month)]:
            conn.execute(f"ALTER INDEX {index.temp} RENAME TO {index.name}")
        conn.execute(
            f"ALTER TABLE {table} ATTACH PARTITION {part} FOR VALUES FROM ('{lo}') TO ('{hi}')"
        )
        conn.execute(f"ALTER TABLE {part} DROP CONSTRAINT {RANGE_CHECK}")


# -- the schema check --------------------------------------------------------------------------


def schema_dump(pg: Any, dbname: str) -> list[str]:
    """``pg_dump --schema-only`` of ``dbname``, without its comments and per-dump tokens."""
    out = subprocess.run(
        [str(pg.bindir / "pg_dump"), "-h", str(pg.sockdir), "-p", str(pg.port), "-U", "postgres"]
        + ["--schema-only", "--no-owner", "--no-privileges", dbname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        line
        for line in out.splitlines()
        if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    ]


def schema_difference(pg: Any, loaded: str, reference: str) -> list[str]:
    """The unified diff of the two databases' schemas (empty: the same)."""
    return list(
        difflib.unified_diff(
            schema_dump(pg, reference), schema_dump(pg, loaded), "migrated", "loaded", lineterm=""
        )
    )
