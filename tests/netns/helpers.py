"""Helpers for the netns tests: traffic (curl, ping, UDP, iperf3), listeners that record
what reaches them, and readers of the gateway's kernel state (nft sets, HTB classes,
conntrack). Every command runs inside one of the testbed's namespaces; nothing here sends a
packet anywhere else.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway import dnsapply
from hotspot import dnsfilter
from hotspot.config import Config
from provisioning import render as R
from testsupport.testbed import UPSTREAM_IP, WAN_GW_IP, Phone, Testbed  # noqa: F401 (re-exported)

T = TypeVar("T")

GW_LAN_IP = "10.10.0.1"
PORTAL_PORT = 8080
PORTAL_URL = f"http://{GW_LAN_IP}:{PORTAL_PORT}"  # the portal, as a phone on the LAN opens it
PORTAL_MARKER = "hst-portal-stand-in-7f3a"  # what the portal stand-in answers
TABLE = ("inet", "hotspot")
NETSERVERS = str(Path(__file__).with_name("netservers.py"))
DNSQUERY = str(Path(__file__).with_name("dnsquery.py"))

# IPv6 addressing for the "no IPv6 forwarding" test (unique local addresses, never routed).
LAN6_GW = "fd00:1::1"
WAN6_GW = "fd00:2::1"
UPSTREAM6 = "fd00:2::2"


# -- small utilities ------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not true after {timeout} s")
        time.sleep(interval)


def after_ticks(gw: Any, n: int, timeout: float = 30) -> None:
    """Return once the gateway has made ``n`` more ticks (its ``status``): waiting on the event,
    not for the time a tick takes on a quiet machine. Ticks are at least ``tick_seconds``
    apart, so ``n`` ticks also span at least (n - 1) × tick_seconds: a flush due in that
    time has been made."""
    start = gw.call("status")["ticks"]
    wait_until(
        lambda: gw.call("status")["ticks"] >= start + n, timeout, interval=0.1, what=f"{n} ticks"
    )


def tier(down_kbps: int, up_kbps: int | None = None, **over: int) -> dict[str, int]:
    """A tier table with all six keys the config requires (no time or data limits)."""
    t = {
        "down_kbps": down_kbps,
        "up_kbps": down_kbps if up_kbps is None else up_kbps,
        "session_minutes": 0,
        "idle_minutes": 0,
        "daily_minutes": 0,
        "daily_mb": 0,
    }
    t.update(over)
    return t


# -- traffic --------------------------------------------------------------------------------


@dataclass
class CurlResult:
    rc: int
    code: str  # "000" when no HTTP answer came
    body: str


def curl(bed: Testbed, ns: str, url: str, *extra: str, timeout: float = 3) -> CurlResult:
    """GET ``url`` from ``ns``; small bodies only (they are returned as text)."""
    proc = bed.run(
        ns,
        "curl",
        "-s",
        "-m",
        str(timeout),
        "-w",
        "\n%{http_code}",
        *extra,
        url,
        check=False,
        timeout=timeout + 5,
    )
    body, _, code = proc.stdout.rpartition("\n")
    return CurlResult(proc.returncode, code.strip() or "000", body)


def curl_report_command(url: str, report: str, *extra: str, timeout: float | None = 3) -> list[str]:
    """curl GETting ``url``, throwing the body away and printing only ``report`` (a ``-w``
    format: ``%{http_code}``, ``%{size_download}``, …); ``timeout``: curl's ``-m`` (None:
    no limit of its own)."""
    limit = [] if timeout is None else ["-m", str(timeout)]
    return ["curl", "-s", "-o", "/dev/null", "-w", report, *limit, *extra, url]


def curl_report(
    bed: Testbed,
    ns: str,
    url: str,
    report: str,
    *extra: str,
    timeout: float | None = 3,
    check: bool = False,
) -> str:
    """What :func:`curl_report_command` prints, run in ``ns`` (``000`` for a status when no
    HTTP answer came)."""
    proc = bed.run(
        ns,
        *curl_report_command(url, report, *extra, timeout=timeout),
        check=check,
        timeout=60 if timeout is None else timeout + 5,
    )
    return proc.stdout.strip()


def portal_exchange(
    bed: Testbed, phone: Phone, path: str, jar: str, *, timeout: int = 20, **fields: str
) -> tuple[int, str]:
    """``path`` on the gateway's portal, from ``phone`` with its cookies kept in the file
    ``jar``: a GET, or a form POST of ``fields`` when there are any. Returns (status, body),
    status 0 when no HTTP answer came in ``timeout`` seconds."""
    data = []
    for name, value in fields.items():
        data += ["--data-urlencode", f"{name}={value}"]
    out = bed.run(
        phone.ns,
        "curl",
        "-s",
        "-m",
        str(timeout),
        "-c",
        jar,
        "-b",
        jar,
        "-w",
        "\n%{http_code}",
        *data,
        PORTAL_URL + path,
        check=False,
    )
    body, _, status = out.stdout.rpartition("\n")
    return int(status or 0), body


def splash_csrf_token(bed: Testbed, phone: Phone, jar: str) -> str:
    """The CSRF token of the portal's forms, from the splash ``phone`` opens (its cookies in
    the file ``jar``: the token is good for that cookie session)."""
    page = bed.run(phone.ns, "curl", "-s", "-m", "10", "-c", jar, "-b", jar, PORTAL_URL + "/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.stdout)
    assert token, page.stdout[:500]
    return token.group(1)


def ping(bed: Testbed, ns: str, addr: str, *, count: int = 1, wait: float = 1) -> bool:
    """True when at least one echo reply came back."""
    proc = bed.run(
        ns,
        "ping",
        "-n",
        "-q",
        "-c",
        str(count),
        "-W",
        str(wait),
        "-i",
        "0.2",
        addr,
        check=False,
        timeout=count * wait + 5,
    )
    return proc.returncode == 0


def run_many(
    bed: Testbed, commands: list[tuple[str, list[str]]], timeout: float = 10
) -> list[subprocess.CompletedProcess[str]]:
    """Run ``(namespace, argv)`` commands at the same time (probes that are expected to time
    out then cost one timeout, not one each)."""
    procs = [
        subprocess.Popen(
            bed.ns_exec(ns) + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for ns, argv in commands
    ]
    out = []
    for (ns, argv), proc in zip(commands, procs):
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        out.append(subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr))
    return out


def is_walled(bed: Testbed, ns: str, timeout: float = 1.0) -> bool:
    """Nothing but port 80 gets out, and port 80 gets no page from upstream: HTTPS port,
    plain HTTP and ping, probed at once."""
    t = str(timeout)
    https, http, icmp = run_many(
        bed,
        [
            (
                ns,
                ["curl", "-s", "-o", "/dev/null", "-m", t, f"http://{UPSTREAM_IP}:443/index.html"],
            ),
            (ns, ["curl", "-s", "-m", t, f"http://{UPSTREAM_IP}/index.html"]),
            (ns, ["ping", "-n", "-q", "-c", "1", "-W", t, UPSTREAM_IP]),
        ],
        timeout=timeout + 5,
    )
    return https.returncode != 0 and "upstream ok" not in http.stdout and icmp.returncode != 0


def is_online(bed: Testbed, ns: str) -> bool:
    return curl(bed, ns, f"http://{UPSTREAM_IP}/index.html").body == "<h1>upstream ok</h1>"


def authorize(gw: Any, phone: Phone, tier_name: str = "premium") -> dict[str, Any]:
    """Let ``phone`` out through the control socket (what ``clients allow`` does, without
    the CLI's start-up time; the CLI itself is exercised where it is the point)."""
    return gw.call("authorize", mac=phone.mac, ip=phone.ip, tier=tier_name, source="admin")


# Prints "ready", then the target address and "broadcast" or "unicast" of every ARP request
# that reaches the interface, until its standard input closes.
_ARP_REQUESTS = """
import select, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((sys.argv[1], 0))
print("ready", flush=True)
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if sys.stdin in ready:
        break
    frame = s.recv(2048)
    if frame[20:22] == b"\\x00\\x01":  # a request
        kind = "broadcast" if frame[0:6] == b"\\xff" * 6 else "unicast"
        print(socket.inet_ntoa(frame[38:42]), kind, flush=True)
"""


class ArpRequests:
    """The ARP requests a phone hears (what the gateway asks the LAN), read up to a control
    the caller provokes: see :func:`arp_requests`."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.proc = proc
        self.heard: list[tuple[str, str]] = []  # (target address, "broadcast" | "unicast")

    def until(self, ip: str) -> list[tuple[str, str]]:
        """Everything heard up to and including a request for ``ip`` (the control: the
        caller makes the gateway's kernel ask for an address nobody has)."""
        assert self.proc.stdout is not None
        while ip not in {target for target, _ in self.heard}:
            line = self.proc.stdout.readline()
            assert line, f"the ARP listener stopped; heard {self.heard}"
            target, kind = line.split()
            self.heard.append((target, kind))
        return self.heard


@contextlib.contextmanager
def arp_requests(bed: Testbed, phone: Phone) -> Iterator[ArpRequests]:
    """Listen for ARP requests on ``phone``'s interface, in its namespace, while the block
    runs; the listener is always stopped."""
    proc = subprocess.Popen(
        bed.ns_exec(phone.ns) + [sys.executable, "-c", _ARP_REQUESTS, phone.ifname],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield ArpRequests(proc)
    finally:
        proc.kill()
        proc.wait(10)


_SEND_UDP = """
import socket, sys
host, payload = sys.argv[1], sys.argv[3].encode()
port, sport, count = int(sys.argv[2]), int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
if sport:
    s.bind(("", sport))
for _ in range(count):
    try:
        s.sendto(payload, (host, port))
    except OSError:
        pass  # an ICMP error from an earlier datagram; the point is what the far end saw
"""


def send_udp(
    bed: Testbed,
    ns: str,
    host: str,
    port: int,
    payload: str = "probe",
    *,
    sport: int = 0,
    count: int = 3,
) -> None:
    """Send ``count`` datagrams (a few, so one lost packet cannot fake a result)."""
    bed.run(ns, sys.executable, "-c", _SEND_UDP, host, str(port), payload, str(sport), str(count))


def dns_queries(
    bed: Testbed, ns: str, queries: list[dict[str, Any]], timeout: float = 30
) -> list[dict[str, Any]]:
    """Ask DNS questions from ``ns``, all at once (see dnsquery.py): each query is a dict with
    ``server``, ``name`` and optionally ``type`` (A), ``tcp``, ``port`` (53), ``sport``,
    ``timeout`` (2 s); each result ``{"rcode", "answers": [[type, ttl, data]], "authority"}``
    or ``{"error": …}`` when nothing came back."""
    proc = bed.run(
        ns, sys.executable, DNSQUERY, "--batch", input=json.dumps(queries), timeout=timeout
    )
    return json.loads(proc.stdout)


def dns_query(
    bed: Testbed, ns: str, server: str, name: str, qtype: str = "A", **opts: Any
) -> dict[str, Any]:
    return dns_queries(bed, ns, [{"server": server, "name": name, "type": qtype, **opts}])[0]


# -- resolvers ------------------------------------------------------------------------------


def start_upstream_dns(bed: Testbed, work: Path, *answers: str) -> Path:
    """The "internet's" resolver: dnsmasq at UPSTREAM_IP in the upstream namespace, answering
    from ``answers`` alone (dnsmasq options: ``--address=/name/ip``, …) and logging every
    question. Returns its log once it answers."""
    log = work / "upstream.log"
    bed.popen(
        bed.up,
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        f"--listen-address={UPSTREAM_IP}",
        "--bind-interfaces",
        *answers,
        f"--pid-file={work}/upstream.pid",
        "--log-facility=-",
        "--log-queries",
        log_path=log,
    )
    bed.wait_port(bed.up, UPSTREAM_IP, 53)  # TCP DNS: up means ready
    return log


@dataclass
class GatewayResolvers:
    leases: Path  # the full resolver's DHCP leases
    log: Path  # the full resolver's
    walled_log: Path


def start_gateway_resolvers(
    bed: Testbed, village: Config, work: Path, *options: str
) -> GatewayResolvers:
    """The two resolvers of the device: dnsmasq.conf (the full one, with DHCP) and
    walled-dns.conf as ``hotspot provision`` renders them from ``village``, each run by its
    own dnsmasq in the gateway namespace (as root: it drops to the dnsmasq user, keeping what
    nftset= needs, so ``work`` must be readable by it), logging every question; ``options``
    go to the full one. Returns once both answer."""
    files = {f.path: f for f in R.render(village, b"", hotspot=sys.executable)}
    if village.dns_filter.conf_dir:
        # What the gateway writes at its start (gateway/dnsapply.py): the garden by name, the
        # portal's name and option 114 (from the certificate in [sync] cert_dir, if any).
        live = dnsfilter.render(dnsapply.settings_of(village), [])
        dnsfilter.switch_to(
            village.dns_filter.conf_dir,
            dnsfilter.install_generation(village.dns_filter.conf_dir, live),
        )
    full, walled = work / "dnsmasq.conf", work / "walled-dns.conf"
    full.write_bytes(files[R.DNSMASQ].content)
    walled.write_bytes(files[R.WALLED_DNS_CONF].content)
    out = GatewayResolvers(work / "leases", work / "dnsmasq.log", work / "walled.log")
    bed.popen(
        bed.gw,
        "dnsmasq",
        "--keep-in-foreground",
        f"--conf-file={full}",
        f"--dhcp-leasefile={out.leases}",
        f"--pid-file={work}/dnsmasq.pid",
        *options,
        "--log-facility=-",
        "--log-queries",
        log_path=out.log,
    )
    bed.popen(
        bed.gw,
        "dnsmasq",
        "--keep-in-foreground",
        f"--conf-file={walled}",
        f"--pid-file={work}/walled.pid",
        "--log-facility=-",
        "--log-queries",
        log_path=out.walled_log,
    )
    # TCP DNS: up means ready. (30 s: beside the other test worker's load a start took
    # longer than the default 10 s once in CI, 2026-12-02.)
    for port in (53, village.network.walled_dns_port):
        bed.wait_port(bed.gw, GW_LAN_IP, port, timeout=30.0)
    return out


# -- listeners ------------------------------------------------------------------------------


@dataclass
class Listener:
    """A recording UDP/TCP listener or a marker HTTP server (see netservers.py)."""

    kind: str
    ns: str
    host: str
    port: int
    log: Path

    def received(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def wait_received(self, n: int = 1, timeout: float = 3.0) -> list[str]:
        return wait_until(
            lambda: len(self.received()) >= n and self.received(),
            timeout,
            what=f"{self.kind} listener {self.host}:{self.port} in {self.ns} "
            f"receiving {n} message(s)",
        )

    def assert_silent(self, settle: float = 0.5) -> None:
        """Nothing arrived (after giving in-flight packets ``settle`` seconds)."""
        time.sleep(settle)
        got = self.received()
        assert not got, f"{self.host}:{self.port}/{self.kind} in {self.ns} received {got}"


_listener_seq = 0


def start_listener(
    bed: Testbed,
    ns: str,
    kind: str,
    host: str,
    port: int,
    workdir: Path,
    marker: str | None = None,
    timeout: float = 5.0,
) -> Listener:
    global _listener_seq
    _listener_seq += 1
    stem = workdir / f"{kind}-{ns}-{port}-{_listener_seq}"
    log, ready = stem.with_suffix(".log"), stem.with_suffix(".ready")
    args = [sys.executable, NETSERVERS, kind, host, str(port), str(log), str(ready)]
    if marker is not None:
        args.append(marker)
    proc = bed.popen(ns, *args, log_path=stem.with_suffix(".err"))
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(
                f"{kind} listener on {host}:{port} in {ns} exited: "
                f"{stem.with_suffix('.err').read_text()}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind} listener on {host}:{port} in {ns} not ready")
        time.sleep(0.02)
    return Listener(kind, ns, host, port, log)


class Witness:
    """nftables counters in the upstream namespace, at the earliest hook on its WAN link:
    proof that a packet never arrived, for protocols a listener cannot see (ICMP, TCP
    connection attempts)."""

    TABLE = "hst_witness"

    def __init__(self, bed: Testbed, matches: dict[str, str]):
        self.bed = bed
        self.names = list(matches)
        rules = "".join(
            f'        iifname "eth0" {m} counter comment "{name}"\n' for name, m in matches.items()
        )
        bed.run(
            bed.up,
            "nft",
            "-f",
            "-",
            input=(
                f"table inet {self.TABLE} {{\n"
                f"    chain pre {{\n        type filter hook prerouting priority raw - 10;\n"
                f"{rules}    }}\n}}\n"
            ),
        )

    def counts(self) -> dict[str, int]:
        data = json.loads(
            self.bed.run(self.bed.up, "nft", "-j", "list", "table", "inet", self.TABLE).stdout
        )
        out: dict[str, int] = {}
        for obj in data["nftables"]:
            rule = obj.get("rule")
            if rule is None:
                continue
            packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
            out[rule["comment"]] = packets
        return out


# -- iperf3 ---------------------------------------------------------------------------------

# What a full-size TCP segment carries on the wire besides its payload: Ethernet header (14;
# HTB counts whole frames), IPv4 (20), TCP (20) and the timestamp option Linux sends (12).
TCP_FRAME_OVERHEAD = 14 + 20 + 20 + 12


@dataclass
class IperfResult:
    goodput_bps: float  # what iperf3 reports: TCP payload bits per second at the receiver
    mss: int
    raw: dict[str, Any] = field(repr=False)

    @property
    def wire_bps(self) -> float:
        """The rate HTB shaped: payload plus per-segment framing (frame bytes per second)."""
        return self.goodput_bps * (self.mss + TCP_FRAME_OVERHEAD) / self.mss


def start_iperf_server(bed: Testbed, port: int) -> None:
    bed.popen(bed.up, "iperf3", "-s", "-B", UPSTREAM_IP, "-p", str(port))
    bed.wait_port(bed.up, UPSTREAM_IP, port)


def iperf3_start(
    bed: Testbed,
    ns: str,
    *,
    reverse: bool,
    seconds: int = 4,
    omit: int = 1,
    port: int = 5201,
    server: str = UPSTREAM_IP,
    window: str = "64K",
) -> subprocess.Popen:
    """Start a client (``reverse`` = download); ``omit`` seconds of warm-up (slow start and
    HTB's initial burst) are left out of the result.

    ``window`` bounds the socket buffers: the link stays saturated (the window is far above
    the path's bandwidth-delay product) but the sender cannot park seconds of data in its
    buffer and the shaper's queue, which at 1 Mbit/s otherwise skews where iperf3's
    measurement window starts and ends (and delays the end-of-test exchange)."""
    args = (
        bed.ns_exec(ns)
        + [
            "iperf3",
            "-c",
            server,
            "-p",
            str(port),
            "-t",
            str(seconds),
            "-O",
            str(omit),
            "-w",
            window,
            "-J",
        ]
        + (["-R"] if reverse else [])
    )
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def iperf3_result(proc: subprocess.Popen, timeout: float = 30) -> IperfResult:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"iperf3 did not finish in {timeout} s: {err}")
    data = json.loads(out) if out.strip() else {"error": err}
    if "error" in data:
        raise AssertionError(f"iperf3 failed: {data['error']}")
    mss = data["start"].get("tcp_mss_default") or 1448
    return IperfResult(float(data["end"]["sum_received"]["bits_per_second"]), int(mss), data)


def iperf3(bed: Testbed, ns: str, **kwargs: Any) -> IperfResult:
    return iperf3_result(iperf3_start(bed, ns, **kwargs))


# -- kernel state in the gateway namespace --------------------------------------------------


def nft_table(bed: Testbed) -> list[dict[str, Any]]:
    proc = bed.run(bed.gw, "nft", "-j", "list", "table", *TABLE)
    return json.loads(proc.stdout)["nftables"]


def table_exists(bed: Testbed) -> bool:
    return bed.run(bed.gw, "nft", "list", "table", *TABLE, check=False).returncode == 0


def set_elements(bed: Testbed, name: str) -> list[Any]:
    """Elements of one set or map of the gateway's table (a pair is ``[ip, mac]``, a map
    entry ``[key, value]``)."""
    for obj in nft_table(bed):
        for kind in ("set", "map"):
            if kind in obj and obj[kind]["name"] == name:
                out = []
                for e in obj[kind].get("elem", []):
                    if isinstance(e, dict) and "elem" in e:
                        e = e["elem"]["val"]
                    if isinstance(e, dict) and "concat" in e:
                        e = e["concat"]
                    out.append(e)
                return out
    raise AssertionError(f"no set or map {name!r} in table inet hotspot")


def authorized(bed: Testbed) -> set[tuple[str, str]]:
    return {(ip, mac) for ip, mac in set_elements(bed, "authorized")}


def rule_count(bed: Testbed) -> int:
    return sum(1 for obj in nft_table(bed) if "rule" in obj)


_UNITS = {"bit": 1, "Kbit": 1000, "Mbit": 1000**2, "Gbit": 1000**3, "Tbit": 1000**4}
_CLASS = re.compile(
    r"^class htb 1:([0-9a-f]+) (?:root|parent 1:[0-9a-f]+)\b.*?"
    r" rate (\d+(?:\.\d+)?)([KMGT]?bit) ceil (\d+(?:\.\d+)?)([KMGT]?bit)"
)


@dataclass(frozen=True)
class HtbClassInfo:
    minor: int
    rate_bps: int
    ceil_bps: int


def tc_classes(bed: Testbed, dev: str) -> dict[int, HtbClassInfo]:
    """HTB classes of ``dev`` in the gateway, by minor id."""
    out: dict[int, HtbClassInfo] = {}
    for line in bed.run(bed.gw, "tc", "class", "show", "dev", dev).stdout.splitlines():
        m = _CLASS.match(line.strip())
        if m:
            minor = int(m.group(1), 16)
            out[minor] = HtbClassInfo(
                minor,
                round(float(m.group(2)) * _UNITS[m.group(3)]),
                round(float(m.group(4)) * _UNITS[m.group(5)]),
            )
    return out


_SAMPLE_CLASS = """
import json, sys, time
from pyroute2 import IPRoute
dev, handle, interval, count = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
out = []
with IPRoute() as ipr:
    index = ipr.link_lookup(ifname=dev)[0]
    start = time.monotonic()
    for i in range(count + 1):
        time.sleep(max(0.0, start + i * interval - time.monotonic()))
        before = time.monotonic()
        for msg in ipr.get_classes(index=index):
            if msg["handle"] == handle:
                basic = msg.get_attr("TCA_STATS2").get_attr("TCA_STATS_BASIC")
                out.append([(before + time.monotonic()) / 2, basic["bytes"]])
print(json.dumps(out))
"""


def sample_class_bytes(
    bed: Testbed, dev: str, minor: int, interval: float = 0.1, count: int = 20
) -> list[int]:
    """Bytes an HTB class of the gateway sent in each of ``count`` consecutive windows of
    ``interval`` seconds, read over netlink inside the namespace. A window the sampler was
    late for (a busy machine) is scaled back to ``interval``, so the numbers are rates."""
    proc = bed.run(
        bed.gw,
        sys.executable,
        "-c",
        _SAMPLE_CLASS,
        dev,
        str(0x10000 | minor),
        str(interval),
        str(count),
        timeout=interval * count + 10,
    )
    samples = json.loads(proc.stdout)
    return [round((b - a) * interval / (tb - ta)) for (ta, a), (tb, b) in zip(samples, samples[1:])]


_QDISC = re.compile(r"^qdisc (\S+) ([0-9a-f]+): (?:dev \S+ )?(root|ingress|parent ([0-9a-f:]+))")


@dataclass(frozen=True)
class QdiscInfo:
    kind: str
    major: int  # 0: a default leaf the kernel made itself
    parent: str  # "root", "ingress" or a classid like "1:2a"


def tc_qdiscs(bed: Testbed, dev: str) -> list[QdiscInfo]:
    """Qdiscs of ``dev`` in the gateway."""
    out = []
    for line in bed.run(bed.gw, "tc", "qdisc", "show", "dev", dev).stdout.splitlines():
        m = _QDISC.match(line.strip())
        if m:
            out.append(QdiscInfo(m.group(1), int(m.group(2), 16), m.group(4) or m.group(3)))
    return out


def tc_filters(bed: Testbed, dev: str, *where: str) -> str:
    return bed.run(bed.gw, "tc", "filter", "show", "dev", dev, *where).stdout.strip()


def conntrack_entries(bed: Testbed, ip: str) -> list[str]:
    """conntrack entries the client at ``ip`` originated (``conntrack -L -s``)."""
    proc = bed.run(bed.gw, "conntrack", "-L", "-s", ip, check=False)
    return [line for line in proc.stdout.splitlines() if line.strip()]


def client_minor(ip: str) -> int:
    """The HTB minor the gateway gives a client of 10.10.0.0/22 (its host index)."""
    a, b, c, d = (int(x) for x in ip.split("."))
    return ((c & 3) << 8) | d


# -- topology extras ------------------------------------------------------------------------


def setup_ipv6(bed: Testbed) -> dict[str, str]:
    """Give the testbed IPv6: fd00:1::/64 on the LAN, fd00:2::/64 on the WAN, routes both
    ways and forwarding on in the gateway, so only the gateway's table can stop it.
    Returns phone namespace → its IPv6 address."""
    addrs = {}
    bed.run(bed.gw, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    bed.ip_batch(
        bed.gw, f"addr add {LAN6_GW}/64 dev br-lan nodad", f"addr add {WAN6_GW}/64 dev eth0 nodad"
    )
    bed.ip_batch(
        bed.up, f"addr add {UPSTREAM6}/64 dev eth0 nodad", f"route add fd00:1::/64 via {WAN6_GW}"
    )
    for i, phone in enumerate(bed.phones, start=1):
        addr = f"fd00:1::{10 + i:x}"
        bed.ip_batch(
            phone.ns,
            f"addr add {addr}/64 dev {phone.ifname} nodad",
            f"route add default via {LAN6_GW}",
        )
        addrs[phone.ns] = addr
    return addrs


def mtu_sized_frames(bed: Testbed) -> None:
    """Make the senders put MTU-sized frames on the veth "wires", as a real Ethernet link
    carries them. A veth otherwise hands the gateway the sender's 64 KB TSO super-packets
    unsplit (on real hardware GRO on the gateway's NIC does the same), and HTB releases
    each of those in one piece: see test_shaping.test_slow_tier_is_smooth_with_super_packets."""
    for ns in [bed.up] + [p.ns for p in bed.phones]:
        bed.run(ns, "ip", "link", "set", "dev", "eth0", "gso_max_segs", "1")
    # (every phone of the testbed has its veth as eth0)


def readdress(bed: Testbed, phone: Phone, ip: str, prefixlen: int = 22) -> None:
    """Move ``phone`` to address ``ip`` (its MAC stays)."""
    bed.ip_batch(
        phone.ns,
        f"addr flush dev {phone.ifname}",
        f"addr add {ip}/{prefixlen} dev {phone.ifname}",
        f"route replace default via {GW_LAN_IP}",
    )
