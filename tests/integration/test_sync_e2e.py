"""A village gateway reports a week of backlog plus live traffic to the provincial collector
(PostgreSQL) across a slow, lossy link, while the collector is restarted and the agent is
killed with SIGKILL mid-batch. Afterwards the collector's figures equal the gateway's exactly:
nothing lost, nothing counted twice."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import secrets
import signal
import subprocess
import time

import pytest
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.orm import Session

from hotspot import config as config_mod
from hotspot.db import open_database
from hotspot.model import Device, HourlyUsage
from hotspot.pseudonym import Pseudonymizer, load_key
from hotspot.timeutil import utcnow
from tests.integration.village import (
    COLLECTOR_PORT,
    PROV_IP,
    ROOT,
    GatewayRunner,
    Proc,
    add_province,
    collector_toml,
    hotspot,
    lossy_drops,
    wait_for,
)
from testsupport import testbed as tb

pytestmark = [pytest.mark.netns, pytest.mark.postgres]

GATEWAY_ID = "hsi-desa"
DEVICES = 60
RATE_KBIT = 128
LOSS_PCT = 3
BATCH_KB = 16


def seed_week(db, now: dt.datetime, rng: random.Random) -> int:
    """A week of hourly usage of DEVICES devices, up to two hours ago: the backlog a gateway
    has after a week-long outage."""
    last = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    first = last - dt.timedelta(days=7)
    macs = [f"02:aa:00:00:{i >> 8:02x}:{i & 0xFF:02x}" for i in range(DEVICES)]
    rows = []
    hour = first
    while hour <= last:
        local = (hour + dt.timedelta(hours=7)).hour
        busy = 0.75 if 7 <= local <= 22 else 0.15
        for mac in macs:
            if rng.random() < busy:
                rows.append(
                    {
                        "mac": mac,
                        "hour": hour,
                        "seconds": rng.randint(60, 3600),
                        "bytes_down": rng.randint(10_000, 400_000_000),
                        "bytes_up": rng.randint(1_000, 40_000_000),
                    }
                )
        hour += dt.timedelta(hours=1)
    with Session(db) as s, s.begin():
        s.execute(
            insert(Device),
            [{"mac": m, "first_seen": first, "last_seen": last, "blocked": False} for m in macs],
        )
        s.execute(insert(HourlyUsage), rows)
    return len(rows)


def pg_scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def backlog_left(gw_engine, before: dt.datetime) -> int:
    with gw_engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM sync_outbox WHERE kind = 'usage' AND period < :t "
                "AND rev > sent_rev"
            ),
            {"t": before},
        ).scalar()


def sent_lines(agent: Proc) -> list[tuple[int, int]]:
    return [
        (int(r), int(b))
        for r, b in re.findall(r"sending batch \w+: (\d+) records, (\d+) bytes", agent.text())
    ]


def test_reports_arrive_exactly_once_through_a_slow_lossy_link(postgres, tmp_path, artifacts):
    rng = random.Random(5)
    dbname = postgres.create_db()
    pg_url = postgres.url(dbname)
    pg = create_engine(pg_url)
    tb.remove_stale_testbeds("hsi")
    bed = tb.Testbed(prefix=tb.run_prefix("hsi"), clients=1)
    bed.build()
    procs: list[Proc] = []
    try:
        prov = add_province(bed, rate_kbit=RATE_KBIT, loss_pct=LOSS_PCT)
        webroot = tmp_path / "www"
        webroot.mkdir()
        (webroot / "big.bin").write_bytes(secrets.token_bytes(1 << 20) * 8)
        bed.start_upstream(webroot, iperf=False)

        ccfg = collector_toml(
            tmp_path / "collector.toml",
            pg_url,
            workers=2,
            dashboard_public=True,
        )
        reg = subprocess.run(
            hotspot(ccfg, "collector", "gateways", "add", GATEWAY_ID, "--json"),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert reg.returncode == 0, reg.stderr
        secret = json.loads(reg.stdout)["secret"]

        gw = GatewayRunner(
            bed,
            tmp_path,
            {
                # One fixed key: the days seeded before now may cross a month's end, and
                # rotation has its own tests (test_pseudonym_periods.py).
                "privacy": {"pseudonym_key": "fixed-e2e-key-" + "k" * 32},
                "sync": {
                    "upstream_url": f"http://{PROV_IP}:{COLLECTOR_PORT}",
                    "gateway_id": GATEWAY_ID,
                    "secret": secret,
                    "interval_seconds": 2,
                    "health_seconds": 3,
                    "max_batch_kb": BATCH_KB,
                    "backoff_max_seconds": 4,
                    "timeout_seconds": 30,
                },
            },
        )
        cfg = config_mod.load(gw.config)
        gw_db = open_database(cfg.database.url)
        now = utcnow()
        backlog = seed_week(gw_db, now, rng)
        backlog_until = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
        procs.append(gw.start())

        # Live traffic of a real phone while everything else happens.
        phone = bed.phones[0]
        gw.call("authorize", mac=phone.mac, ip=phone.ip, tier="premium", source="admin")
        traffic = Proc(
            bed,
            phone.ns,
            [
                "sh",
                "-c",
                "while true; do curl -s -o /dev/null "
                "--limit-rate 2M http://198.51.100.10/big.bin; done",
            ],
            tmp_path / "traffic.log",
        ).start()
        procs.append(traffic)

        def collector() -> Proc:
            p = Proc(
                bed,
                prov,
                hotspot(ccfg, "collector", "run", "--log-level", "INFO"),
                tmp_path / "collector.log",
            ).start()
            procs.append(p)
            bed.wait_port(prov, PROV_IP, COLLECTOR_PORT, timeout=30)
            return p

        def agent() -> Proc:
            p = Proc(
                bed,
                bed.gw,
                hotspot(gw.config, "sync", "run", "--log-level", "INFO"),
                tmp_path / "agent.log",
            ).start()
            procs.append(p)
            return p

        coll = collector()
        t0 = time.monotonic()
        ag = agent()

        def batches() -> int:
            return pg_scalar(pg, "SELECT count(*) FROM ingest_batch")

        # 1. the collector restarts (quick shutdown: requests in flight are cut) mid-sync
        wait_for(lambda: batches() >= 2, 90, "first batches at the collector")
        coll.stop(signal.SIGINT)
        time.sleep(1.0)
        coll = collector()

        # 2. the agent is killed with SIGKILL while a batch is on the wire, twice
        for _ in range(2):
            n = len(sent_lines(ag))
            wait_for(
                lambda: len(sent_lines(ag)) > n, 90, "the agent sending a batch", interval=0.01
            )
            time.sleep(rng.uniform(0.0, 0.3))
            ag.kill9()
            ag = agent()

        # 3. the week's backlog drains
        wait_for(
            lambda: backlog_left(gw_db, backlog_until) == 0, 240, "backlog delivered", interval=0.5
        )
        drain_seconds = time.monotonic() - t0

        # 4. stop the traffic and the gateway (it flushes), then deliver the last figures
        traffic.stop()
        gw.stop()
        ag.stop()
        for attempt in range(8):
            once = subprocess.run(
                ["ip", "netns", "exec", bed.gw, *hotspot(gw.config, "sync", "once", "--json")],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=180,
            )
            if once.returncode == 0:
                break
            assert once.returncode == 1 and len(once.stderr.strip().splitlines()) == 1, once.stderr
        assert once.returncode == 0, once.stderr
        stats = json.loads(once.stdout)
        assert stats["pending"] == 0 and stats["batch_in_flight"] is None

        # 5. the collector's figures equal the gateway's exactly
        pseudonym = Pseudonymizer(load_key(cfg, gw_db))
        with Session(gw_db) as s:
            expected = {
                (pseudonym(r.mac), r.hour): (r.seconds, r.bytes_down, r.bytes_up)
                for r in s.scalars(select(HourlyUsage))
            }
            state = dict(s.execute(text("SELECT name, value FROM sync_state")).all())
        with pg.connect() as conn:
            got = {
                (c, p): (sec, d, u)
                for c, p, sec, d, u in conn.execute(
                    text(
                        "SELECT client, period_start, seconds, bytes_down, bytes_up FROM usage_hourly "
                        "WHERE gateway_id = :g"
                    ),
                    {"g": GATEWAY_ID},
                )
            }
            daily = conn.execute(
                text(
                    "SELECT sum(seconds), sum(bytes_down), sum(bytes_up) FROM usage_daily "
                    "WHERE gateway_id = :g"
                ),
                {"g": GATEWAY_ID},
            ).one()
            health = conn.execute(
                text("SELECT count(*) FROM health_sample WHERE gateway_id = :g"), {"g": GATEWAY_ID}
            ).scalar()
            batch_rows, dups = conn.execute(
                text(
                    "SELECT count(*), coalesce(sum(duplicates), 0) FROM ingest_batch "
                    "WHERE gateway_id = :g"
                ),
                {"g": GATEWAY_ID},
            ).one()
            village = conn.execute(
                text("SELECT village FROM gateway WHERE id = :g"), {"g": GATEWAY_ID}
            ).scalar()
        assert len(expected) > backlog  # the week plus the phone's live hours
        live = [k for k in expected if k[1] >= backlog_until]
        assert live and sum(expected[k][1] for k in live) > 1_000_000  # real traffic counted
        assert got == expected
        sums = tuple(sum(v[i] for v in expected.values()) for i in range(3))
        assert tuple(int(x) for x in daily) == sums
        assert health == int(state["queued_health"])
        assert batch_rows == int(state["delivered_batches"])
        assert village == cfg.village.name
        with Session(gw_db) as s:
            macs = [m for (m,) in s.execute(select(Device.mac))]
        with pg.connect() as conn:
            dump = " ".join(
                str(r)
                for r in conn.execute(
                    text(
                        "SELECT * FROM usage_hourly UNION ALL SELECT gateway_id, client, NULL, NULL, NULL, "
                        "NULL, NULL FROM usage_daily"
                    )
                )
            )
        assert not any(m in dump for m in macs)

        sent = sent_lines(ag) or [(0, 0)]
        result = {
            "backlog_records": backlog,
            "device_hours_compared": len(expected),
            "link": f"{RATE_KBIT} kbit/s tbf both ways, {LOSS_PCT}% random drop each way",
            "max_batch_kb": BATCH_KB,
            "week_backlog_drain_seconds": round(drain_seconds, 1),
            "collector_restarts": 1,
            "agent_kill9": 2,
            "packets_dropped": lossy_drops(bed, prov),
            "batches_applied": batch_rows,
            "duplicate_deliveries_acknowledged": int(dups),
            "health_samples": health,
            "bytes_per_record_compressed": round(
                sum(b for _, b in sent) / max(1, sum(r for r, _ in sent)), 1
            ),
        }
        (artifacts / "sync_e2e.json").write_text(json.dumps(result, indent=2))
        print("\nsync e2e:", json.dumps(result))
    finally:
        for p in reversed(procs):
            p.stop(signal.SIGKILL, timeout=5)
        bed.destroy()
        pg.dispose()
        postgres.drop_db(dbname)
