"""The collector's time when NTP is unreachable (issue #11, item 2), with the real gateway,
sync agent and collector (PostgreSQL) in network namespaces (root only).

The gateway boots on a clock three days behind (fake-hwclock after three days switched off)
and the kernel says it is not synchronised (no NTP). In the test the clock cannot be set: the
gateway's wall clock is the machine's plus the seconds in a file (HOTSPOT_TEST_CLOCK_SHIFT_FILE)
and its clock setter adds its step to that file; "synchronised" is ``<file>.synced``.

1. A fake collector answers the agent's batches "ok", with a ``Date`` a year ahead and a time
   signed with the wrong secret: nothing is stepped.
2. The real collector: its signed time is kept by the agent and the gateway steps its clock by
   +3 days, once; the running session is moved with it (ClockWatch) and the phone stays online;
   the health records at the collector say ``clock_synced = false``, first ``none``, then
   ``collector``.
3. NTP synchronises (``.synced`` = 1) and the clock is put 2 hours behind: the gateway leaves
   it alone (NTP's business), and the health records say ``ntp``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from collector import db as collector_db
from collector import store as collector_store
from hotspot.timeutil import TEST_CLOCK_SHIFT_ENV
from tests.integration.village import (
    COLLECTOR_PORT,
    PROV_IP,
    Proc,
    add_province,
    collector_toml,
    hotspot,
    wait_for,
)
from tests.netns.conftest import GatewayProcess
from tests.netns.helpers import is_online
from testsupport import testbed as tb

pytestmark = [pytest.mark.netns, pytest.mark.postgres]

GATEWAY_ID = "desa-jam"
DAYS3 = 3 * 86400.0

# A collector that takes everything and lies about the time: "ok", a Date a year ahead and a
# time signed with a secret that is not the gateway's.
FAKE_COLLECTOR = r"""
import hashlib, hmac, http.server, json, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        key, nonce = self.headers["Idempotency-Key"], self.headers["X-Hotspot-Nonce"]
        gw = self.headers["X-Hotspot-Gateway"]
        t = int((time.time() + 365 * 86400) * 1000)
        sig = "v1=" + hmac.new(b"not-the-secret", f"v1-ack\n{gw}\n{nonce}\n{key}\n{t}\n".encode(),
                               hashlib.sha256).hexdigest()
        body = json.dumps({"ok": True, "batch": key, "duplicate": False, "accepted": 1,
                           "time_ms": t, "time_sig": sig}).encode()
        self.send_response(200)
        self.send_header("Date", "Thu, 30 Nov 2028 08:00:00 GMT")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print("answered", key, flush=True)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


def health_clock(pg, after: dt.datetime) -> list[tuple]:
    with pg.connect() as conn:
        return conn.execute(
            text(
                "SELECT clock_synced, clock_source FROM health_sample "
                "WHERE gateway_id = :g AND received_at > :t ORDER BY sampled_at"
            ),
            {"g": GATEWAY_ID, "t": after},
        ).all()


