"""``hotspot demo``: a whole village in network namespaces, with the real programs.

    <p>-c1 … <p>-cN (villagers)   ┐
    <p>-c<N+1> (your browser)     ┴─ br-lan ── <p>-gw ── eth0 ── <p>-up ── <p>-prov
                                   gateway, dnsmasq,        "internet"     collector
                                   portal, sync agent       198.51.100.10  203.0.113.10

Everything lives in namespaces named ``<prefix>-…`` and under one work directory
(``$TMPDIR/hotspot-demo-<prefix>``); both are removed at the start (the leftovers of a
crashed run) and at the end (normal end, Ctrl-C, SIGTERM, an exception).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo import packages
from demo.display import Display, Row, Snapshot, fmt_bytes, fmt_rate

VILLAGE = "Desa Sungai Duren"
GATEWAY_ID = "desa-sungai-duren"
GW_LAN_IP = "10.10.0.1"
PORTAL_PORT = 8080
PROV_IP = "203.0.113.10"
PROV_GW = "203.0.113.1"
# The operator network (#10.12): the console is not served over plain HTTP on the villagers'
# open LAN, so the demo's console link goes through a management namespace on a veth.
MGMT_GW_IP = "192.168.88.1"
MGMT_IP = "192.168.88.10"
MGMT_NETWORK = "192.168.88.0/24"
COLLECTOR_PORT = 8000
DHCP_RANGE = ("10.10.0.100", "10.10.0.199")
LEASE_WAIT = 40  # seconds the villagers wait for their phones' leases at most
ROLES = ("free", "voucher", "heavy", "walled")
# The demo runs every service as root: the state files they create (databases, WAL, keys)
# are 0640 at most, never readable by every user of the machine.
STATE_UMASK = 0o027
ROLE_TEXT = {
    "free": "accepts the free terms, then browses",
    "voucher": "redeems a voucher → premium, iperf3",
    "heavy": "uses up the free daily allowance",
    "walled": "never logs in: nothing gets through",
    "browser": "accepts the free terms, browses",
    "you": "your browser (forwarded port)",
}

# The tiers of the demo: small numbers, so that a minute shows everything.
FREE = {
    "down_kbps": 2048,
    "up_kbps": 1024,
    "session_minutes": 60,
    "idle_minutes": 10,
    "daily_minutes": 0,
    "daily_mb": 3,
}
PREMIUM = {
    "down_kbps": 8192,
    "up_kbps": 4096,
    "session_minutes": 0,
    "idle_minutes": 30,
    "daily_minutes": 0,
    "daily_mb": 0,
}
RATE_TOLERANCE = (0.80, 1.10)  # measured premium download / configured rate
IPERF_SECONDS = 6
PORTAL_HOST_PORT = 18080  # preferred; any free port otherwise
CONSOLE_HOST_PORT = 18081  # the console, through the operator network
COLLECTOR_HOST_PORT = 18000
# Prefixes of the other villages in this repository (gateway/testbed.py's default,
# tests/netns, tests/browser, tests/integration, bench/gateway.py): a demo with one of them
# would remove theirs.
RESERVED_PREFIXES = ("hs", "hst", "hsp", "hsi", "hsa", "hsb")
PAGE = """<!doctype html><html lang="id"><meta charset="utf-8">
<meta name="demo" content="demo-upstream-page"><title>{title}</title>
<h1>{title}</h1><p>{text}</p>{filler}</html>
"""


def same_tree_env() -> dict[str, str]:
    """The environment of the demo's services: they import the tree the demo runs from (a
    worktree, a checkout), not whatever ``pip install -e`` once pointed at — their working
    directory is the demo's work directory."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


class DemoError(Exception):
    """Set-up failed: the message says what, and where its log is."""


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Options:
    duration: int | None = None
    phones: int = 4
    prefix: str = "hsd"
    keep_artifacts: str | None = None
    live: bool | None = None  # None: a rich table on a terminal, plain lines otherwise
    install: bool = True  # apt-get the missing Debian packages (after saying so)


@dataclass
class Phone:
    index: int
    role: str
    ns: str
    mac: str
    lease_dir: Path
    ip: str | None = None
    option114: str | None = None
    lease_seconds: float | None = None
    proc: subprocess.Popen | None = None
    doing: str = ""
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    session: dict[str, Any] | None = None
    last_session: dict[str, Any] | None = None
    allowance: dict[str, Any] | None = None
    seen: set[tuple[str, str]] = field(default_factory=set)  # (tier, source) of its sessions
    samples: deque = field(default_factory=lambda: deque(maxlen=3))  # ~2 s of rate
    rate_down: float = 0.0
    exit_code: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.ns.rsplit("-", 1)[-1]

    @property
    def state(self) -> str:
        if self.ip is None:
            return "no address"
        if self.session:
            return "online"
        if self.last_session:
            return f"ended: {self.last_session.get('end_reason')}"
        return "walled"


