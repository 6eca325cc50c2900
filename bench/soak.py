"""A week in minutes: ``python3 -m bench.soak --hours N`` (root).

The village of ``bench.crowd`` (the real gateway, dnsmasq, walled resolver and portal under
gunicorn in namespaces) plus the province's collector and the sync agent, and a pool of
phones (macvlan members of one namespace, driven from threads that entered it) that churn
for ``--hours``: they join by DHCP, probe, accept the free tier or redeem a voucher, top up,
download, leave, change their MAC, get kicked (some in the middle of a download); the
collector goes away and comes back. The gateway runs with short intervals (tick 0.5 s, flush
2 s, sessions of a minute, idle timeout of a minute): many short cycles in place of a
time-accelerated clock (the daemons have no test clock source; see docs/reliability.md).

Every ``--check-seconds`` it records, and at the end bounds:

* RSS and open file descriptors of every process (gateway, portal master and workers,
  dnsmasq, walled resolver, sync agent, collector), with a least-squares slope per hour;
* the database's and the logs' size;
* the sessions in the database = the sessions in the kernel (``authorized`` set);
* at the end, every session ended: the bytes the gateway counted = the bytes that crossed it
  (nftables counters in the phones' namespace, on the download port only), ±1%.

``bench/results/soak.json``; exit 1 when an invariant does not hold. See bench/README.md.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import phones as ph
from bench.crowd import (
    DHCP_RANGE,
    GW_LAN_IP,
    PORTAL_PORT,
    Village,
    fd_count,
    log,
    member_mac,
    meta,
    rss_kb,
    tree,
)
from bench.memwatch import smaps_groups
from hotspot.control import ControlClient
from hotspot.errors import ErrorCode, HotspotError
from hotspot.protocol import DeauthorizeRequest, ReconcileRequest
from hotspot.timeutil import TEST_CLOCK_SHIFT_ENV, local_day, local_time, utcnow
from testsupport.testbed import UPSTREAM_IP, remove_stale_testbeds, run_prefix, sh, write_toml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
UNITS = REPO / "provisioning" / "templates"  # the units `hotspot provision` installs
# The processes the device's units start, by the name the village gives them.
UNIT_OF = {"gateway": "hotspot-gateway", "portal": "hotspot-portal", "sync": "hotspot-sync"}
DOWNLOAD_PORT = 8000  # the phones' downloads; port 80 is the portal's before login
PROV_IP, PROV_GW, COLLECTOR_PORT = "203.0.113.10", "203.0.113.1", 8000
GATEWAY_ID = "desa-soak"
MARKER = "hotspot-soak-page"
SIZES = (64 << 10, 256 << 10, 1 << 20)  # download sizes, bytes
BEFORE_MIDNIGHT_S = 5.0  # a jump lands this far before the village's next midnight
# A free session is a minute of real time; seen from checks every few seconds, its span can
# be off by a check interval, a tick and a flush each way.
FREE_SESSION_S = 60.0
TICK_S = 0.5  # the gateway's tick here: a session ends at the first tick at or after its end
# A refusal of a redemption worked out on the old clock just before a step (the portal's
# claim before it, the gateway's authorize after): refused once, by design (docs/
# reliability.md); within this many seconds of a step it is that, later it is a failure.
STEP_REFUSAL_S = 15.0
# A MAC a phone left behind gives its lease back this long after: once the gateway's idle
# timeout (a minute here) and a tick have ended its session, and portal_peers (30 s) has
# forgotten it, so the next phone DHCP gives the address to is not refused for it.
RELEASE_AFTER_S = 90.0
CLIENTS_CHANGED = re.compile(r"\+(\d+)/-(\d+) clients")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class Refusal(OSError):
    """A page of the portal that refused a phone's step, with the refusal's error code (the
    ``X-Hotspot-Error`` header; "" when the page had none): steps are classified by it, not by
    the HTTP status, which several refusals share (a used-up day and another device at the
    address are both 403)."""

    def __init__(self, what: str, reply: ph.Reply):
        super().__init__(f"{what}: {reply.status} {reply.error}".rstrip())
        self.code = reply.error or f"http-{reply.status}"


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into the network namespace ``name``: its sockets
    and the processes it starts live there."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in points) / sxx * 3600


@dataclass
class SoakPhone:
    index: int
    mac: str
    generation: int = 0  # MAC changes so far
    ip: str = ""
    lease: ph.Lease | None = None  # the lease it holds (released when it changes its MAC)
    online: bool = False
    login: str = ""  # "free" or "voucher"
    busy: bool = False
    downloaded: int = 0  # body bytes received
    events: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.events[what] = self.events.get(what, 0) + 1


class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = Path(tempfile.mkdtemp(prefix="hotspot-soak-"))
        prefix = run_prefix("hss")
        self.village = Village(self.work, prefix, args.phones, self.settings())
        self.prov = f"{prefix}-prov"
        self.phones = [SoakPhone(i, member_mac(i)) for i in range(args.phones)]
        self.codes: list[str] = []
        self.lock = threading.RLock()
        self.samples: list[dict[str, Any]] = []
        self.mismatches: list[dict[str, Any]] = []
        # Checks whose two reads (database, then kernel, without the gateway's lock) differed
        # while the gateway's own comparison under its lock found nothing to change: an
        # operation between its database commit and its kernel change, not a mismatch.
        self.in_flight: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.failure_log: list[dict[str, Any]] = []  # each failed step: kind, when, load
        self.events: dict[str, int] = {}
        self.collector: subprocess.Popen[bytes] | None = None
        self.collector_down_s = 0.0
        self.stop = threading.Event()
        self.died: dict[str, int | None] = {}  # process name → exit status
        # Midnights (--day-seconds): the village clock's shift file, the local days visited.
        self.shift_file = self.work / "clock-shift"
        self.days: list[dt.date] = []
        self.midnights: list[dict[str, Any]] = []
        self.free_exhausted_on: dict[str, dt.date] = {}  # mac → the local day it was refused
        self.free_twice: list[dict[str, Any]] = []
        # Every session and usage row ever seen (the retention purge deletes old ones):
        # id → (down, up); (mac, day, tier) → (down, up).
        self.session_bytes: dict[int, tuple[int, int]] = {}
        self.daily_bytes: dict[tuple[str, str, str], tuple[int, int]] = {}
        # session id → (first check it was seen open, last, the check before the first,
        # the check it was first seen ended) in monotonic seconds; its tier and end reason.
        self.session_seen: dict[int, dict[str, Any]] = {}
        self.wrong_ends: list[dict[str, Any]] = []
        # voucher id → when it was first seen used (and the check before), and the span of
        # time it gives (its end − its first use: both move with a clock step, so the span is
        # real time): the window its sessions may end by session-timeout in.
        self.voucher_seen: dict[int, dict[str, Any]] = {}
        self.on_unused_vouchers: list[dict[str, Any]] = []
        # (when, mac, lease): the leases of MACs the phones left behind, given back once the
        # gateway's idle timeout has ended their sessions.
        self.releases: list[tuple[float, str, ph.Lease]] = []
        self.last_step_mono: float | None = None
        self.last_check_mono = 0.0
        self.t0 = time.monotonic()
        self.unit_env: dict[str, dict[str, str]] = {}
        self.env_seen: dict[str, dict[str, str | None]] = {}
        # --restart-every: each restart of the gateway (how it stopped, how long until its
        # control socket answered, the sessions before and after).
        self.restarts: list[dict[str, Any]] = []
        # Monotonic seconds of each restart and each clock step (judge_voucher_end).
        self.restart_monos: list[float] = []
        self.step_monos: list[float] = []

    # -- set-up --------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        fast = {"session_minutes": 1, "idle_minutes": 1, "daily_minutes": 0, "daily_mb": 0}
        return {
            "gateway": {
                "tick_seconds": TICK_S,
                "flush_seconds": 2,
                "trim_seconds": self.args.trim_seconds,
            },
            "tiers": {
                "free": {"down_kbps": 20_000, "up_kbps": 5_000, **fast, "daily_mb": 3},
                "premium": {"down_kbps": 50_000, "up_kbps": 10_000, **fast, "session_minutes": 0},
            },
            "packages": {
                "jam": {"title": "Satu jam", "price": 1000, "tier": "premium", "hours": 1}
            },
            "network": {"uplink_down_kbps": 200_000, "uplink_up_kbps": 200_000},
            "privacy": {"retention_days": 1},
        }

    def setup(self) -> None:
        v = self.village
        v.build()
        bed = v.bed
        bed.add_host("prov", via=bed.up, link="prov0", gateway_ip=PROV_GW, ip=PROV_IP)
        bed.run(bed.up, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # The reference: what crossed the gateway on the download port, seen by the phones.
        bed.run(
            v.crowd_ns,
            "nft",
            "-f",
            "-",
            input=(
                "table inet soak {\n"
                " chain rx { type filter hook prerouting priority -300;"
                f" ip saddr {UPSTREAM_IP} tcp sport {DOWNLOAD_PORT} counter; }}\n"
                " chain tx { type filter hook postrouting priority 300;"
                f" ip daddr {UPSTREAM_IP} tcp dport {DOWNLOAD_PORT} counter; }}\n"
                "}\n"
            ),
        )
        # One segment per packet on the senders (the upstream host, the phones), as on a
        # real NIC's wire: a GSO super-packet would reach the phones' counters with one
        # header for many segments, the gateway's HTB counts every segment's.
        bed.run(bed.up, "ip", "link", "set", "eth0", "gso_max_segs", "1")
        bed.ip_batch(
            v.crowd_ns,
            "link set eth0 gso_max_segs 1",
            *(f"link set m{i} gso_max_segs 1" for i in range(len(self.phones))),
        )
        if self.args.day_seconds:
            # The gateway's, the portal's and the sync agent's wall clock (and the CLI's):
            # hotspot.timeutil.ShiftedClock. "Synchronised" says NTP has the clock, so the
            # collector's time is not used to set it back (hotspot/collector_time.py).
            self.shift_file.write_text("0\n")
            self.shift_file.with_name(self.shift_file.name + ".synced").write_text("1\n")
            os.environ[TEST_CLOCK_SHIFT_ENV] = str(self.shift_file)
        self.start_as_the_units_do()
        secret = self.register()
        v.extra_settings = {
            **self.settings(),
            "sync": {
                "upstream_url": f"http://{PROV_IP}:{COLLECTOR_PORT}",
                "gateway_id": GATEWAY_ID,
                "secret": secret,
                "interval_seconds": 2,
                "health_seconds": 5,
                "backoff_max_seconds": 4,
                "timeout_seconds": 5,
                # Under tracemalloc (--memwatch-of sync) the agent is twice its size: its
                # ceiling would restart it in the middle of the measurement.
                **(
                    {"restart_above_mb": 0}
                    if self.args.memwatch and self.args.memwatch_of == "sync"
                    else {}
                ),
            },
        }
        v.start()
        www = self.work / "www"
        (www / "online.html").write_text(f"<html>{MARKER}</html>\n")
        for size in SIZES:
            (www / f"{size}.bin").write_bytes(os.urandom(size))
        v.popen(
            "upstream-download",
            bed.up,
            [
                sys.executable,
                "-m",
                "http.server",
                str(DOWNLOAD_PORT),
                "--bind",
                UPSTREAM_IP,
                "-d",
                str(www),
            ],
        )
        self.start_collector()
        v.popen("sync", bed.gw, v.hotspot("sync", "run"))
        v.wait(
            "download server",
            lambda: bed.port_open(bed.up, UPSTREAM_IP, DOWNLOAD_PORT),
            30,
            "upstream-download",
        )
        self.codes = self.make_vouchers(100)
        if self.args.day_seconds:
            self.days.append(self.village_day())

    def start_as_the_units_do(self) -> None:
        """Start the gateway, the portal and the sync agent with their systemd units'
        ``Environment=`` (``MALLOC_ARENA_MAX=2``: without it every thread gets a malloc arena
        of its own and the RSS measured here is not the device's), and under
        ``bench.memwatch`` when asked: ``--memwatch`` (the Python heap of the gateway or,
        with ``--memwatch-of sync``, the agent's, in ``<name>-memwatch.jsonl``), ``--native-watch`` (the gateway's and the agent's
        allocator, SQLite and mappings, in ``<name>-native.jsonl``)."""
        popen = self.village.popen
        bed = self.village.bed

        def as_unit(name: str, ns: str, args: list[str]) -> subprocess.Popen[bytes]:
            if name in UNIT_OF and args[1:3] == ["-m", "hotspot_cli"]:
                watch: list[str] = []
                if name == self.args.memwatch_of and self.args.memwatch:
                    out = self.work / f"{name}-memwatch.jsonl"
                    pins = ["--pins"] if self.args.pins else []
                    watch = ["-m", "bench.memwatch", str(out), str(self.args.memwatch), *pins]
                    watch.append("--")
                elif name in ("gateway", "sync") and self.args.native_watch:
                    out = self.work / f"{name}-native.jsonl"
                    every = str(self.args.native_watch)
                    watch = ["-m", "bench.memwatch", str(out), every, "--native", "--"]
                args = [args[0], *watch, *args[1:]]
                proc = bed.popen(
                    ns, *args, log_path=self.work / f"{name}.log", env=self.unit_env[name]
                )
                self.village.procs[name] = proc
                return proc
            return popen(name, ns, args)

        self.unit_env = units_environment()
        # --gateway-env: an experiment against the unit's (e.g. PYTHONMALLOC=pymalloc).
        self.unit_env["gateway"].update(kv.split("=", 1) for kv in self.args.gateway_env)
        self.village.popen = as_unit  # type: ignore[method-assign]

    # -- the village clock (--day-seconds) -----------------------------------------------------

    def shift(self) -> float:
        try:
            return float(self.shift_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    def village_now(self) -> dt.datetime:
        return utcnow() + dt.timedelta(seconds=self.shift())

    def village_day(self) -> dt.date:
        return local_day(self.village_now(), self.village.config.village.tz)

    def jump_to_midnight(self) -> None:
        """Step the village clock forward to a few seconds before its next local midnight:
        the daily reset, the free tier's day, the day's usage rows and the agent's day
        periods come due while sessions and vouchers run."""
        tz = self.village.config.village.tz
        before = self.village_now()
        local = local_time(before, tz)
        midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tz)
        target = midnight.astimezone(dt.UTC).replace(tzinfo=None) - dt.timedelta(
            seconds=BEFORE_MIDNIGHT_S
        )
        new_shift = (target - utcnow()).total_seconds()
        if new_shift <= self.shift():
            return  # already within seconds of it
        tmp = self.shift_file.with_name(self.shift_file.name + ".new")
        tmp.write_text(f"{new_shift}\n")
        os.replace(tmp, self.shift_file)
        self.last_step_mono = time.monotonic()
        self.step_monos.append(self.last_step_mono)
        self.days.append(midnight.date())
        self.midnights.append(
            {
                "from": before.isoformat() + "Z",
                "to": target.isoformat() + "Z",
                "step_s": round((target - before).total_seconds()),
                # Each process's RSS as the village's day ends (MB): a leak per day shows here.
                "rss_mb": {
                    name: round(rss_kb(pid) / 1024, 1) for name, pid in self.processes().items()
                },
                "t_s": round(time.monotonic() - self.t0, 1),
            }
        )
        self.event("midnight")
        log(
            f"village clock: {before:%Y-%m-%d %H:%M} UTC → {BEFORE_MIDNIGHT_S:.0f} s before "
            f"{midnight:%Y-%m-%d} (local)"
        )

    def make_vouchers(self, n: int) -> list[str]:
        made = subprocess.run(
            self.village.hotspot("vouchers", "create", "--package", "jam", "--count", str(n))
            + ["--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            check=False,
        )
        if made.returncode != 0:
            raise OSError(f"vouchers create: {made.stderr.strip()}")
        self.event("voucher_batch")
        return codes_in(json.loads(made.stdout))

    def register(self) -> str:
        self.collector_cfg = write_toml(
            self.work / "collector.toml",
            {
                "collector": {
                    "database_url": f"sqlite:///{self.work}/collector.db",
                    "bind": f"{PROV_IP}:{COLLECTOR_PORT}",
                    "workers": 1,
                    "threads": 4,
                }
            },
        )
        cmd = [sys.executable, "-m", "hotspot_cli", "--config", str(self.collector_cfg)]
        reg = subprocess.run(
            [*cmd, "collector", "gateways", "add", GATEWAY_ID, "--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
            check=False,
        )
        if reg.returncode != 0:
            raise RuntimeError(f"collector gateways add: {reg.stderr.strip()}")
        return str(json.loads(reg.stdout)["secret"])

    def start_collector(self) -> None:
        cmd = [sys.executable, "-m", "hotspot_cli", "--config", str(self.collector_cfg)]
        self.collector = self.village.popen("collector", self.prov, [*cmd, "collector", "run"])
        self.village.wait(
            "collector",
            lambda: self.village.bed.port_open(self.prov, PROV_IP, COLLECTOR_PORT),
            60,
            "collector",
        )

    def stop_collector(self) -> None:
        if self.collector is not None and self.collector.poll() is None:
            os.killpg(self.collector.pid, signal.SIGTERM)
            self.collector.wait(timeout=30)
        self.collector = None

    # -- the gateway restarted (--restart-every) ------------------------------------------

    def restart_gateway(self) -> None:
        """Stop the gateway and start it again, as systemd does after an update or the memory
        ceiling (SIGTERM: it flushes its counters) or after a crash or the watchdog (SIGKILL:
        nothing flushed), in turn. The kernel keeps its state, as it does for a process that
        restarts; a power cut's lost kernel state is the booted device's test. The phones
        are let finish their steps first and the counters a flush (and a tick) to reach the
        database: what a request in the restart's seconds meets is the booted device's
        test too (``systemctl kill -s KILL``), here the aim is the restart's effect on the
        days after it: every voucher used before it keeps its end at the next clock step,
        so it ages and its MAC bindings are purged."""
        how = signal.SIGKILL if len(self.restarts) % 2 else signal.SIGTERM
        deadline = time.monotonic() + 120
        while any(p.busy for p in self.phones) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2 + 2 * TICK_S)  # the last bytes counted and flushed (flush_seconds 2)
        before = self.db_sessions()
        v = self.village
        proc = v.procs["gateway"]
        started = time.monotonic()
        self.restart_monos.append(started)
        os.killpg(proc.pid, how)
        proc.wait(timeout=60)
        v.popen("gateway", v.bed.gw, v.hotspot("gateway", "run", "--log-level", "INFO"))
        sock = str(v.config.control.socket)

        def answers() -> bool:
            try:
                with ControlClient(sock, timeout=5) as ctl:
                    ctl.send(ReconcileRequest())
                return True
            except (HotspotError, OSError):
                return False

        v.wait("the restarted gateway's control socket", answers, 60, "gateway")
        after = self.db_sessions()
        in_kernel = self.kernel_sessions()
        # A session gone across the restart must have ended by its time (its minute, or
        # idle) while the gateway was away or at its start; any other end is a lost session.
        lost = []
        db = sqlite3.connect(f"file:{self.work}/hotspot.db?mode=ro", uri=True, timeout=10)
        try:
            for ip, mac in sorted(before - after):
                row = db.execute(
                    "SELECT end_reason FROM client_session WHERE ip = ? AND lower(mac) = ? "
                    "ORDER BY id DESC LIMIT 1",
                    (ip, mac),
                ).fetchone()
                if row is None or row[0] not in ("session-timeout", "idle-timeout"):
                    lost.append({"ip": ip, "mac": mac, "end_reason": row and row[0]})
        finally:
            db.close()
        self.restarts.append(
            {
                "t_s": round(started - self.t0, 1),
                "signal": how.name,
                "exit_status": proc.returncode,
                "answering_after_s": round(time.monotonic() - started, 2),
                "sessions_before": len(before),
                "sessions_after": len(after),
                "kept": len(before & after),
                "lost": lost,
                "kernel_equals_db": in_kernel == after,
            }
        )
        self.event(f"gateway_restart_{how.name.lower()}")
        log(f"gateway restarted ({how.name}): {self.restarts[-1]}")

    # -- the phones ------------------------------------------------------------------------

    def event(self, what: str) -> None:
        with self.lock:
            self.events[what] = self.events.get(what, 0) + 1

    def fail(self, p: SoakPhone, what: str, kind: str = "other") -> None:
        now = time.monotonic()
        since_step = None if self.last_step_mono is None else round(now - self.last_step_mono, 1)
        with self.lock:
            self.failures.append(f"phone {p.index}: {what}")
            self.failure_log.append(
                {
                    "phone": p.index,
                    "kind": kind,
                    "what": what[:120],
                    "t_s": round(now - self.t0, 1),
                    "load_1min": round(os.getloadavg()[0], 1),
                    "since_step_s": since_step,
                }
            )

    def http(self, p: SoakPhone, timeout: float = 10) -> ph.Phone:
        return ph.Phone(f"m{p.index}", p.ip, timeout, {"requests": 0, "dhcp_retransmits": 0})

    def join(self, p: SoakPhone) -> None:
        """DHCP, the probe, then the free tier or a voucher (or a voucher after the free
        tier's daily megabytes are used up)."""
        counts = {"requests": 0, "dhcp_retransmits": 0}
        lease = self.dhcp.acquire(p.mac, time.monotonic() + 30, counts)
        self.ipconf.configure(f"m{p.index}", p.index, lease)
        p.ip = lease.ip
        p.lease = lease
        web = self.http(p)
        probe_ip = ph.resolve(ph.PROBE_HOST, GW_LAN_IP, f"m{p.index}", p.ip, 10)
        r = web.request("GET", f"http://{probe_ip}/generate_204", host=ph.PROBE_HOST)
        portal = f"http://{GW_LAN_IP}:{PORTAL_PORT}"
        if 200 <= r.status < 300 and r.status != 204:
            raise OSError(f"probe: {r.status}")
        if r.status == 204 or not r.location.startswith(portal):
            # Still online from before (the session outlived a leave): fine.
            if self.is_online(web):
                p.online = True
                return
            raise OSError(f"probe: {r.status} {r.location[:60]}")
        splash = web.request("GET", r.location)
        if splash.error:
            raise Refusal("splash", splash)
        forms = ph.Forms()
        forms.feed(splash.body)
        found = dict(forms.forms)
        use_voucher = self.rng.random() < 0.4 or "/accept" not in str(found.keys())
        if use_voucher:
            self.redeem(p, web, splash)
        else:
            fields = next((f for a, f in forms.forms if a.endswith("/accept")), None)
            if fields is None:
                raise OSError(f"splash {splash.status} without /accept")
            day_before = self.village_day() if self.args.day_seconds else None
            done = web.request("POST", f"{portal}/accept", form=fields)
            day = self.village_day() if self.args.day_seconds else None
            same_day = day is not None and day == day_before  # not across a midnight
            if (
                done.error == ErrorCode.QUOTA_EXHAUSTED
            ):  # the free tier's day is used up: buy an hour
                self.event("free_exhausted")
                if same_day and day is not None:
                    with self.lock:
                        self.free_exhausted_on[p.mac] = day
                page = web.request("GET", f"{portal}/")
                self.redeem(p, web, page)
            elif done.status != 303:  # another refusal (another device at the address…)
                raise Refusal("accept", done)
            else:
                p.login = "free"
                self.event("accept")
                refused_on = self.free_exhausted_on.get(p.mac)
                if same_day and refused_on is not None:
                    if refused_on == day:  # used up today, granted again today
                        self.free_twice.append({"mac": p.mac, "day": str(day)})
                    else:
                        self.event("free_again_next_day")
                        with self.lock:
                            self.free_exhausted_on.pop(p.mac, None)
        deadline = time.monotonic() + 10
        while not self.is_online(web):
            if time.monotonic() > deadline:
                raise OSError("not online after login")
            time.sleep(0.2)
        p.online = True

    def redeem(self, p: SoakPhone, web: ph.Phone, page: ph.Reply) -> None:
        forms = ph.Forms()
        forms.feed(page.body)
        fields = next((f for a, f in forms.forms if a.endswith("/voucher")), None)
        if fields is None:
            if page.error:
                raise Refusal("page before the voucher form", page)
            raise OSError(f"no voucher form ({page.status})")
        with self.lock:
            if not self.codes:  # the kiosk prints another batch
                self.codes = self.make_vouchers(100)
            code = self.codes.pop()
        fields["code"] = code
        done = web.request("POST", f"http://{GW_LAN_IP}:{PORTAL_PORT}/voucher", form=fields)
        if done.status != 303:
            raise Refusal("voucher", done)
        p.login = "voucher"
        self.event("voucher")

    def is_online(self, web: ph.Phone) -> bool:
        try:
            r = web.request("GET", f"http://{UPSTREAM_IP}:{DOWNLOAD_PORT}/online.html")
        except OSError:
            return False
        return r.status == 200 and MARKER in r.body

    def download(self, p: SoakPhone, kick_midway: bool) -> None:
        size = self.rng.choice(SIZES)
        kicker = None
        if kick_midway:
            # Started here and waited for below: a kick never lands on the phone's next step.
            kicker = threading.Timer(
                self.rng.uniform(0.02, 0.3), self.kick, args=(p, "kick_midway")
            )
            kicker.start()
        try:
            self._download(p, size, kick_midway)
        finally:
            if kicker is not None:
                kicker.join()

    def _download(self, p: SoakPhone, size: int, kick_midway: bool) -> None:
        web = self.http(p, timeout=5)
        try:
            r = web.request("GET", f"http://{UPSTREAM_IP}:{DOWNLOAD_PORT}/{size}.bin")
            p.downloaded += len(r.body)
            self.event("download")
            if r.status != 200 and not kick_midway:
                self.fail(p, f"download: {r.status}")
        except (OSError, ph.http.client.HTTPException) as exc:
            if kick_midway:
                self.event("download_cut")
            elif not self.has_session(p):
                # The gateway ended the session meanwhile (its minute, idle, the day's
                # megabytes): the phone is walled again, as it should be.
                self.event("download_cut_by_session_end")
                p.online = False
            else:
                self.fail(p, f"download: {exc}")

    def has_session(self, p: SoakPhone) -> bool:
        return any(mac == p.mac for _ip, mac in self.db_sessions())

    def kick(self, p: SoakPhone, what: str = "kick") -> None:
        try:
            with ControlClient(str(self.village.config.control.socket)) as ctl:
                ctl.send(DeauthorizeRequest(mac=p.mac))
            self.event(what)
        except HotspotError as exc:
            # A session that had just ended by itself is no refusal; counted apart.
            ended = exc.code in (ErrorCode.NO_SESSION, ErrorCode.NOT_FOUND)
            self.event(f"{what}_{'after_end' if ended else 'refused'}")
        except OSError:  # the gateway closed the connection
            self.event(f"{what}_refused")
        p.online = False

    def leave(self, p: SoakPhone) -> None:
        """The phone goes away (out of range): its address is gone, its session stays until
        the gateway's idle timeout ends it."""
        subprocess.run(["ip", "addr", "flush", "dev", f"m{p.index}"], check=False, timeout=30)
        p.online = False
        p.ip = ""
        self.event("leave")

    def change_mac(self, p: SoakPhone) -> None:
        """MAC randomisation: a new address for the same phone; it joins again. The old
        identity is gone for good, so its lease is given back — once the gateway has ended
        its session (``release_pending``), as the lease of a phone that went away runs out.
        A mere leave (out of range) keeps the lease: the same MAC gets the same address back.
        Without it every change held an address for dnsmasq's whole lease time (60 minutes
        of real time) and a run of 45 minutes emptied the pool of 999; released at once, the
        address went to the next phone while the old session still held it (the gateway's
        documented side effect: a running session's address belongs to its MAC; the next
        phone was refused as ``not-your-session`` until the idle timeout ended it)."""
        if p.lease is not None:
            with self.lock:
                self.releases.append((time.monotonic() + RELEASE_AFTER_S, p.mac, p.lease))
        p.lease = None
        self.leave(p)
        p.generation += 1
        g = p.generation
        p.mac = f"02:{0xD0 + (g >> 8 & 0x0F):02x}:{g & 0xFF:02x}:00:{p.index >> 8:02x}:{p.index & 0xFF:02x}"
        sh(["ip", "link", "set", f"m{p.index}", "down"])
        sh(["ip", "link", "set", f"m{p.index}", "address", p.mac])
        sh(["ip", "link", "set", f"m{p.index}", "up"])
        self.event("mac_change")

    def release_pending(self) -> None:
        """DHCPRELEASE for the MACs phones left behind whose time has come (change_mac)."""
        now = time.monotonic()
        with self.lock:
            due = [r for r in self.releases if r[0] <= now]
            self.releases = [r for r in self.releases if r[0] > now]
        for _, mac, lease in due:
            try:
                self.dhcp.release(mac, lease)
                self.event("dhcp_release")
            except OSError as exc:  # not sent: the lease times out instead
                self.event("dhcp_release_failed")
                log(f"DHCPRELEASE for {mac} not sent: {exc}")

    def act(self, p: SoakPhone) -> None:
        """One random step of one phone (in a thread inside the phones' namespace)."""
        try:
            roll = self.rng.random()
            if not p.online:
                if roll < 0.15:
                    self.change_mac(p)
                self.join(p)
                self.event("join")
            elif roll < 0.45:
                self.download(p, kick_midway=False)
            elif roll < 0.55:
                self.download(p, kick_midway=True)
            elif roll < 0.65:
                self.kick(p)
            elif roll < 0.75:
                self.leave(p)
            elif roll < 0.82 and p.login == "voucher":
                web = self.http(p)
                page = web.request("GET", f"http://{GW_LAN_IP}:{PORTAL_PORT}/")
                self.redeem(p, web, page)  # a top-up
                self.event("topup")
            else:
                self.download(p, kick_midway=False)
        except (OSError, ph.http.client.HTTPException, subprocess.SubprocessError) as exc:
            p.online = False
            self.fail(p, f"{type(exc).__name__}: {exc}", failure_kind(exc))
        finally:
            p.busy = False

    # -- the checks ----------------------------------------------------------------------------

    def processes(self) -> dict[str, int]:
        """name → pid of every long-lived process of the device (portal workers each)."""
        v = self.village
        out = {
            name: v.pid_of(name) for name in ("gateway", "dnsmasq", "walled-dns", "sync", "portal")
        }
        for i, pid in enumerate(sorted(tree(v.pid_of("portal"))[1:])):
            out[f"portal-worker-{i}"] = pid
        if self.collector is not None:
            out["collector"] = self.collector.pid
        return out

    def db_sessions(self) -> set[tuple[str, str]]:
        db = sqlite3.connect(f"file:{self.work}/hotspot.db?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute("SELECT ip, mac FROM client_session WHERE ended_at IS NULL")
            return {(ip, mac.lower()) for ip, mac in rows}
        finally:
            db.close()

    def kernel_sessions(self) -> set[tuple[str, str]]:
        out = self.village.bed.run(
            self.village.bed.gw, "nft", "-j", "list", "set", "inet", "hotspot", "authorized"
        ).stdout
        data = json.loads(out)["nftables"]
        elems = next(x["set"] for x in data if "set" in x).get("elem", [])
        found = set()
        for e in elems:
            val = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
            ip, mac = val["concat"]
            found.add((ip, mac.lower()))
        return found

    def check(self, t: float) -> None:
        sample: dict[str, Any] = {"t_s": round(t, 1), "load_1min": os.getloadavg()[0]}
        for name, pid in self.processes().items():
            sample[f"rss_kb:{name}"] = rss_kb(pid)
            sample[f"fds:{name}"] = fd_count(pid)
            sample[f"anon_kb:{name}"] = anon_kb(pid)
        if not self.env_seen:
            self.env_seen = {
                name: environment_of(self.village.pid_of(name), self.unit_env[name])
                for name in UNIT_OF
            }
        gateway = self.village.pid_of("gateway")
        targets = fd_targets(gateway)
        sample["gateway_fd_kinds"] = fd_kinds(targets)
        sample["pooled_fds:gateway"] = pooled_fds(
            gateway, targets, Path(self.village.config.control.socket), self.work / "hotspot.db"
        )
        sample["gateway_maps_kb"] = mappings_kb(self.village.pid_of("gateway"))
        for name, proc in self.village.procs.items():
            if proc.poll() is not None and name != "collector" and name not in self.died:
                self.died[name] = proc.returncode
        sample["db_bytes"] = sum(
            f.stat().st_size for f in self.work.glob("hotspot.db*") if f.is_file()
        )
        sample["log_bytes"] = {f.name: f.stat().st_size for f in self.work.glob("*.log")}
        sample["dhcp_leases_in_use"] = leases_in_use(self.work / "dnsmasq.leases")
        db = sqlite3.connect(f"file:{self.work}/hotspot.db?mode=ro", uri=True, timeout=10)
        try:
            sample["outbox_pending"] = db.execute(
                "SELECT count(*) FROM sync_outbox WHERE rev > sent_rev"
            ).fetchone()[0]
            sample["sessions_total"] = db.execute("SELECT count(*) FROM client_session").fetchone()[
                0
            ]
            # Which tables the database's size is made of: the retention's bound is per table
            # (the sales ledger grows with the vouchers sold; personal data must level off).
            sample["db_tables"] = {
                name: {
                    "bytes": size,
                    "rows": db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0],
                }
                for name, size in db.execute(
                    # A table's bytes include its indexes'.
                    "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat AS d JOIN sqlite_master AS m"
                    " ON m.name = d.name GROUP BY m.tbl_name"
                )
            }
            self.track(db)
        finally:
            db.close()
        self.compare_sessions(t, sample)
        self.samples.append(sample)

    def compare_sessions(self, t: float, sample: dict[str, Any]) -> None:
        """Sessions in the database = sessions in the kernel, at one instant.

        The bench's own two reads (the database, then the kernel's ``authorized`` set) are
        not one instant: a login changes the kernel before its commit, a kick or a tick's end
        commits after... each under the gateway's lock, which the bench does not hold, and
        under load a commit's fsync takes seconds. So the gateway compares too, under its
        lock (the ``reconcile`` operation: the database and the kernel read with no operation
        between its commit and its kernel change — what its tick does every tick); a
        difference in clients there is a mismatch (and is repaired, as the tick would). A
        difference in the bench's reads only, with none under the lock, is an operation in
        flight: counted (``sessions_in_flight``), not a mismatch."""
        in_db, in_kernel = self.db_sessions(), self.kernel_sessions()
        if in_db != in_kernel:  # once more, half a second (a tick) later
            time.sleep(TICK_S)
            in_db, in_kernel = self.db_sessions(), self.kernel_sessions()
        sample["sessions_db"] = len(in_db)
        sample["sessions_kernel"] = len(in_kernel)
        started = time.monotonic()
        try:
            with ControlClient(str(self.village.config.control.socket), timeout=30) as ctl:
                changed = ctl.send(ReconcileRequest())["changed"]
        except (HotspotError, OSError) as exc:
            changed = f"unanswered: {exc}"
        sample["reconcile_ms"] = round((time.monotonic() - started) * 1000, 1)
        found = CLIENTS_CHANGED.search(changed)
        clients = (int(found[1]), int(found[2])) if found else (0, 0)
        entry = {
            "t_s": round(t, 1),
            "only_db": sorted(map(list, in_db - in_kernel)),
            "only_kernel": sorted(map(list, in_kernel - in_db)),
            "under_the_lock": changed,
        }
        if clients != (0, 0) or changed.startswith("unanswered"):
            self.mismatches.append(entry)
        elif in_db != in_kernel:
            self.in_flight.append(entry)

    def track(self, db: sqlite3.Connection) -> None:
        """Remember every session's and daily row's bytes (the purge may delete them before
        the end) and when each session was seen open and ended, in real seconds."""
        mono = time.monotonic()
        prev, self.last_check_mono = self.last_check_mono, mono
        for vid, first_used, expires in db.execute(
            "SELECT id, first_used_at, expires_at FROM voucher "
            "WHERE state != 'new' AND first_used_at IS NOT NULL AND expires_at IS NOT NULL"
        ):
            v = self.voucher_seen.get(vid)
            if v is None:
                v = self.voucher_seen[vid] = {"before": prev, "first": mono}
            # Its end − its first use, as both stand now (a step moves both alike).
            v["span_s"] = (
                dt.datetime.fromisoformat(expires) - dt.datetime.fromisoformat(first_used)
            ).total_seconds()
        unused = db.execute(
            "SELECT s.id, s.voucher_id FROM client_session s JOIN voucher v "
            "ON v.id = s.voucher_id WHERE s.ended_at IS NULL AND v.state = 'new'"
        ).fetchall()
        if unused:  # a session running on a code nobody has used: free internet
            self.on_unused_vouchers.append({"t_s": round(mono - self.t0, 1), "sessions": unused})
        rows = db.execute(
            "SELECT id, bytes_down, bytes_up, tier, ended_at IS NULL, end_reason, voucher_id "
            "FROM client_session"
        )
        for sid, down, up, tier, is_open, reason, voucher_id in rows:
            self.session_bytes[sid] = (int(down), int(up))
            seen = self.session_seen.get(sid)
            if seen is None:
                seen = self.session_seen[sid] = {
                    "tier": tier,
                    "before": prev,
                    "first": mono,
                    "voucher": voucher_id,
                }
            if is_open:
                seen["last"] = mono
            elif "ended" not in seen:
                seen["ended"], seen["reason"] = mono, reason
                self.judge_end(sid, seen)
        for mac, day, tier, down, up in db.execute(
            "SELECT mac, day, tier, bytes_down, bytes_up FROM daily_usage"
        ):
            self.daily_bytes[(mac, str(day), tier)] = (int(down), int(up))

    def judge_end(self, sid: int, seen: dict[str, Any]) -> None:
        """A session ended by time must have lasted its real minute: not less (a forward
        jump ended it), not much more (a jump stretched it). From checks, the real span is
        between last-seen-open − first-seen and first-seen-ended − the check before."""
        if seen["reason"] != "session-timeout":  # kicks, idle minutes, quotas: not the clock
            return
        if seen["voucher"] is not None:
            self.judge_voucher_end(sid, seen)
            return
        at_most = seen["ended"] - seen["before"]
        at_least = seen.get("last", seen["first"]) - seen["first"]
        slack = self.args.check_seconds + 5.0
        if at_most < FREE_SESSION_S - 5.0 or at_least > FREE_SESSION_S + slack:
            self.wrong_ends.append(
                {"session": sid, "seen_open_s": round(at_least, 1), "at_most_s": round(at_most, 1)}
            )

    def judge_voucher_end(self, sid: int, seen: dict[str, Any]) -> None:
        """A voucher's session ends by session-timeout at the voucher's end: its first use +
        its package's hours (+ what was left of the voucher it topped up), in real time —
        a clock step moves the voucher's first use and end alike, so its span stays real
        time. The gateway ends it at the first tick at or after that end (``TICK_S``, 0.5 s
        here; 2 s on a device), plus the tick's own run. From checks: the voucher's real first
        use is between the check before it was seen used and the first check it was; the
        session's end between the check before it was seen ended and the first it was."""
        v = self.voucher_seen.get(seen["voucher"])
        if v is None or "span_s" not in v:
            self.wrong_ends.append({"session": sid, "why": "voucher never seen in use"})
            return
        at_most = seen["ended"] - v["before"]  # real seconds from first use to the end
        at_least = seen.get("last", seen["first"]) - v["first"]
        tolerance = 2 * TICK_S + 2.0  # the tick's granularity and its run under load
        if self.stepped_after_restart(v["before"], seen["ended"]):
            # First used before a restart, and the clock stepped after it: by design the
            # voucher keeps its end on the new clock (docs/reliability.md, item 2: the clock
            # it was stamped on had been right), so it may end early in real time, not late.
            self.event("voucher_ended_on_the_wall_clock")
            at_most = float("inf")
        if at_most < v["span_s"] - tolerance or at_least > v["span_s"] + tolerance:
            self.wrong_ends.append(
                {
                    "session": sid,
                    "voucher": seen["voucher"],
                    "allowed_s": round(v["span_s"], 1),
                    "real_span_s_between": [round(at_least, 1), round(at_most, 1)],
                }
            )

    def stepped_after_restart(self, first_used: float, ended: float) -> bool:
        """A gateway restart after ``first_used`` and a clock step after that restart and
        before ``ended`` (monotonic seconds)."""
        return any(
            any(r < step < ended for step in self.step_monos)
            for r in self.restart_monos
            if r > first_used
        )

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        args = self.args
        duration = args.hours * 3600
        pool = ThreadPoolExecutor(
            max_workers=len(self.phones) + 2,
            initializer=enter_netns,
            initargs=(self.village.crowd_ns,),
        )
        self.dhcp = pool.submit(ph.Dhcp).result()
        self.ipconf = pool.submit(ph.Configurer, True).result()
        t0 = self.t0 = time.monotonic()
        next_check = t0
        collector_toggle = t0 + duration / 3
        collector_away_since: float | None = None
        next_midnight = t0 + args.day_seconds if args.day_seconds else float("inf")
        next_restart = t0 + args.restart_every if args.restart_every else float("inf")
        self.check(0.0)
        while (now := time.monotonic()) < t0 + duration:
            for p in self.phones:
                if not p.busy and self.rng.random() < 0.5:
                    p.busy = True
                    pool.submit(self.act, p)
            if now >= collector_toggle:
                if collector_away_since is None:
                    log("the collector goes away")
                    self.stop_collector()
                    collector_away_since = now
                    collector_toggle = now + max(5.0, duration / 6)
                else:
                    log("the collector comes back")
                    self.start_collector()
                    self.collector_down_s += now - collector_away_since
                    collector_away_since = None
                    collector_toggle = now + duration / 3
                self.event("collector_toggle")
            self.release_pending()
            if now >= next_midnight:
                self.jump_to_midnight()
                next_midnight = now + args.day_seconds
            if now >= next_restart:
                self.restart_gateway()
                next_restart = time.monotonic() + args.restart_every
            if now >= next_check:
                self.check(now - t0)
                s = self.samples[-1]
                log(
                    f"{now - t0:6.0f} s: sessions db {s['sessions_db']} kernel "
                    f"{s['sessions_kernel']}, gateway {s['rss_kb:gateway'] // 1024} MB "
                    f"{s['fds:gateway']} fds, db {s['db_bytes'] >> 10} KiB, outbox "
                    f"{s['outbox_pending']}, events {sum(self.events.values())}"
                )
                next_check = now + args.check_seconds
            time.sleep(0.5)
        if collector_away_since is not None:
            self.start_collector()
            self.collector_down_s += time.monotonic() - collector_away_since
        log("stopping the churn; every session ends (kick) for the byte count")
        while any(p.busy for p in self.phones):
            time.sleep(0.2)
        pool.shutdown(wait=True)
        self.end_all_sessions()
        # Every session has ended: the leases left behind go back now (the last check shows
        # the pool with one lease a phone).
        with self.lock:
            self.releases = [(0.0, mac, lease) for _, mac, lease in self.releases]
        self.release_pending()
        time.sleep(1)  # dnsmasq rewrites its lease file
        self.check(time.monotonic() - t0)
        # The backlog drains once the collector is back.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.check(time.monotonic() - t0)
            if self.samples[-1]["outbox_pending"] == 0:
                break
            time.sleep(2)
        return self.report(time.monotonic() - t0)

    def end_all_sessions(self) -> None:
        with ControlClient(str(self.village.config.control.socket)) as ctl:
            for _ip, mac in self.db_sessions():
                try:
                    ctl.send(DeauthorizeRequest(mac=mac))
                except Exception:  # noqa: BLE001 - it may have ended by itself meanwhile
                    continue
        deadline = time.monotonic() + 20
        while self.db_sessions() and time.monotonic() < deadline:
            time.sleep(0.5)

    def counted_bytes(self) -> dict[str, int]:
        """Every session's bytes, those the retention purge deleted included (each was read
        at a check after its last flush: the purge takes a day of village time)."""
        db = sqlite3.connect(f"file:{self.work}/hotspot.db?mode=ro", uri=True, timeout=10)
        try:
            self.track(db)
        finally:
            db.close()
        down = sum(d for d, _ in self.session_bytes.values())
        up = sum(u for _, u in self.session_bytes.values())
        return {"down": down, "up": up}

    def days_report(self) -> dict[str, Any]:
        """The midnights and the day's usage rows: every row on a day the village clock
        visited, and the rows' bytes = the sessions' bytes."""
        visited = {str(d) for d in self.days}
        rows_days = sorted({day for _mac, day, _tier in self.daily_bytes})
        daily = sum(d + u for d, u in self.daily_bytes.values())
        sessions = sum(d + u for d, u in self.session_bytes.values())
        free_days: dict[str, int] = {}
        for _mac, day, tier in self.daily_bytes:
            if tier == "free":
                free_days[day] = free_days.get(day, 0) + 1
        return {
            "midnights": self.midnights,
            "days_visited": sorted(visited),
            "usage_row_days": rows_days,
            "usage_rows_on_unvisited_days": sorted(set(rows_days) - visited) if visited else [],
            "free_rows_per_day": free_days,
            "daily_usage_bytes": daily,
            "session_bytes": sessions,
            "daily_vs_sessions_pct": round((daily - sessions) / sessions * 100, 3)
            if sessions
            else None,
            "free_granted_twice_in_a_day": self.free_twice[:20],
            "sessions_ended_wrongly": self.wrong_ends[:20],
            "sessions_ended_wrongly_count": len(self.wrong_ends),
            "sessions_purged": len(self.session_bytes) - self.samples[-1]["sessions_total"],
        }

    def reference_bytes(self) -> dict[str, Any]:
        out = json.loads(
            self.village.bed.run(
                self.village.crowd_ns, "nft", "-j", "list", "table", "inet", "soak"
            ).stdout
        )["nftables"]
        found = {}
        for item in out:
            rule = item.get("rule")
            if not rule:
                continue
            counter = next(e["counter"] for e in rule["expr"] if "counter" in e)
            found[rule["chain"]] = (counter["packets"], counter["bytes"])
        (rxp, rxb), (txp, txb) = found["rx"], found["tx"]
        # Both count IP packets: nftables here, the gateway's HTB frames less their
        # Ethernet headers (gateway.shaping.ip_layer_bytes).
        return {"down": rxb, "up": txb, "down_packets": rxp, "up_packets": txp}

    def report(self, elapsed: float) -> dict[str, Any]:
        counted, ref = self.counted_bytes(), self.reference_bytes()
        total_c, total_r = counted["down"] + counted["up"], ref["down"] + ref["up"]
        warm = [s for s in self.samples if s["t_s"] >= 0.2 * elapsed]
        keys = sorted(
            {
                k
                for s in self.samples
                for k in s
                if k.startswith(("rss_kb:", "fds:", "anon_kb:", "pooled_fds:"))
            }
        )
        procs: dict[str, Any] = {}
        for k in keys:
            kind, name = k.split(":", 1)
            pts = [(s["t_s"], float(s[k])) for s in warm if k in s]
            vals = [v for _, v in pts]
            if not vals:
                continue
            entry = procs.setdefault(name, {})
            unit = {"rss_kb": "mb", "anon_kb": "anon_mb"}.get(kind, kind)
            scale = 1 if kind in ("fds", "pooled_fds") else 1024
            sl = slope_per_hour(pts)
            early = slope_per_hour(pts[: len(pts) // 2])
            late = slope_per_hour(pts[len(pts) // 2 :])
            entry[f"{unit}_first"] = round(vals[0] / scale, 1)
            entry[f"{unit}_last"] = round(vals[-1] / scale, 1)
            entry[f"{unit}_max"] = round(max(vals) / scale, 1)
            entry[f"{unit}_slope_per_hour"] = None if sl is None else round(sl / scale, 2)
            entry[f"{unit}_slope_per_hour_1st_half"] = (
                None if early is None else round(early / scale, 2)
            )
            # A step (an allocator arena, a cache filling) shows in the whole run's slope;
            # a leak keeps the second half's slope up too.
            entry[f"{unit}_slope_per_hour_2nd_half"] = (
                None if late is None else round(late / scale, 2)
            )
        db_pts = [(s["t_s"], float(s["db_bytes"])) for s in warm]
        log_total = [(s["t_s"], float(sum(s["log_bytes"].values()))) for s in warm]
        sl_db, sl_log = slope_per_hour(db_pts), slope_per_hour(log_total)
        diff = (total_c - total_r) / total_r * 100 if total_r else None
        last = self.samples[-1]
        kinds: dict[str, int] = {}
        unexplained: dict[str, int] = {}
        for f in self.failure_log:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
            if not explained(f):
                unexplained[f["kind"]] = unexplained.get(f["kind"], 0) + 1
        answered = sorted(s["reconcile_ms"] for s in self.samples if "reconcile_ms" in s)
        return {
            "elapsed_s": round(elapsed, 1),
            "checks": len(self.samples),
            "events": self.events,
            "failures": self.failures[:50],
            "failure_count": len(self.failures),
            "failures_by_kind": kinds,
            "failures_unexplained_by_kind": unexplained,
            "failures_explained": [f for f in self.failure_log if explained(f)][:50],
            "failures_unexplained": [f for f in self.failure_log if not explained(f)][:100],
            "session_mismatches": self.mismatches[:20],
            "session_mismatch_count": len(self.mismatches),
            "sessions_in_flight": self.in_flight[:20],
            "sessions_in_flight_count": len(self.in_flight),
            "sessions_on_unused_vouchers": self.on_unused_vouchers[:20],
            # The gateway's answer to the checks' reconcile (its lock, a kernel read), ms.
            "gateway_reconcile_ms": {
                "p50": answered[len(answered) // 2] if answered else None,
                "max": answered[-1] if answered else None,
            },
            "gateway_log": self.gateway_log_report(),
            "gateway_restarts": self.restarts,
            "processes_died": self.died,
            "sessions_at_end": {"db": last["sessions_db"], "kernel": last["sessions_kernel"]},
            "sessions_total": last["sessions_total"],
            "processes": procs,
            "db_bytes": {
                "first": db_pts[0][1] if db_pts else None,
                "last": last["db_bytes"],
                "slope_per_hour": None if sl_db is None else round(sl_db),
            },
            "db_tables": {
                name: {
                    "first": warm[0]["db_tables"].get(name) if warm else None,
                    "last": table,
                }
                for name, table in last["db_tables"].items()
            },
            "log_bytes": {
                "last": last["log_bytes"],
                "slope_per_hour": None if sl_log is None else round(sl_log),
            },
            "outbox_pending_at_end": last["outbox_pending"],
            # dnsmasq's pool: leases in its lease file at each check (a long run emptied it
            # once, when the phones never gave a lease back).
            "dhcp_pool": {
                "size": dhcp_pool_size(),
                "in_use_first": self.samples[0].get("dhcp_leases_in_use"),
                "in_use_max": max(s.get("dhcp_leases_in_use", 0) for s in self.samples),
                "in_use_last": last.get("dhcp_leases_in_use"),
            },
            "collector_away_s": round(self.collector_down_s, 1),
            "bytes": {
                "counted": counted,
                "reference": ref,
                "total_counted": total_c,
                "total_reference": total_r,
                "diff_pct": None if diff is None else round(diff, 3),
            },
            "days": self.days_report() if self.args.day_seconds else None,
            "memwatch": self.memwatch_report() if self.args.memwatch else None,
            "native_watch": (
                {n: self.native_report(n) for n in ("gateway", "sync")}
                if self.args.native_watch
                else None
            ),
            "gateway_maps_kb": self.maps_report(elapsed),
            "unit_environment": self.unit_env,
            # What the running processes really had (/proc/PID/environ) of the units' variables.
            "environment_seen": self.env_seen,
            "load_1min": [round(s["load_1min"], 2) for s in self.samples],
            "samples": self.samples,
        }

    def gateway_log_report(self) -> dict[str, Any]:
        """What the gateway's log says: its own reconciles that changed clients (a mismatch
        its tick found and repaired between the bench's checks), the other reconciles (pinned
        neighbours, classes), the allocator trims."""
        path = self.work / "gateway.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        fixes, other = [], 0
        for line in text.splitlines():
            if "reconcile: kernel differed from database" not in line:
                continue
            found = CLIENTS_CHANGED.search(line)
            if found and (found[1], found[2]) != ("0", "0"):
                fixes.append(line.split("database: ", 1)[-1])
            else:
                other += 1
        return {
            "reconcile_client_fixes": fixes[:20],
            "reconcile_client_fix_count": len(fixes),
            "reconcile_other_count": other,
            "malloc_trims": text.count("malloc_trim: "),
            "malloc_trims_gave_back": text.count("malloc_trim: memory given back"),
        }

    def memwatch_report(self) -> dict[str, Any]:
        """The watched process's Python heap from bench.memwatch: traced size over time, and
        the sites and object types that grew most from the first snapshot to the last."""
        path = self.work / f"{self.args.memwatch_of}-memwatch.jsonl"
        snaps = []
        if path.exists():
            for line in path.read_text().splitlines():
                data = json.loads(line)
                if "sites" in data:
                    snaps.append(data)
        if len(snaps) < 2:
            return {"snapshots": len(snaps)}
        first, last = snaps[0], snaps[-1]
        t0 = first["t"]
        traced = [(s["t"] - t0, float(s["traced_kb"])) for s in snaps]
        half = traced[len(traced) // 2 :]
        sites0 = {x["at"]: x for x in first["sites"]}
        grew = sorted(
            (
                {
                    "at": x["at"],
                    "kb": x["kb"],
                    "kb_growth": x["kb"] - sites0.get(x["at"], {}).get("kb", 0),
                    "count": x["count"],
                    "count_growth": x["count"] - sites0.get(x["at"], {}).get("count", 0),
                }
                for x in last["sites"]
            ),
            key=lambda x: -x["kb_growth"],
        )
        types = sorted(
            ((k, v - first["types"].get(k, 0), v) for k, v in last["types"].items()),
            key=lambda x: -x[1],
        )
        sl, sl2 = slope_per_hour(traced), slope_per_hour(half)
        return {
            "snapshots": len(snaps),
            "traced_kb": [round(v) for _, v in traced],
            "traced_kb_slope_per_hour": None if sl is None else round(sl),
            "traced_kb_slope_per_hour_2nd_half": None if sl2 is None else round(sl2),
            "gc_objects": [s["gc_objects"] for s in snaps],
            "sites_grown": grew[:15],
            "types_grown": [{"type": k, "growth": g, "count": v} for k, g, v in types[:15]],
            # --pins: the MiB of obmalloc's arenas holding objects over time, and what holds
            # the mostly empty ones.
            "pins": [
                {k: v for k, v in s["pins"].items() if not k.endswith("_in_sparse_arenas")}
                for s in snaps
                if "pins" in s
            ],
            "pins_last": last.get("pins"),
        }

    def maps_report(self, elapsed: float) -> dict[str, Any]:
        """The gateway's mappings (``[heap]``, ``anon``, ``[stack]``, the database's shared
        memory…) after the first fifth and at the end, and each one's slope per hour."""
        warm = [s for s in self.samples if s["t_s"] >= 0.2 * elapsed and s.get("gateway_maps_kb")]
        if len(warm) < 3:
            return {}
        out: dict[str, Any] = {}
        for kind in sorted({k for s in warm for k in s["gateway_maps_kb"]}):
            pts = [(s["t_s"], float(s["gateway_maps_kb"].get(kind, 0))) for s in warm]
            sl, late = slope_per_hour(pts), slope_per_hour(pts[len(pts) // 2 :])
            out[kind] = {
                "first": round(pts[0][1]),
                "last": round(pts[-1][1]),
                "slope_per_hour": None if sl is None else round(sl),
                "slope_per_hour_2nd_half": None if late is None else round(late),
            }
        return out

    def native_report(self, name: str) -> dict[str, Any]:
        """``<name>-native.jsonl`` (bench.memwatch --native): the allocator's and SQLite's
        figures after the first fifth and at the end, with their slopes per hour (kB)."""
        path = self.work / f"{name}-native.jsonl"
        snaps = []
        if path.exists():
            snaps = [d for d in map(json.loads, path.read_text().splitlines()) if "mallinfo" in d]
        if len(snaps) < 3:
            return {"snapshots": len(snaps)}
        t0 = snaps[0]["t"]
        warm = [s for s in snaps if s["t"] - t0 >= 0.2 * (snaps[-1]["t"] - t0)]

        def series(get: Any) -> dict[str, Any]:
            pts = [(s["t"] - t0, float(get(s))) for s in warm]
            sl, late = slope_per_hour(pts), slope_per_hour(pts[len(pts) // 2 :])
            return {
                "first": round(pts[0][1]),
                "last": round(pts[-1][1]),
                "max": round(max(v for _, v in pts)),
                "slope_per_hour": None if sl is None else round(sl),
                "slope_per_hour_2nd_half": None if late is None else round(late),
            }

        def maps(kind: str) -> Any:
            return lambda s: s["smaps"].get(kind, {}).get("rss_kb", 0)

        out: dict[str, Any] = {
            "snapshots": len(snaps),
            "malloc_arena_kb": series(lambda s: s["mallinfo"]["arena_kb"]),
            "malloc_in_use_kb": series(lambda s: s["mallinfo"]["in_use_kb"]),
            "malloc_free_kb": series(lambda s: s["mallinfo"]["free_kb"]),
            "malloc_mmap_kb": series(lambda s: s["mallinfo"]["mmap_kb"]),
            "arenas": series(lambda s: len(s["arenas"])),
            "heap_map_kb": series(maps("[heap]")),
            "anon_map_kb": series(maps("anon")),
            "sqlite_connections": series(lambda s: s["sqlite_connections"]),
            "threads": series(lambda s: sum(s["threads"].values())),
            "threads_last": warm[-1]["threads"],
            "arenas_last": warm[-1]["arenas"],
        }
        if warm[-1].get("obmalloc"):
            out["obmalloc_arenas"] = series(lambda s: s["obmalloc"].get("arenas", 0))
            out["obmalloc_allocated_kb"] = series(
                lambda s: s["obmalloc"].get("allocated_bytes", 0) // 1024
            )
            out["obmalloc_free_kb"] = series(
                lambda s: s["obmalloc"].get("available_bytes", 0) // 1024
            )
        if "sqlite" in warm[-1]:
            out["sqlite_memory_kb"] = series(lambda s: s["sqlite"]["memory_used_kb"])
        return out

    def destroy(self) -> None:
        logs = RESULTS / "logs" / "soak"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True, exist_ok=True)
        for f in [*self.work.glob("*.log"), *self.work.glob("*.jsonl")]:
            shutil.copy(f, logs / f.name)
        self.village.destroy()
        shutil.rmtree(self.work, ignore_errors=True)


def units_environment() -> dict[str, dict[str, str]]:
    """Each daemon's environment as its provisioned unit sets it (by the village's names)."""
    return {name: unit_environment(UNITS / f"{unit}.service.j2") for name, unit in UNIT_OF.items()}


def unit_environment(unit: Path) -> dict[str, str]:
    """The ``Environment=`` assignments of a systemd unit file (``KEY=VALUE`` words)."""
    env: dict[str, str] = {}
    if not unit.exists():
        return env
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            for word in line.removeprefix("Environment=").split():
                key, sep, value = word.strip('"').partition("=")
                if sep and "{" not in word:  # a template's {{ … }} is the site's, not ours
                    env[key] = value
    return env


def environment_of(pid: int, keys: dict[str, str]) -> dict[str, str | None]:
    """The values of ``keys`` in a running process's environment (None: not set)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return dict.fromkeys(keys)
    env = dict(w.decode(errors="replace").partition("=")[::2] for w in raw.split(b"\0") if w)
    return {k: env.get(k) for k in keys}


def anon_kb(pid: int) -> int:
    """A process's anonymous resident memory (heap, arenas, stacks), from smaps_rollup."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Anonymous:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def mappings_kb(pid: int) -> dict[str, int]:
    """A process's resident memory by mapping: ``[heap]``, ``anon``, ``[stack]``, the
    database's files, and the shared libraries and Python extensions together (``libs``)."""
    try:
        groups = smaps_groups(pid)
    except OSError:
        return {}
    out = {"libs": 0}
    for name, g in groups.items():
        if name in ("[heap]", "anon", "[stack]") or name.startswith("hotspot.db"):
            out[name] = out.get(name, 0) + g["rss_kb"]
        else:
            out["libs"] += g["rss_kb"]
    return out


def fd_targets(pid: int) -> list[str]:
    """What each of a process's open descriptors points at (``socket:[inode]``, a path…)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    targets = []
    for fd in fds:
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return targets


def fd_kinds(targets: list[str]) -> dict[str, int]:
    """What a process's open descriptors are: ``socket``, ``pipe``, ``anon_inode:…``, or
    the file's path (a leak shows by its kind)."""
    kinds: dict[str, int] = {}
    for target in targets:
        kind = target.split(":", 1)[0] if target.startswith(("socket:", "pipe:")) else target
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def pooled_fds(pid: int, targets: list[str], control_socket: Path, database: Path) -> int:
    """The descriptors of the gateway's two pools, each bounded by its configuration and
    filled as they are first needed, at any time of a run: the control socket's connections
    (one per portal worker thread, the sync agent's, the CLI's) and the database's files (two
    per pooled SQLite connection). A leak shows in what is left."""
    try:
        unix = Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]
    except OSError:
        return 0
    pooled = {str(database), f"{database}-wal"} | {
        f"socket:[{cols[6]}]"
        for cols in (line.split() for line in unix)
        if len(cols) >= 8 and cols[7] == str(control_socket)
    }
    return sum(target in pooled for target in targets)


def failure_kind(exc: BaseException) -> str:
    """A failed step's kind: the portal's refusal code, or what the network said."""
    if isinstance(exc, Refusal):
        return exc.code
    text = str(exc)
    if "DHCP NAK" in text:
        return "dhcp-nak"
    if isinstance(exc, TimeoutError) or "timed out" in text:
        return "timeout"
    return type(exc).__name__


def explained(f: dict[str, Any]) -> bool:
    """A failure that is the product's documented behaviour, not a fault: a redemption whose
    end the portal worked out on the old clock, refused as expired by the gateway on the new
    one within seconds of a step (docs/reliability.md: the villager's next try succeeds)."""
    near = f["since_step_s"] is not None and f["since_step_s"] <= STEP_REFUSAL_S
    return f["kind"] == ErrorCode.EXPIRED and near


def codes_in(data: Any) -> list[str]:
    """Every voucher code in ``hotspot vouchers create --json``'s answer."""
    found: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "code" and isinstance(v, str):
                    found.append(v)
                elif k == "codes" and isinstance(v, list):
                    found.extend(c for c in v if isinstance(c, str))
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(data)
    return found


def leases_in_use(path: Path) -> int:
    """The leases in dnsmasq's lease file (one a line; rewritten at every change)."""
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except OSError:
        return 0


def dhcp_pool_size() -> int:
    first, last = (int(ipaddress.IPv4Address(ip)) for ip in DHCP_RANGE)
    return last - first + 1


def verdict(r: dict[str, Any]) -> list[str]:
    """The invariants that did not hold (empty: all did)."""
    bad = []
    pool = r.get("dhcp_pool")
    if pool and pool["in_use_max"] >= pool["size"]:
        bad.append(f"the DHCP pool ran out: {pool['in_use_max']} leases of {pool['size']}")
    if r["session_mismatch_count"]:
        bad.append(
            f"sessions in the database ≠ in the kernel at {r['session_mismatch_count']} checks"
        )
    if r["sessions_at_end"]["db"] or r["sessions_at_end"]["kernel"]:
        bad.append(f"sessions left after ending all: {r['sessions_at_end']}")
    d = r["bytes"]["diff_pct"]
    if d is None or abs(d) > 1.0:
        bad.append(f"bytes counted vs sent: {d}% (limit ±1%)")
    for restart in r.get("gateway_restarts", []):
        if restart["lost"] or not restart["kernel_equals_db"] or restart["answering_after_s"] > 30:
            bad.append(f"a gateway restart lost sessions or state: {restart}")
    if r["processes_died"]:
        bad.append(f"processes died: {r['processes_died']}")
    unexplained = r["failures_unexplained_by_kind"]
    if unexplained:
        bad.append(f"{sum(unexplained.values())} phone steps failed: {unexplained}")
    if r["gateway_log"]["reconcile_client_fix_count"]:
        bad.append(
            f"the gateway's tick found the kernel's clients ≠ the database's "
            f"{r['gateway_log']['reconcile_client_fix_count']} times"
        )
    if r["sessions_on_unused_vouchers"]:
        bad.append(f"sessions on unused vouchers: {r['sessions_on_unused_vouchers'][:3]}")
    if r["outbox_pending_at_end"]:
        bad.append(f"{r['outbox_pending_at_end']} outbox records not delivered at the end")
    days = r.get("days")
    if days:
        if days["free_granted_twice_in_a_day"]:
            bad.append(
                f"free tier granted again on the day it was used up: {days['free_granted_twice_in_a_day'][:3]}"
            )
        if days["sessions_ended_wrongly_count"]:
            bad.append(
                f"{days['sessions_ended_wrongly_count']} sessions ended too early or too late"
            )
        if days["usage_rows_on_unvisited_days"]:
            bad.append(
                f"usage rows on days the clock never showed: {days['usage_rows_on_unvisited_days']}"
            )
        pct = days["daily_vs_sessions_pct"]
        if pct is not None and abs(pct) > 1.0:
            bad.append(f"daily usage rows vs sessions' bytes: {pct}% (limit ±1%)")
        if not days["midnights"]:
            bad.append("no midnight crossed")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=1.0, help="how long to churn (1)")
    ap.add_argument("--phones", type=int, default=16, help="phones in the pool (16)")
    ap.add_argument(
        "--check-seconds", type=float, default=None, help="between checks (30; 5 under 0.1 h)"
    )
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument(
        "--day-seconds",
        type=float,
        default=0.0,
        help="every N s, step the village clock to just before its next local midnight (off)",
    )
    ap.add_argument(
        "--memwatch",
        type=float,
        default=0.0,
        help="every N s, the tracemalloc top sites of --memwatch-of and gc objects by type (off)",
    )
    ap.add_argument(
        "--memwatch-of",
        choices=("gateway", "sync"),
        default="gateway",
        help="with --memwatch: whose Python heap (the gateway's, or the sync agent's)",
    )
    ap.add_argument(
        "--pins",
        action="store_true",
        help="with --memwatch: which allocation sites hold objects in mostly empty obmalloc "
        "arenas (slow: seconds per snapshot)",
    )
    ap.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the gateway's environment differs from its unit's by this (an experiment, "
        "e.g. PYTHONMALLOC=pymalloc)",
    )
    ap.add_argument(
        "--native-watch",
        type=float,
        default=0.0,
        help="every N s, the gateway's and the sync agent's malloc arenas, SQLite memory and "
        "mappings, without tracemalloc (off)",
    )
    ap.add_argument(
        "--trim-seconds",
        type=float,
        default=None,
        help="the gateway's [gateway] trim_seconds (malloc_trim): 3600 as shipped for runs "
        "of 3 h or more, else 600 so that a run sees trims",
    )
    ap.add_argument(
        "--restart-every",
        type=float,
        default=0.0,
        help="every N s, the gateway stops (SIGTERM and SIGKILL in turn) and starts again (off)",
    )
    ap.add_argument("--output", type=Path, default=RESULTS / "soak.json")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.soak: needs root (network namespaces, nftables, dnsmasq)", file=sys.stderr)
        return 2
    if not 0 < args.hours <= 24 * 14 or not 1 <= args.phones <= 200:
        print("bench.soak: --hours in (0, 336], --phones 1..200", file=sys.stderr)
        return 2
    if min(args.day_seconds, args.memwatch, args.native_watch, args.restart_every) < 0:
        print(
            "bench.soak: --day-seconds, --memwatch, --native-watch and --restart-every are "
            "seconds ≥ 0",
            file=sys.stderr,
        )
        return 2
    if any("=" not in kv for kv in args.gateway_env) or (args.pins and not args.memwatch):
        print("bench.soak: --gateway-env NAME=VALUE; --pins needs --memwatch", file=sys.stderr)
        return 2
    if args.check_seconds is None:
        args.check_seconds = 5.0 if args.hours < 0.1 else 30.0
    if args.trim_seconds is None:
        args.trim_seconds = 3600.0 if args.hours >= 3 else 600.0
    if not 10 <= args.trim_seconds <= 86400:
        print("bench.soak: --trim-seconds in [10, 86400]", file=sys.stderr)
        return 2
    args.quick, args.window, args.baseline = False, 0.0, 0
    remove_stale_testbeds("hss")
    soak = Soak(args)
    info = meta(args)
    info["params"] = {
        "hours": args.hours,
        "phones": args.phones,
        "check_seconds": args.check_seconds,
        "seed": args.seed,
        "day_seconds": args.day_seconds,
        "memwatch_seconds": args.memwatch,
        "memwatch_of": args.memwatch_of,
        "native_watch_seconds": args.native_watch,
        "trim_seconds": args.trim_seconds,
        "restart_every_seconds": args.restart_every,
    }
    info["mode"] = "soak"
    try:
        log(f"building the village: {args.phones} phones, collector, sync agent")
        soak.setup()
        log(f"churning for {args.hours * 60:.1f} min")
        report = soak.run()
    finally:
        soak.destroy()
    info["loadavg_at_end"] = list(os.getloadavg())
    report = {"meta": info, **report}
    report["violations"] = verdict(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    gw = report["processes"].get("gateway", {})
    print(
        f"soak: {report['elapsed_s']} s, {sum(report['events'].values())} events, "
        f"{report['checks']} checks; sessions db≠kernel {report['session_mismatch_count']} "
        f"(in flight {report['sessions_in_flight_count']}); bytes "
        f"{report['bytes']['diff_pct']}%; gateway RSS {gw.get('mb_first')}→{gw.get('mb_last')} MB "
        f"({gw.get('mb_slope_per_hour')} MB/h), fds {gw.get('fds_first')}→{gw.get('fds_last')}; "
        f"violations: {report['violations'] or 'none'} → {args.output}"
    )
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
