"""The sync agent keeps the collector's time only from an acknowledgement signed for its own
request (issue #11, item 2): a forged, unsigned or replayed time, or a ``Date`` header, is
never written where the gateway would set its clock by it. And the health record tells the
province whether the clock is synchronised, and from where."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.models import HealthSample
from hotspot import collector_time as ct
from sync.agent import Agent, HttpTransport
from tests.unit.collector.helpers import FlaskTransport
from tests.unit.sync.conftest import seed_usage

NOW = dt.datetime(2026, 11, 28, 2, 0)


def make_agent(cfg, db, transport, **kw) -> Agent:
    return Agent(cfg, db, transport=transport, clock=lambda: NOW, boot="this-boot", **kw)


def no_sleep(_s):
    return None


def send_something(a: Agent) -> None:
    a.collect(with_health=False)
    assert a.drain(max_failures=2, sleep=no_sleep).ok


class Tampered(FlaskTransport):
    """A man in the middle rewriting the collector's answers."""

    def __init__(self, app, tamper):
        super().__init__(app)
        self.tamper = tamper

    def post(self, path, body, headers):
        status, answer = super().post(path, body, headers)
        return status, self.tamper(answer)


def test_a_signed_acknowledgement_gives_the_collectors_time(gwcfg, gwdb, app):
    seed_usage(gwdb, devices=2, hours=3, start=NOW - dt.timedelta(hours=3))
    a = make_agent(gwcfg, gwdb, FlaskTransport(app))
    before = time.monotonic()
    send_something(a)
    obs = ct.read_observation(ct.observation_path(gwcfg))
    assert obs is not None and obs.boot == "this-boot"
    assert before <= obs.monotonic <= time.monotonic()
    assert abs(obs.collector_time - time.time()) < 30


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda a: {**a, "time_ms": a["time_ms"] + 365 * 86400_000}, id="forged"),
        pytest.param(lambda a: {k: v for k, v in a.items() if k != "time_sig"}, id="unsigned"),
        pytest.param(lambda a: {**a, "time_sig": "v1=" + "0" * 64}, id="bad-signature"),
        pytest.param(lambda a: {**a, "time_ms": True}, id="malformed"),
    ],
)
def test_a_forged_or_unsigned_time_is_not_kept(gwcfg, gwdb, app, tamper):
    seed_usage(gwdb, devices=2, hours=3, start=NOW - dt.timedelta(hours=3))
    a = make_agent(gwcfg, gwdb, Tampered(app, tamper))
    send_something(a)  # the batch is delivered all the same
    assert not ct.observation_path(gwcfg).exists()


def test_a_replayed_old_acknowledgement_is_not_kept(gwcfg, gwdb, app):
    """The collector's answer to the first attempt is lost, and an attacker answers the retry
    (a new nonce) with it: the batch is the collector's anyway, its time is not ours."""
    seed_usage(gwdb, devices=2, hours=3, start=NOW - dt.timedelta(hours=3))

    class Replay(FlaskTransport):
        old: dict | None = None

        def post(self, path, body, headers):
            if self.old is None:
                self.old = super().post(path, body, headers)[1]
                raise OSError("collector unreachable: answer lost")
            return 200, self.old

    a = make_agent(gwcfg, gwdb, Replay(app))
    send_something(a)
    assert a.outbox.pending() == 0
    assert not ct.observation_path(gwcfg).exists()


def test_an_unsigned_date_header_moves_nothing(gwcfg, gwdb):
    """A fake collector (a captive portal upstream, a spoofed DNS answer) answering 200 with
    a Date a year ahead: the agent's real HTTP transport, no time kept."""
    seen: list[dict] = []

    class Fake(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            key = self.headers["Idempotency-Key"]
            seen.append(dict(self.headers))
            body = json.dumps({"ok": True, "batch": key, "duplicate": False}).encode()
            self.send_response(200)
            self.send_header("Date", "Thu, 30 Nov 2028 08:00:00 GMT")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seed_usage(gwdb, devices=2, hours=3, start=NOW - dt.timedelta(hours=3))
        transport = HttpTransport(f"http://127.0.0.1:{server.server_address[1]}", 5)
        a = make_agent(gwcfg, gwdb, transport)
        send_something(a)
    finally:
        server.shutdown()
        server.server_close()
    assert seen and not ct.observation_path(gwcfg).exists()


@pytest.mark.parametrize(
    ("synced", "stepped", "source"),
    [
        (True, False, "ntp"),
        (False, False, "none"),
        (False, True, "collector"),
        (None, False, "none"),
    ],
)
def test_the_health_record_says_whether_the_clock_is_synchronised(
    gwcfg, gwdb, app, cdb, synced, stepped, source
):
    if stepped:  # what the gateway notes when it set the clock from the collector's time
        ct.source_path(gwcfg).write_text(json.dumps({"source": "collector", "boot": "this-boot"}))
    a = make_agent(gwcfg, gwdb, FlaskTransport(app), synced=lambda: synced)
    a.collect(with_health=True, cpu_interval=0)
    assert a.drain(max_failures=1, sleep=no_sleep).ok
    with Session(cdb) as s:
        h = s.scalars(select(HealthSample)).one()
    assert (h.clock_synced, h.clock_source) == (synced, source)
