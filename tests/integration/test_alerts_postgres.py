"""Alerts on a real PostgreSQL, told to a real SMTP server (Debian's aiosmtpd, a process of
its own writing a Maildir) and a real HTTP server checking the webhook's signature: two
collectors evaluating and delivering at once raise each alert once and send each message
once; an SMTP server that is down loses nothing and, once back, gets each message once."""

from __future__ import annotations

import hashlib
import hmac
import json
import mailbox
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector import alerts as al
from collector import config as collector_config
from collector.app import create_app
from collector.models import Alert, AlertNotification
from hotspot.timeutil import utcnow
from tests.unit.collector.helpers import SECRET, gateway_record, health_record, post, register
from testsupport.loopback import free_port

pytestmark = pytest.mark.postgres
HOOK_SECRET = "hook-secret-" + "k" * 20
PYTHON3 = shutil.which("python3", path="/usr/bin:/bin") or "python3"


def _aiosmtpd_missing() -> bool:
    return subprocess.run([PYTHON3, "-c", "import aiosmtpd"], capture_output=True).returncode != 0


class SmtpServer:
    """``python3 -m aiosmtpd`` delivering into a Maildir; stop() and start() again on the
    same port (the SMTP server going down and coming back)."""

    def __init__(self, base: Path):
        self.maildir = base / "Maildir"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.extra: list[str] = []  # more aiosmtpd options (STARTTLS's certificate)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                PYTHON3,
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                f"127.0.0.1:{self.port}",
                *self.extra,
                "-c",
                "aiosmtpd.handlers.Mailbox",
                str(self.maildir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"aiosmtpd did not start: {self.proc.stderr}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def messages(self) -> list:
        if not self.maildir.exists():
            return []
        box = mailbox.Maildir(str(self.maildir), create=False)
        return [box.get_message(key) for key in box.keys()]


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []
    bad: list[str] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ts = self.headers["X-Hotspot-Timestamp"]
        want = (
            "v1="
            + hmac.new(
                HOOK_SECRET.encode(), f"v1\n{ts}\n".encode() + body, hashlib.sha256
            ).hexdigest()
        )
        if not hmac.compare_digest(want, self.headers.get("X-Hotspot-Signature", "")):
            Hook.bad.append(self.headers.get("X-Hotspot-Signature", ""))
            self.send_response(401)
        else:
            Hook.received.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def servers(tmp_path):
    if _aiosmtpd_missing():
        pytest.skip("python3-aiosmtpd is not installed (.ci/run installs it)")
    smtp = SmtpServer(tmp_path)
    smtp.start()
    Hook.received, Hook.bad = [], []
    http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield smtp, f"http://127.0.0.1:{http.server_address[1]}/hook"
    http.shutdown()
    http.server_close()
    smtp.stop()


@pytest.fixture
def collector(pg_url, servers):
    smtp, hook = servers
    cfg = collector_config.load(
        overrides={
            "collector": {"database_url": pg_url, "dashboard_public": True, "region": "Uji"},
            "alerts": {
                "raise_after_minutes": 0,
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,
                "mail_to": ["noc@diskominfo.example"],
                "mail_from": "collector@diskominfo.example",
                "webhook_url": hook,
                "webhook_secret": HOOK_SECRET,
                "timeout_seconds": 5,
            },
        }
    )
    app = create_app(cfg)
    yield cfg, app, smtp
    app.extensions["collector_db"].dispose()


def report(app, gid, **health):
    register(app, gid, SECRET)
    stamp = utcnow().replace(microsecond=0).isoformat() + "Z"
    recs = [gateway_record(village=f"Desa {gid}"), health_record(sampled_at=stamp, **health)]
    assert post(app.test_client(), recs, gateway=gid, hgateway=gid).status_code == 200


def in_threads(n: int, fn):
    results, errors = [], []
    barrier = threading.Barrier(n)

    def work():
        try:
            barrier.wait()
            results.append(fn())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def test_two_collectors_raise_once_and_send_once(collector):
    cfg, app, smtp = collector
    engine = app.extensions["collector_db"]
    for gid in ("desa-satu", "desa-dua", "desa-tiga"):
        report(app, gid, disk_pct=95.0, temp_c=50.0)  # the helpers' uplink is fine
    now = utcnow()
    # Two collectors evaluate at the same moment, three times over.
    results = []
    for _ in range(3):
        results += in_threads(2, lambda: _evaluate(engine, cfg, now))
    assert sum(r["raised"] for r in results) == 3
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 3
        assert s.scalar(select(func.count()).select_from(AlertNotification)) == 6
    # Two collectors deliver at the same moment: SKIP LOCKED gives each row to one of them.
    sent = in_threads(2, lambda: al.deliver(engine, cfg, now))
    assert sum(r["sent"] for r in sent) == 6
    assert sum(r["sent"] for r in in_threads(2, lambda: al.deliver(engine, cfg, now))) == 0
    mails = smtp.messages()
    assert len(mails) == 3
    assert len({m["Message-ID"] for m in mails}) == 3
    assert all("disk" in m.get_payload() and "Desa desa-" in m["Subject"] for m in mails)
    assert Hook.bad == [] and len(Hook.received) == 3
    ids = [n["id"] for doc in Hook.received for n in doc["notifications"]]
    assert len(ids) == len(set(ids)) == 3
    assert {doc["notifications"][0]["kind"] for doc in Hook.received} == {"disk"}


def _evaluate(engine, cfg, now):
    with Session(engine) as s, s.begin():
        return al.evaluate(s, cfg, now)


def test_smtp_down_then_back_loses_nothing_and_repeats_nothing(collector):
    cfg, app, smtp = collector
    engine = app.extensions["collector_db"]
    report(app, "desa-satu", disk_pct=50.0, temp_c=90.0)
    now = utcnow()
    smtp.stop()
    result = al.run_once(engine, cfg, now)
    assert result["raised"] == 1 and result["sent"] == 1 and result["failed"] == 1  # webhook ok
    with Session(engine) as s:
        (row,) = s.scalars(select(AlertNotification).where(AlertNotification.sent_at.is_(None)))
        assert row.channel == "email" and row.attempts == 1
        retry = row.next_attempt_at
    smtp.start()
    assert al.deliver(engine, cfg, retry)["sent"] == 1
    assert al.deliver(engine, cfg, retry)["sent"] == 0
    mails = smtp.messages()
    assert len(mails) == 1
    msg = mails[0]
    assert msg["To"] == "noc@diskominfo.example" and "suhu tinggi" in msg["Subject"]
    text = msg.get_payload(decode=True).decode()
    assert "Uji" in text and "90 °C" in text and "Asia/Jakarta" in text
    assert len(Hook.received) == 1