def _run(args: list[str], *, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
    kw.setdefault("env", same_tree_env())
    kw.setdefault("umask", STATE_UMASK)  # a database it creates is not for every user
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Demo:
    def __init__(self, opts: Options, out=None):
        from testsupport.testbed import Testbed

        self.opts = opts
        self.prefix = opts.prefix
        self.work = Path(tempfile.gettempdir()) / f"hotspot-demo-{opts.prefix}"
        # After a failure (without --keep-artifacts) the logs are kept here, until the next
        # run with this prefix.
        self.failed_dir = self.work.with_name(self.work.name + "-failed")
        self.logs = self.work / "logs"
        self.bed = Testbed(prefix=opts.prefix, clients=0)
        self.t0 = time.monotonic()
        self.display = Display(self.snapshot, out=out or sys.stdout, live_mode=opts.live)
        self.phones: list[Phone] = []
        self.services: dict[str, subprocess.Popen] = {}
        self.forwards: list[Any] = []
        self.notes: list[str] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.codes: list[str] = []
        self.api_token = ""
        self.operator: tuple[str, str] | None = None
        self.collector_stats: tuple[int, int, int] = (0, 0, 0)  # clients, records, bytes down
        self.collector_seen_at: float | None = None
        self.pseudonym_key = secrets.token_hex(32)
        self.results: list[tuple[bool, str, str]] = []
        self.prov = f"{self.prefix}-prov"
        self.mgmt = f"{self.prefix}-mgmt"
        self.acting_since: float | None = None
        self._ctl: Any = None
        self.gateway_error: str | None = None  # the last poll's failure, if it failed
        self.owned = False  # True once this run may remove namespaces <prefix>-*

    # -- helpers ----------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def step(self, text: str) -> None:
        self.display.event(text)

    def hotspot(self, config: Path, *args: str) -> list[str]:  # run with same_tree_env()
        return [sys.executable, "-m", "hotspot_cli", "--config", str(config), *args]

    def service(self, name: str, ns: str, args: list[str]) -> subprocess.Popen:
        """A long-running program in a namespace, in its own process group, logging to
        ``logs/<name>.log``."""
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.work,
            env=same_tree_env(),
            start_new_session=True,
            # What the services create (databases and their WAL, keys) is theirs alone.
            umask=STATE_UMASK,
        )
        log.close()
        self.services[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.logs / name
        if not path.exists():
            return f"(no {path})"
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {path} (last {len(text)} lines)\n" + "\n".join(text)

    def wait(
        self,
        what: str,
        predicate: Callable[[], Any],
        timeout: float,
        service: str | None = None,
        interval: float = 0.1,
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if service and self.services[service].poll() is not None:
                raise DemoError(
                    f"{service} exited ({self.services[service].returncode}) "
                    f"while waiting for {what}\n{self.log_tail(service + '.log')}"
                )
            if time.monotonic() > deadline:
                tail = f"\n{self.log_tail(service + '.log')}" if service else ""
                raise DemoError(f"{what}: not after {timeout:.0f} s{tail}")
            time.sleep(interval)

    def port_open(self, ns: str, host: str, port: int) -> bool:
        return self.bed.port_open(ns, host, port, timeout=10)

    # -- before and after ---------------------------------------------------------------------

    def remove_leftovers(self) -> None:
        """What a crashed (kill -9) earlier run with this prefix left: its processes (all
        inside its namespaces), the namespaces, the work directory."""
        from testsupport.testbed import existing_namespaces, pid_alive

        pidfile = self.work / "demo.pid"
        if pidfile.exists():
            try:
                pid = int(pidfile.read_text().split()[0])
            except (ValueError, IndexError):
                pid = 0
            if pid and pid != os.getpid() and pid_alive(pid) and "demo" in _cmdline(pid):
                raise DemoError(
                    f"another demo with prefix {self.prefix!r} is running "
                    f"(pid {pid}); stop it or use --prefix"
                )
        stale = [ns for ns in existing_namespaces() if ns.startswith(f"{self.prefix}-")]
        if stale or self.work.exists():
            self.display.say(
                f"removing what an earlier demo left: {len(stale)} namespaces"
                + (f", {self.work}" if self.work.exists() else "")
            )
        self.bed.destroy()
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.failed_dir, ignore_errors=True)

    def drop_gateway_link(self) -> None:
        """Close the control connection, if open (quietly: the gateway may be gone); the next
        poll opens a new one."""
        if self._ctl is not None:
            try:
                self._ctl.close()
            except Exception:  # noqa: BLE001
                pass
            self._ctl = None

    def cleanup(self) -> None:
        """Stop everything, delete every namespace and the work directory. Safe to call
        twice; never raises."""
        self.stop_event.set()
        for fwd in self.forwards:
            fwd.stop()
        self.forwards.clear()
        self.drop_gateway_link()
        procs = [p.proc for p in self.phones if p.proc is not None] + list(self.services.values())
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + 4
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    pass
        self.services.clear()
        try:
            self.bed.destroy()  # kills whatever still runs in the namespaces, deletes them
        except Exception as exc:  # noqa: BLE001
            self.display.say(f"clean-up: {exc}")
        if self.opts.keep_artifacts and self.work.exists():
            self.keep_artifacts(Path(self.opts.keep_artifacts))
        shutil.rmtree(self.work, ignore_errors=True)

    def keep_artifacts(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.work.rglob("*")):
            if not path.is_file() or path.suffix in (".bin", ".sock", ".db-wal", ".db-shm"):
                continue
            if path.suffix in (".db",) or path.name in ("voucher.key", "portal.secret"):
                continue
            target = dest / path.relative_to(self.work)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copy2(path, target)
            except OSError:
                pass
        (dest / "summary.json").write_text(
            json.dumps(
                {
                    "prefix": self.prefix,
                    "duration": self.opts.duration,
                    "expectations": [
                        {"ok": ok, "what": what, "detail": detail}
                        for ok, what, detail in self.results
                    ],
                    "notes": self.notes,
                    "phones": [
                        {
                            "ns": p.ns,
                            "role": p.role,
                            "mac": p.mac,
                            "ip": p.ip,
                            "option114": p.option114,
                            "checks": p.checks,
                            "metrics": p.metrics,
                            "last_session": p.last_session,
                        }
                        for p in self.phones
                    ],
                },
                indent=2,
                default=str,
            )
        )

    # -- building the village --------------------------------------------------------------------

    def build(self) -> None:
        self.bed.build()
        # The province: the collector's own namespace, one hop behind the "internet".
        self.bed.add_host("prov", via=self.bed.up, link="prov0", gateway_ip=PROV_GW, ip=PROV_IP)
        self.bed.run(self.bed.up, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.build_management()
        roles = list(ROLES) + ["browser"] * (self.opts.phones - len(ROLES)) + ["you"]
        for i, role in enumerate(roles, start=1):
            ph = self.bed.add_phone(i, address=False)
            lease_dir = self.work / "dhcp" / ph.ns
            lease_dir.mkdir(parents=True)
            self.phones.append(Phone(index=i, role=role, ns=ph.ns, mac=ph.mac, lease_dir=lease_dir))
        self.step(
            f"namespaces: {self.bed.gw} (gateway), {self.bed.up} (internet, "
            f"198.51.100.10), {self.prov} (province, {PROV_IP}), "
            f"{len(self.phones)} phones on br-lan"
        )

    def build_management(self) -> None:
        """The kasir's laptop on the operator network: a namespace on a veth to the gateway,
        192.168.88.10 → 192.168.88.1 (the gateway routes it to the portal's LAN address)."""
        self.bed.add_host("mgmt", via=self.bed.gw, link="mgmt0", gateway_ip=MGMT_GW_IP, ip=MGMT_IP)

    def start_upstream(self) -> None:
        www = self.work / "www"
        www.mkdir()
        filler = "<p>" + ("Harga sawit dan karet di Jambi hari ini. " * 400) + "</p>"
        (www / "index.html").write_text(
            PAGE.format(title="Berita Jambi", text="Selamat datang di internet.", filler="")
        )
        (www / "berita.html").write_text(
            PAGE.format(title="Berita desa", text="Musim tanam padi dimulai.", filler=filler)
        )
        (www / "harga-sawit.html").write_text(
            PAGE.format(title="Harga sawit", text="Rp 2.950/kg", filler=filler)
        )
        chunk = os.urandom(1 << 20)
        with open(www / "video.bin", "wb") as fh:
            for _ in range(16):
                fh.write(chunk)
        up = self.bed.up
        self.service(
            "upstream-http",
            up,
            [
                sys.executable,
                "-m",
                "http.server",
                "80",
                "--bind",
                "198.51.100.10",
                "--directory",
                str(www),
            ],
        )
        # HTTPS answers too: a walled phone that gets no answer proves the gateway dropped
        # it, not that nobody listened.
        self.service(
            "upstream-https",
            up,
            [
                sys.executable,
                "-m",
                "http.server",
                "443",
                "--bind",
                "198.51.100.10",
                "--directory",
                str(www),
            ],
        )
        self.service("upstream-iperf3", up, ["iperf3", "-s", "-B", "198.51.100.10"])

    def register_at_collector(self) -> str:
        from testsupport.testbed import write_toml

        self.collector_cfg = write_toml(
            self.work / "collector.toml",
            {
                "collector": {
                    "database_url": f"sqlite:///{self.work}/collector.db",
                    "bind": f"{PROV_IP}:{COLLECTOR_PORT}",
                    "workers": 1,
                    "threads": 4,
                    "dashboard_public": False,
                    "language": "id",
                }
            },
        )
        self.collector_cfg.chmod(0o600)  # the database's place and the collector's keys

        reg = _run(
            self.hotspot(self.collector_cfg, "collector", "gateways", "add", GATEWAY_ID, "--json"),
            cwd=self.work,
        )
        if reg.returncode != 0:
            raise DemoError(f"collector gateways add: {reg.stderr.strip()}")
        tok = _run(
            self.hotspot(self.collector_cfg, "collector", "tokens", "create", "demo", "--json"),
            cwd=self.work,
        )
        if tok.returncode != 0:
            raise DemoError(f"collector tokens create: {tok.stderr.strip()}")
        self.api_token = json.loads(tok.stdout)["token"]
        self.step(f"collector: gateway {GATEWAY_ID} registered, API token made")
        return json.loads(reg.stdout)["secret"]

    def settings(self) -> dict[str, Any]:
        """The village's hotspot.toml, without [sync] (added once the collector gave the
        secret)."""
        from testsupport.testbed import portal_settings

        return {
            "village": {"name": VILLAGE, "timezone": "Asia/Jakarta"},
            **self.bed.gateway_settings(self.work, uplink_kbps=50_000, flush_seconds=2),
            "tiers": {"free": FREE, "premium": PREMIUM},
            "portal": portal_settings(
                self.work, workers=2, threads=16, contact="Kios BUMDes di balai desa (demo)"
            ),
            "packages": {
                "harian": {
                    "title": "Harian",
                    "price": 5000,
                    "tier": "premium",
                    "hours": 24,
                    "data_mb": 1000,
                }
            },
            "wifi": {"enabled": False},
            "operator": {"management_networks": [MGMT_NETWORK]},
            "dhcp": {
                "range_start": DHCP_RANGE[0],
                "range_end": DHCP_RANGE[1],
                "lease_minutes": 60,
                "upstream_dns": ["198.51.100.10"],
            },
            "privacy": {"pseudonym_key": self.pseudonym_key},
        }

    def write_config(self, secret: str) -> None:
        from hotspot import config as config_mod
        from testsupport.testbed import write_toml

        data = self.settings()
        data["sync"] = {
            "upstream_url": f"http://{PROV_IP}:{COLLECTOR_PORT}",
            "gateway_id": GATEWAY_ID,
            "secret": secret,
            "interval_seconds": 3,
            "health_seconds": 5,
            "backoff_max_seconds": 4,
            "timeout_seconds": 10,
        }
        self.socket = self.work / "control.sock"
        self.config = write_toml(self.work / "hotspot.toml", data)
        self.config.chmod(0o600)  # the collector's secret is in it
        self.cfg = config_mod.load(str(self.config))

    def start_dhcp(self) -> None:
        """dnsmasq with the configurations ``hotspot provision`` renders, in the gateway
        namespace: the full resolver with DHCP, and the walled resolver the gateway sends
        the DNS of phones not logged in to (as the device runs them); dhclient in every
        phone."""
        from hotspot import config as config_mod
        from provisioning import render as R
        from testsupport import dhclient

        cfg = config_mod.load(overrides=self.settings())
        files = {f.path: f for f in R.render(cfg, b"", hotspot=sys.executable)}
        if cfg.dns_filter.conf_dir:
            # dnsmasq includes the resolvers' live files (the garden by name, the portal's
            # name, option 114): the generation the gateway writes at its start, made first
            # (on a device, tmpfiles makes an empty one)
            from gateway import dnsapply
            from hotspot import dnsfilter

            live = dnsfilter.render(dnsapply.settings_of(cfg), [])
            dnsfilter.switch_to(
                cfg.dns_filter.conf_dir,
                dnsfilter.install_generation(cfg.dns_filter.conf_dir, live),
            )
        conf = self.work / "dnsmasq.conf"
        conf.write_bytes(files[R.DNSMASQ].content)
        conf.chmod(0o644)
        self.api_url = R.api_url(cfg)
        self.service(
            "dnsmasq",
            self.bed.gw,
            [
                "dnsmasq",
                "--keep-in-foreground",
                f"--conf-file={conf}",
                f"--dhcp-leasefile={self.work}/dnsmasq.leases",
                f"--pid-file={self.work}/dnsmasq.pid",
                "--no-hosts",
                "--log-facility=-",
                "--log-dhcp",
            ],
        )
        self.wait(
            "dnsmasq listening",
            lambda: self.port_open(self.bed.gw, GW_LAN_IP, 53),
            15,
            "dnsmasq",
            interval=0.2,
        )
        walled = self.work / "walled-dns.conf"
        walled.write_bytes(files[R.WALLED_DNS_CONF].content)
        walled.chmod(0o644)
        port = cfg.network.walled_dns_port
        self.service(
            "walled-dns",
            self.bed.gw,
            [
                "dnsmasq",
                "--keep-in-foreground",
                f"--conf-file={walled}",
                f"--pid-file={self.work}/walled-dns.pid",
                "--log-facility=-",
            ],
        )
        self.wait(
            "the walled resolver listening",
            lambda: self.port_open(self.bed.gw, GW_LAN_IP, port),
            15,
            "walled-dns",
            interval=0.2,
        )
        first = {"heavy": 0, "voucher": 1, "free": 2}  # the longest scripts first
        self.dhcp_started = time.monotonic()
        for ph in sorted(self.phones, key=lambda p: (first.get(p.role, 3), p.index)):
            self.service(
                f"dhclient-{ph.name}",
                ph.ns,
                dhclient.command(ph.lease_dir, "eth0", timeout=60, retry=5),
            )
        self.step(
            f"dnsmasq serving DHCP {DHCP_RANGE[0]}–{DHCP_RANGE[1]} with option 114 "
            f"{self.api_url}, DNS on 53 (logged in) and {port} (not logged in: portal, "
            f"probes, walled garden only); dhclient in every phone"
        )

    def check_leases(self) -> list[Phone]:
        """Phones whose lease arrived since the last look (dhclient's script wrote it)."""
        from testsupport import dhclient

        new = []
        for ph in self.phones:
            if ph.ip is None and (ph.lease_dir / dhclient.BOUND).exists():
                env = dhclient.lease_env(ph.lease_dir / dhclient.BOUND)
                with self.lock:
                    ph.ip = env.get("new_ip_address")
                    ph.option114 = env.get("new_rfc8910_captive_portal")
                    ph.lease_seconds = time.monotonic() - self.dhcp_started
                self.step(
                    f"{ph.name} ({ph.role}): DHCP lease {ph.ip} after "
                    f"{ph.lease_seconds:.1f} s, option 114 {ph.option114}"
                )
                new.append(ph)
        return new

    def start_gateway(self) -> None:
        from hotspot.control import ControlClient

        self.service("gateway", self.bed.gw, self.hotspot(self.config, "gateway", "run"))

        def up() -> bool:
            if not self.socket.exists():
                return False
            try:
                with ControlClient(str(self.socket)) as ctl:
                    ctl.call("ping")
                return True
            except Exception:  # noqa: BLE001 - still starting
                return False

        self.wait("the gateway's control socket", up, 40, "gateway")
        self.step("gateway running (hotspot gateway run): nftables, HTB, session engine")

    def start_collector(self) -> None:
        self.service("collector", self.prov, self.hotspot(self.collector_cfg, "collector", "run"))

    def wait_collector(self) -> None:
        self.wait(
            "the collector",
            lambda: self.port_open(self.prov, PROV_IP, COLLECTOR_PORT),
            40,
            "collector",
            interval=0.3,
        )
        self.step(
            f"collector running (hotspot collector run) at {PROV_IP}:{COLLECTOR_PORT} on SQLite"
        )

    def start_portal(self) -> None:
        self.service("portal", self.bed.gw, self.hotspot(self.config, "portal", "run"))

    def wait_portal(self) -> None:
        self.wait(
            "the portal",
            lambda: self.port_open(self.bed.gw, GW_LAN_IP, PORTAL_PORT),
            40,
            "portal",
            interval=0.3,
        )
        self.wait("the voucher key", lambda: (self.work / "voucher.key").exists(), 10, "portal")
        self.step(f"portal running (hotspot portal run) at http://{GW_LAN_IP}:{PORTAL_PORT}/")

    def start_sync(self) -> None:
        self.service("sync", self.bed.gw, self.hotspot(self.config, "sync", "run"))
        self.step("sync agent running (hotspot sync run), reporting every 3 s")

    def make_vouchers(self) -> None:
        """Vouchers for the voucher villager and a few for you, with ``hotspot vouchers
        create``."""
        out = _run(
            self.hotspot(
                self.config, "vouchers", "create", "--package", "harian", "--count", "4", "--json"
            ),
            cwd=self.work,
        )
        if out.returncode != 0:
            raise DemoError(f"hotspot vouchers create: {out.stderr.strip()}")
        self.codes = _codes_in(json.loads(out.stdout))
        if len(self.codes) < 1:
            raise DemoError("hotspot vouchers create gave no voucher codes")
        self.step(f"{len(self.codes)} vouchers of package “Harian” made (hotspot vouchers create)")

    def make_operator(self) -> None:
        password = secrets.token_urlsafe(9)
        out = _run(
            self.hotspot(
                self.config,
                "operators",
                "add",
                "demo",
                "--role",
                "admin",
                "--full-name",
                "Operator demo",
            ),
            input=password + "\n",
            cwd=self.work,
        )  # the password: one line on stdin
        if out.returncode != 0:
            self.notes.append(
                f"hotspot operators add demo --role admin: "
                f"{(out.stderr or out.stdout).strip()[:200]}"
            )
            return
        self.operator = ("demo", password)
        self.step("operator “demo” (admin) made (hotspot operators add)")

    def start_forwards(self) -> None:
        from demo.forward import Forward, HttpForward

        you = self.phones[-1]
        self.portal_fwd = HttpForward(
            "portal", you.ns, GW_LAN_IP, PORTAL_PORT, preferred=PORTAL_HOST_PORT
        ).start()
        self.collector_fwd = Forward(
            "collector", self.prov, PROV_IP, COLLECTOR_PORT, preferred=COLLECTOR_HOST_PORT
        ).start()
        # The console through the operator network, never the villagers' open LAN (#10.12).
        self.console_fwd = HttpForward(
            "console", self.mgmt, GW_LAN_IP, PORTAL_PORT, preferred=CONSOLE_HOST_PORT
        ).start()
        self.forwards += [self.portal_fwd, self.collector_fwd, self.console_fwd]

    # -- the villagers --------------------------------------------------------------------------

    def start_villagers(self, phones: list[Phone]) -> int:
        n = 0
        for ph in phones:
            if ph.role == "you" or ph.proc is not None:
                continue
            n += 1
            args = [sys.executable, "-m", "demo.villagers", ph.role]
            if ph.role == "voucher":
                args += ["--code", self.codes[0], "--seconds", str(IPERF_SECONDS)]
            log = open(self.logs / f"villager-{ph.name}.err", "ab")
            ph.proc = subprocess.Popen(
                ["ip", "netns", "exec", ph.ns, *args],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=self.work,
                env=same_tree_env(),
                start_new_session=True,
                text=True,
                bufsize=1,
            )
            log.close()
            threading.Thread(
                target=self._read_villager, args=(ph,), daemon=True, name=f"villager-{ph.name}"
            ).start()
        return n

    def _read_villager(self, ph: Phone) -> None:
        assert ph.proc is not None and ph.proc.stdout is not None
        with open(self.logs / f"villager-{ph.name}.jsonl", "a") as log:
            for line in ph.proc.stdout:
                log.write(line)
                log.flush()
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                with self.lock:
                    if "step" in msg:
                        ph.doing = msg["step"]
                    if "metric" in msg:
                        ph.metrics[msg["metric"]] = msg["value"]
                    if "error" in msg:
                        ph.errors.append(msg["error"])
                    changed = False
                    if "check" in msg:
                        new = (bool(msg["ok"]), msg.get("detail", ""))
                        old = ph.checks.get(msg["check"])
                        ph.checks[msg["check"]] = new
                        changed = old is None or old[0] != new[0]
                if "check" in msg and changed:
                    mark = "✓" if msg["ok"] else "✗"
                    self.step(
                        f"{ph.name} ({ph.role}) {mark} {msg['check']}: {msg.get('detail', '')}"
                    )
                if "error" in msg:
                    self.step(f"{ph.name} ({ph.role}) error: {msg['error']}")
        ph.exit_code = ph.proc.wait()

    # -- watching ---------------------------------------------------------------------------------

    def poll(self) -> None:
        """Ask the gateway about every phone (one control connection, reused)."""
        from hotspot.control import ControlClient

        try:
            if self._ctl is None:
                self._ctl = ControlClient(str(self.socket))
            sessions = {s["mac"]: s for s in self._ctl.call("list")}
            infos = {}
            for ph in self.phones:
                if ph.mac not in sessions and ph.ip:
                    infos[ph.mac] = self._ctl.call("client", mac=ph.mac)
        except Exception as exc:  # noqa: BLE001 - the gateway restarting, or gone
            self.drop_gateway_link()
            self.gateway_error = str(exc)
            return
        now = time.monotonic()
        self.gateway_error = None
        with self.lock:
            for ph in self.phones:
                s = sessions.get(ph.mac)
                ph.session = s
                if s is not None:
                    ph.seen.add((s["tier"], s["source"]))
                    ph.samples.append((now, s["bytes_down"], s["bytes_up"]))
                    old = ph.samples[0]
                    span = now - old[0]
                    ph.rate_down = (s["bytes_down"] - old[1]) * 8 / span if span >= 0.5 else 0.0
                else:
                    ph.samples.clear()
                    ph.rate_down = 0.0
                    info = infos.get(ph.mac)
                    if info is not None:
                        last = info.get("last_session")
                        if last and (ph.last_session or {}).get("id") != last.get("id"):
                            used = last.get("bytes_down", 0) + last.get("bytes_up", 0)
                            self.step(
                                f"{ph.name} ({ph.role}): session ended by the gateway, "
                                f"reason {last.get('end_reason')} after {fmt_bytes(used)}"
                            )
                        ph.last_session = last
                        ph.allowance = info.get("allowance")
        self.poll_collector()

    def poll_collector(self) -> None:
        db = self.work / "collector.db"
        if not db.exists():
            return
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5)
            try:
                row = con.execute(
                    "SELECT count(DISTINCT client), count(*), "
                    "coalesce(sum(bytes_down), 0) FROM usage_hourly "
                    "WHERE gateway_id = ?",
                    (GATEWAY_ID,),
                ).fetchone()
            finally:
                con.close()
        except sqlite3.Error:
            return
        if row and tuple(row) != self.collector_stats:
            self.collector_stats = tuple(row)
            self.collector_seen_at = time.monotonic()

    def snapshot(self) -> Snapshot:
        with self.lock:
            rows = []
            for ph in self.phones:
                s = ph.session or {}
                last = ph.last_session or {}
                down = s.get("bytes_down", last.get("bytes_down") if last else None)
                up = s.get("bytes_up", last.get("bytes_up") if last else None)
                tier = s.get("tier") or (last.get("tier") if last else None) or "-"
                if s.get("source") == "voucher":
                    tier += " (voucher)"
                rows.append(
                    Row(
                        phone=ph.name,
                        role=ph.role,
                        mac=ph.mac,
                        ip=ph.ip or "-",
                        tier=tier,
                        state=ph.state,
                        down=fmt_bytes(down),
                        up=fmt_bytes(up),
                        rate=fmt_rate(ph.rate_down),
                        doing=ph.doing or ROLE_TEXT.get(ph.role, ""),
                    )
                )
            clients, records, down = self.collector_stats
        if self.acting_since is None:
            clock = "waiting for DHCP leases"
        else:
            clock = f"{time.monotonic() - self.acting_since:.0f} s" + (
                f" / {self.opts.duration} s" if self.opts.duration else " (Ctrl-C ends)"
            )
        title = f"{VILLAGE} · demo village “{self.prefix}” · {clock}"
        footer = [
            f"DHCP option 114 (RFC 8910): {getattr(self, 'api_url', '-')}",
            f"province collector: {records} usage records of {clients} pseudonymous "
            f"clients, {fmt_bytes(down)} down, from {GATEWAY_ID}",
        ]
        if self.gateway_error:
            footer.insert(0, f"gateway: not answering on its control socket ({self.gateway_error})")
        checks = [(ok, text) for ok, text, _ in self.expectations(final=False)]
        return Snapshot(title=title, rows=rows, footer=footer, checks=checks)

    # -- the verdict -----------------------------------------------------------------------------

    def by_role(self, role: str) -> list[Phone]:
        return [p for p in self.phones if p.role == role]

    def expectations(self, final: bool = True) -> list[tuple[bool | None, str, str]]:
        """(held? (None: not yet), what, detail) for every scripted expectation."""
        out: list[tuple[bool | None, str, str]] = []

        def villager(ph: Phone, name: str) -> tuple[bool | None, str]:
            got = ph.checks.get(name)
            if got is None:
                extra = f"; villager error: {ph.errors[-1]}" if ph.errors else ""
                return (False if final else None), f"did not happen{extra}"
            return got

        def add(ok: bool | None, what: str, detail: str) -> None:
            out.append((ok, what, detail))

        def as_gateway_saw(
            ok: bool | None, detail: str, ph: Phone, want: tuple[str, str], shown: Callable[[], str]
        ) -> tuple[bool | None, str]:
            """A villager's step is only done once the gateway showed the session it gives
            (``want`` = (tier, source)); ``shown`` describes it (read only when it exists)."""
            if ok and want not in ph.seen:
                tier, source = want
                return (False if final else None), (
                    f"{detail}; but the gateway never showed a session of tier {tier}, source {source}"
                )
            return ok, f"{detail}; gateway: {shown()}" if ok else detail

        with self.lock:
            # DHCP
            bad = [p.name for p in self.phones if not p.ip]
            wrong = [
                f"{p.name}: {p.option114!r}"
                for p in self.phones
                if p.ip and p.option114 != getattr(self, "api_url", None)
            ]
            lo, hi = (ipaddress.IPv4Address(a) for a in DHCP_RANGE)
            outside = [
                p.name for p in self.phones if p.ip and not lo <= ipaddress.IPv4Address(p.ip) <= hi
            ]
            ok: bool | None = not bad and not wrong and not outside
            slowest = max((p.lease_seconds or 0 for p in self.phones), default=0)
            add(
                ok if (final or ok) else None,
                "every phone got its address from dnsmasq over DHCP, with option 114",
                f"{len(self.phones) - len(bad)}/{len(self.phones)} leased in "
                f"{DHCP_RANGE[0]}–{DHCP_RANGE[1]}"
                + (f" within {slowest:.1f} s" if not bad else "")
                + f", option 114 = {getattr(self, 'api_url', '-')}"
                + (f"; no lease: {bad}" if bad else "")
                + (f"; wrong: {wrong}" if wrong else "")
                + (f"; outside the range: {outside}" if outside else ""),
            )
            for ph in self.by_role("free") + self.by_role("browser"):
                who = f"{ph.role} villager ({ph.name})"
                ok1, d1 = villager(ph, "redirect")
                add(ok1, f"{who}: http://198.51.100.10/ is redirected to the portal", d1)
                ok2, d2 = as_gateway_saw(
                    *villager(ph, "accept"), ph, ("free", "free"), lambda: "tier free, source free"
                )
                add(ok2, f"{who}: accepts the terms (CSRF form) → a free session", d2)
                ok3, d3 = villager(ph, "online")
                add(ok3, f"{who}: then reaches the upstream page", d3)
            for ph in self.by_role("voucher"):
                who = f"voucher villager ({ph.name})"
                ok1, d1 = as_gateway_saw(
                    *villager(ph, "redeem"),
                    ph,
                    ("premium", "voucher"),
                    lambda: f"tier premium, source voucher (code {self.codes[0]})",
                )
                add(ok1, f"{who}: redeems a voucher → premium", d1)
                bps = ph.metrics.get("iperf3_down_bps")
                want = PREMIUM["down_kbps"] * 1000
                if bps is None:
                    ok, d = (
                        villager(ph, "rate")
                        if "rate" in ph.checks
                        else (False if final else None, "no iperf3 result")
                    )
                else:
                    ok = RATE_TOLERANCE[0] * want <= bps <= RATE_TOLERANCE[1] * want
                    d = (
                        f"iperf3 -R: {bps / 1e6:.2f} Mbit/s for premium {want / 1e6:.2f} "
                        f"Mbit/s (free is {FREE['down_kbps'] * 1000 / 1e6:.2f})"
                    )
                add(ok, f"{who}: iperf3 download runs at the premium rate", d)
            for ph in self.by_role("heavy"):
                who = f"heavy villager ({ph.name})"
                last = ph.last_session or {}
                allowance = (ph.allowance or {}).get("free") or {}
                limit = FREE["daily_mb"] * 1_000_000
                if last.get("end_reason") == "quota":
                    used = allowance.get("bytes_used")
                    ok = bool(allowance.get("exhausted")) and used is not None and used >= limit
                    d = (
                        f"session ended with reason quota; today's free use "
                        f"{fmt_bytes(used)} of {fmt_bytes(limit)} (exhausted: "
                        f"{allowance.get('exhausted')}); the villager's download got "
                        f"{fmt_bytes(ph.metrics.get('heavy_bytes'))} in "
                        f"{ph.metrics.get('heavy_seconds', '?')} s"
                    )
                else:
                    ok = False if final else None
                    d = (
                        f"last session ended: {last.get('end_reason')}"
                        if last
                        else "the session has not ended"
                    )
                add(
                    ok,
                    f"{who}: the gateway ends the session with reason quota "
                    f"({FREE['daily_mb']} MB a day)",
                    d,
                )
                okw, dw = villager(ph, "walled")
                add(okw, f"{who}: walled again afterwards", dw)
                okp, dp = villager(ph, "page")
                add(okp, f"{who}: the portal shows “Jatah gratis hari ini sudah habis”", dp)
            for ph in self.by_role("walled"):
                who = f"walled phone ({ph.name})"
                ok, d = villager(ph, "never")
                if ph.seen:
                    ok, d = False, d + f"; but the gateway gave it a session: {sorted(ph.seen)}"
                add(ok, f"{who}: never logs in, nothing gets through", d)
        access = getattr(self, "host_access", None)
        out.append(
            (
                access[0] if access else (False if final else None),
                "the portal, operator console and collector answer on the forwarded "
                "localhost ports",
                access[1] if access else 'not checked (no lease for the "you" phone)',
            )
        )
        out.append(self.sync_expectation(final))
        return out

    def sync_expectation(self, final: bool) -> tuple[bool | None, str, str]:
        what = "the sync agent reports the village's usage to the collector"
        if not final:
            clients, records, down = self.collector_stats
            ok = True if records and down else None
            return ok, what, f"{records} records"
        return self._sync_verdict

    def check_host_access(self) -> None:
        """What a person at this machine would open, through the forwarded ports: the
        portal's splash (as the "you" phone), the operator console (logging in as the demo
        operator), the collector's dashboard (HTTP Basic: any name, the API token)."""
        import base64
        import http.cookiejar
        from urllib.parse import urlencode

        from demo.villagers import Forms

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar)
        )

        def get(
            url: str, headers: dict[str, str] | None = None, data: dict[str, str] | None = None
        ) -> tuple[int, str, str]:
            body = urlencode(data).encode() if data is not None else None
            req = urllib.request.Request(url, data=body, headers=headers or {})
            try:
                with opener.open(req, timeout=10) as resp:
                    return resp.status, resp.geturl(), resp.read(300_000).decode("utf-8", "replace")
            except urllib.error.HTTPError as exc:
                return exc.code, url, exc.read(300_000).decode("utf-8", "replace")
            except (OSError, urllib.error.URLError) as exc:
                return 0, url, str(exc)

        base = self.portal_fwd.url
        portal_status, _, body = get(base + "/")
        splash = portal_status == 200 and "Sambungkan" in body
        parts = [f"portal {base}/ → {portal_status}" + (" (the splash)" if splash else "")]
        # The console through the operator network (#10.12); on the open LAN the same path
        # shows only where to open it.
        lan_status, _, lan_body = get(base + "/operator/")
        lan_safe = lan_status in (403, 404) and 'name="password"' not in lan_body
        parts.append(
            f"/operator/ on the open LAN → {lan_status}"
            + (" (where to open it, no login form)" if lan_safe else " (the console in clear!)")
        )
        base = self.console_fwd.url
        op_status, op_url, op_body = get(base + "/operator/")
        if op_status == 404:
            op_ok = True  # not built yet: a note, not a failure
            parts.append("/operator/ → 404")
            self.notes.append(
                "the portal answers 404 at /operator/: the operator console's "
                "pages are not in this install yet"
            )
        elif self.operator is None:
            op_ok = op_status == 200
            parts.append(f"/operator/ → {op_status} (no demo operator to log in with)")
        else:
            forms = Forms()
            forms.feed(op_body)
            fields = forms.form("/operator/login") or {}
            fields.update(name=self.operator[0], password=self.operator[1])
            st, url, page = get(base + "/operator/login", data=fields)
            logged_in = st == 200 and "/operator/login" not in url
            op_ok = logged_in
            parts.append(
                f"/operator/ → login form; operator {self.operator[0]} logs in → "
                f"{st} {url.replace(base, '') or '/'}"
                + ("" if logged_in else " (still the login page)")
            )
        auth = base64.b64encode(f"demo:{self.api_token}".encode()).decode()
        coll_status, _, cbody = get(
            self.collector_fwd.url + "/", {"Authorization": f"Basic {auth}"}
        )
        dashboard = coll_status == 200 and GATEWAY_ID in cbody
        parts.append(
            f"collector {self.collector_fwd.url}/ → {coll_status}"
            + (" (the dashboard lists the village)" if dashboard else "")
        )
        self.host_access = (splash and dashboard and op_ok and lan_safe, "; ".join(parts))
        self.step(f"from this machine: {self.host_access[1]}")

    def check_collector(self, timeout: float = 15) -> None:
        """At the end: the collector's pull API (through the forwarded port) has usage for
        every phone that was online; for the heavy villager, whose session is over, the
        collector's bytes equal the gateway's to the byte."""
        from sqlalchemy import func, select
        from sqlalchemy.orm import Session

        from hotspot.db import make_engine
        from hotspot.model import HourlyUsage
        from hotspot.pseudonym import pseudonym

        what = "the sync agent reports the village's usage to the collector"
        key = self.pseudonym_key.encode()
        online = [p for p in self.phones if p.seen]
        heavy = self.by_role("heavy")
        engine = make_engine(self.cfg.database.url)
        deadline = time.monotonic() + timeout
        detail = ""
        try:
            while True:
                ok, detail = False, ""
                try:
                    rows = self._api_usage()
                except (OSError, ValueError, urllib.error.URLError) as exc:
                    rows, detail = [], f"GET /api/v1/usage: {exc}"
                got: dict[str, list[int]] = {}
                for r in rows:
                    t = got.setdefault(r["client"], [0, 0])
                    t[0] += r["bytes_down"]
                    t[1] += r["bytes_up"]
                if rows:
                    missing = [p.name for p in online if pseudonym(key, p.mac) not in got]
                    exact = []
                    with Session(engine) as s:
                        for p in heavy:
                            gw = s.execute(
                                select(
                                    func.coalesce(func.sum(HourlyUsage.bytes_down), 0),
                                    func.coalesce(func.sum(HourlyUsage.bytes_up), 0),
                                ).where(HourlyUsage.mac == p.mac)
                            ).one()
                            at_collector = got.get(pseudonym(key, p.mac), [0, 0])
                            exact.append((p, tuple(gw), tuple(at_collector)))
                    same = all(g == c for _, g, c in exact)
                    total = sum(v[0] for v in got.values())
                    ok = bool(online) and not missing and same
                    detail = (
                        f"GET /api/v1/usage?gateway={GATEWAY_ID}: {len(rows)} device-hours "
                        f"of {len(got)} pseudonymous clients, {fmt_bytes(total)} down"
                        + (f"; missing: {missing}" if missing else "")
                        + "".join(
                            f"; {p.name}: gateway {fmt_bytes(g[0])}/{fmt_bytes(g[1])}, "
                            f"collector {fmt_bytes(c[0])}/{fmt_bytes(c[1])}"
                            + (" (to the byte)" if g == c else " (differ)")
                            for p, g, c in exact
                        )
                    )
                elif not detail:
                    detail = "the collector has no usage from the village"
                if ok or time.monotonic() > deadline:
                    break
                time.sleep(1)
        finally:
            engine.dispose()
        self._sync_verdict = (ok, what, detail)

    def _api_usage(self) -> list[dict[str, Any]]:
        url = f"{self.collector_fwd.url}/api/v1/usage?gateway={GATEWAY_ID}&limit=10000"
        rows: list[dict[str, Any]] = []
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while url:
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.api_token}"})
            with opener.open(req, timeout=5) as resp:
                page = json.loads(resp.read())
            rows += page["items"]
            url = page.get("next")
            if url and url.startswith("/"):
                url = self.collector_fwd.url + url
        return rows

    # -- the whole run -----------------------------------------------------------------------------

    def setup(self) -> None:
        """Everything but the villagers, in the order that makes it quick: DHCP first (the
        phones' leases take longest), the collector's registration meanwhile."""
        self.work.mkdir(parents=True)
        self.work.chmod(0o755)  # dnsmasq drops to its own user and reads its file here
        self.logs.mkdir()
        (self.work / "demo.pid").write_text(f"{os.getpid()} hotspot demo\n")
        box: dict[str, Any] = {}

        def register() -> None:
            try:
                box["secret"] = self.register_at_collector()
            except Exception as exc:  # noqa: BLE001 - re-raised below
                box["error"] = exc

        reg = threading.Thread(target=register, name="register")
        reg.start()
        try:
            self.build()
            self.start_dhcp()
            self.start_upstream()
        finally:
            reg.join()
        if "error" in box:
            raise box["error"]
        self.write_config(box["secret"])
        self.start_collector()
        self.start_gateway()
        self.start_portal()
        self.start_forwards()
        self.wait_collector()
        self.wait_portal()
        self.start_sync()
        self.wait(
            "the upstream web server",
            lambda: self.port_open(self.bed.up, "198.51.100.10", 80),
            15,
            "upstream-http",
        )
        self.make_vouchers()
        self.make_operator()
        self.check_leases()
        self.show_access()

    def show_access(self) -> None:
        say = self.display.say
        you = self.phones[-1]
        say("")
        say(f"The village is up ({self.elapsed():.0f} s). From this machine:")
        say(
            f"  captive portal     {self.portal_fwd.url}/   (your browser is phone {you.name}, "
            f"MAC {you.mac})"
        )
        if self.operator:
            say(
                f"  operator console   {self.console_fwd.url}/operator/   user "
                f"{self.operator[0]}, password {self.operator[1]}"
            )
        else:
            say(
                f"  operator console   {self.console_fwd.url}/operator/   (not in this install "
                "yet: no demo operator made)"
            )
        say(
            f"  collector          {self.collector_fwd.url}/   any user name, password "
            f"{self.api_token}"
        )
        say(f"  vouchers for you   {', '.join(self.codes[1:])}")
        say(
            f"  work dir, logs     {self.work}   (removed at the end"
            + (f"; copied to {self.opts.keep_artifacts})" if self.opts.keep_artifacts else ")")
        )
        for note in self.notes:
            say(f"  note: {note}")
        say("")

    def act(self) -> None:
        """The villagers act (each as soon as its phone has a lease) while the table shows
        what the gateway sees. The --duration clock starts with the first villager (or
        after LEASE_WAIT seconds without any lease: then the DHCP expectation fails)."""
        entered = time.monotonic()
        self.display.begin()
        try:
            while True:
                started = self.start_villagers(
                    self.check_leases() + [p for p in self.phones if p.ip]
                )
                now = time.monotonic()
                if self.acting_since is None and (started or now - entered > LEASE_WAIT):
                    self.acting_since = now
                if self.phones[-1].ip and not hasattr(self, "_access_thread"):
                    self._access_thread = threading.Thread(
                        target=self.check_host_access, daemon=True, name="host-access"
                    )
                    self._access_thread.start()
                self.poll()
                self.display.tick()
                if (
                    self.opts.duration
                    and self.acting_since is not None
                    and now - self.acting_since >= self.opts.duration
                ):
                    break
                crashed = [
                    n
                    for n in ("gateway", "portal", "sync", "collector", "dnsmasq", "walled-dns")
                    if self.services[n].poll() is not None
                ]
                if crashed:
                    self.display.end()
                    raise DemoError(
                        f"{', '.join(crashed)} exited during the demo\n"
                        + "\n".join(self.log_tail(f"{n}.log") for n in crashed)
                    )
                time.sleep(max(0.05, 1.0 - (time.monotonic() - now)))
        finally:
            self.display.end()

    def verdict(self) -> bool:
        access = getattr(self, "_access_thread", None)
        if access is not None:
            access.join(timeout=30)
        self.check_collector()
        self.results = [(bool(ok), what, detail) for ok, what, detail in self.expectations()]
        say = self.display.say
        say("")
        say("Expectations:")
        for ok, what, detail in self.results:
            say(f"  {'✓' if ok else '✗'} {what}")
            if detail:
                say(f"      {detail}")
        passed = sum(ok for ok, _, _ in self.results)
        all_ok = passed == len(self.results)
        say(f"{passed}/{len(self.results)} expectations held")
        if not all_ok:
            for name in ("gateway.log", "portal.log", "sync.log"):
                say(self.log_tail(name, 15))
            for ph in self.phones:
                if ph.role != "you" and (
                    not ph.checks or any(not ok for ok, _ in ph.checks.values())
                ):
                    say(self.log_tail(f"villager-{ph.name}.jsonl", 12))
                    say(self.log_tail(f"villager-{ph.name}.err", 12))
                    say(self.log_tail(f"dhclient-{ph.name}.log", 8))
        return all_ok


