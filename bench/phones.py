"""Many phones in one network namespace, doing what a phone does when it joins the WiFi:
real DHCP (a small raw-socket client per phone), the OS captive probe (DNS for
``connectivitycheck.gstatic.com`` through the gateway, then ``GET /generate_204``, which the
gateway redirects to the portal), and for some of them the portal's "Terima & Sambungkan"
and a page from the upstream host. Run by ``bench.crowd`` (and ``bench.soak``) inside the
crowd namespace::

    ip netns exec NS python3 -m bench.phones SPEC.json RESULT.json

The namespace has ``eth0`` (a veth into the gateway's bridge) and one macvlan interface per
phone (``m0``…, each with its own MAC, no address). DHCP frames are written and read on
``eth0`` with an ``AF_PACKET`` socket (a BPF filter keeps only UDP to port 68): one reader
thread for every phone. Once a phone has its lease, its address and routes are put on its
macvlan interface, and every socket it opens is bound to that interface (SO_BINDTODEVICE),
so its packets leave with its MAC and address, as a phone's would.

Standard library only (plus ``ip``): this runs in the namespace as root.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import queue
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode, urlsplit

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
DHCP_MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
PROBE_HOST = "connectivitycheck.gstatic.com"
UA = "Mozilla/5.0 (Linux; Android 12; Redmi 10C) hotspot-bench-phone"

# Classic BPF: IPv4, UDP, destination port 68 (what `tcpdump -dd 'udp dst port 68'` makes,
# without the IPv6 and fragment branches).
BPF_UDP_DPORT_68 = [
    (0x28, 0, 0, 12),  # ldh [12]           ethertype
    (0x15, 0, 6, 0x0800),  # jeq IPv4 ? next : drop
    (0x30, 0, 0, 23),  # ldb [23]           IP protocol
    (0x15, 0, 4, 17),  # jeq UDP ? next : drop
    (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)  IP header length
    (0x48, 0, 0, 16),  # ldh [x+16]         UDP destination port
    (0x15, 0, 1, 68),  # jeq 68 ? accept : drop
    (0x06, 0, 0, 0xFFFF),  # accept
    (0x06, 0, 0, 0),  # drop
]


def ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_bytes(mac: str) -> bytes:
    return bytes(int(b, 16) for b in mac.split(":"))


@dataclass
class Lease:
    ip: str
    server: str
    router: str
    prefixlen: int
    seconds: int
    captive_api: str


@dataclass
class Dhcp:
    """One AF_PACKET socket on the crowd's ``eth0`` for every phone's DHCP: frames out with
    the phone's MAC, replies handed to the phone waiting for their transaction id."""

    ifname: str = "eth0"
    waiting: dict[int, queue.Queue[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        prog = b"".join(struct.pack("HBBI", *ins) for ins in BPF_UDP_DPORT_68)
        self._prog = ctypes.create_string_buffer(prog)
        fprog = struct.pack("HL", len(BPF_UDP_DPORT_68), ctypes.addressof(self._prog))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.sock.bind((self.ifname, ETH_P_ALL))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                frame, addr = self.sock.recvfrom(2048)
            except OSError:  # the namespace is going away
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            msg = parse_reply(frame)
            if msg is None:
                continue
            with self.lock:
                q = self.waiting.get(msg["xid"])
            if q is not None:
                q.put(msg)

    def send(
        self, mac: str, payload: bytes, src: str = "0.0.0.0", dst: str = "255.255.255.255"
    ) -> None:
        udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
        iph = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            random.getrandbits(16),
            0,
            64,
            17,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        iph = iph[:10] + struct.pack("!H", ip_checksum(iph)) + iph[12:]
        self.sock.send(b"\xff" * 6 + mac_bytes(mac) + b"\x08\x00" + iph + udp)

    def release(self, mac: str, lease: Lease) -> None:
        """DHCPRELEASE (RFC 2131 4.4.6): the phone gives its address back as it leaves the
        network: from its address to the server that leased it, ``ciaddr`` set, the server's
        identifier, no reply. Sent on ``eth0`` like the rest (the phone's own interface may
        have lost its address already). dnsmasq frees the lease at once; without it a phone
        that changes its MAC leaves its old lease in the pool until the lease time runs
        out, and a long soak ran dnsmasq's pool dry (docs/reliability.md, "A week in
        minutes")."""
        msg = bytearray(
            bootp_request(
                mac, random.getrandbits(32), 0, RELEASE, {54: socket.inet_aton(lease.server)}
            )
        )
        msg[12:16] = socket.inet_aton(lease.ip)  # ciaddr
        self.send(mac, bytes(msg), src=lease.ip, dst=lease.server)

    def acquire(self, mac: str, deadline: float, stats: dict[str, int]) -> Lease:
        """DISCOVER → OFFER → REQUEST → ACK, retransmitting after 1, 2, 4 … s (as Android's
        DhcpClient); ``stats["dhcp_retransmits"]`` counts the repeats."""
        xid = random.getrandbits(32)
        q: queue.Queue[dict[str, Any]] = queue.Queue()
        with self.lock:
            self.waiting[xid] = q
        try:
            started = time.monotonic()
            offer = self._exchange(mac, xid, started, DISCOVER, {}, OFFER, q, deadline, stats)
            req = {50: socket.inet_aton(offer["yiaddr"]), 54: offer["options"][54]}
            ack = self._exchange(mac, xid, started, REQUEST, req, ACK, q, deadline, stats)
        finally:
            with self.lock:
                self.waiting.pop(xid, None)
        opts = ack["options"]
        mask = struct.unpack("!I", opts.get(1, b"\xff\xff\xff\x00"))[0]
        return Lease(
            ip=ack["yiaddr"],
            server=socket.inet_ntoa(opts[54]),
            router=socket.inet_ntoa(opts[3][:4]) if 3 in opts else "",
            prefixlen=bin(mask).count("1"),
            seconds=struct.unpack("!I", opts[51])[0] if 51 in opts else 0,
            captive_api=opts.get(114, b"").decode("ascii", "replace"),
        )

    def _exchange(
        self,
        mac: str,
        xid: int,
        started: float,
        kind: int,
        extra: dict[int, bytes],
        want: int,
        q: queue.Queue[dict[str, Any]],
        deadline: float,
        stats: dict[str, int],
    ) -> dict[str, Any]:
        wait = 1.0
        sent = 0
        while time.monotonic() < deadline:
            secs = min(0xFFFF, int(time.monotonic() - started))
            self.send(mac, bootp_request(mac, xid, secs, kind, extra))
            if sent:
                stats["dhcp_retransmits"] += 1
            sent += 1
            until = min(deadline, time.monotonic() + wait * random.uniform(0.9, 1.1))
            while (left := until - time.monotonic()) > 0:
                try:
                    msg = q.get(timeout=left)
                except queue.Empty:
                    break
                if msg["type"] == want:
                    return msg
                if msg["type"] == NAK:
                    raise OSError(f"DHCP NAK for {mac}")
            wait = min(wait * 2, 16.0)
        raise TimeoutError(f"no DHCP {'OFFER' if want == OFFER else 'ACK'} for {mac}")


def bootp_request(mac: str, xid: int, secs: int, kind: int, extra: dict[int, bytes]) -> bytes:
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,
        1,
        6,
        0,
        xid,
        secs,
        0,  # no broadcast flag: dnsmasq answers to the MAC (only that phone's macvlan)
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        mac_bytes(mac),
        b"",
        b"",
    )
    opts = {53: bytes([kind]), 55: bytes([1, 3, 6, 15, 51, 54, 114]), **extra}
    body = b"".join(bytes([k, len(v)]) + v for k, v in opts.items())
    return head + DHCP_MAGIC + body + b"\xff"


def parse_reply(frame: bytes) -> dict[str, Any] | None:
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    bootp = frame[14 + ihl + 8 :]
    if len(bootp) < 240 or bootp[0] != 2 or bootp[236:240] != DHCP_MAGIC:
        return None
    xid = struct.unpack("!I", bootp[4:8])[0]
    options: dict[int, bytes] = {}
    i = 240
    while i < len(bootp):
        code = bootp[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(bootp):
            break
        n = bootp[i + 1]
        options[code] = bootp[i + 2 : i + 2 + n]
        i += 2 + n
    if 53 not in options or 54 not in options:
        return None
    return {
        "xid": xid,
        "yiaddr": socket.inet_ntoa(bootp[16:20]),
        "type": options[53][0],
        "options": options,
    }


# -- the phone's network set-up and its sockets ----------------------------------------------


# Configurer(source_tables=True): phone i's routing table and rule priority.
SOURCE_TABLE_BASE = 1000


class Configurer:
    """Puts leases on the phones' interfaces, many in one ``ip -batch`` (what each phone's
    DHCP client does with its lease; one ``ip`` per phone would measure fork and exec)."""

    def __init__(self, source_tables: bool = False) -> None:
        # source_tables: each phone's routes also in a table of its own, chosen by its source
        # address (``ip rule from <its address>``). In one shared namespace a packet the
        # kernel sends with no socket (a TCP reset for a connection already gone) is routed
        # by the main table alone: out of the phone with the lowest metric, with that phone's
        # MAC and another phone's address. A gateway that checks who talks from an address
        # (``not-your-session``) sees two devices there; a real phone has its own stack.
        self.source_tables = source_tables
        self.ruled: set[int] = set()  # the phones whose rule is in place (one each)
        self.pending: list[tuple[str, int, Lease, threading.Event]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def configure(self, ifname: str, index: int, lease: Lease, timeout: float = 60) -> None:
        done = threading.Event()
        with self.cond:
            self.pending.append((ifname, index, lease, done))
            self.cond.notify()
        if not done.wait(timeout):
            raise TimeoutError(f"address not configured on {ifname}")

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.pending:
                    self.cond.wait()
                batch, self.pending = self.pending, []
            cmds = []
            for ifname, index, lease, _ in batch:
                metric = 100 + index  # one routing table for every phone: a metric each
                cmds += [
                    f"addr replace {lease.ip}/{lease.prefixlen} dev {ifname} noprefixroute",
                    f"route replace {_network(lease)} dev {ifname} src {lease.ip} metric {metric}",
                    f"route replace default via {lease.router} dev {ifname} metric {metric}",
                ]
                if self.source_tables:
                    table = SOURCE_TABLE_BASE + index
                    if index in self.ruled:  # one rule a phone, replaced with its address
                        cmds.append(f"rule del priority {table}")
                    self.ruled.add(index)
                    cmds += [
                        f"rule add priority {table} from {lease.ip} table {table}",
                        f"route replace {_network(lease)} dev {ifname} src {lease.ip} table {table}",
                        f"route replace default via {lease.router} dev {ifname} table {table}",
                    ]
            subprocess.run(
                ["ip", "-force", "-batch", "-"],
                input="\n".join(cmds) + "\n",
                text=True,
                check=False,
                timeout=60,
            )
            for *_, done in batch:
                done.set()


def _network(lease: Lease) -> str:
    ip = struct.unpack("!I", socket.inet_aton(lease.ip))[0]
    mask = (0xFFFFFFFF << (32 - lease.prefixlen)) & 0xFFFFFFFF
    return f"{socket.inet_ntoa(struct.pack('!I', ip & mask))}/{lease.prefixlen}"


def bound_socket(kind: int, ifname: str, src: str, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    s.bind((src, 0))
    s.settimeout(timeout)
    return s


def resolve(name: str, server: str, ifname: str, src: str, timeout: float) -> str:
    """One A query to ``server`` (the gateway) from the phone; the first address."""
    s = bound_socket(socket.SOCK_DGRAM, ifname, src, timeout)
    try:
        ident = random.getrandbits(16)
        q = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        q += struct.pack(">HH", 1, 1)
        s.sendto(q, (server, 53))
        while True:
            r, _ = s.recvfrom(4096)
            if struct.unpack(">H", r[:2])[0] == ident:
                break
    finally:
        s.close()
    flags, qd, an = struct.unpack(">HHH", r[2:8])
    if flags & 0xF:
        raise OSError(f"DNS rcode {flags & 0xF} for {name}")
    i = 12
    for _ in range(qd):
        while r[i]:
            i += r[i] + 1
        i += 5
    for _ in range(an):
        if r[i] & 0xC0 == 0xC0:
            i += 2
        else:
            while r[i]:
                i += r[i] + 1
            i += 1
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", r[i : i + 10])
        i += 10
        if rtype == 1:
            return socket.inet_ntoa(r[i : i + rdlen])
        i += rdlen
    raise OSError(f"no address for {name}")


class BoundHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ifname: str, src: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.ifname = ifname
        self.src = src

    def connect(self) -> None:
        s = bound_socket(socket.SOCK_STREAM, self.ifname, self.src, self.timeout)  # type: ignore[arg-type]
        s.connect((self.host, self.port))
        self.sock = s


@dataclass
class Reply:
    status: int
    location: str
    body: str
    error: str = ""  # the portal's refusal code (its X-Hotspot-Error header), if any


class Forms(HTMLParser):
    """Every <form>: its action and its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append((a.get("action") or "", {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][a["name"] or ""] = a.get("value") or ""


class Phone:
    """One phone's HTTP: its interface, address and cookie jar; every request counted."""

    def __init__(self, ifname: str, ip: str, timeout: float, counts: dict[str, int]):
        self.ifname = ifname
        self.ip = ip
        self.timeout = timeout
        self.cookies = SimpleCookie()
        self.counts = counts

    def request(
        self, method: str, url: str, host: str | None = None, form: dict[str, str] | None = None
    ) -> Reply:
        parts = urlsplit(url)
        conn = BoundHTTPConnection(
            parts.hostname or "", parts.port or 80, self.ifname, self.ip, self.timeout
        )
        headers = {
            "Host": host or parts.netloc,
            "User-Agent": UA,
            "Accept-Language": "id-ID,id;q=0.9",
            "Accept": "text/html,*/*",
            "Connection": "close",
        }
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={m.value}" for k, m in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.counts["requests"] += 1
        try:
            conn.request(
                method,
                (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                body,
                headers,
            )
            resp = conn.getresponse()
            data = resp.read()
            for value in resp.headers.get_all("Set-Cookie") or []:
                self.cookies.load(value)
            return Reply(
                resp.status,
                resp.getheader("Location") or "",
                data.decode("utf-8", "replace"),
                resp.getheader("X-Hotspot-Error") or "",
            )
        finally:
            conn.close()


# -- one phone's script ---------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    mac: str
    logs_in: bool
    start_s: float = 0.0
    lease_s: float | None = None  # from the run's start (the power's return)
    lease_after_start_s: float | None = None  # from this phone's first DISCOVER
    probe_s: float | None = None
    online_s: float | None = None
    online_after_accept_s: float | None = None
    online_polls: int = 0
    requests: int = 0
    dhcp_retransmits: int = 0
    ip: str = ""
    captive_api: str = ""
    failures: list[str] = field(default_factory=list)


def run_phone(
    spec: dict[str, Any], member: dict[str, Any], dhcp: Dhcp, ipconf: Configurer, t0: float
) -> Outcome:
    out = Outcome(index=member["index"], mac=member["mac"], logs_in=member["logs_in"])
    counts = {"requests": 0, "dhcp_retransmits": 0}
    step = "start"
    timeout = float(spec.get("http_timeout_s", 10))
    gw = spec["gateway_ip"]
    try:
        wait = t0 + member["start_at"] - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        begin = time.monotonic()
        out.start_s = begin - t0
        step = "dhcp"
        lease = dhcp.acquire(member["mac"], begin + float(spec.get("dhcp_deadline_s", 60)), counts)
        now = time.monotonic()
        out.lease_s, out.lease_after_start_s = now - t0, now - begin
        step = "address"
        ipconf.configure(member["ifname"], member["index"], lease)
        out.ip, out.captive_api = lease.ip, lease.captive_api
        phone = Phone(member["ifname"], lease.ip, timeout, counts)
        # The OS captive probe: DNS through the gateway, then plain HTTP, redirected.
        step = "probe-dns"
        counts["requests"] += 1
        probe_ip = resolve(PROBE_HOST, gw, member["ifname"], lease.ip, timeout)
        step = "probe-http"
        r = phone.request("GET", f"http://{probe_ip}/generate_204", host=PROBE_HOST)
        if not (300 <= r.status < 400 and r.location.startswith(spec["portal_url"])):
            raise OSError(f"probe: {r.status} {r.location[:60]}")
        out.probe_s = time.monotonic() - t0
        if not member["logs_in"]:
            return out
        step = "splash"
        splash = phone.request("GET", r.location)
        forms = Forms()
        forms.feed(splash.body)
        fields = next((f for action, f in forms.forms if action.endswith("/accept")), None)
        if splash.status != 200 or fields is None or "csrf_token" not in fields:
            raise OSError(f"splash: {splash.status}, no /accept form")
        step = "accept"
        accepted = phone.request("POST", spec["portal_url"] + "/accept", form=fields)
        accepted_at = time.monotonic()
        if accepted.status != 303 or "/ok" not in accepted.location:
            raise OSError(f"accept: {accepted.status} {accepted.location[:60]}")
        step = "online"
        page = phone.request("GET", spec["upstream_url"])
        out.online_polls = 1
        poll_deadline = time.monotonic() + float(spec.get("online_deadline_s", 30))
        while not (page.status == 200 and spec["upstream_marker"] in page.body):
            if time.monotonic() > poll_deadline:
                raise OSError(f"not online: {page.status} {page.location[:60]}")
            time.sleep(0.2)
            page = phone.request("GET", spec["upstream_url"])
            out.online_polls += 1
        now = time.monotonic()
        out.online_s, out.online_after_accept_s = now - t0, now - accepted_at
    except (OSError, http.client.HTTPException, subprocess.SubprocessError) as exc:
        out.failures.append(f"{step}: {type(exc).__name__}: {exc}")
    out.requests = counts["requests"]
    out.dhcp_retransmits = counts["dhcp_retransmits"]
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(open(argv[0]).read())
    dhcp = Dhcp(spec.get("lower", "eth0"))
    ipconf = Configurer()
    results: list[Outcome] = []
    lock = threading.Lock()
    t0 = time.monotonic()
    threading.stack_size(512 * 1024)

    def one(member: dict[str, Any]) -> None:
        o = run_phone(spec, member, dhcp, ipconf, t0)
        with lock:
            results.append(o)

    threads = [threading.Thread(target=one, args=(m,), daemon=True) for m in spec["members"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.sort(key=lambda o: o.index)
    rows = [asdict(o) for o in results]
    with open(argv[1] + ".tmp", "w") as fh:
        json.dump({"phones": rows, "wall_s": time.monotonic() - t0}, fh)
    os.replace(argv[1] + ".tmp", argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
