"""A simulated village in network namespaces, for the integration tests, the benchmark and
the demo.

    <p>-cN (phones) ──veth──┐
                            br-lan ── <p>-gw ── eth0 ──veth── <p>-up ("the internet")
    <p>-cM ──veth───────────┘          10.10.0.1/22   192.0.2.1    192.0.2.2, 198.51.100.10

Client i has MAC 02:00:00:00:<i> and address 10.10.0.<10+i>. The upstream host answers at
198.51.100.10 (an address of TEST-NET-2, routed to it by the gateway only).
Everything is named with a prefix; :meth:`Testbed.destroy` (and a fresh :meth:`build`)
removes every namespace with that prefix, so a crashed run never blocks the next.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotspot.errors import ErrorCode, HotspotError

log = logging.getLogger(__name__)

UPSTREAM_IP = "198.51.100.10"
WAN_GW_IP = "192.0.2.1"
WAN_UP_IP = "192.0.2.2"


class TestbedError(HotspotError):
    code = ErrorCode.TESTBED


def sh(
    args: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(args), capture_output=True, text=True, input=input, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise TestbedError(
            f"{shlex.join(args)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
        )
    return proc


def veth(name: str, ns: str, peer: str, peer_ns: str, *, address: str | None = None) -> None:
    """A veth pair: ``name`` in namespace ``ns`` (with MAC ``address`` if given), ``peer`` in
    ``peer_ns``."""
    mac = ["address", address] if address else []
    end = ["ip", "link", "add", name, "netns", ns, *mac]
    sh([*end, "type", "veth", "peer", "name", peer, "netns", peer_ns])


def stop_process_group(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM to the process group ``proc`` leads; SIGKILL if it has not ended in
    ``timeout`` seconds."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def existing_namespaces() -> list[str]:
    out = sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def run_prefix(base: str) -> str:
    """A namespace prefix of this process (``base-<pid>``): two test runs on one machine (two
    people, or CI and a person) never tear down each other's testbeds."""
    return f"{base}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_testbeds(base: str) -> None:
    """Remove what runs that died left behind: testbeds ``base-<pid>-…`` whose pid is gone."""
    stale = re.compile(rf"^{re.escape(base)}-(\d+)-")
    pids = {int(m.group(1)) for ns in existing_namespaces() if (m := stale.match(ns))}
    for pid in sorted(pids):
        if pid != os.getpid() and not pid_alive(pid):
            Testbed(prefix=f"{base}-{pid}").destroy()


def _toml_value(value: Any) -> str:
    """JSON strings, numbers, booleans and lists read the same in TOML; a table inside a list
    (a tier's ``schedule``) is an inline table."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def write_toml(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write nested dicts of scalars and lists as a TOML file (enough for hotspot.toml)."""
    lines: list[str] = []

    def table(prefix: str, tbl: dict[str, Any]) -> None:
        scalars = {k: v for k, v in tbl.items() if not isinstance(v, dict)}
        if scalars:
            lines.append(f"[{prefix}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in tbl.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}", v)

    for section, tbl in data.items():
        table(section, tbl)
    out = Path(path)
    out.write_text("\n".join(lines) + "\n")
    return out


def portal_settings(workdir: str | os.PathLike[str], **settings: Any) -> dict[str, Any]:
    """The ``[portal]`` table of a portal the tests, the bench or the demo start: it runs as
    whoever starts it (no switch to the ``hotspot`` user), its secret and voucher key in
    ``workdir``; ``settings`` add to these (or replace them)."""
    return {
        "user": "",
        "secret_key_file": str(Path(workdir) / "portal.secret"),
        "voucher_key_file": str(Path(workdir) / "voucher.key"),
        **settings,
    }


@dataclass
class Phone:
    ns: str
    mac: str
    ip: str
    ifname: str = "eth0"


@dataclass
class Crowd:
    """Many clients in one namespace: macvlan interfaces on one veth into the bridge, each
    with its own MAC and address (see :meth:`Testbed.add_crowd`)."""

    ns: str
    members: list[Phone] = field(default_factory=list)