def _codes_in(data: Any) -> list[str]:
    """Voucher codes in ``hotspot vouchers create --json`` output, whatever its shape."""
    import re

    pattern = re.compile(r"^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{2}$")
    found: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str) and pattern.match(x):
            found.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(data)
    return found


def run(opts: Options) -> int:
    """The ``hotspot demo`` command. 0: every expectation held; 1: one did not, or the
    village could not be built; 2: usage (not root, tools missing, another demo running);
    130/143: interrupted during a timed run."""
    if os.geteuid() != 0:
        print("hotspot demo: must run as root (it builds network namespaces)", file=sys.stderr)
        return 2
    if opts.prefix in RESERVED_PREFIXES:
        print(
            f"hotspot demo: prefix {opts.prefix!r} belongs to the tests' villages; choose another",
            file=sys.stderr,
        )
        return 2
    missing = packages.missing_packages()
    if missing and not opts.install:
        print(
            f"hotspot demo: missing programs; apt-get install {' '.join(missing)}", file=sys.stderr
        )
        return 2
    if missing:
        try:
            packages.install(missing, sys.stderr)
        except packages.InstallFailed as exc:
            print(f"hotspot demo: {exc}", file=sys.stderr)
            return 2
    demo = Demo(opts)

    def on_signal(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    code = 1
    try:
        try:
            demo.remove_leftovers()
            demo.owned = True
            demo.setup()
            demo.act()
            code = 0 if demo.verdict() else 1
        except (KeyboardInterrupt, Interrupted) as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            demo.display.end()
            demo.display.say(f"\ninterrupted ({signal.Signals(signum).name}): cleaning up")
            if demo.acting_since is not None and not opts.duration:
                # Without --duration, Ctrl-C is the normal end: say what held.
                code = 0 if demo.verdict() else 1
            else:
                code = 128 + signum
        except DemoError as exc:
            demo.display.end()
            if not demo.owned:  # another demo runs with this prefix: touch nothing of it
                print(f"hotspot demo: {exc}", file=sys.stderr)
                return 2
            demo.display.say(f"hotspot demo: {exc}")
            code = 1
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)  # the clean-up is not to be interrupted
        try:
            if demo.owned:
                if code == 1 and not opts.keep_artifacts:
                    opts.keep_artifacts = str(demo.failed_dir)
                demo.cleanup()
                demo.display.say(
                    f"cleaned up: namespaces {demo.prefix}-*, their processes, {demo.work}"
                )
                if code == 1:
                    demo.display.say(f"the logs are kept in {opts.keep_artifacts}")
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return code
