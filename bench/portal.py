"""Portal benchmark: ``python3 -m bench.portal [--phones 300] [--quick]`` (no root needed).

A burst of logins — villagers' phones reconnecting after a power cut — against the real
portal under gunicorn (2 gthread workers, as ``hotspot portal run`` starts it), twice:

* ``engine``: the control socket is served by the real gateway code — session engine,
  control server, SQLite database (WAL) — on a kernel-less data path: everything an
  authorization costs but the nftables/tc calls, in its own process on the same cores;
* ``fake``: canned answers over the same socket protocol — what the portal costs alone.

Everything runs on loopback: the LAN is ``127.0.0.1/18`` (the portal at 127.0.0.1, the
"phones" bind the source addresses 127.0.1.x…, all local on Linux), so each phone is a
distinct client address that the gateway maps to its own MAC. Nothing leaves the machine.

A phone's login is what a real one does:

1. the OS probe ``GET http://connectivitycheck.gstatic.com/generate_204`` (answered by the
   portal's captive redirect: 302, ``Connection: close``);
2. ``GET`` the splash it was sent to (keep-alive from here on);
3. ``POST /accept`` with the form's CSRF token (the gateway authorizes the free tier): 303;
4. ``GET /ok``, the success page.

Phases: *burst* — every phone starts at once; *paced* — phones arrive evenly at the target
rate (200/s). Reported: logins/s, latency of the whole login and of the ``POST /accept``
(p50/p99 ms), of single requests, and the RSS of each worker (now and peak). The load
generator (asyncio, one process) shares the machine's cores with the portal and the
gateway, so the figures are a floor. Writes ``bench/results/portal.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.reconcile import Snapshot
    from gateway.tc import ClassReading

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
LAN = "127.0.0.1/18"
PROBE_HOST = "connectivitycheck.gstatic.com"


# -- the gateway stand-in: the real engine, no kernel ------------------------------------------


class NullDataPath:
    """The engine's kernel port, doing nothing; the MAC of an address is derived from it."""

    def install(self, wanted, blocked, pool=None) -> None:
        pass

    def snapshot(
        self,
        with_nft: bool = True,
        readings: tuple[dict[int, ClassReading], dict[int, ClassReading]] | None = None,
        login_state: bool = True,
    ) -> Snapshot:
        from gateway.reconcile import Snapshot

        return Snapshot(login_sets_looked=login_state)

    def counters(self, minors=None):
        return {}, {}

    def class_counters(self, minor: int) -> tuple[ClassReading | None, ClassReading | None]:
        return None, None

    def apply(self, plan) -> dict[int, tuple[ClassReading | None, ClassReading | None]]:
        return {}

    def mac_of(self, ip: str) -> str | None:
        n = int(ipaddress.IPv4Address(ip))
        return "02:bb:" + ":".join(f"{(n >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))

    def ip_of(self, mac: str) -> str | None:
        return str(ipaddress.IPv4Address(int(mac.replace(":", "")[4:], 16)))

    def neighbour_table(self) -> dict[str, str]:
        return {}  # the bench has no trusted or returning devices

    def portal_peers(self) -> dict[tuple[str, str], float]:
        return {}

    def macs_seen_at(self, ip: str) -> set[str]:
        return {m} if (m := self.mac_of(ip)) else set()


def serve_gateway(config_path: str) -> None:
    """``python3 -m bench.portal --serve-gateway CONFIG``: the control socket until SIGTERM."""
    from gateway.control_server import ControlServer, Dispatcher
    from gateway.engine import SessionEngine
    from hotspot import config as config_mod
    from hotspot.db import open_database

    cfg = config_mod.load(config_path)
    engine = SessionEngine(cfg, open_database(cfg.database.url), NullDataPath())
    engine.start()
    server = ControlServer(cfg.control.socket, Dispatcher(engine, lambda: {}), None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()


def serve_fake_gateway(socket_path: str) -> None:
    """``--serve-fake-gateway SOCKET``: canned answers in the control socket's protocol, as
    fast as a socket can be: what the portal costs on its own."""
    import socketserver
    import threading

    from hotspot import protocol as proto
    from hotspot.errors import ErrorCode, HotspotError, UsageError

    sessions: dict[str | None, dict[str, Any]] = {}  # a mac-only request looks up None
    lock = threading.Lock()
    allowance = {
        "free": {
            "seconds_left": 7200,
            "bytes_left": 300_000_000,
            "seconds_used": 0,
            "bytes_used": 0,
            "resets_at": "2030-01-01T17:00:00Z",
            "exhausted": False,
        }
    }

    def handle(req: proto.Request[Any]) -> Any:
        with lock:
            match req:
                case proto.PingRequest():
                    return {"pong": True, "version": "fake"}
                case proto.ClientRequest(ip=str() as ip):
                    return {
                        "ip": ip,
                        "mac": NullDataPath().mac_of(ip),
                        "blocked": False,
                        "session": sessions.get(ip),
                        "last_session": None,
                        "allowance": allowance,
                    }
                case proto.AuthorizeRequest(ip=str() as ip):
                    sess = {
                        "id": len(sessions) + 1,
                        "ip": ip,
                        "mac": NullDataPath().mac_of(ip),
                        "tier": req.tier,
                        "source": req.source.value,
                        "state": "active",
                        "expires_at": "2030-01-01T01:00:00Z",
                        "seconds_remaining": 3600,
                        "bytes_remaining": 300_000_000,
                        "down_kbps": 1024,
                        "up_kbps": 512,
                        "bytes_down": 0,
                        "bytes_up": 0,
                    }
                    sessions[ip] = sess
                    return sess
                case proto.DeauthorizeRequest(ip=ip):
                    return sessions.pop(ip, None) or {}
        raise UsageError(f"{req.op}: not answered by the fake gateway")

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                reply: proto.Reply
                try:
                    reply = proto.ok_reply(handle(proto.parse_request(json.loads(line))))
                except HotspotError as exc:
                    reply = proto.error_reply(exc.code, exc.message)
                except ValueError:
                    reply = proto.error_reply(ErrorCode.BAD_REQUEST, "not JSON")
                self.wfile.write(proto.encode(reply))

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    server = Server(socket_path, Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


# -- a minimal HTTP/1.1 client (asyncio, one connection per phone) -----------------------------


class Conn:
    def __init__(self, src: str, port: int):
        self.src, self.port = src, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        host: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port, local_addr=(self.src, 0)
            )
        assert self.reader is not None  # opened with the writer
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {host}",
            "User-Agent: bench-phone",
            "Accept-Language: id-ID,id;q=0.9",
        ]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        if body or method == "POST":
            head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        hdrs: dict[str, str] = {}
        cookies = []
        while True:
            line = (await self.reader.readline()).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            k, _, v = line.partition(":")
            if k.lower() == "set-cookie":
                cookies.append(v.strip().split(";", 1)[0])
            hdrs[k.lower()] = v.strip()
        if cookies:
            hdrs["set-cookie"] = "; ".join(cookies)
        data = await self.reader.readexactly(int(hdrs.get("content-length", "0")))
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


_TOKEN = re.compile(rb'name="csrf_token" value="([^"]+)"')
_HIDDEN = re.compile(rb'<input type="hidden" name="(to|t|s)" value="([^"]*)"')


async def login(src: str, port: int, out: dict[str, list[float]]) -> None:
    own = f"127.0.0.1:{port}"
    t0 = time.perf_counter()
    probe = Conn(src, port)
    t = time.perf_counter()
    status, hdrs, _ = await probe.request("GET", "/generate_204", PROBE_HOST)
    out["probe"].append(time.perf_counter() - t)
    assert status == 302, status
    location = hdrs["location"]
    path = location.split(own, 1)[1]
    conn = Conn(src, port)
    t = time.perf_counter()
    status, hdrs, page = await conn.request("GET", path, own)
    out["splash"].append(time.perf_counter() - t)
    assert status == 200, status
    cookie = hdrs.get("set-cookie", "")
    found = _TOKEN.search(page)
    assert found is not None, "no CSRF token on the splash"
    token = found.group(1).decode()
    fields = {k.decode(): v.decode() for k, v in _HIDDEN.findall(page)}
    from html import unescape
    from urllib.parse import urlencode

    form = urlencode({"csrf_token": token, **{k: unescape(v) for k, v in fields.items()}})
    t = time.perf_counter()
    status, hdrs, _ = await conn.request(
        "POST",
        "/accept",
        own,
        {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
        form.encode(),
    )
    out["accept"].append(time.perf_counter() - t)
    assert status == 303, status
    ok = hdrs["location"].split(own, 1)[1]
    t = time.perf_counter()
    status, _, _ = await conn.request("GET", ok, own, {"Cookie": cookie})
    out["success"].append(time.perf_counter() - t)
    assert status == 200, status
    conn.close()
    out["login"].append(time.perf_counter() - t0)


async def phase(sources: list[str], port: int, rate: float | None) -> dict[str, Any]:
    out: dict[str, list[float]] = {k: [] for k in ("probe", "splash", "accept", "success", "login")}
    errors: list[str] = []

    async def one(i: int, src: str) -> None:
        if rate:
            await asyncio.sleep(i / rate)
        try:
            await login(src, port, out)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    await asyncio.gather(*(one(i, s) for i, s in enumerate(sources)))
    wall = time.perf_counter() - started
    done = len(out["login"])
    requests = [v for k, vs in out.items() if k != "login" for v in vs]
    return {
        "phones": len(sources),
        "logins": done,
        "errors": len(errors),
        "error_samples": errors[:5],
        "offered_rate": rate,
        "wall_s": round(wall, 3),
        "logins_per_s": round(done / wall, 1) if wall else None,
        "login_ms": dist(out["login"]),
        "accept_ms": dist(out["accept"]),
        "request_ms": dist(requests),
        "requests_per_s": round(len(requests) / wall, 1),
        "per_step_p99_ms": {k: dist(v)["p99"] for k, v in out.items() if k != "login" and v},
    }


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def dist(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50": round(pct(ms, 50), 1),
        "p90": round(pct(ms, 90), 1),
        "p99": round(pct(ms, 99), 1),
        "max": round(max(ms), 1),
    }


# -- orchestration -----------------------------------------------------------------------------


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout}s")


def worker_memory(master_pid: int) -> list[dict[str, Any]]:
    import psutil

    out = []
    for child in psutil.Process(master_pid).children():
        status = Path(f"/proc/{child.pid}/status").read_text()
        vm_hwm = re.search(r"VmHWM:\s+(\d+)", status)
        assert vm_hwm is not None, f"no VmHWM in /proc/{child.pid}/status"
        hwm = int(vm_hwm.group(1))
        out.append(
            {
                "pid": child.pid,
                "rss_mb": round(child.memory_info().rss / 2**20, 1),
                "peak_rss_mb": round(hwm / 1024, 1),
                "uss_mb": round(child.memory_full_info().uss / 2**20, 1),
            }
        )
    return out


def cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU time so far of the gateway, the portal's workers and this load generator."""
    import psutil

    gw, master = (psutil.Process(p) for p in pids)
    out = {"gateway": sum(gw.cpu_times()[:2]), "portal_master": sum(master.cpu_times()[:2])}
    for i, child in enumerate(sorted(master.children(), key=lambda c: c.pid)):
        out[f"portal_worker{i}"] = sum(child.cpu_times()[:2])
    out["load_generator"] = sum(psutil.Process().cpu_times()[:2])
    return out


def per_login(before: dict[str, float], after: dict[str, float], logins: int) -> dict[str, float]:
    return {k: round((after[k] - before.get(k, 0.0)) * 1000 / max(1, logins), 2) for k in after}


def write_config(path: Path, tmp: Path, port: int, workers: int) -> None:
    from testsupport.testbed import portal_settings, write_toml

    write_toml(
        path,
        {
            "network": {"lan_address": LAN, "portal_port": port, "portal_conn_rate": 10000},
            "database": {"url": f"sqlite:///{tmp}/hotspot.db"},
            "control": {"socket": str(tmp / "control.sock")},
            "portal": portal_settings(tmp, workers=workers),
            # The default free tier without a daily allowance (0: none), so that no login
            # of the run meets one.
            "tiers": {"free": {"daily_minutes": 0, "daily_mb": 0}},
            "packages": {"harian": {"title": "Harian", "price": 5000, "tier": "free", "hours": 24}},
        },
    )


def sources(n: int, offset: int) -> list[str]:
    base = int(ipaddress.IPv4Address("127.0.1.0")) + offset
    return [str(ipaddress.IPv4Address(base + i)) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.portal", description=__doc__.split("\n")[0])
    ap.add_argument("--phones", type=int, default=300)
    ap.add_argument("--rate", type=float, default=200.0, help="arrivals per second (paced phase)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="60 phones (a smoke run)")
    ap.add_argument("--out", default=str(RESULTS / "portal.json"))
    ap.add_argument(
        "--gateway",
        action="append",
        choices=sorted(GATEWAYS),
        help="which gateway to run against (repeatable; default: engine and fake)",
    )
    ap.add_argument("--serve-gateway", metavar="CONFIG", help=argparse.SUPPRESS)
    ap.add_argument("--serve-fake-gateway", metavar="SOCKET", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_gateway:
        serve_gateway(args.serve_gateway)
        return 0
    if args.serve_fake_gateway:
        serve_fake_gateway(args.serve_fake_gateway)
        return 0
    args.gateway = args.gateway or ["engine", "fake"]
    phones = 60 if args.quick else args.phones
    if phones > 16000:
        ap.error("at most 16000 phones fit in 127.0.0.0/18")
    result: dict[str, Any] = {
        "benchmark": "portal login burst",
        "when": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "loadavg_before": os.getloadavg(),
        },
        "setup": {
            "server": "gunicorn gthread via `hotspot portal run`",
            "workers": args.workers,
            "client": "asyncio, same machine, one loopback source address per phone",
            "login": "probe → 302 → splash → POST /accept (CSRF) → 303 → success page",
            "phones": phones,
            "paced_rate": args.rate,
        },
        "aim": {"logins_per_s": ">= 200", "p99_ms": "< 250", "worker_rss_mb": "< 80"},
    }
    failed = False
    for mode in args.gateway:
        run = run_mode(mode, phones, args.rate, args.workers)
        result[mode] = run
        failed |= bool(run["burst"]["errors"] or run["paced"]["errors"])
    result["machine"]["loadavg_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for mode in args.gateway:
        r = result[mode]
        print(
            f"{mode:6} gateway: burst {r['burst']['logins_per_s']} logins/s "
            f"(login p99 {r['burst']['login_ms']['p99']} ms, accept p99 "
            f"{r['burst']['accept_ms']['p99']} ms); paced {r['paced']['logins_per_s']}/s "
            f"(login p99 {r['paced']['login_ms']['p99']} ms, request p99 "
            f"{r['paced']['request_ms']['p99']} ms); worker RSS "
            f"{[w['rss_mb'] for w in r['worker_rss_after']]} MB"
        )
    print(f"written to {args.out}")
    return 1 if failed else 0


GATEWAYS = {
    "engine": "the real SessionEngine + ControlServer + SQLite (WAL) on a kernel-less data path "
    "(every step of an authorization but the nft/tc calls), its own process",
    "fake": "canned answers over the same control-socket protocol (the portal's cost alone)",
}


def run_mode(mode: str, phones: int, rate: float, workers: int) -> dict[str, Any]:
    from testsupport.loopback import free_port, listening

    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="hotspot-bench-portal-") as tmpdir:
        tmp = Path(tmpdir)
        port = free_port()
        cfg_path = tmp / "hotspot.toml"
        write_config(cfg_path, tmp, port, workers)
        env = {**os.environ, "HOTSPOT_CONFIG": str(cfg_path), "PYTHONPATH": str(REPO)}
        log = open(tmp / "servers.log", "ab")
        try:
            flag = (
                ["--serve-gateway", str(cfg_path)]
                if mode == "engine"
                else ["--serve-fake-gateway", str(tmp / "control.sock")]
            )
            gw = subprocess.Popen(
                [sys.executable, "-m", "bench.portal", *flag],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=log,
            )
            procs.append(gw)
            wait_for(lambda: (tmp / "control.sock").exists(), 15, "the gateway")
            if mode == "fake":  # the portal still needs the schema (price list)
                from hotspot.db import open_database

                open_database(f"sqlite:///{tmp}/hotspot.db").dispose()
            portal = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hotspot_cli",
                    "--config",
                    str(cfg_path),
                    "portal",
                    "run",
                    "--log-level",
                    "WARNING",
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=log,
            )
            procs.append(portal)
            wait_for(lambda: listening("127.0.0.1", port), 30, "the portal")
            wait_for(
                lambda: len(__import__("psutil").Process(portal.pid).children()) >= workers,
                30,
                "the workers",
            )
            time.sleep(0.5)
            idle = worker_memory(portal.pid)
            # warm-up: a few logins, so every worker has imported and compiled everything
            asyncio.run(phase(sources(20, 30000), port, None))
            cpu0 = cpu_seconds([gw.pid, portal.pid])
            burst = asyncio.run(phase(sources(phones, 0), port, None))
            cpu1 = cpu_seconds([gw.pid, portal.pid])
            paced = asyncio.run(phase(sources(phones, 10000), port, rate))
            cpu2 = cpu_seconds([gw.pid, portal.pid])
            burst["cpu_ms_per_login"] = per_login(cpu0, cpu1, burst["logins"])
            paced["cpu_ms_per_login"] = per_login(cpu1, cpu2, paced["logins"])
            memory = worker_memory(portal.pid)
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()
        server_log = (tmp / "servers.log").read_text(errors="replace")
    out = {
        "gateway": GATEWAYS[mode],
        "burst": burst,
        "paced": paced,
        "worker_rss_idle": idle,
        "worker_rss_after": memory,
    }
    if burst["errors"] or paced["errors"]:
        out["server_log_tail"] = server_log[-2000:]
    return out


if __name__ == "__main__":
    sys.exit(main())
