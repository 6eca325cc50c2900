"""A kick's conntrack work by the gateway's index of its clients' flows (issue #12), against
the real gateway: the kicked phone's running download stops at once and its hundreds of
entries go, found without a dump; a neighbour whose address has the kicked one's as a
prefix (10.10.0.11 / 10.10.0.110) keeps its entries and its download. A session the tick
ends (its time is up) goes the same way."""

from __future__ import annotations

import datetime as dt
import re
import sys
import time

from hotspot.timeutil import iso, utcnow
from tests.netns.helpers import (
    UPSTREAM_IP,
    authorize,
    conntrack_entries,
    readdress,
    wait_until,
)

# Hundreds of flows of a phone: UDP datagrams to the upstream host's discard port, each
# from a socket of its own (a flow each; nothing answers, they stay unreplied).
_FLOWS = """
import socket, sys
host, count = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", (host, 9))
    socks.append(s)
"""
FLOWS = 300


def test_a_kick_stops_the_download_and_forgets_hundreds_of_flows_by_the_index(
    testbed, gateway, tmp_path
):
    kicked, neighbour = testbed.phones[0], testbed.phones[1]
    prefixed = kicked.ip + "0"  # 10.10.0.11 -> 10.10.0.110: a string match would take it
    readdress(testbed, neighbour, prefixed)
    neighbour.ip = prefixed
    wait_until(
        lambda: "client-flow index seeded" in gateway.log.read_text(),
        10,
        what="the gateway's client-flow index seeded",
    )
    authorize(gateway, kicked)
    authorize(gateway, neighbour)

    # The premium tier's 5 Mbit/s: 20 MiB take ~30 s. curl reads as fast as data comes (no
    # --limit-rate: its socket would hold data back, and the file grow after the kick).
    parts = {p.ip: tmp_path / f"{p.ip}.part" for p in (kicked, neighbour)}
    for phone in (kicked, neighbour):
        testbed.popen(
            phone.ns, "curl", "-s", "-o", str(parts[phone.ip]), f"http://{UPSTREAM_IP}/big.bin"
        )
    testbed.run(kicked.ns, sys.executable, "-c", _FLOWS, UPSTREAM_IP, str(FLOWS))
    testbed.run(neighbour.ns, sys.executable, "-c", _FLOWS, UPSTREAM_IP, "5")
    for phone in (kicked, neighbour):
        wait_until(
            lambda p=phone: parts[p.ip].exists() and parts[p.ip].stat().st_size > 128 * 1024,
            10,
            what=f"{phone.ip}'s download getting going",
        )
    assert len(conntrack_entries(testbed, kicked.ip)) >= FLOWS + 1
    neighbours_before = conntrack_entries(testbed, neighbour.ip)
    assert len(neighbours_before) >= 6  # its download and its 5 flows

    gateway.call("deauthorize", mac=kicked.mac)
    time.sleep(0.3)  # what the phone's own socket buffer still held reaches the file
    at_once = parts[kicked.ip].stat().st_size
    neighbour_at_kick = parts[neighbour.ip].stat().st_size
    time.sleep(1.0)
    assert parts[kicked.ip].stat().st_size == at_once, "the kicked download kept going"
    assert at_once < 20 * 1024 * 1024, "the download finished before the kick"
    assert conntrack_entries(testbed, kicked.ip) == []

    # The neighbour at 10.10.0.110: its entries and its download are untouched.
    assert parts[neighbour.ip].stat().st_size > neighbour_at_kick, "the neighbour's stopped"
    assert len(conntrack_entries(testbed, neighbour.ip)) >= len(neighbours_before)

    # The kick found the entries in the index, not by a dump.
    found = re.findall(
        rf"(\d+) entries of {re.escape(kicked.ip)} deleted \(indexed\)", gateway.log.read_text()
    )
    assert found and int(found[-1]) >= FLOWS + 1, found


def test_a_session_the_tick_ends_forgets_its_flows_by_the_index_mid_download(
    testbed, gateway, tmp_path
):
    phone = testbed.phones[0]
    wait_until(
        lambda: "client-flow index seeded" in gateway.log.read_text(),
        10,
        what="the gateway's client-flow index seeded",
    )
    gateway.call(
        "authorize",
        mac=phone.mac,
        ip=phone.ip,
        tier="premium",
        source="admin",
        expires_at=iso(utcnow() + dt.timedelta(seconds=4), exact=True),
    )
    part = tmp_path / "big.part"
    testbed.popen(phone.ns, "curl", "-s", "-o", str(part), f"http://{UPSTREAM_IP}/big.bin")
    testbed.run(phone.ns, sys.executable, "-c", _FLOWS, UPSTREAM_IP, "50")
    wait_until(
        lambda: part.exists() and part.stat().st_size > 128 * 1024,
        10,
        what="the download getting going",
    )
    wait_until(
        lambda: re.search(
            rf"session \d+ of \S+ at {re.escape(phone.ip)} ended: session", gateway.log.read_text()
        ),
        15,
        interval=0.1,
        what="the session's end by the tick",
    )
    time.sleep(0.3)
    at_end = part.stat().st_size
    time.sleep(1.0)
    assert part.stat().st_size == at_end, "the download kept going after the session's end"
    assert at_end < 20 * 1024 * 1024, "the download finished before the end"
    assert conntrack_entries(testbed, phone.ip) == []
    found = re.findall(
        rf"(\d+) entries of {re.escape(phone.ip)} deleted \(indexed\)", gateway.log.read_text()
    )
    assert found and int(found[-1]) >= 51, found
