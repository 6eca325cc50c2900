"""The gateway's processes for the power-cut loop (tests/integration/test_power_cut.py).

Each role runs in a process of its own, forked from a fork server (``python -m
tests.integration.powercut``) that has imported all of this already (a fresh interpreter
takes seconds on a loaded machine; the loop starts them dozens of times), and is killed
with SIGKILL. The database is on the lossy filesystem
(tests/lossyfs.py); what each role *returned to its client* is appended to a log on the real
disk, one line per acknowledgement, after the call returned: that log is what the villager
saw on the success page and what the console showed, and the checks hold the database to it.

* ``gateway``: the real daemon (gateway/daemon.py: the session engine, the control socket,
  the uplink monitor, the stock's shelf life) on a data path that stands in for the kernel
  (tests/unit/fakes.py: the kernel is not what is tested here), ticking every 0.2 s with a
  flush every second and traffic on every session: logins, accounting.
* ``portal``: voucher redemptions as the captive portal makes them
  (hotspot.vouchers.redemption.VoucherService on the portal's ``FULL`` connections, through
  the control socket), free logins, and after every restart the last acknowledged code
  again (the villager taps again when the power returns: it must not be a first use).
* ``console``: quick sales as the operator console makes them
  (hotspot.vouchers.sales.quick_sell), and after every restart the last acknowledged form
  again (a double tap: it must sell nothing more).
* ``sync``: the real ``hotspot sync run`` (hotspot_cli → sync/agent.py) against a recording
  collector on 127.0.0.1.
* ``lossyfs``: the filesystem itself.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# Imported here, before the fork server forks: a role starts in milliseconds.
import gateway.daemon  # noqa: F401 - imported before the fork
from hotspot import config as config_mod
from hotspot.audit import Actor
from hotspot.db import open_database
from hotspot.errors import HotspotError
from hotspot.vouchers.redemption import VoucherService
from hotspot.vouchers.sales import quick_sell
from hotspot_cli.main import main as hotspot_main
from portal.gateway import GatewayLink
from portal.startup import database as portal_database
from tests import lossyfs
from tests.unit.fakes import FakeDataPath

try:  # the filesystem's library, before the fork too (the test skips without it)
    import mfusepy  # noqa: F401
except (ImportError, OSError):
    pass

VOUCHER_KEY = b"p" * 32
REDEEM_PACKAGE = "harian"
SALE_PACKAGE = "mingguan"
PACKAGES = {
    REDEEM_PACKAGE: {"title": "Harian", "price": 5000, "tier": "premium", "hours": 24},
    SALE_PACKAGE: {"title": "Mingguan", "price": 25000, "tier": "premium", "hours": 168},
}
KASIR = Actor("siti", None, "kasir")


def device(n: int) -> tuple[str, str]:
    """The n-th phone of the village (n < 1000): its address and MAC."""
    return f"10.10.{n // 250}.{n % 250 + 2}", f"02:00:00:00:{n // 256:02x}:{n % 256:02x}"


def free_device(n: int) -> tuple[str, str]:
    """Phones that log in for free: the last /24 of the village's /22, cycled."""
    return f"10.10.3.{n % 250 + 2}", f"02:00:00:01:00:{n % 250:02x}"


def write_config(path: Path, state: Path, run: Path, collector_port: int) -> Path:
    path.write_text(
        f"""
[database]
url = "sqlite:///{state}/hotspot.db"
[network]
wan_interface = "lo"
[control]
socket = "{run}/control.sock"
group = "root"
[village]
name = "Desa Uji Mati Listrik"
[gateway]
tick_seconds = 0.2
flush_seconds = 1
[tiers.premium]
idle_minutes = 0
[sync]
upstream_url = "http://127.0.0.1:{collector_port}"
gateway_id = "desa-uji"
secret = "{"s" * 32}"
interval_seconds = 1
health_seconds = 1
timeout_seconds = 5
backoff_max_seconds = 1
"""
        + "".join(
            f"[packages.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in p.items())
            for name, p in PACKAGES.items()
        )
    )
    return path


class AckLog:
    """Lines appended to a file on the real disk: survives SIGKILL (the page cache stays)."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, *fields: object) -> None:
        line = "\t".join(str(f) for f in (*fields, f"{time.time():.3f}"))
        os.write(self.fd, (line + "\n").encode())


def read_log(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text().splitlines() if line]


# -- roles -------------------------------------------------------------------------------


def run_role(log_path: str, role: str, *args: str) -> None:
    """A role in a process forked from the fork server, its output in ``log_path``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.write(fd, f"--- {role} pid {os.getpid()} at {started_at()} {time.time():.3f}\n".encode())
    globals()[f"role_{role}"](*args)


def serve() -> None:
    """The fork server: one request a line on standard input (a JSON list: the log, the
    role, its arguments), the child's pid a line on standard output. Children are reaped
    by the kernel (SIGCHLD ignored); the test kills them by pid."""
    import sys

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                run_role(*request)
            finally:
                os._exit(70)
        print(pid, flush=True)


