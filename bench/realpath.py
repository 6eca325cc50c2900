"""The villager's real path: ``python3 -m bench.realpath [--quick]`` (as root).

From the phone's ``POST`` of the accept form (and of a voucher code) to the first byte that
reaches the internet, through everything that is really there: the real gateway
(``hotspot gateway run``: nftables, HTB, conntrack, the session engine, SQLite) in a
namespace village and the real portal under gunicorn (``hotspot portal run``, 2 workers, as
the hotspot-portal unit starts it), with ``--sessions`` other phones logged in. Then the
burst after a power cut: phones arriving at ``--rate`` per second, each doing splash →
``POST /accept`` → first upstream byte, from its own address and MAC (macvlan members like
bench/gateway.py's crowd: the portal knows a phone by its source address). Last, memory:
the gateway's RSS with 0 and N sessions and each portal worker's after every page once.

Timing: the phone driver (in the crowd's namespace) notes CLOCK_MONOTONIC right before it
writes the ``POST``; an upstream listener (in the "internet" namespace) notes it when the
first byte of the phone's TCP connection arrives; namespaces share the clock. The phone
opens that connection as soon as the ``303`` is read, and again every 2 ms while the gateway
still refuses it (``retries`` says how often that happened).

Writes ``bench/results/realpath.json``; see bench/README.md. Everything it builds (namespaces
``hsr-*``, processes, a temporary directory) is removed at the end, after a failure too.
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
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PREFIX = "hsr"
LAN = "10.10.0.1/20"  # 4,000 addresses: the sessions, the trials and the burst
PORTAL_PORT = 8080
LISTEN_PORT = 9998
TIER = "bench"
BIG = 10_000_000  # kbit/s: shaping never limits
PAGES = ("/", "/info", "/status", "/api/captive", "/operator/login", "/?lang=en")


# -- the phone (runs in the crowd's namespace: ``--phones SPEC``) -----------------------------


class Http:
    """One keep-alive HTTP/1.1 connection from a crowd member's interface."""

    def __init__(self, ifname: str, ip: str, server: tuple[str, int]):
        self.ifname, self.ip, self.server = ifname, ip, server
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.cookies: dict[str, str] = {}

    async def open(self) -> None:
        sock = bound_socket(self.ifname, self.ip)
        await asyncio.get_running_loop().sock_connect(sock, self.server)
        self.reader, self.writer = await asyncio.open_connection(sock=sock)

    async def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        stamp: list[float] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        from urllib.parse import urlencode

        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        body = urlencode(form).encode() if form is not None else b""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.server[0]}:{self.server[1]}"]
        head.append("User-Agent: Mozilla/5.0 (Linux; Android 13) bench-phone")
        head.append("Accept-Language: id-ID,id;q=0.9")
        if self.cookies:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if method == "POST":
            head += [
                "Content-Type: application/x-www-form-urlencoded",
                f"Content-Length: {len(body)}",
            ]
        if stamp is not None:
            stamp.append(time.monotonic())
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("portal closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = (await self.reader.readline()).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            if name.lower() == "set-cookie":
                k, _, v = value.strip().split(";", 1)[0].partition("=")
                self.cookies[k] = v
            headers[name.lower()] = value.strip()
        data = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def bound_socket(ifname: str, ip: str) -> socket.socket:
    """A TCP socket that leaves through crowd member ``ifname`` (its MAC) from ``ip``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    sock.bind((ip, 0))
    sock.setblocking(False)
    return sock


_TOKEN = re.compile(rb'name="csrf_token" value="([^"]+)"')


async def upstream_byte(ifname: str, ip: str, upstream: tuple[str, int], limit: float) -> int:
    """Open a connection to the upstream listener and send one byte, retrying every 2 ms
    while the gateway refuses it; returns the number of refusals."""
    loop = asyncio.get_running_loop()
    retries = 0
    deadline = time.monotonic() + limit
    while True:
        sock = bound_socket(ifname, ip)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, upstream), 1.0)
            # the gateway's NAT hides the phone's address: the line names it
            await loop.sock_sendall(sock, ip.encode() + b"\n")
            return retries
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            retries += 1
            await asyncio.sleep(0.002)
        finally:
            sock.close()


async def one_login(phone: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Splash, then the form (accept or voucher), then the first upstream byte."""
    portal = (spec["portal"][0], spec["portal"][1])
    upstream = (spec["upstream"][0], spec["upstream"][1])
    out: dict[str, Any] = {"ip": phone["ip"]}
    http = Http(phone["ifname"], phone["ip"], portal)
    try:
        out["start"] = time.monotonic()
        status, _, page = await http.request("GET", "/")
        out["splash_s"] = time.monotonic() - out["start"]
        if status != 200:
            raise RuntimeError(f"splash {status}")
        found = _TOKEN.search(page)
        if found is None:
            raise RuntimeError("no CSRF token on the splash")
        form = {"csrf_token": found.group(1).decode()}
        path = "/accept"
        if phone.get("code"):
            path, form["code"] = "/voucher", phone["code"]
        stamp: list[float] = []
        status, headers, _ = await http.request("POST", path, form, stamp)
        out["t0"] = stamp[0]
        out["reply_s"] = time.monotonic() - stamp[0]
        if status != 303:
            raise RuntimeError(f"POST {path} {status}")
        out["retries"] = await upstream_byte(phone["ifname"], phone["ip"], upstream, 5.0)
        out["done_s"] = time.monotonic() - out["start"]
    except Exception as exc:  # noqa: BLE001 - counted and reported
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        http.close()
    return out


async def drive(spec: dict[str, Any]) -> list[dict[str, Any]]:
    phones = spec["phones"]
    if spec["mode"] == "trials":  # one at a time, at random phases of the gateway's tick
        results = []
        for phone in phones:
            results.append(await one_login(phone, spec))
            await asyncio.sleep(0.03 + random.random() * 0.05)
        return results
    rate = float(spec["rate"])
    start = time.monotonic() + 0.2

    async def arrive(i: int, phone: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        return await one_login(phone, spec)

    return list(await asyncio.gather(*(arrive(i, p) for i, p in enumerate(phones))))


def run_phones(spec_path: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    spec = json.loads(Path(spec_path).read_text())
    print(json.dumps(asyncio.run(drive(spec))))


# -- the upstream listener (runs in the "internet" namespace: ``--listen HOST PORT``) ---------


def listen(host: str, port: int) -> None:
    """Print ``<monotonic arrival> <phone's address>`` for the first data of every connection
    (the phone sends its address: the gateway's NAT replaces the source)."""

    async def serve() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            first = await reader.read(64)  # the phone's line comes in one segment
            arrival = time.monotonic()
            if first.endswith(b"\n"):
                print(f"{arrival:.6f} {first.decode().strip()}", flush=True)
            writer.close()

        server = await asyncio.start_server(handle, host, port, backlog=4096)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# -- figures ----------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(len(s) * p / 100) - 1)] if s else float("nan")


def dist(values_s: list[float]) -> dict[str, Any]:
    if not values_s:
        return {"n": 0}
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 1),
        "p90_ms": round(pct(ms, 90), 1),
        "p99_ms": round(pct(ms, 99), 1),
        "max_ms": round(max(ms), 1),
    }


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise KeyError(key)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


# -- where the CPU of the burst went (``--pyspy``) ----------------------------------------------

# A sample's bucket: the first pattern found in its stack (py-spy's collapsed frames,
# "function (module/file.py:line)" from the outermost in), else "other".
GATEWAY_BUCKETS = (
    ("op: client", "client (gateway/engine.py"),
    ("op: authorize", "authorize (gateway/engine.py"),
    ("tick", "tick (gateway/engine.py"),
    ("control socket: read, parse, encode", "control_server.py"),
    ("netlink thread", "netlink_thread.py"),
)
PORTAL_BUCKETS = (
    ("gateway link (control socket)", "hotspot/control.py"),
    ("database", "sqlalchemy/"),
    ("templates", "jinja2/"),
    ("CSRF", "flask_wtf/"),
    ("page code (portal, hotspot)", "portal/"),
    ("gunicorn (HTTP, threads)", "gunicorn/"),
    ("flask, werkzeug", "werkzeug/"),
)


def spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into ``out``: the thread holding the GIL (Python's own CPU
    time; native work that releases the GIL — libnftables, SQLite's steps — is not seen).
    Without ``--gil`` py-spy counts threads blocked in a queue or a lock as running."""
    return subprocess.Popen(
        ["py-spy", "record", "--format", "raw", "--rate", "250", "--pid", str(pid)]
        + ["--output", str(out), "--nonblocking", "--gil"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def spied(paths: list[Path], buckets: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The share of samples in each bucket (of all the processes' files together)."""
    counts: dict[str, int] = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            name = next((b for b, pattern in buckets if pattern in stack), "other")
            counts[name] = counts.get(name, 0) + int(n)
    total = sum(counts.values())
    shares = {
        k: round(100 * v / total, 1) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
    }
    return {"samples": total, "share_pct": shares}


# -- the driver -------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace):
        from testsupport.testbed import Testbed

        self.args = args
        self.bed = Testbed(prefix=PREFIX, clients=0, lan_address=LAN)
        self.work = Path(tempfile.mkdtemp(prefix="hsr-bench-"))
        self.arrivals: dict[str, float] = {}
        self.arrived = threading.Condition()
        self.r: dict[str, Any] = {}
        self.t0 = time.monotonic()
        self.code = Path(args.tree).resolve() if args.tree else REPO
        self.env = {**os.environ, "PYTHONPATH": str(self.code)}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled .pyc files
        self.env.update(dict(kv.split("=", 1) for kv in args.env))

    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def hotspot(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hotspot_cli", "--config", str(self.config), *args]

    def write_config(self) -> None:
        from testsupport.testbed import portal_settings, write_toml

        data = self.bed.gateway_settings(self.work, uplink_kbps=BIG)
        data["network"].update(lan_local_kbps=BIG, portal_port=PORTAL_PORT)
        # the production tick (a login meeting it is part of the real path)
        data["gateway"].update(tick_seconds=2.0, flush_seconds=60)
        data["portal"] = portal_settings(self.work, workers=self.args.workers)
        unlimited = {"session_minutes": 0, "idle_minutes": 0, "daily_minutes": 0, "daily_mb": 0}
        data["tiers"] = {
            "free": {"down_kbps": BIG, "up_kbps": BIG, **unlimited},
            TIER: {"down_kbps": BIG, "up_kbps": BIG, **unlimited},
        }
        data["packages"] = {"harian": {"title": "Harian", "price": 5000, "tier": TIER, "hours": 24}}
        if self.args.pool == "phones":
            # As on a device, every phone's address is in the DHCP pool, so its class and
            # leaf exist from the start (a free login changes no class). `outside`: the
            # test bed's small pool, every phone's class made at its login.
            hosts = [ipaddress.ip_address(m.ip) for m in self.crowd.members]
            data["dhcp"].update(range_start=str(min(hosts)), range_end=str(max(hosts)))
        self.config = write_toml(self.work / "hotspot.toml", data)
        self.socket = data["control"]["socket"]

    def build(self) -> None:
        a = self.args
        self.n_members = a.sessions + 2 * a.trials + a.burst
        self.log(f"namespaces {PREFIX}-*, crowd of {self.n_members}, work dir {self.work}")
        self.bed.build()
        self.crowd = self.bed.add_crowd(self.n_members, name="crowd")
        self.write_config()
        self.gateway = self.product(self.bed.gw, "gateway.log", "gateway", "run")
        self.bed.wait_path(self.socket, timeout=120)
        made = subprocess.run(
            self.bed.ns_exec(self.bed.gw)
            + self.hotspot(
                "vouchers", "create", "--package", "harian", "--count", str(a.trials), "--json"
            ),
            cwd=self.code,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        self.codes = json.loads(made.stdout)["codes"]
        self.portal = self.product(
            self.bed.gw, "portal.log", "portal", "run", "--log-level", "WARNING"
        )
        self.bed.wait_port(self.bed.gw, "10.10.0.1", PORTAL_PORT, timeout=60)
        deadline = time.monotonic() + 30
        while len(children(self.portal.pid)) < a.workers and time.monotonic() < deadline:
            time.sleep(0.1)
        self.listener = subprocess.Popen(
            self.bed.ns_exec(self.bed.up)
            + [
                sys.executable,
                "-m",
                "bench.realpath",
                "--listen",
                "198.51.100.10",
                str(LISTEN_PORT),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )
        assert self.listener.stdout is not None
        assert self.listener.stdout.readline().strip() == b"ready"
        threading.Thread(target=self._arrivals, daemon=True).start()

    def product(self, ns: str, log: str, *args: str) -> subprocess.Popen[bytes]:
        """``hotspot ARGS`` of the tree under test (``--tree``; this one by default)."""
        proc = subprocess.Popen(
            self.bed.ns_exec(ns) + self.hotspot(*args),
            cwd=self.code,
            env=self.env,
            stdout=open(self.work / log, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.bed._procs.append(proc)  # stopped with the testbed
        return proc

    def _arrivals(self) -> None:
        assert self.listener.stdout is not None
        for raw in self.listener.stdout:
            t, ip = raw.decode().split()
            with self.arrived:
                self.arrivals.setdefault(ip, float(t))
                self.arrived.notify_all()

    def members(self, start: int, n: int, codes: list[str] | None = None) -> list[dict[str, Any]]:
        m = self.crowd.members[start : start + n]
        return [
            {"ifname": p.ifname, "ip": p.ip, "code": codes[i] if codes else ""}
            for i, p in enumerate(m)
        ]

    def phones(
        self, mode: str, phones: list[dict[str, Any]], rate: float = 0
    ) -> list[dict[str, Any]]:
        spec = {
            "mode": mode,
            "rate": rate,
            "portal": ["10.10.0.1", PORTAL_PORT],
            "upstream": ["198.51.100.10", LISTEN_PORT],
            "phones": phones,
        }
        path = self.work / f"spec-{mode}-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(spec))
        out = subprocess.run(
            self.bed.ns_exec(self.crowd.ns)
            + [sys.executable, "-m", "bench.realpath", "--phones", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        if out.returncode != 0:
            raise RuntimeError(f"phones failed: {out.stderr[-2000:]}")
        results: list[dict[str, Any]] = json.loads(out.stdout)
        deadline = time.monotonic() + 3
        with self.arrived:
            while time.monotonic() < deadline and any(
                "error" not in r and r["ip"] not in self.arrivals for r in results
            ):
                self.arrived.wait(0.1)
        for r in results:
            if r["ip"] in self.arrivals and "t0" in r:
                r["first_byte_s"] = self.arrivals[r["ip"]] - r["t0"]
        return results

    def summarize(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        errors = [r["error"] for r in results if "error" in r]
        ok = [r for r in results if "first_byte_s" in r]
        return {
            "phones": len(results),
            "failed": len(errors)
            + sum(1 for r in results if "error" not in r and "first_byte_s" not in r),
            "error_samples": sorted(set(errors))[:5],
            "post_to_first_upstream_byte": dist([r["first_byte_s"] for r in ok]),
            "post_reply": dist([r["reply_s"] for r in results if "reply_s" in r]),
            "splash": dist([r["splash_s"] for r in results if "splash_s" in r]),
            "login_splash_to_upstream": dist([r["done_s"] for r in results if "done_s" in r]),
            "connect_retries": sum(r.get("retries", 0) for r in results),
        }

    def bulk_sessions(self) -> float:
        from hotspot import protocol as proto
        from hotspot.control import ControlClient
        from hotspot.model import Source

        t = time.monotonic()
        with ControlClient(self.socket, timeout=60) as ctl:
            for p in self.crowd.members[: self.args.sessions]:
                ctl.send(proto.AuthorizeRequest(ip=p.ip, mac=p.mac, tier=TIER, source=Source.FREE))
        return time.monotonic() - t

    def client_ops(self, start: int, n: int) -> dict[str, Any]:
        """The ``client`` op alone, as the portal's first step of a login asks it (for phones
        not yet seen): its share of the POST's time."""
        from hotspot import protocol as proto
        from hotspot.control import ControlClient

        took = []
        with ControlClient(self.socket, timeout=60) as ctl:
            for p in self.crowd.members[start : start + n]:
                t = time.monotonic()
                ctl.send(proto.ClientRequest(ip=p.ip))
                took.append(time.monotonic() - t)
                time.sleep(0.01 + random.random() * 0.02)
        return dist(took)

    def page_tour(self) -> dict[str, Any]:
        """Every villager page once per worker (a few rounds: gunicorn picks the worker)."""
        statuses: dict[str, int] = {}
        for _ in range(4 * self.args.workers):
            for page in PAGES:
                cmd = (
                    "import urllib.request,urllib.error,sys\n"
                    f"try: print(urllib.request.urlopen('http://10.10.0.1:{PORTAL_PORT}{page}', timeout=10).status)\n"
                    "except urllib.error.HTTPError as e: print(e.code)"
                )
                got = self.bed.run(f"{PREFIX}-crowd", "python3", "-c", cmd, check=False)
                statuses[page] = int(got.stdout.strip() or 0)
        return statuses

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the gateway and of the portal's workers together."""
        workers = children(self.portal.pid)
        return {"gateway": cpu_s(self.gateway.pid), "portal_workers": sum(map(cpu_s, workers))}

    def memory(self, label: str) -> dict[str, Any]:
        workers = children(self.portal.pid)
        return {
            "label": label,
            "gateway_rss_mb": rss_mb(self.gateway.pid),
            "gateway_peak_rss_mb": rss_mb(self.gateway.pid, "VmHWM"),
            "portal_master_rss_mb": rss_mb(self.portal.pid),
            "portal_workers_rss_mb": [rss_mb(w) for w in workers],
            "portal_workers_peak_rss_mb": [rss_mb(w, "VmHWM") for w in workers],
        }

    def run(self) -> dict[str, Any]:
        a = self.args
        self.r["meta"] = meta(a)
        self.build()
        time.sleep(2.5)  # one tick
        mem = [self.memory("0 sessions, portal idle")]
        self.r["setup"] = {"bulk_sessions_s": round(self.bulk_sessions(), 2)}
        time.sleep(2.5)
        mem.append(self.memory(f"{a.sessions} sessions"))
        base = a.sessions
        self.log(f"{a.trials} accept trials with {a.sessions} sessions present")
        accept = self.phones("trials", self.members(base, a.trials))
        self.log(f"{a.trials} voucher trials")
        voucher = self.phones("trials", self.members(base + a.trials, a.trials, self.codes))
        self.r["real_path"] = {
            "sessions_present": a.sessions,
            "client_op_alone": self.client_ops(base + 2 * a.trials, min(a.burst, 50)),
            "accept": self.summarize(accept),
            "voucher": self.summarize(voucher),
        }
        self.log(f"burst: {a.burst} phones at {a.rate}/s")
        start = base + 2 * a.trials
        spies: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        if a.pyspy:
            for name, pid in [("gateway", self.gateway.pid)] + [
                (f"worker{i}", w) for i, w in enumerate(children(self.portal.pid))
            ]:
                out = Path(a.pyspy) / f"realpath-burst-{name}.txt"
                spies.append((name, out, spy(pid, out)))
            time.sleep(1.0)  # py-spy attached
        t, cpu0 = time.monotonic(), self.cpu()
        burst = self.phones("burst", self.members(start, a.burst), rate=a.rate)
        wall, cpu1 = time.monotonic() - t, self.cpu()
        for _, _, proc in spies:
            proc.send_signal(signal.SIGINT)
        for _, _, proc in spies:
            proc.wait(timeout=30)
        summary = self.summarize(burst)
        done = [r for r in burst if "first_byte_s" in r]
        # CPU per login is what a busy (or slower) machine divides its cores by: the figure
        # that the load of this shared machine changes least.
        summary["cpu_ms_per_login"] = {
            k: round(1000 * (cpu1[k] - cpu0[k]) / max(1, len(done)), 1) for k in cpu0
        }
        if done:
            first = min(r["start"] for r in burst)
            last = max(r["t0"] + r["first_byte_s"] for r in done)
            summary["achieved_logins_per_s"] = round(len(done) / (last - first), 1)
        summary.update(offered_rate_per_s=a.rate, driver_wall_s=round(wall, 2))
        if spies:
            summary["where_the_cpu_went"] = {
                "gateway": spied([o for n, o, _ in spies if n == "gateway"], GATEWAY_BUCKETS),
                "portal_workers": spied([o for n, o, _ in spies if n != "gateway"], PORTAL_BUCKETS),
            }
        self.r["burst"] = summary
        mem.append(self.memory("after the burst"))
        self.r["page_statuses"] = self.page_tour()
        mem.append(self.memory("after every page once per worker"))
        self.r["memory"] = mem
        self.r["meta"]["loadavg_end"] = os.getloadavg()
        return self.r

    def cleanup(self) -> None:
        logs = RESULTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name in ("gateway.log", "portal.log"):
            if (self.work / name).exists():
                (logs / f"realpath-{name}").write_bytes((self.work / name).read_bytes())
        for proc in (getattr(self, "listener", None),):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
        self.bed.destroy()
        subprocess.run(["rm", "-rf", str(self.work)], check=False)


def meta(args: argparse.Namespace) -> dict[str, Any]:
    def out(*cmd: str) -> str:
        tree = args.tree or REPO
        return subprocess.run(cmd, capture_output=True, text=True, cwd=tree).stdout.strip()

    cpu = next(
        (
            l.split(":", 1)[1].strip()
            for l in Path("/proc/cpuinfo").read_text().splitlines()
            if l.startswith("model name")
        ),
        "",
    )
    return {
        "started": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git_commit": out("git", "rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(
            out("git", "status", "--porcelain", "gateway", "portal", "hotspot")
        ),
        "loadavg_start": os.getloadavg(),
        "params": vars(args),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m bench.realpath", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--sessions", type=int, default=None, help="other phones logged in (1000)")
    ap.add_argument("--trials", type=int, default=None, help="timed logins of each kind (150)")
    ap.add_argument("--burst", type=int, default=None, help="phones in the burst (900)")
    ap.add_argument("--rate", type=float, default=300.0, help="burst arrivals per second")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="100 sessions, 20 trials, 150 phones")
    ap.add_argument("--output", default=str(RESULTS / "realpath.json"))
    ap.add_argument(
        "--tree",
        help="run the gateway and portal of this checkout (a baseline, e.g. a `git worktree` "
        "of the commit before); the phones and the listener stay this one's",
    )
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the gateway and the portal (e.g. MALLOC_ARENA_MAX=2)",
    )
    ap.add_argument(
        "--pyspy",
        metavar="DIR",
        help="sample the gateway and the workers with py-spy during the burst (raw stacks "
        "in DIR; the shares of CPU by activity in the results)",
    )
    ap.add_argument(
        "--pool",
        choices=("phones", "outside"),
        default="phones",
        help="the DHCP pool: the phones' addresses, as on a device (default), or `outside` "
        "them (the test bed's small pool: each login makes its class; the figures before "
        "2026-12-01 19:00 UTC)",
    )
    ap.add_argument("--phones", help=argparse.SUPPRESS)
    ap.add_argument("--listen", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phones:
        run_phones(args.phones)
        return 0
    if args.listen:
        listen(args.listen[0], int(args.listen[1]))
        return 0
    if os.geteuid() != 0:
        print("bench.realpath: needs root (network namespaces, nftables, tc)", file=sys.stderr)
        return 2
    q = args.quick
    args.sessions = args.sessions if args.sessions is not None else (100 if q else 1000)
    args.trials = args.trials or (20 if q else 150)
    args.burst = args.burst or (150 if q else 900)
    if args.sessions + 2 * args.trials + args.burst > 4000:
        print("bench.realpath: at most 4000 phones fit in the /20", file=sys.stderr)
        return 2
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "hotspot", "gateway", "portal", "hotspot_cli"],
        cwd=args.tree or REPO,
        check=False,
        capture_output=True,
    )
    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        result = bench.run()
    finally:
        bench.cleanup()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    print(f"written to {args.output}")
    return 0 if result["burst"]["failed"] == 0 else 1


def summary(r: dict[str, Any]) -> str:
    rp = r["real_path"]
    lines = []
    for kind in ("accept", "voucher"):
        d = rp[kind]["post_to_first_upstream_byte"]
        lines.append(
            f"{kind:7} POST → first upstream byte at {rp['sessions_present']} sessions: "
            f"p50 {d.get('p50_ms')} ms, p99 {d.get('p99_ms')} ms (n={d['n']}, failed {rp[kind]['failed']})"
        )
    b = r["burst"]
    lines.append(
        f"burst   {b['phones']} phones offered at {b['offered_rate_per_s']}/s: achieved "
        f"{b.get('achieved_logins_per_s')}/s, POST→byte p99 {b['post_to_first_upstream_byte'].get('p99_ms')} ms, "
        f"POST reply p99 {b['post_reply'].get('p99_ms')} ms, failed {b['failed']}; "
        f"CPU ms per login {b.get('cpu_ms_per_login')}"
    )
    for m in r["memory"]:
        lines.append(
            f"memory  {m['label']}: gateway {m['gateway_rss_mb']} MB, portal workers {m['portal_workers_rss_mb']} MB"
        )
    lines.append(f"load    {r['meta']['loadavg_start']} → {r['meta']['loadavg_end']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