@dataclass
class Testbed:
    prefix: str = "hs"
    clients: int = 2
    lan_address: str = "10.10.0.1/22"
    phones: list[Phone] = field(default_factory=list)
    _procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def gw(self) -> str:
        return f"{self.prefix}-gw"

    @property
    def up(self) -> str:
        return f"{self.prefix}-up"

    def ns_exec(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def run(
        self, ns: str, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return sh(self.ns_exec(ns) + list(args), check=check, timeout=timeout, input=input)

    def ip_batch(self, ns: str, *commands: str, timeout: float = 60) -> None:
        """The ``ip`` commands (``"link set eth0 up"``, …) in ``ns``, in one ``ip -batch``."""
        self.run(ns, "ip", "-batch", "-", input="\n".join(commands) + "\n", timeout=timeout)

    def nft_element(self, verb: str, set_name: str, element: str) -> None:
        """``nft VERB element inet hotspot SET ELEMENT`` in the gateway: a change made by hand
        to the gateway's table."""
        self.run(self.gw, "nft", verb, "element", "inet", "hotspot", set_name, element)

    def popen(
        self,
        ns: str,
        *args: str,
        log_path: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        proc = subprocess.Popen(
            self.ns_exec(ns) + list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    def gateway_settings(
        self, workdir: str | os.PathLike[str], *, uplink_kbps: int = 100_000, flush_seconds: int = 5
    ) -> dict[str, Any]:
        """The hotspot.toml tables of the real gateway on this testbed: its bridge, uplink
        and LAN address, a backhaul of ``uplink_kbps`` each way, its database and control
        socket in ``workdir``, a tick of half a second (so that waiting for one is short)."""
        net = ipaddress.IPv4Interface(self.lan_address).network
        return {
            "network": {
                "lan_interface": "br-lan",
                "wan_interface": "eth0",
                "lan_address": self.lan_address,
                "uplink_down_kbps": uplink_kbps,
                "uplink_up_kbps": uplink_kbps,
            },
            "database": {"url": f"sqlite:///{workdir}/hotspot.db"},
            "control": {"socket": str(Path(workdir) / "control.sock")},
            "gateway": {"tick_seconds": 0.5, "flush_seconds": flush_seconds},
            # The resolvers' live files and the blocklists in the workdir, never the host's.
            "dns_filter": {
                "conf_dir": str(Path(workdir) / "dns-live"),
                "list_dir": str(Path(workdir) / "blocklists"),
            },
            # A small DHCP pool (hosts 10-40, the phones among them): the gateway makes a
            # class and a leaf for every pool address at start-up, and a /22's thousand
            # would cost every test's start seconds (addresses outside get theirs at login).
            "dhcp": {
                "range_start": str(net.network_address + 10),
                "range_end": str(net.network_address + 40),
            },
        }

    # -- building --------------------------------------------------------------------------

    def build(self) -> Testbed:
        self.destroy()
        lan = ipaddress.IPv4Interface(self.lan_address)
        for ns in (self.gw, self.up):
            sh(["ip", "netns", "add", ns])
            self.run(ns, "ip", "link", "set", "lo", "up")
        gw, up = self.gw, self.up
        self.ip_batch(
            gw, "link add br-lan type bridge", "link set br-lan up", f"addr add {lan} dev br-lan"
        )
        veth("eth0", gw, "eth0", up)
        self.ip_batch(
            gw,
            "link set eth0 up",
            f"addr add {WAN_GW_IP}/24 dev eth0",
            f"route add default via {WAN_UP_IP}",
        )
        self.ip_batch(
            up,
            "link set eth0 up",
            f"addr add {WAN_UP_IP}/24 dev eth0",
            f"addr add {UPSTREAM_IP}/32 dev lo",
        )
        # The upstream host must not answer for the LAN itself: only via the gateway's NAT.
        self.run(gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i in range(1, self.clients + 1):
            self.add_phone(i)
        return self

    def add_phone(self, i: int, address: bool = True) -> Phone:
        lan = ipaddress.IPv4Interface(self.lan_address)
        ns = f"{self.prefix}-c{i}"
        mac = f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}"
        ip = str(lan.network.network_address + 10 + i)
        sh(["ip", "netns", "add", ns])
        veth("eth0", ns, f"lan{i}", self.gw, address=mac)
        self.run(self.gw, "ip", "link", "set", f"lan{i}", "master", "br-lan", "up")
        cmds = ["link set lo up", "link set eth0 up"]
        if address:
            cmds += [
                f"addr add {ip}/{lan.network.prefixlen} dev eth0",
                f"route add default via {lan.ip}",
            ]
        self.ip_batch(ns, *cmds)
        phone = Phone(ns=ns, mac=mac, ip=ip)
        self.phones.append(phone)
        return phone

    def add_crowd(
        self, n: int, *, first_host: int = 20, name: str = "crowd", static_neighbours: bool = True
    ) -> Crowd:
        """``n`` clients in one namespace ``<p>-<name>``: a veth into br-lan and on it ``n``
        macvlan interfaces ``m0``…, member i with MAC 02:cc:00:00:<i> and host index
        ``first_host + i`` of the LAN. Each member has its own default route (metric 100+i),
        so a socket bound to its interface (SO_BINDTODEVICE, iperf3 ``--bind-dev``) leaves
        through it with its own MAC. ``static_neighbours`` writes permanent neighbour entries
        on both sides, so 1000 members cause no ARP storm (and the gateway knows their MACs,
        as it would after the portal's first page); permanent entries are also exempt from
        the (machine-wide) neighbour table's garbage-collection limit."""
        lan = ipaddress.IPv4Interface(self.lan_address)
        net = lan.network
        if first_host < 1 or first_host + n > net.num_addresses - 1:
            raise TestbedError(f"{n} members from host {first_host} do not fit in {net}")
        ns = f"{self.prefix}-{name}"
        peer = f"{name}0"[:15]
        sh(["ip", "netns", "add", ns])
        sysctls = [
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            # only the member that owns an address answers ARP for it
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            # IPv4 only: with IPv6 each member's link-local address, its duplicate address
            # detection and its multicast listener reports kept this machine's kernel workers
            # busy for minutes at 10,000 members (bench/README.md, "The crowd's IPv6").
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]
        self.run(ns, "sysctl", "-qw", *sysctls)
        veth("eth0", ns, peer, self.gw)
        # A bridge without an explicit address takes its smallest port's: pin it, so the
        # members' static neighbour entries stay right.
        gw_mac = self.link_mac(self.gw, "br-lan")
        self.run(self.gw, "ip", "link", "set", "br-lan", "address", gw_mac)
        self.run(self.gw, "ip", "link", "set", peer, "master", "br-lan", "up")
        crowd = Crowd(ns=ns)
        for i in range(n):
            crowd.members.append(
                Phone(
                    ns=ns,
                    mac=f"02:cc:00:00:{i >> 8:02x}:{i & 0xFF:02x}",
                    ip=str(net.network_address + first_host + i),
                    ifname=f"m{i}",
                )
            )
        gw_ip = lan.ip
        m = crowd.members
        cmds = ["link set lo up", "link set eth0 up"]
        cmds += [
            f"link add {p.ifname} link eth0 address {p.mac} type macvlan mode bridge" for p in m
        ]
        cmds += [f"addr add {p.ip}/{net.prefixlen} dev {p.ifname} noprefixroute" for p in m]
        cmds += [f"link set {p.ifname} up" for p in m]
        cmds += [
            f"route add {net} dev {p.ifname} src {p.ip} metric {100 + i}" for i, p in enumerate(m)
        ]
        cmds += [
            f"route add default via {gw_ip} dev {p.ifname} metric {100 + i}"
            for i, p in enumerate(m)
        ]
        if static_neighbours:
            cmds += [
                f"neigh replace {gw_ip} lladdr {gw_mac} dev {p.ifname} nud permanent" for p in m
            ]
        self.ip_batch(ns, *cmds, timeout=300)
        if static_neighbours:
            self.gateway_neighbours([(p.ip, p.mac) for p in m])
        return crowd

    def gateway_neighbours(self, pairs: list[tuple[str, str]]) -> None:
        """Permanent neighbour entries (ip, mac) on the gateway's LAN bridge: the gateway
        then never has to ask for these MACs (ARP)."""
        self.ip_batch(
            self.gw,
            *(f"neigh replace {ip} lladdr {mac} dev br-lan nud permanent" for ip, mac in pairs),
            timeout=300,
        )

    def add_host(self, name: str, *, via: str, link: str, gateway_ip: str, ip: str) -> str:
        """A namespace ``<p>-<name>`` beside the village (the province's collector, the
        operator network's laptop): its ``eth0`` at ``ip``/24 is a veth to the namespace
        ``via``, whose end ``link`` is ``gateway_ip``/24, its default route. Returns its name."""
        ns = f"{self.prefix}-{name}"
        sh(["ip", "netns", "add", ns])
        self.run(ns, "ip", "link", "set", "lo", "up")
        veth(link, via, "eth0", ns)
        self.ip_batch(via, f"link set {link} up", f"addr add {gateway_ip}/24 dev {link}")
        self.ip_batch(
            ns,
            "link set eth0 up",
            f"addr add {ip}/24 dev eth0",
            f"route add default via {gateway_ip}",
        )
        return ns

    def link_mac(self, ns: str, ifname: str) -> str:
        return self.run(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()

    def port_open(self, ns: str, host: str, port: int, timeout: float = 60) -> bool:
        """Whether ``host:port`` accepts a TCP connection from inside ``ns`` (half a second)."""
        probe = (
            f"import socket,sys\ns=socket.socket()\ns.settimeout(0.5)\n"
            f"sys.exit(s.connect_ex(({host!r},{port})))"
        )
        return self.run(ns, "python3", "-c", probe, check=False, timeout=timeout).returncode == 0

    def wait_port(self, ns: str, host: str, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.port_open(ns, host, port):
                return
            time.sleep(0.1)
        raise TestbedError(f"nothing listens on {host}:{port} in {ns} after {timeout}s")

    def wait_path(self, path: str | os.PathLike[str], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if Path(path).exists():
                return
            time.sleep(0.05)
        raise TestbedError(f"{path} did not appear within {timeout}s")

    # -- services on the upstream host -----------------------------------------------------

    def start_upstream(self, webroot: str | os.PathLike[str], iperf: bool = True) -> None:
        Path(webroot).mkdir(parents=True, exist_ok=True)
        self.popen(
            self.up,
            "python3",
            "-m",
            "http.server",
            "80",
            "--bind",
            UPSTREAM_IP,
            "--directory",
            str(webroot),
        )
        # The HTTPS, QUIC and DNS ports answer too, so a test that gets no answer
        # proves the gateway dropped the packet, not that nobody listened.
        self.popen(
            self.up,
            "python3",
            "-m",
            "http.server",
            "443",
            "--bind",
            UPSTREAM_IP,
            "--directory",
            str(webroot),
        )
        self.wait_port(self.up, UPSTREAM_IP, 80)
        if iperf:
            self.popen(self.up, "iperf3", "-s", "-B", UPSTREAM_IP)
            self.wait_port(self.up, UPSTREAM_IP, 5201)

    # -- teardown --------------------------------------------------------------------------

    def stop_processes(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._procs.clear()

    def destroy(self) -> None:
        self.stop_processes()
        for ns in existing_namespaces():
            if ns.startswith(f"{self.prefix}-"):
                _kill_namespace_processes(ns)
                sh(["ip", "netns", "del", ns], check=False)
        self.phones.clear()

    def __enter__(self) -> Testbed:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _kill_namespace_processes(ns: str) -> None:
    pids = sh(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            continue
