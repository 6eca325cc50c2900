"""The walled connections' conntrack mark (issue #12): a connection NAT redirected while its
client was walled is refused once the client is logged in (so a browser's keep-alive
connection is replaced by one that goes out), with no walk of the conntrack table on the
login's path; the mark does nothing to a walled client and opens nothing to anyone."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tests.netns.helpers import (
    GW_LAN_IP,
    PORTAL_PORT,
    UPSTREAM_IP,
    authorize,
    conntrack_entries,
    curl,
    is_walled,
    wait_until,
)
from testsupport.testbed import Testbed

# The portal's stand-in for these tests: every line it gets on a connection is answered on
# that connection ("portal: <line>"), which stays open (a keep-alive connection).
_ECHO_PORTAL = """
import socket, sys, threading
srv = socket.create_server((sys.argv[1], int(sys.argv[2])), reuse_port=True)
print("ready", flush=True)
def serve(conn):
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            conn.sendall(b"portal: " + line)
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""

# A phone's browser: one connection to a web host (walled: redirected to the portal), a line
# on it, then, at each line on stdin, one more line on the same connection.
_KEEP_ALIVE = """
import socket, sys
conn = socket.create_connection((sys.argv[1], 80), timeout=3)
for n, _ in enumerate(iter(sys.stdin.readline, "")):
    try:
        conn.sendall(f"line {n}\\n".encode())
        got = conn.recv(200)
        print(got.decode().strip() if got else "closed", flush=True)
    except ConnectionResetError:
        print("reset", flush=True)
    except TimeoutError:
        print("timeout", flush=True)
"""


# The walled resolver's stand-in: every datagram answered ("resolver: <datagram>").
_ECHO_RESOLVER = """
import socket, sys
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, peer = srv.recvfrom(512)
    srv.sendto(b"resolver: " + data, peer)
"""

# A phone's resolver that keeps one socket (one source port) for every query.
_ONE_SOCKET_RESOLVER = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(3)
sock.connect((sys.argv[1], 53))
for n, _ in enumerate(iter(sys.stdin.readline, "")):
    try:
        sock.send(f"query {n}".encode())
        print(sock.recv(512).decode(), flush=True)
    except ConnectionRefusedError:
        print("refused", flush=True)
    except TimeoutError:
        print("timeout", flush=True)
"""


class Browser:
    def __init__(self, proc: subprocess.Popen[str]):
        self.proc = proc

    def send(self) -> str:
        """One more line on the kept connection; what came back ("portal: line N", "reset",
        "closed" or "timeout")."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()


def _spawn(bed: Testbed, ns: str, script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*bed.ns_exec(ns), sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


@contextmanager
def _walled_connections(bed: Testbed, *phones) -> Iterator[list[Browser]]:
    """The echoing portal stand-in and, for each phone, a connection opened while walled
    (shown to reach the portal)."""
    procs = [_spawn(bed, bed.gw, _ECHO_PORTAL, GW_LAN_IP, str(PORTAL_PORT))]
    try:
        assert procs[0].stdout is not None and procs[0].stdout.readline().strip() == "ready"
        browsers = []
        for phone in phones:
            procs.append(_spawn(bed, phone.ns, _KEEP_ALIVE, UPSTREAM_IP))
            browsers.append(Browser(procs[-1]))
            assert browsers[-1].send() == "portal: line 0", "the walled connection's redirect"
        yield browsers
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=5)


def _redirected(bed: Testbed, ip: str) -> list[str]:
    """The client's conntrack entries NAT sent to the portal (port 80 → the portal's)."""
    return [
        e
        for e in conntrack_entries(bed, ip)
        if "dport=80 " in e and f"sport={PORTAL_PORT} " in e and "mark=1" in e
    ]


def test_the_table_refuses_a_logged_in_clients_walled_connection(testbed, gateway_factory):
    """The rule alone: the phone let out by hand (no login, so nothing walks conntrack and its
    entry stays): the next line on the kept connection meets a reset, not the portal."""
    gateway_factory({"gateway": {"tick_seconds": 60.0}})  # no reconcile meanwhile
    phone = testbed.phones[0]
    with _walled_connections(testbed, phone) as (browser,):
        assert browser.send() == "portal: line 1"
        assert _redirected(testbed, phone.ip), "the redirect did not mark the connection"
        testbed.nft_element("add", "authorized", f"{{ {phone.ip} . {phone.mac} }}")
        assert browser.send() == "reset"
        assert _redirected(testbed, phone.ip), "something walked conntrack: not the rule's work"


def test_after_login_the_kept_connection_is_reset_and_a_new_one_goes_out(
    testbed, gateway, upstream
):
    phone, neighbour = testbed.phones
    with _walled_connections(testbed, phone, neighbour) as (browser, other):
        authorize(gateway, phone)
        assert browser.send() == "reset"
        page = curl(testbed, phone.ns, f"http://{UPSTREAM_IP}/")
        assert "upstream ok" in page.body, "a new connection after login must go out"
        # The walk behind the reply removes the entries the rule refuses.
        wait_until(lambda: not _redirected(testbed, phone.ip), 5, what="the walled entries gone")
        # The neighbour, still walled: its marked connection is its portal's as before, the
        # mark refuses nothing to it and opens nothing (it is still walled).
        assert other.send() == "portal: line 1"
        assert _redirected(testbed, neighbour.ip)
        assert is_walled(testbed, neighbour.ns)
        assert other.send() == "portal: line 2"


def test_a_logged_in_clients_walled_dns_socket_is_refused(testbed, gateway_factory):
    """A resolver that keeps one socket: its flow went to the walled resolver; once the phone
    is let out (by hand: nothing walks conntrack) the next query on it is refused (ICMP port
    unreachable), so the resolver takes another socket, which is not redirected."""
    gw = gateway_factory({"gateway": {"tick_seconds": 60.0}})
    port = gw.settings["network"].get("walled_dns_port", 5300)
    phone = testbed.phones[0]
    resolver = _spawn(testbed, testbed.gw, _ECHO_RESOLVER, GW_LAN_IP, str(port))
    stub = _spawn(testbed, phone.ns, _ONE_SOCKET_RESOLVER, UPSTREAM_IP)
    try:
        assert resolver.stdout is not None and resolver.stdout.readline().strip() == "ready"
        queries = Browser(stub)
        assert queries.send() == "resolver: query 0", "the walled DNS redirect"
        testbed.nft_element("add", "authorized", f"{{ {phone.ip} . {phone.mac} }}")
        assert queries.send() == "refused"
    finally:
        for proc in (stub, resolver):
            proc.kill()
            proc.wait(timeout=5)
