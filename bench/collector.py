"""The province's collector at full scale (issue #14, item 1): ``python3 -m bench.collector``.

Starts its own PostgreSQL (testsupport.postgres: private Unix socket, fsync off) and the real
collector under gunicorn (``hotspot collector run``, the shipped workers/threads), then:

1. **load**: a year of the province (bench.yearload), on the cluster started with bulk-load
   settings (``wal_level=minimal``, no autovacuum…) and restarted with the normal ones after:
   per-device rows (``usage_hourly``, ``usage_daily``, ``health_sample``) for the last
   ``--days`` days, a monthly partition at a time (a stage table without WAL, its indexes,
   ``ATTACH PARTITION``; two loaders), the villages' daily roll-ups for 365 days and the
   monthly sales for 12 months; the loaded schema compared with a freshly migrated one's
   (``pg_dump --schema-only``: a difference stops the bench);
2. **baseline**: every dashboard page and API query on a database with the gateways
   registered and nothing else, and batches posted one at a time (no contention);
3. **ingest**: ``--posters`` gateways (1,000) each post one signed, gzipped batch at the same
   moment (an hour of the village as sync/agent.py builds it: its devices' usage, 12 health
   samples, sales, the gateway's description), through real TCP to gunicorn; p50/p99 per
   batch, batches/s, errors; then the database is counted: every batch applied once (0
   duplicates), every record there;
4. **queries**: every page and query again, ``--reps`` times each, with the year loaded: p50
   and p95, and the ratio to the baseline of step 2; then ``EXPLAIN (ANALYZE, BUFFERS)`` of
   the usage and daily pages' own SQL (which partitions they read).

Results: ``bench/results/collector.json`` (machine, load average, the cluster's settings,
what was loaded and how long it took). ``--quick``: a small fraction, for the test of the
bench (well under a minute). ``--keep DIR`` / ``--reuse DIR``: load once, measure again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bench import yearload
from collector import maintenance
from collector.db import make_engine, migrate
from collector.models import Gateway
from collector.store import create_token
from hotspot import wire
from testsupport.loopback import free_port
from testsupport.postgres import running_postgres

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TZ = "Asia/Jakarta"  # the loaded days are WIB days (UTC+7, no DST): usage_daily.day below
SECRET = "bench-" + "s" * 40
PACKAGES = (("harian", 5000), ("mingguan", 25000), ("bulanan", 80000))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def rnd(v: float | None, digits: int = 1) -> float | None:
    return None if v is None else round(v, digits)


def gateway_id(i: int) -> str:
    return f"desa-{i:04d}"


# -- the year, in bulk -------------------------------------------------------------------------


def load_year(
    pg: Any,
    dbname: str,
    args: argparse.Namespace,
    today: dt.date,
    state: dict[str, Any],
    save: Any,
) -> dict[str, Any]:
    """The province's year (bench.yearload: per-device rows month by month, two loaders),
    then the older roll-ups and the sales; returns what was loaded and how long it took.
    ``state["months_done"]`` (month → rows) holds the months already loaded (a resumed
    run); ``save()`` records it after each month."""
    g, n = args.gateways, args.devices
    first_device_day = today - dt.timedelta(days=args.days - 1)
    first_rollup_day = today - dt.timedelta(days=364)
    year = yearload.Year(g, n, first_device_day, today)
    done: dict[str, dict[str, int]] = state.setdefault("months_done", {})
    lock = threading.Lock()

    def month_done(month: str, counts: dict[str, int]) -> None:
        with lock:
            done[month] = counts
            save()

    loader = yearload.Loader(pg, dbname, year, done, month_done)
    log(
        f"loading the year ({g} gateways, {n} devices a day, {args.days} days of per-device "
        f"rows: {len(year.months())} months, {yearload.LOADERS} loaders)"
    )
    timings: dict[str, float] = {"per_device_months_wall": loader.run()}
    timings.update(loader.seconds)

    def run(conn: Any, name: str, sql: str, **params: Any) -> int:
        t0 = time.monotonic()
        count = int(conn.execute(sql, params).rowcount)
        timings[name] = round(time.monotonic() - t0, 1)
        log(f"  {name}: {count:,} rows in {timings[name]} s")
        return count

    months, m = [], today.replace(day=1)
    for _ in range(12):
        months.append(f"{m:%Y-%m}")
        m = (m - dt.timedelta(days=1)).replace(day=1)
    with pg.connect(dbname) as conn:
        # the year's days before the per-device rows: the roll-ups by the same formula's
        # figures directly
        older = run(
            conn,
            "village_daily_older",
            """
            INSERT INTO village_daily (gateway_id, day, devices, seconds, bytes_down, bytes_up)
            SELECT 'desa-' || lpad(gw::text, 4, '0'), s::date, %(n)s, %(n)s * 4 * 2000,
                   %(n)s * 4 * 20000000::bigint, %(n)s * 4 * 2000000::bigint
            FROM generate_series(1, %(g)s) gw,
                 generate_series(CAST(%(rfirst)s AS date), CAST(%(first)s AS date) - 1,
                                 '1 day') s
            ON CONFLICT DO NOTHING
            """,
            g=g,
            n=n,
            rfirst=first_rollup_day,
            first=first_device_day,
        )
        sales = run(
            conn,
            "sales_monthly",
            """
            INSERT INTO sales_monthly (gateway_id, month, package, count, rupiah, rev,
                                       updated_at)
            SELECT 'desa-' || lpad(gw::text, 4, '0'), m, p.name, 10 + (gw * 7) %% 90,
                   (10 + (gw * 7) %% 90) * p.price, 1, now()
            FROM generate_series(1, %(g)s) gw, unnest(CAST(%(months)s AS text[])) m,
                 (VALUES ('harian', 5000), ('mingguan', 25000), ('bulanan', 80000))
                     p(name, price)
            ON CONFLICT DO NOTHING
            """,
            g=g,
            months=months,
        )
        t0 = time.monotonic()
        # the parents' statistics (partitions had theirs), the small tables'
        for table in (*yearload.TABLES, "village_daily", "sales_monthly", "gateway"):
            conn.execute(
                f"VACUUM ANALYZE {table}" if table not in yearload.TABLES else f"ANALYZE {table}"
            )
        timings["analyze"] = round(time.monotonic() - t0, 1)
    rows = {t: sum(c.get(t, 0) for c in done.values()) for t in (*yearload.TABLES, "village_daily")}
    rows["village_daily"] += older
    rows["sales_monthly"] = sales
    return {
        "method": "server-side bulk SQL (INSERT … SELECT … generate_series) per monthly "
        "partition into a stage table (no WAL, no index while loading), indexes built, "
        "attached as the partition (bench/yearload.py); not the HTTP ingest path; roll-ups by "
        "the same aggregate as collector.store.rebuild_village_daily",
        "cluster_settings": [*LOAD_BASE, *yearload.LOAD_SETTINGS],
        "loaders": yearload.LOADERS,
        "gateways": g,
        "devices_per_day": n,
        "active_hours_per_device_day": 4,
        "health_interval_minutes": 5,
        "per_device_days": args.days,
        "per_device_first_day": first_device_day.isoformat(),
        "months": len(year.months()),
        "rollup_days": 365,
        "sales_months": len(months),
        "rows": rows,
        "seconds": timings,
        "full_year_factor_per_device_rows": round(args.days / 365 * g / 285 * n / 100, 4),
    }


# -- HTTP ------------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection to the collector."""

    def __init__(self, port: int, timeout: float = 120):
        self.port, self.timeout = port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, resp.read(), dict(resp.getheaders())
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def batch_for(gid: str, devices: int, hour: dt.datetime, rev: int) -> tuple[bytes, str, int]:
    """One gateway's hourly batch as sync/agent.py sends it: (gzipped body, key, records)."""
    records: list[Mapping[str, Any]] = []
    gnum = int(gid.split("-")[1])
    for k in range(devices):
        records.append(
            {
                "kind": "usage",
                "client": f"{gnum * 100000 + 50000 + k:016x}",
                "period_start": hour.strftime("%Y-%m-%dT%H:00:00Z"),
                "seconds": 1200 + k,
                "bytes_down": 3_000_000 + k * 1000,
                "bytes_up": 300_000 + k,
            }
        )
    for i in range(12):
        at = hour + dt.timedelta(minutes=5 * i, seconds=7)
        records.append(
            {
                "kind": "health",
                "sampled_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "cpu_pct": 12.5,
                "load1": 0.5,
                "load5": 0.4,
                "load15": 0.3,
                "mem_pct": 40,
                "disk_pct": 50.0,
                "disk_free_mb": 9000,
                "temp_c": 55.0,
                "uptime_s": 86400,
                "uplink_ok": True,
                "uplink_ms": 80.0,
                "clients_online": devices,
                "backlog": 0,
            }
        )
    month = hour.strftime("%Y-%m")
    for name, price in PACKAGES:
        records.append(
            {
                "kind": "sales",
                "month": month,
                "package": name,
                "count": 50 + rev,
                "rupiah": (50 + rev) * price,
                "rev": 10_000 + rev,
            }
        )
    records.append(
        {
            "kind": "gateway",
            "rev": 10_000 + rev,
            "village": f"Desa {gid}",
            "timezone": TZ,
            "version": "1.0",
        }
    )
    key = secrets.token_hex(16)
    raw = wire.encode_body(gid, key, hour + dt.timedelta(hours=1), records)
    return wire.compress(raw), key, len(records)


