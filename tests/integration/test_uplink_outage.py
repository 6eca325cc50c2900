"""The uplink down for days (issue #11, item 3), with the real gateway, portal, sync agent and
collector (PostgreSQL) in network namespaces (root only).

The village's uplink is cut twice: (1) the WAN link goes down (the upstream end of the
gateway's veth switched off), then (2) the link stays up but the upstream black-holes every
packet (an nftables drop rule there). While it is cut the gateway's monitor records the
outage (its cause told apart), the portal's splash and status pages say in Indonesian that
the village's internet is down, an OS probe is still sent to the portal, a free-tier login,
a voucher redemption and the console work, the gateway keeps ticking, and the sync agent
queues three simulated days of the village's hours plus a health sample every second. When
the link returns the backlog drains: the collector's figures equal the gateway's (nothing
lost, nothing counted twice), the health samples arrive in the order they were taken, and
both outages are windows (start, end, cause) at the collector exactly as the gateway saw
them. Time is accelerated by configuration (probes every 0.3 s, health every second), not
waited for.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import time

import pytest
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.orm import Session

from collector import db as collector_db
from collector import store as collector_store
from hotspot import config as config_mod
from hotspot.db import open_database
from hotspot.model import Device, HourlyUsage
from hotspot.model_uplink import UplinkOutage
from hotspot.pseudonym import Pseudonymizer, load_key
from hotspot.timeutil import utcnow
from tests.integration.village import (
    COLLECTOR_PORT,
    PROV_IP,
    ROOT,
    Proc,
    add_province,
    blackhole,
    collector_toml,
    hotspot,
    wait_for,
)
from tests.netns.conftest import GatewayProcess
from tests.netns.helpers import curl, portal_exchange
from testsupport import testbed as tb
from testsupport.testbed import UPSTREAM_IP

pytestmark = [pytest.mark.netns, pytest.mark.postgres]

GATEWAY_ID = "desa-putus"
DEVICES = 40
DAYS = 3
DOWN = "Sambungan internet desa sedang terputus"
ADMIN_PW = "Kasir-Desa-2026!"


def field(name: str, html: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, (name, html[:800])
    return found.group(1)


def seed_days(db, start: dt.datetime, rng: random.Random) -> int:
    """DAYS days of the village's hourly usage from ``start``: what the gateway accounts
    while the uplink is down (written at once: time is not waited for)."""
    macs = [f"02:bb:00:00:{i >> 8:02x}:{i & 0xFF:02x}" for i in range(DEVICES)]
    rows = [
        {
            "mac": mac,
            "hour": start + dt.timedelta(hours=h),
            "seconds": rng.randint(60, 3600),
            "bytes_down": rng.randint(10_000, 400_000_000),
            "bytes_up": rng.randint(1_000, 40_000_000),
        }
        for h in range(DAYS * 24)
        for mac in macs
        if rng.random() < 0.6
    ]
    with Session(db) as s, s.begin():
        s.execute(
            insert(Device),
            [{"mac": m, "first_seen": start, "last_seen": start, "blocked": False} for m in macs],
        )
        s.execute(insert(HourlyUsage), rows)
    return len(rows)


def outages(db) -> list[tuple]:
    with Session(db) as s:
        return [
            (r.started_at.replace(microsecond=0), r.ended_at, r.cause.value)
            for r in s.scalars(select(UplinkOutage).order_by(UplinkOutage.id))
        ]


def test_the_uplink_down_for_days(postgres, tmp_path, artifacts):
    rng = random.Random(11)
    dbname = postgres.create_db()
    pg = create_engine(postgres.url(dbname))
    tb.remove_stale_testbeds("hsu")
    bed = tb.Testbed(prefix=tb.run_prefix("hsu"), clients=4)
    bed.build()
    procs: list[Proc] = []
    gw: GatewayProcess | None = None
    figures: dict = {"load_at_start": os.getloadavg()[0], "cores": os.cpu_count()}
    try:
        prov = add_province(bed, rate_kbit=2000, loss_pct=0)
        bed.start_upstream(tmp_path / "www", iperf=False)
        (tmp_path / "www" / "index.html").write_text("upstream ok")
        ccfg = collector_toml(
            tmp_path / "collector.toml",
            postgres.url(dbname),
        )
        cengine = collector_db.open_database(postgres.url(dbname))  # migrated here
        with Session(cengine) as cs, cs.begin():
            secret = collector_store.add_gateway(cs, GATEWAY_ID)["secret"]
        cengine.dispose()
        coll = Proc(
            bed, prov, hotspot(ccfg, "collector", "run"), tmp_path / "collector.log"
        ).start()
        procs.append(coll)
        bed.wait_port(prov, PROV_IP, COLLECTOR_PORT, timeout=30)

        hosts_dir = tmp_path / "walled-hosts"
        hosts_dir.mkdir()
        gw = GatewayProcess(
            bed,
            tmp_path,
            {
                "portal": tb.portal_settings(tmp_path, workers=1),
                "operator": {"lan_plain_http": True},
                "packages": {
                    "harian": {"title": "Harian", "price": 5000, "tier": "premium", "hours": 24}
                },
                # One fixed key: the days seeded before now may cross a month's end, and
                # rotation has its own tests (test_pseudonym_periods.py).
                "privacy": {"pseudonym_key": "fixed-e2e-key-" + "k" * 32},
                "sync": {
                    "upstream_url": f"http://{PROV_IP}:{COLLECTOR_PORT}",
                    "gateway_id": GATEWAY_ID,
                    "secret": secret,
                    "interval_seconds": 1,
                    "health_seconds": 1,
                    "backoff_max_seconds": 1,
                    "timeout_seconds": 2,
                    "max_batch_kb": 16,
                },
                # Accelerated: a round every 0.3 s; three without an answer open an outage,
                # two answered close it.
                "uplink": {
                    "probe_seconds": 0.3,
                    "probe_timeout_seconds": 0.5,
                    "down_after": 3,
                    "up_after": 2,
                    "walled_hosts_dir": str(hosts_dir),
                },
            },
        ).start()
        gw.start_portal()

        def start_agent() -> Proc:
            p = Proc(
                bed,
                bed.gw,
                gw.hotspot("sync", "run", "--log-level", "INFO"),
                tmp_path / "sync.log",
            ).start()
            procs.append(p)
            return p

        agent = start_agent()
        cfg = config_mod.load(str(gw.config_path))
        assert cfg.uplink.probe_targets == ((PROV_IP, COLLECTOR_PORT),)
        gw_db = open_database(cfg.database.url)
        a, b, kiosk, walled = bed.phones  # `walled` never logs in
        jars = {n: str(tmp_path / f"{n}.jar") for n in ("a", "b", "kiosk", "walled")}

        def uplink() -> dict:
            return gw.call("status")["uplink"]

        def splash(phone, jar) -> str:
            status, page = portal_exchange(bed, phone, "/", jar)
            assert status == 200, (status, page[:300])
            return page

        # -- all well: A online, reports delivered, no notice ---------------------------------
        page = splash(a, jars["a"])
        assert DOWN not in page
        status, _ = portal_exchange(
            bed, a, "/accept", jars["a"], csrf_token=field("csrf_token", page)
        )
        assert status == 303
        assert curl(bed, a.ns, f"http://{UPSTREAM_IP}/index.html").code == "200"
        wait_for(lambda: "delivered" in agent.text(), 30, "the first delivery", interval=0.2)
        assert uplink()["state"] == "up"
        gw.add_operator("budi", "admin", ADMIN_PW)
        code = json.loads(
            gw.cli("vouchers", "create", "--package", "harian", "--count", "1", "--json").stdout
        )["codes"][0]

        def queued_usage() -> int:
            with gw_db.connect() as conn:
                return conn.execute(
                    text("SELECT count(*) FROM sync_outbox WHERE kind = 'usage'")
                ).scalar()

        def waiting(before: dt.datetime) -> int:
            """Outbox rows changed before ``before`` and not yet acknowledged."""
            with gw_db.connect() as conn:
                return conn.execute(
                    text(
                        "SELECT count(*) FROM sync_outbox WHERE updated_at < :t AND rev > sent_rev"
                    ),
                    {"t": before},
                ).scalar()

        def notice(phone, jar) -> str:
            page = splash(phone, jar)
            return page if DOWN in page else ""

        def during_outage(cause: str) -> None:
            """What must keep working while the uplink is cut."""
            state = wait_for(
                lambda: (u := uplink())["state"] == "down" and u, 15, f"the outage ({cause})"
            )
            assert state["cause"] == cause
            # The portal reads the outage at most every 5 s per worker.
            page = wait_for(lambda: notice(walled, jars["walled"]), 10, "the notice")
            assert 'action="/accept"' in page  # the splash and its form work as always
            # The OS probe of a phone not logged in (any address: only port 80 is
            # intercepted) still gets the portal.
            probe = curl(
                bed,
                walled.ns,
                f"http://{UPSTREAM_IP}/generate_204",
                "-H",
                "Host: connectivitycheck.gstatic.com",
            )
            assert probe.code == "302", probe
            # A online stays online (as the gateway sees it), its status page says why the
            # internet does not answer.
            status, page = portal_exchange(bed, a, "/status", jars["a"])
            assert status == 200 and DOWN in page and "Sambungan Anda" in page
            ticks = gw.call("status")["ticks"]
            wait_for(lambda: gw.call("status")["ticks"] > ticks + 2, 10, "the gateway ticking")
            assert gw.call("status")["last_tick_error"] is None

        # -- cut 1: the WAN link goes down -----------------------------------------------------
        t_cut = time.monotonic()
        bed.run(bed.up, "ip", "link", "set", "eth0", "down")
        during_outage("link")
        figures["link_outage_detected_s"] = round(time.monotonic() - t_cut, 2)
        # B takes the free tier, the kiosk logs into the console, C... the kiosk redeems a
        # voucher for itself: every local service works without the internet.
        page = splash(b, jars["b"])
        status, _ = portal_exchange(
            bed, b, "/accept", jars["b"], csrf_token=field("csrf_token", page)
        )
        assert status == 303
        assert gw.call("client", mac=b.mac)["session"]["tier"] == "free"
        page = splash(kiosk, jars["kiosk"])
        status, _ = portal_exchange(
            bed, kiosk, "/voucher", jars["kiosk"], csrf_token=field("csrf_token", page), code=code
        )
        assert status == 303
        assert gw.call("client", mac=kiosk.mac)["session"]["voucher_id"] is not None
        _, login = portal_exchange(bed, kiosk, "/operator/login", jars["kiosk"])
        status, _ = portal_exchange(
            bed,
            kiosk,
            "/operator/login",
            jars["kiosk"],
            csrf_token=field("csrf_token", login),
            name="budi",
            password=ADMIN_PW,
        )
        assert status == 303
        status, home = portal_exchange(bed, kiosk, "/operator/", jars["kiosk"])
        assert status == 200 and "Jalur internet (uplink)" in home
        assert re.search(r"Jalur internet \(uplink\)</dt><dd><span class=\"bad\">putus", home)
        # Three days of the village's hours accounted meanwhile; the agent queues them and
        # a health sample every second, and cannot deliver.
        now = utcnow()
        backlog = seed_days(
            gw_db, now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=DAYS + 1), rng
        )
        # ...and the agent restarted meanwhile (a power cut): its first collect after a start
        # scans everything, and queues those days.
        agent.kill9()
        agent = start_agent()
        wait_for(lambda: queued_usage() >= backlog, 60, "the days queued by the agent", 0.5)
        wait_for(lambda: "not delivered" in agent.text(), 30, "the agent failing to deliver", 0.2)
        hosts = (hosts_dir / "uplink-down").read_text().splitlines()
        assert hosts[1].startswith("10.10.0.1 ") and "connectivitycheck.gstatic.com" in hosts[1]
        t_back = time.monotonic()
        bed.run(bed.up, "ip", "link", "set", "eth0", "up")
        wait_for(lambda: uplink()["state"] == "up", 15, "the end of the link outage")
        assert not (hosts_dir / "uplink-down").exists()
        figures["link_return_detected_s"] = round(time.monotonic() - t_back, 2)
        wait_for(lambda: DOWN not in splash(walled, jars["walled"]), 10, "the notice gone")

        # -- cut 2: the link stays up, the upstream black-holes everything ---------------------
        t_cut = time.monotonic()
        bed.run(bed.up, "nft", "-f", "-", input=blackhole())
        during_outage("unreachable")
        figures["blackhole_detected_s"] = round(time.monotonic() - t_cut, 2)
        assert bed.run(bed.gw, "cat", "/sys/class/net/eth0/operstate").stdout.strip() == "up"
        assert curl(bed, b.ns, f"http://{UPSTREAM_IP}/index.html", timeout=2).code == "000"
        failed = agent.text().count("not delivered")
        wait_for(lambda: agent.text().count("not delivered") > failed + 2, 30, "failures while cut")
        t_back = time.monotonic()
        bed.run(bed.up, "nft", "delete", "table", "inet", "blackhole")
        wait_for(lambda: uplink()["state"] == "up", 15, "the end of the black hole")
        figures["blackhole_return_detected_s"] = round(time.monotonic() - t_back, 2)

        # -- the backlog drains ----------------------------------------------------------------
        back_wall = utcnow()
        figures["backlog_records_at_return"] = waiting(back_wall)
        wait_for(lambda: waiting(back_wall) == 0, 120, "the backlog delivered", interval=0.5)
        figures["backlog_drain_s"] = round(time.monotonic() - t_back, 2)
        agent.stop()
        gw.stop()  # flushes the last figures
        for _ in range(5):
            once = subprocess.run(
                ["ip", "netns", "exec", bed.gw, *gw.hotspot("sync", "once", "--json")],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
            )
            if once.returncode == 0:
                break
        assert once.returncode == 0, once.stderr

        # -- at the collector: the same figures, in order, once; both windows -------------------
        pseudonym = Pseudonymizer(load_key(cfg, gw_db))
        with Session(gw_db) as s:
            expected = {
                (pseudonym(r.mac), r.hour): (r.seconds, r.bytes_down, r.bytes_up)
                for r in s.scalars(select(HourlyUsage))
            }
            state = dict(s.execute(text("SELECT name, value FROM sync_state")).all())
        seen = outages(gw_db)
        with pg.connect() as conn:
            got = {
                (c, p): (sec, d, u)
                for c, p, sec, d, u in conn.execute(
                    text(
                        "SELECT client, period_start, seconds, bytes_down, bytes_up "
                        "FROM usage_hourly WHERE gateway_id = :g"
                    ),
                    {"g": GATEWAY_ID},
                )
            }
            samples = conn.execute(
                text(
                    "SELECT sampled_at, received_at FROM health_sample WHERE gateway_id = :g "
                    "ORDER BY sampled_at"
                ),
                {"g": GATEWAY_ID},
            ).all()
            windows = [
                (start, end, cause)
                for start, end, cause in conn.execute(
                    text(
                        "SELECT started_at, ended_at, cause FROM uplink_outage "
                        "WHERE gateway_id = :g ORDER BY started_at"
                    ),
                    {"g": GATEWAY_ID},
                )
            ]
            dups = conn.execute(
                text("SELECT coalesce(sum(duplicates), 0) FROM ingest_batch WHERE gateway_id = :g"),
                {"g": GATEWAY_ID},
            ).scalar()
        assert len(expected) >= backlog and got == expected
        assert len(samples) == int(state["queued_health"])
        received = [r for _, r in samples]
        assert received == sorted(received), "health samples applied out of order"
        assert [c for *_, c in seen] == ["link", "unreachable"]
        assert all(end is not None for _, end, _ in seen)
        assert windows == [(s, e.replace(microsecond=0), c) for s, e, c in seen]
        figures.update(
            {
                "simulated_days": DAYS,
                "backlog_device_hours": backlog,
                "health_samples": len(samples),
                "duplicate_deliveries_acknowledged": int(dups),
                "outage_windows": [
                    {"start": str(s), "end": str(e), "cause": c} for s, e, c in windows
                ],
                "probe": "TCP connect to the collector every 0.3 s, 3 misses down, 2 answers up",
                "load_at_end": os.getloadavg()[0],
            }
        )
        (artifacts / "uplink_outage.json").write_text(json.dumps(figures, indent=2))
        print("\nuplink outage:", json.dumps(figures))
        for name in ("gateway.log", "portal.log", "sync.log"):
            assert "Traceback" not in (tmp_path / name).read_text(), name
    finally:
        for p in reversed(procs):
            p.stop(signal.SIGKILL, timeout=5)
        if gw is not None:
            gw.stop()
        bed.destroy()
        pg.dispose()
        postgres.drop_db(dbname)