def role_lossyfs(backing: str, mountpoint: str) -> None:
    import sys

    sys.argv = ["lossyfs", backing, mountpoint]
    lossyfs.main()


class VillageDataPath(FakeDataPath):
    """The kernel as the daemon sees it (tests/unit/fakes.py), with the village's phones
    in the neighbour table and traffic on every session at every read of the counters."""

    def __init__(self, _config: config_mod.Config):
        super().__init__()
        self.down = self.up = SimpleNamespace(leaf="htb")
        for n in range(1000):
            ip, mac = device(n)
            self.neighbours[ip] = mac
        for n in range(250):
            ip, mac = free_device(n)
            self.neighbours[ip] = mac

    def counters(self, minors: Any = None) -> Any:
        for ip, _mac in list(self.state.authorized):
            self.traffic(ip, down=random.randint(1_000, 50_000), up=random.randint(100, 5_000))
        return super().counters(minors)


def role_gateway(config_path: str) -> None:
    """The real daemon (``hotspot gateway run``'s :class:`gateway.daemon.Gateway`) with the
    kernel stood in for: no interfaces to check, no nftables, no tc."""
    from gateway import daemon

    daemon.check_interfaces = lambda _config: None  # type: ignore[assignment]
    daemon.DataPath = VillageDataPath  # type: ignore[assignment,misc]
    os._exit(daemon.Gateway(config_mod.load(config_path)).run())