def signed(gid: str, key: str, body: bytes) -> dict[str, str]:
    ts, nonce = str(int(time.time())), secrets.token_hex(16)
    return {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Content-Length": str(len(body)),
        wire.H_GATEWAY: gid,
        wire.H_TIMESTAMP: ts,
        wire.H_NONCE: nonce,
        wire.H_IDEMPOTENCY: key,
        wire.H_SIGNATURE: wire.sign(SECRET, gid, ts, nonce, key, body),
    }


def post_batches(
    port: int, batches: list[tuple[str, bytes, str, int]], concurrent: bool
) -> dict[str, Any]:
    """Post ``batches`` (gateway, body, key, records): all at once behind a barrier (one
    thread and connection per gateway), or one after another."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(len(batches) if concurrent else 1)

    def one(gid: str, body: bytes, key: str) -> None:
        client = Client(port, timeout=300)
        headers = signed(gid, key, body)
        if concurrent:
            barrier.wait()
        t0 = time.monotonic()
        try:
            status, answer, _ = client.request("POST", wire.INGEST_PATH, body, headers)
            if status == 200:
                outcome = "duplicate" if json.loads(answer).get("duplicate") else "ok"
            else:
                outcome = f"http_{status}"
        except OSError as exc:
            outcome = type(exc).__name__
        elapsed = (time.monotonic() - t0) * 1000
        with lock:
            latencies.append(elapsed)
            statuses[outcome] = statuses.get(outcome, 0) + 1

    t0 = time.monotonic()
    if concurrent:
        threading.stack_size(256 * 1024)
        threads = [threading.Thread(target=one, args=(g, b, k)) for g, b, k, _ in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for g, b, k, _ in batches:
            one(g, b, k)
    wall = time.monotonic() - t0
    return {
        "batches": len(batches),
        "records": sum(r for *_, r in batches),
        "body_bytes_mean": round(sum(len(b) for _, b, _, _ in batches) / len(batches)),
        "wall_s": round(wall, 2),
        "batches_per_s": round(len(batches) / wall, 1),
        "records_per_s": round(sum(r for *_, r in batches) / wall),
        "p50_ms": rnd(pct(latencies, 50)),
        "p99_ms": rnd(pct(latencies, 99)),
        "max_ms": rnd(max(latencies)),
        "outcomes": statuses,
        "errors": sum(v for k, v in statuses.items() if k not in ("ok", "duplicate")),
        "answered_duplicate": statuses.get("duplicate", 0),
    }


def verify_ingest(
    engine: Any, batches: list[tuple[str, bytes, str, int]], hour: dt.datetime, devices: int
) -> dict[str, Any]:
    """What the database holds after the concurrent posts: each batch once, every record."""
    keys = [k for _, _, k, _ in batches]
    gids = [g for g, _, _, _ in batches]
    with engine.connect() as conn:
        applied, dups = conn.execute(
            text(
                "SELECT count(*), coalesce(sum(duplicates), 0) FROM ingest_batch "
                "WHERE key = ANY(:keys)"
            ),
            {"keys": keys},
        ).one()
        usage_rows = conn.execute(
            text(
                "SELECT count(*) FROM usage_hourly WHERE period_start = :h "
                "AND gateway_id = ANY(:g) AND seconds >= 1200 AND bytes_down >= 3000000"
            ),
            {"h": hour, "g": gids},
        ).scalar()
        health_rows = conn.execute(
            text(
                "SELECT count(*) FROM health_sample WHERE sampled_at >= :h "
                "AND sampled_at < :h + interval '1 hour' AND gateway_id = ANY(:g) "
                "AND extract(second from sampled_at) = 7"
            ),
            {"h": hour, "g": gids},
        ).scalar()
        described = conn.execute(
            text("SELECT count(*) FROM gateway WHERE id = ANY(:g) AND version = '1.0'"),
            {"g": gids},
        ).scalar()
    expect_usage = len(batches) * devices
    return {
        "batches_applied": int(applied),
        "duplicates": int(dups),  # deliveries of an already-applied batch
        "usage_rows": int(usage_rows),
        "usage_rows_expected": expect_usage,
        "health_rows": int(health_rows),
        "health_rows_expected": len(batches) * 12,
        "gateways_described": int(described),
        "complete": int(applied) == len(batches)
        and usage_rows == expect_usage
        and health_rows == len(batches) * 12
        and described == len(batches),
    }


# -- queries -----------------------------------------------------------------------------------


def query_set(today: dt.date, gid: str) -> dict[str, str]:
    """Every dashboard page and API query, by name."""
    day = today - dt.timedelta(days=1)
    month_first = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    month_next = today.replace(day=1)
    m, n, d, d1 = month_first.isoformat(), month_next.isoformat(), day, day + dt.timedelta(1)
    return {
        "dashboard_overview": "/",
        "dashboard_overview_en": "/?lang=en",
        "dashboard_village": f"/village/{gid}",
        "dashboard_map": "/map",
        "dashboard_kabupaten": f"/?kabupaten={urllib.parse.quote(place_of(gid)['kabupaten'])}",
        "dashboard_page_2": "/?page=2",
        "api_gateways": "/api/v1/gateways",
        "api_usage_day": f"/api/v1/usage?from={d}&to={d1}",
        "api_usage_day_village": f"/api/v1/usage?from={d}&to={d1}&gateway={gid}",
        "api_usage_month": f"/api/v1/usage?from={m}&to={n}",
        "api_usage_month_csv": f"/api/v1/usage?from={m}&to={n}&format=csv&limit=10000",
        "api_usage_month_village_csv": f"/api/v1/usage?from={m}&to={n}&gateway={gid}"
        "&format=csv&limit=10000",
        "api_daily_day": f"/api/v1/daily?from={d}&to={d1}",
        "api_daily_month": f"/api/v1/daily?from={m}&to={n}&limit=10000",
        "api_daily_month_csv": f"/api/v1/daily?from={m}&to={n}&format=csv&limit=10000",
        "api_sales_year": f"/api/v1/sales?from={today.replace(day=1) - dt.timedelta(days=365)}"
        "&limit=10000",
        "api_sales_month_csv": f"/api/v1/sales?from={m}&to={n}&format=csv&limit=10000",
    }


def measure_queries(port: int, token: str, queries: dict[str, str], reps: int) -> dict[str, Any]:
    client = Client(port)
    headers = {"Authorization": f"Bearer {token}"}
    out: dict[str, Any] = {}
    for name, path in queries.items():
        client.request("GET", path, headers=headers)  # warm: plans, caches
        times: list[float] = []
        size = 0
        status = 0
        for _ in range(reps):
            t0 = time.monotonic()
            status, body, _ = client.request("GET", path, headers=headers)
            times.append((time.monotonic() - t0) * 1000)
            size = len(body)
        out[name] = {
            "path": path,
            "status": status,
            "bytes": size,
            "p50_ms": rnd(pct(times, 50)),
            "p95_ms": rnd(pct(times, 95)),
        }
    return out


def walk_csv_month(port: int, token: str, path: str) -> dict[str, Any]:
    """Every page of a month's CSV (following ``X-Next-Page``): what a province's tool does."""
    client = Client(port)
    headers = {"Authorization": f"Bearer {token}"}
    t0, pages, rows = time.monotonic(), 0, 0
    url: str | None = path
    while url:
        _, body, answer = client.request("GET", url, headers=headers)
        nxt = answer.get("X-Next-Page")
        pages += 1
        rows += max(0, body.count(b"\n") - 1)
        url = urllib.parse.urlsplit(nxt)._replace(scheme="", netloc="").geturl() if nxt else None
    return {"path": path, "pages": pages, "rows": rows, "total_s": round(time.monotonic() - t0, 2)}


# -- plans -------------------------------------------------------------------------------------


def explain_plans(engine: Any, queries: dict[str, str]) -> dict[str, Any]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of the usage and daily pages' SQL, as the API runs it
    (collector.sqlpages, its statement captured and run again under EXPLAIN): which
    partitions each one reads, the rows they gave and the buffers."""
    import zoneinfo

    from sqlalchemy import event

    from collector import sqlpages
    from hotspot.pull_api import query

    captured: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and " LIMIT " in statement:
            captured.append((statement, params))

    out: dict[str, Any] = {}
    event.listen(engine, "before_cursor_execute", grab)
    try:
        for name, path in queries.items():
            if not name.startswith(("api_usage", "api_daily")):
                continue
            args = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
            table = sqlpages.USAGE if "usage" in name else sqlpages.DAILY
            lo: Any
            hi: Any
            if table is sqlpages.DAILY:  # /daily takes local days
                lo, hi = (dt.date.fromisoformat(args[k]) for k in ("from", "to"))
            else:
                lo, hi = query.parse_range(args, zoneinfo.ZoneInfo(TZ))
            captured.clear()
            with Session(engine) as s, s.begin():
                sqlpages.page_lines(
                    s,
                    table,
                    args.get("format", "json"),
                    lo=lo,
                    hi=hi,
                    gateway=args.get("gateway"),
                    cursor=None,
                    limit=int(args.get("limit", 1000)),
                )
            statement, params = captured[-1]
            with engine.connect() as conn:
                conn.exec_driver_sql("SET plan_cache_mode = force_custom_plan")
                plan = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params
                ).scalar()
                plan_text = "\n".join(
                    r[0]
                    for r in conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params
                    )
                )
            top = plan[0]["Plan"]
            scans: list[dict[str, Any]] = []

            def walk(node: dict[str, Any]) -> None:
                if "Relation Name" in node:
                    scans.append(
                        {
                            "relation": node["Relation Name"],
                            "node": node["Node Type"],
                            "index": node.get("Index Name"),
                            "rows": node.get("Actual Rows"),
                            "shared_hit": node.get("Shared Hit Blocks"),
                            "shared_read": node.get("Shared Read Blocks"),
                        }
                    )
                for child in node.get("Plans", []):
                    walk(child)

            walk(top)
            out[name] = {
                "lo": str(lo),
                "hi": str(hi),
                "partitions": [x["relation"] for x in scans],
                "scans": scans,
                "rows": top.get("Actual Rows"),
                "shared_hit": top.get("Shared Hit Blocks"),
                "shared_read": top.get("Shared Read Blocks"),
                "execution_ms": plan[0].get("Execution Time"),
                "text": plan_text,
            }
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    return out


