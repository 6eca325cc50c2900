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
import logging
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from hotspot.errors import HotspotError

log = logging.getLogger(__name__)

UPSTREAM_IP = "198.51.100.10"
WAN_GW_IP = "192.0.2.1"
WAN_UP_IP = "192.0.2.2"


class TestbedError(HotspotError):
    code = "testbed"


def sh(args: Sequence[str], *, check: bool = True, input: str | None = None,
       timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, input=input,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise TestbedError(f"{shlex.join(args)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def existing_namespaces() -> list[str]:
    out = sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@dataclass
class Phone:
    ns: str
    mac: str
    ip: str
    ifname: str = "eth0"


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

    def run(self, ns: str, *args: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return sh(self.ns_exec(ns) + list(args), check=check, timeout=timeout, input=input)

    def popen(self, ns: str, *args: str, log_path: str | os.PathLike[str] | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        proc = subprocess.Popen(self.ns_exec(ns) + list(args), stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self._procs.append(proc)
        return proc

    # -- building --------------------------------------------------------------------------

    def build(self) -> "Testbed":
        self.destroy()
        lan = ipaddress.IPv4Interface(self.lan_address)
        for ns in (self.gw, self.up):
            sh(["ip", "netns", "add", ns])
            self.run(ns, "ip", "link", "set", "lo", "up")
        gw, up = self.gw, self.up
        batch = [
            f"link add br-lan type bridge",
            f"link set br-lan up",
            f"addr add {lan} dev br-lan",
        ]
        self.run(gw, "ip", "-batch", "-", input="\n".join(batch) + "\n")
        sh(["ip", "link", "add", "eth0", "netns", gw, "type", "veth", "peer", "name", "eth0",
            "netns", up])
        self.run(gw, "ip", "-batch", "-", input=(
            f"link set eth0 up\naddr add {WAN_GW_IP}/24 dev eth0\n"
            f"route add default via {WAN_UP_IP}\n"))
        self.run(up, "ip", "-batch", "-", input=(
            f"link set eth0 up\naddr add {WAN_UP_IP}/24 dev eth0\n"
            f"addr add {UPSTREAM_IP}/32 dev lo\n"))
        # The upstream host must not answer for the LAN itself: only via the gateway's NAT.
        self.run(gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i in range(1, self.clients + 1):
            self.add_phone(i)
        return self

    def add_phone(self, i: int, address: bool = True) -> Phone:
        lan = ipaddress.IPv4Interface(self.lan_address)
        ns = f"{self.prefix}-c{i}"
        mac = f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}"
        ip = str(lan.network.network_address + 10 + i)
        sh(["ip", "netns", "add", ns])
        sh(["ip", "link", "add", "eth0", "netns", ns, "address", mac, "type", "veth",
            "peer", "name", f"lan{i}", "netns", self.gw])
        self.run(self.gw, "ip", "link", "set", f"lan{i}", "master", "br-lan", "up")
        cmds = ["link set lo up", "link set eth0 up"]
        if address:
            cmds += [f"addr add {ip}/{lan.network.prefixlen} dev eth0",
                     f"route add default via {lan.ip}"]
        self.run(ns, "ip", "-batch", "-", input="\n".join(cmds) + "\n")
        phone = Phone(ns=ns, mac=mac, ip=ip)
        self.phones.append(phone)
        return phone

    def wait_port(self, ns: str, host: str, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        probe = (f"import socket,sys\ns=socket.socket()\ns.settimeout(0.5)\n"
                 f"sys.exit(s.connect_ex(({host!r},{port})))")
        while time.monotonic() < deadline:
            if self.run(ns, "python3", "-c", probe, check=False).returncode == 0:
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
        self.popen(self.up, "python3", "-m", "http.server", "80", "--bind", UPSTREAM_IP,
                   "--directory", str(webroot))
        # The HTTPS, QUIC and DNS ports answer too, so a test that gets no answer
        # proves the gateway dropped the packet, not that nobody listened.
        self.popen(self.up, "python3", "-m", "http.server", "443", "--bind", UPSTREAM_IP,
                   "--directory", str(webroot))
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

    def __enter__(self) -> "Testbed":
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