def test_the_clock_is_set_from_the_collectors_signed_time_only(
    postgres, tmp_path, monkeypatch, artifacts
):
    shift = tmp_path / "clock-shift"
    shift.write_text(str(-DAYS3))
    synced = tmp_path / "clock-shift.synced"
    synced.write_text("0")
    monkeypatch.setenv(TEST_CLOCK_SHIFT_ENV, str(shift))  # the gateway's and the agent's
    dbname = postgres.create_db()
    pg = create_engine(postgres.url(dbname))
    tb.remove_stale_testbeds("hsc")
    bed = tb.Testbed(prefix=tb.run_prefix("hsc"), clients=1)
    bed.build()
    procs: list[Proc] = []
    gw: GatewayProcess | None = None
    t_start = time.monotonic()
    figures: dict = {"load_at_start": os.getloadavg()[0], "cores": os.cpu_count()}
    try:
        prov = add_province(bed, rate_kbit=20000, loss_pct=0)
        bed.start_upstream(tmp_path / "www", iperf=False)
        (tmp_path / "www" / "index.html").write_text("<h1>upstream ok</h1>")
        cengine = collector_db.open_database(postgres.url(dbname))  # migrated here
        with Session(cengine) as cs, cs.begin():
            secret = collector_store.add_gateway(cs, GATEWAY_ID)["secret"]
        cengine.dispose()
        fake_py = tmp_path / "fake_collector.py"
        fake_py.write_text(FAKE_COLLECTOR)
        fake = Proc(
            bed,
            prov,
            [sys.executable, str(fake_py), PROV_IP, str(COLLECTOR_PORT)],
            tmp_path / "fake.log",
        ).start()
        procs.append(fake)
        bed.wait_port(prov, PROV_IP, COLLECTOR_PORT, timeout=30)

        gw = GatewayProcess(
            bed,
            tmp_path,
            {
                "gateway": {"flush_seconds": 1},
                "sync": {
                    "upstream_url": f"http://{PROV_IP}:{COLLECTOR_PORT}",
                    "gateway_id": GATEWAY_ID,
                    "secret": secret,
                    "interval_seconds": 1,
                    "health_seconds": 1,
                    "backoff_max_seconds": 1,
                    "timeout_seconds": 3,
                },
            },
        ).start()
        (phone,) = bed.phones
        gw.call("authorize", mac=phone.mac, ip=phone.ip, tier="free", source="admin", minutes=60)
        assert is_online(bed, phone.ns)
        agent = Proc(
            bed, bed.gw, gw.hotspot("sync", "run", "--log-level", "DEBUG"), tmp_path / "sync.log"
        ).start()
        procs.append(agent)
        observation = tmp_path / "hotspot.db.collector-time.json"

        # -- 1. the fake collector: its time is not taken --------------------------------------
        wait_for(lambda: fake.text().count("answered") >= 3, 30, "the fake collector answering")
        time.sleep(1.5)  # a gateway check or two (every 5 s at most; the clock is not waited on)
        assert not observation.exists()
        assert float(shift.read_text()) == -DAYS3
        assert "collector's time" not in gw.log.read_text()
        assert "time signature does not match" in agent.text()

        # -- 2. the real collector: the clock is set forward, once ------------------------------
        fake.stop()
        ccfg = collector_toml(
            tmp_path / "collector.toml",
            postgres.url(dbname),
        )
        real_from = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        coll = Proc(
            bed, prov, hotspot(ccfg, "collector", "run"), tmp_path / "collector.log"
        ).start()
        procs.append(coll)
        t_real = time.monotonic()
        wait_for(observation.exists, 60, "the collector's time kept by the agent", interval=0.2)
        wait_for(lambda: "set from the collector's time" in gw.log.read_text(), 20, "the step", 0.2)
        figures["step_after_collector_s"] = round(time.monotonic() - t_real, 2)
        assert abs(float(shift.read_text())) < 30  # within the round trip and the tick
        step = wait_for(lambda: gw.call("status")["last_clock_step"], 10, "the engine following it")
        assert step["seconds"] == pytest.approx(DAYS3, abs=30)
        assert gw.call("status")["clock_synced"] is False
        assert is_online(bed, phone.ns)  # 60 free minutes: three days did not end them
        session = gw.call("client", mac=phone.mac)["session"]
        assert session is not None and session["state"] == "active"
        assert 55 * 60 <= session["seconds_remaining"] <= 60 * 60
        wait_for(
            lambda: ("collector",) in {(s,) for _, s in health_clock(pg, real_from)},
            30,
            "a health record saying the clock came from the collector",
        )
        seen = health_clock(pg, real_from)
        assert all(s is False for s, _ in seen), seen  # not synchronised throughout
        assert {src for _, src in seen} <= {"none", "collector"}
        time.sleep(6)  # more than one check later: no second step
        assert gw.log.read_text().count("set from the collector's time") == 1

        # -- 3. NTP has the clock: the collector's time is not used ------------------------------
        synced.write_text("1")
        shift.write_text(str(-7200.0))
        ntp_from = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        wait_for(
            lambda: any(src == "ntp" for _, src in health_clock(pg, ntp_from)),
            30,
            "a health record saying ntp",
        )
        assert float(shift.read_text()) == -7200.0
        assert gw.log.read_text().count("set from the collector's time") == 1
        assert gw.call("status")["clock_synced"] is True
        figures["test_s"] = round(time.monotonic() - t_start, 1)
        (artifacts / "collector_time.json").write_text(json.dumps(figures, indent=1))
    finally:
        for p in reversed(procs):
            p.stop(signal.SIGKILL, timeout=5)
        if gw is not None:
            gw.stop()
        bed.destroy()
        pg.dispose()
        postgres.drop_db(dbname)