# -- the run -----------------------------------------------------------------------------------


def meta(args: argparse.Namespace) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    try:
        commit = subprocess.run(
            ["git", "-C", str(args.tree or REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "loadavg_at_start": list(os.getloadavg()),
        "machine": {
            "nproc": os.cpu_count(),
            "kernel": platform.release(),
            "cpu": cpu,
            "mem_mb": int(Path("/proc/meminfo").read_text().split()[1]) // 1024,
            "shared": "yes: other engineers' tests and benches run at the same time",
        },
        "python": platform.python_version(),
        "git_commit": commit,
        "params": {k: getattr(args, k) for k in ("gateways", "devices", "days", "posters", "reps")},
    }


def wait_http(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the collector exited at start")
        try:
            if Client(port, timeout=2).request("GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the collector did not answer /healthz")


STATE = "bench-collector.json"  # in a --keep folder: what the reuse needs to know


def kept_status(folder: Path) -> str | None:
    """What a --keep folder holds: "loaded", "loading" (a load cut short) or None."""
    try:
        state = json.loads((folder / STATE).read_text())
    except (OSError, ValueError):
        return None
    return str(state.get("status", "loaded"))  # older bench versions wrote finished loads only


def db_name(url: str) -> str:
    return url.split("?", 1)[0].rsplit("/", 1)[1]


# Jambi's eleven kabupaten and kota: the dashboard groups, filters and maps the villages by
# them (issue #14, item 7), so the bench's villages have places as a province's would.
KABUPATEN = (
    "Batang Hari",
    "Bungo",
    "Kerinci",
    "Merangin",
    "Muaro Jambi",
    "Sarolangun",
    "Tanjung Jabung Barat",
    "Tanjung Jabung Timur",
    "Tebo",
    "Kota Jambi",
    "Kota Sungai Penuh",
)


def place_of(gid: str) -> dict[str, Any]:
    """A fixed place in Jambi for a bench gateway: kabupaten, one of 8 kecamatan in it,
    coordinates inside the province's box (about 0.8–2.8° S, 101.2–104.5° E)."""
    i = int(gid.rsplit("-", 1)[1])
    k = KABUPATEN[i % len(KABUPATEN)]
    return {
        "kabupaten": k,
        "kecamatan": f"Kecamatan {k} {1 + (i // len(KABUPATEN)) % 8}",
        "latitude": round(-0.8 - (i * 7919 % 2000) / 1000, 4),
        "longitude": round(101.2 + (i * 104729 % 3300) / 1000, 4),
    }


def ensure_places(engine: Any) -> None:
    """Places for the registered gateways that have none (a cluster kept from before)."""
    with Session(engine) as s, s.begin():
        for gw in s.scalars(select(Gateway).where(Gateway.kabupaten.is_(None))):
            for key, value in place_of(gw.id).items():
                setattr(gw, key, value)


def prepare_db(pg: Any, ids: list[str], today: dt.date, days: int) -> tuple[str, str]:
    """A new database of the collector's schema with ``ids`` registered: (url, API token)."""
    url = pg.url(pg.create_db())
    engine = make_engine(url)
    try:
        migrate(engine)
        ensure_months(engine, today, days)
        with Session(engine) as s, s.begin():
            s.add_all(Gateway(id=g, secret=SECRET, village=f"Desa {g}", **place_of(g)) for g in ids)
            token = str(create_token(s, "bench")["token"])
    finally:
        engine.dispose()
    return url, token


def ensure_months(engine: Any, today: dt.date, days: int) -> None:
    """Every month of the year has its partitions, as the daily job would have made them."""
    month = maintenance.month_start(today - dt.timedelta(days=max(days, 1) + 31))
    real_today = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    while month <= max(today, real_today):
        maintenance.ensure_partitions(engine, dt.datetime.combine(month, dt.time()))
        month = maintenance.next_month(month)


class Collector:
    """The collector under gunicorn (``hotspot collector run``) from the checkout ``tree``
    (this one, or ``--tree``: another commit's code against the same database)."""

    def __init__(self, url: str, tree: Path, work: Path, name: str):
        self.port = free_port()
        config = work / f"collector-{name}.toml"
        config.write_text(
            f'[collector]\ndatabase_url = "{url}"\nbind = "127.0.0.1:{self.port}"\n'
            f'timezone = "{TZ}"\n'
        )
        self.log = open(work / f"collector-{name}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hotspot_cli", "--config", str(config), "collector", "run"]
            + ["--log-level", "WARNING"],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_http(self.port, self.proc, timeout=300)  # a migration may run first

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# testsupport.postgres starts every cluster with these: nothing here must survive a crash
LOAD_BASE = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
# the cluster's settings while anything is measured (after the load's restart)
QUERY_SETTINGS = ("max_connections=200", "shared_buffers=256MB", "max_wal_size=4GB")


class SchemaMismatch(RuntimeError):
    """The loaded database's schema is not the migrations' (the plans would not be real)."""


def save_state(path: Path | None, state: dict[str, Any]) -> None:
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str) + "\n")
    tmp.replace(path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"meta": meta(args)}
    report["meta"]["cluster_settings"] = [*LOAD_BASE, *QUERY_SETTINGS]
    work = Path(tempfile.mkdtemp(prefix="hotspot-bench-collector-"))
    kept = args.reuse or args.keep
    base = kept / "pg" if kept else Path(tempfile.mkdtemp(prefix="hotspot-bench-pg-"))
    state_file = kept / STATE if kept else None
    state: dict[str, Any] = {}
    if state_file and state_file.is_file():  # --reuse, or --keep of a load cut short
        state = json.loads(state_file.read_text())
        for k in ("gateways", "devices", "days"):
            setattr(args, k, state["params"][k])
        report["meta"]["params"] = {
            k: getattr(args, k) for k in ("gateways", "devices", "days", "posters", "reps")
        }
    if args.reuse:
        report["meta"]["reused"] = {
            "dir": str(args.reuse),
            **{k: v for k, v in state.items() if k != "months_done"},
        }
    tree = args.tree or REPO
    report["meta"]["tree"] = str(tree)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ids = [gateway_id(i) for i in range(1, max(args.gateways, args.posters) + 1)]
    try:
        if not args.reuse:
            with running_postgres(
                [*QUERY_SETTINGS, *yearload.LOAD_SETTINGS], base=base, keep=True
            ) as pg:
                if state:
                    report["meta"]["resumed"] = sorted(state.get("months_done", {}))
                    log(
                        f"resuming the load in {kept}: {len(report['meta']['resumed'])} "
                        "months were loaded"
                    )
                else:
                    # the loaded days are WIB days
                    today = (now + dt.timedelta(hours=7)).date()
                    url, token = prepare_db(pg, ids, today, args.days)
                    state = {
                        "status": "loading",
                        "database": db_name(url),
                        "token": token,
                        "today": today.isoformat(),
                        "params": {k: getattr(args, k) for k in ("gateways", "devices", "days")},
                        "months_done": {},
                    }
                    save_state(state_file, state)
                t0 = time.monotonic()
                loaded = load_year(
                    pg,
                    state["database"],
                    args,
                    dt.date.fromisoformat(state["today"]),
                    state,
                    lambda: save_state(state_file, state),
                )
                loaded["total_s"] = round(time.monotonic() - t0, 1)
                state["status"] = "loaded"
                state["loaded"] = loaded
                save_state(state_file, state)
            log("load done: the cluster restarted with the bench's normal settings")
        report["loaded"] = dict(state.get("loaded", {}))
        with running_postgres(QUERY_SETTINGS, base=base, keep=True) as pg:
            measure(pg, args, report, state, ids, tree, work, now)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not kept:
            shutil.rmtree(base, ignore_errors=True)
    report["meta"]["loadavg_at_end"] = list(os.getloadavg())
    report["meta"]["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return report


def measure(
    pg: Any,
    args: argparse.Namespace,
    report: dict[str, Any],
    state: dict[str, Any],
    ids: list[str],
    tree: Path,
    work: Path,
    now: dt.datetime,
) -> None:
    """The baseline, the schema check, the ingest and the queries on the loaded database."""
    today = dt.date.fromisoformat(state["today"])  # the day the cluster was loaded for
    queries = query_set(today, gateway_id(1))
    url, token = pg.url(state["database"]), state["token"]
    # the baseline, and the reference schema: a new database, migrated, the gateways only
    empty_url, empty_token = prepare_db(pg, ids, today, args.days)
    engine = make_engine(url)
    try:
        ensure_months(engine, today, args.days)
        ensure_places(engine)
        t0 = time.monotonic()
        diff = yearload.schema_difference(pg, state["database"], db_name(empty_url))
        report["loaded"]["schema_check"] = {
            "same_as_migrated": not diff,
            "seconds": round(time.monotonic() - t0, 1),
            "how": "pg_dump --schema-only of the loaded database and of a freshly migrated "
            "one (comments and \\restrict tokens left out), compared",
        }
        if diff:
            raise SchemaMismatch(
                f"the loaded database's schema differs from the migrations' ({len(diff)} "
                f"diff lines): {' | '.join(diff[2:8])}"
            )
        log("schema: the loaded database's is the migrations' (pg_dump --schema-only)")
        server = Collector(empty_url, tree, work, "empty")
        try:
            log("baseline: queries on an empty database, batches one at a time")
            report["baseline_queries"] = measure_queries(
                server.port, empty_token, queries, args.reps
            )
            if not args.reuse:
                hour0 = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=3)
                seq = [
                    (g, *batch_for(g, args.devices // 3 or 1, hour0, 1))
                    for g in ids[: min(len(ids), args.baseline_batches)]
                ]
                report["baseline_ingest"] = post_batches(server.port, seq, concurrent=False)
        finally:
            server.stop()
        with engine.connect() as conn:
            size = conn.exec_driver_sql("SELECT pg_database_size(current_database())")
            report["loaded"]["database_mb"] = round(int(size.scalar() or 0) / 2**20)
        server = Collector(url, tree, work, "loaded")
        try:
            port = server.port
            if args.skip_ingest:
                log("ingest: skipped (--skip-ingest)")
            else:
                log(f"ingest: {args.posters} gateways posting at once")
                hour = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
                devices_per_batch = max(1, args.devices * 4 // 14)  # an hour of a 14-hour day
                rev = 2 + int(time.time()) % 1_000_000  # a reuse posts a newer revision
                batches = [
                    (g, *batch_for(g, devices_per_batch, hour, rev)) for g in ids[: args.posters]
                ]
                result = post_batches(port, batches, concurrent=True)
                result["devices_per_batch"] = devices_per_batch
                result["verified"] = verify_ingest(engine, batches, hour, devices_per_batch)
                result["duplicates"] = result["verified"]["duplicates"]
                report["ingest"] = result
                # the same batches again (a retry of every one): acknowledged, applied never
                again = post_batches(
                    port, [(g, b, k, r) for g, b, k, r in batches[: args.retry]], concurrent=True
                )
                report["ingest_retry_same_keys"] = {
                    k: again[k] for k in ("batches", "p50_ms", "p99_ms", "outcomes", "errors")
                }
                report["ingest_retry_same_keys"]["still_applied_once"] = (
                    verify_ingest(engine, batches, hour, devices_per_batch)["usage_rows"]
                    == result["verified"]["usage_rows"]
                )
            log("queries with the year loaded")
            report["queries"] = measure_queries(port, token, queries, args.reps)
            for name, q in report["queries"].items():
                base = report["baseline_queries"][name]["p95_ms"]
                q["p95_ratio_vs_empty"] = rnd(q["p95_ms"] / base, 2) if base else None
            report["csv_month_one_village_all_pages"] = walk_csv_month(
                port, token, queries["api_usage_month_village_csv"]
            )
            report["query_p95_max_ms"] = max(q["p95_ms"] for q in report["queries"].values())
            report["query_p95_under_300ms"] = report["query_p95_max_ms"] < 300
            log("plans of the usage and daily pages (EXPLAIN ANALYZE, BUFFERS)")
            report["plans"] = explain_plans(engine, queries)
        finally:
            server.stop()
    finally:
        engine.dispose()
        pg.drop_db(db_name(empty_url))  # the kept cluster holds the loaded database only


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m bench.collector", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="a small fraction (the bench's test)")
    p.add_argument("--gateways", type=int, help="villages with a year of data (285)")
    p.add_argument("--devices", type=int, help="devices a day in each village (100)")
    p.add_argument("--days", type=int, help="days of per-device rows (365)")
    p.add_argument("--posters", type=int, help="gateways posting at once (1000)")
    p.add_argument("--reps", type=int, help="requests per query (20)")
    p.add_argument("--output", type=Path, help="default: bench/results/collector.json")
    p.add_argument("--keep", type=Path, metavar="DIR", help="leave the loaded cluster in DIR")
    p.add_argument(
        "--reuse", type=Path, metavar="DIR", help="no load: start the cluster --keep left in DIR"
    )
    p.add_argument(
        "--tree", type=Path, metavar="DIR", help="run the collector of another checkout (before)"
    )
    p.add_argument("--skip-ingest", action="store_true", help="queries only (with --reuse)")
    args = p.parse_args(argv)
    if args.keep and args.reuse:
        print("bench.collector: --keep and --reuse: one or the other", file=sys.stderr)
        return 2
    if args.reuse and kept_status(args.reuse) != "loaded":
        print(f"bench.collector: --reuse: no finished load in {args.reuse}", file=sys.stderr)
        return 2
    if (
        args.keep
        and args.keep.exists()
        and any(args.keep.iterdir())
        and kept_status(args.keep) != "loading"  # a load cut short: this run continues it
    ):
        print(f"bench.collector: --keep: {args.keep} is not empty", file=sys.stderr)
        return 2
    if args.tree and not (args.tree / "collector" / "app.py").is_file():
        print(f"bench.collector: --tree: {args.tree} is not a checkout", file=sys.stderr)
        return 2
    full = {"gateways": 285, "devices": 100, "days": 365, "posters": 1000, "reps": 20}
    quick = {"gateways": 12, "devices": 10, "days": 35, "posters": 40, "reps": 3}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
        if getattr(args, k) < 1 or (k == "days" and getattr(args, k) > 366):
            print(f"bench.collector: --{k}: out of range", file=sys.stderr)
            return 2
    args.baseline_batches = 10 if args.quick else 50
    args.retry = min(args.posters, 10 if args.quick else 200)
    # a SIGTERM unwinds like Ctrl-C: the cluster is shut down cleanly (a kept one resumes)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = run(args)
    except SchemaMismatch as exc:
        print(f"bench.collector: {exc}", file=sys.stderr)
        return 1
    out = args.output or RESULTS / "collector.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    ing = report.get("ingest")
    if ing:
        print(
            f"ingest: {ing['batches']} gateways at once: {ing['batches_per_s']} batches/s, "
            f"p50 {ing['p50_ms']} ms, p99 {ing['p99_ms']} ms, errors {ing['errors']}, "
            f"duplicates {ing['duplicates']}, complete {ing['verified']['complete']}"
        )
    for name, q in report["queries"].items():
        print(f"{name:32} p50 {q['p50_ms']:>8} ms  p95 {q['p95_ms']:>8} ms  ({q['bytes']:,} B)")
    print(f"results: {out}")
    ok = not ing or (ing["errors"] == 0 and ing["duplicates"] == 0 and ing["verified"]["complete"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