def _gateway_link(cfg: config_mod.Config) -> GatewayLink:
    deadline = time.monotonic() + 30
    link = GatewayLink(cfg.control.socket)
    while True:
        try:
            link.call("list")
            return link
        except (HotspotError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def role_portal(config_path: str, codes_path: str, acks_path: str) -> None:
    cfg = config_mod.load(config_path)
    db = portal_database(cfg.database.url)
    gateway = _gateway_link(cfg)
    vouchers = VoucherService.from_config(cfg, db, VOUCHER_KEY, gateway)
    print(f"gateway answers at {time.time():.3f}", flush=True)
    codes = Path(codes_path).read_text().split()
    done = read_log(Path(acks_path))
    acks = AckLog(Path(acks_path))
    redeemed = [int(r[1]) for r in done if r[0] == "redeemed"]
    if redeemed:
        # The last villager taps again after the power came back.
        n = redeemed[-1]
        ip, mac = device(n)
        r = vouchers.redeem(codes[n], ip=ip, mac=mac)
        acks.write("again", n, r.voucher_id, int(r.first_use))
    n = (max(redeemed) + 1) if redeemed else 0
    logins = sum(1 for r in done if r[0] == "login")
    while n < len(codes):
        ip, mac = device(n)
        r = vouchers.redeem(codes[n], ip=ip, mac=mac)
        acks.write("redeemed", n, r.voucher_id, mac, int(r.first_use))
        n += 1
        if n % 3 == 0:
            fip, fmac = free_device(logins)
            try:
                s = gateway.call("authorize", ip=fip, tier="free")
                acks.write("login", logins, s["id"], fmac)
            except HotspotError as exc:  # the day's free allowance of that phone is spent
                acks.write("login-refused", logins, exc.code.value)
            logins += 1
    while True:
        time.sleep(1)


def role_console(config_path: str, package_id: str, acks_path: str) -> None:
    cfg = config_mod.load(config_path)
    db = portal_database(cfg.database.url)
    done = read_log(Path(acks_path))
    acks = AckLog(Path(acks_path))
    sold = [r for r in done if r[0] == "sold"]
    if sold:
        # The same form again (a double tap when the power came back): nothing more sold.
        sale = quick_sell(db, int(package_id), sold[-1][1], actor=KASIR)
        acks.write("again", sold[-1][1], sale["voucher_id"], int(sale["repeat"]))
    n = len(sold)
    while True:
        token = f"form-{os.getpid()}-{n}"
        sale = quick_sell(db, int(package_id), token, actor=KASIR)
        acks.write("sold", token, sale["voucher_id"], int(sale["repeat"]))
        n += 1
        time.sleep(0.1)  # a busy kasir is slower; the others need the CPU too


def role_sync(config_path: str) -> None:
    os._exit(hotspot_main(["--config", config_path, "sync", "run", "--log-level", "WARNING"]))


def prepare_database(config_path: Path, codes_path: Path, vouchers: int) -> int:
    """Migrate, write the packages, make the vouchers; the codes to redeem go to
    ``codes_path``. Returns the id of the package the console sells."""
    from sqlalchemy import select

    from hotspot.model import Package
    from hotspot.vouchers.batches import create_batch
    from hotspot.vouchers.packages import sync_packages

    cfg = config_mod.load(config_path)
    db = open_database(cfg.database.url, synchronous="FULL")
    sync_packages(db, cfg.packages.values())
    batch = create_batch(db, VOUCHER_KEY, REDEEM_PACKAGE, vouchers)
    codes_path.write_text("\n".join(batch.codes) + "\n")
    create_batch(db, VOUCHER_KEY, SALE_PACKAGE, 5000)
    with db.connect() as conn:
        pid = conn.execute(select(Package.id).where(Package.name == SALE_PACKAGE)).scalar_one()
    db.dispose()
    return int(pid)


# -- the collector -------------------------------------------------------------------------


@dataclass
class Delivery:
    key: str
    digest: str
    records: list[dict[str, Any]]


@dataclass
class RecordingCollector:
    """Answers every batch as the collector does (ok, duplicate when its key was seen) and
    keeps what came. Lives in the test's process: it is the province, no power cut there."""

    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> ThreadingHTTPServer:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key", "")
                raw = json.loads(gzip.decompress(body))
                with collector.lock:
                    seen = any(d.key == key for d in collector.deliveries)
                    collector.deliveries.append(
                        Delivery(key, hashlib.sha256(body).hexdigest(), raw["records"])
                    )
                answer = json.dumps({"ok": True, "batch": key, "duplicate": seen}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def problems(self) -> list[str]:
        """A batch key that came with two bodies (the collector would keep the first and drop
        the rest), or one record revision in two batches (a period reported twice)."""
        out = []
        with self.lock:
            deliveries = list(self.deliveries)
        bodies: dict[str, str] = {}
        where: dict[str, str] = {}
        for d in deliveries:
            if bodies.setdefault(d.key, d.digest) != d.digest:
                out.append(f"batch {d.key} sent again with another body")
                continue
            for rec in d.records:
                ident = json.dumps(rec, sort_keys=True)
                first = where.setdefault(ident, d.key)
                if first != d.key:
                    out.append(
                        f"{rec.get('kind')} record reported twice, in batches {first} and "
                        f"{d.key}: {ident[:160]}"
                    )
        return out


# -- after a power cut ----------------------------------------------------------------------


def check_database(db_path: Path, logs: Path) -> tuple[list[str], dict[str, int]]:
    """What must hold after a power cut, against what the clients were told; (problems,
    counts)."""
    import sqlite3

    problems: list[str] = []
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            return [f"integrity_check: {integrity[:5]}"], {}
        redeemed = [r for r in read_log(logs / "portal.log") if r[0] == "redeemed"]
        for _, n, vid, mac, *_ in redeemed:
            row = conn.execute(
                "SELECT state, first_used_at FROM voucher WHERE id = ?", (int(vid),)
            ).fetchone()
            macs = [
                m
                for (m,) in conn.execute(
                    "SELECT mac FROM voucher_device WHERE voucher_id = ?", (int(vid),)
                )
            ]
            if row is None or row[0] != "active" or row[1] is None or macs != [mac]:
                problems.append(
                    f"voucher {vid} (code {n}) was redeemed by {mac} and the villager saw the "
                    f"success page, but now: {row}, devices {macs}"
                )
        for r in read_log(logs / "portal.log"):
            if r[0] == "again" and r[3] != "0":
                problems.append(f"voucher {r[2]} (code {r[1]}) spent again: a first use twice")
        sold = [r for r in read_log(logs / "console.log") if r[0] == "sold"]
        for _, token, vid, *_ in sold:
            row = conn.execute(
                "SELECT v.sold_at, q.voucher_id, (SELECT count(*) FROM voucher_sale s "
                "WHERE s.voucher_id = v.id) FROM voucher v LEFT JOIN quick_sale q "
                "ON q.token = ? WHERE v.id = ?",
                (token, int(vid)),
            ).fetchone()
            if row is None or row[0] is None or row[1] != int(vid) or row[2] != 1:
                problems.append(f"sale of voucher {vid} (form {token}) shown, now lost: {row}")
        for r in read_log(logs / "console.log"):
            if r[0] == "again" and r[3] != "1":
                problems.append(f"form {r[1]} sold a second voucher ({r[2]}) after the cut")
        logins = [int(r[2]) for r in read_log(logs / "portal.log") if r[0] == "login"]
        kept = {i for (i,) in conn.execute("SELECT id FROM client_session")}
        counts = {
            # Free sessions are written with synchronous=NORMAL (by design: a login lost to
            # a power cut is made again with the next form): these show the cuts bite.
            "logins_lost": sum(1 for i in logins if i not in kept),
            "logins": len(logins),
            "redeemed": len(redeemed),
            "sold": len(sold),
            "sessions": conn.execute("SELECT count(*) FROM client_session").fetchone()[0],
            "outbox": conn.execute("SELECT count(*) FROM sync_outbox").fetchone()[0],
        }
    finally:
        conn.close()
    return problems, counts


def started_at() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


if __name__ == "__main__":
    serve()
