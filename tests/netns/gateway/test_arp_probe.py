"""The ARP probe without scapy (gateway/arp.py, issue #12 item 3): a real phone on the LAN
answers with its MAC; an address nobody has gives None; and a hostile phone flooding the LAN
with ARP for other addresses, requests that carry the probed address and malformed frames
changes neither answer. The probe runs in the gateway's namespace, in a fresh interpreter, as
the daemon runs it (gateway.neighbours.Neighbours.arp_probe), and that interpreter has not
loaded scapy afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

PROBE = """
import json, sys
from gateway.netlink import IPRoute
from gateway.neighbours import Neighbours
n = Neighbours(IPRoute(), "br-lan", probe_timeout=float(sys.argv[1]))
answers = {ip: n.arp_probe(ip) for ip in sys.argv[2:]}
sock = n.prober._sock.fileno()
again = {ip: n.arp_probe(ip) for ip in sys.argv[2:3]}  # (the silent one costs a timeout)
print(json.dumps({"answers": answers, "again": again,
                  "one_socket": n.prober._sock.fileno() == sock,
                  "scapy": any(m.split(".")[0] == "scapy" for m in sys.modules)}))
"""

# A teenager's laptop: every 2 ms, broadcast replies about addresses other than the probed
# ones, a gratuitous *request* claiming the silent address, a truncated ARP frame and an ARP
# frame with the wrong lengths, all from its own MAC; until its stdin closes.
FLOOD = r"""
import select, socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = s.getsockname()[4]
silent = socket.inet_aton(sys.argv[1])
def arp(op, sender_ip, target_ip, hlen=6):
    return (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, hlen, 4, op)
            + mac + sender_ip + bytes(6) + target_ip)
frames = [
    arp(2, socket.inet_aton("10.10.0.77"), socket.inet_aton("10.10.0.1")),
    arp(2, socket.inet_aton("10.10.0.78"), socket.inet_aton("10.10.0.1")),
    arp(1, silent, socket.inet_aton("10.10.0.1")),
    arp(2, silent, socket.inet_aton("10.10.0.1"))[:30],
    arp(2, silent, socket.inet_aton("10.10.0.1"), hlen=8),
]
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0.002)[0]:
    for f in frames:
        s.send(f)
"""


def probe(testbed, timeout: float, *ips: str) -> dict:
    out = testbed.run(
        testbed.gw, "env", f"PYTHONPATH={REPO}", sys.executable, "-c", PROBE, str(timeout), *ips
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_arp_probe_finds_the_phone_and_ignores_a_flooding_neighbour(testbed):
    phone, hostile = testbed.phones[0], testbed.phones[1]
    silent = "10.10.0.200"
    testbed.run(testbed.gw, "ip", "neigh", "flush", "dev", "br-lan", check=False)

    quiet = probe(testbed, 1.0, phone.ip, silent)
    assert quiet["answers"] == {phone.ip: phone.mac, silent: None}
    assert quiet["again"] == {phone.ip: phone.mac}
    assert quiet["scapy"] is False
    # One socket for every probe: binding and closing one per probe cost 8 + 16 ms of the
    # kernel's synchronize_net() (bench/README.md, "The gap over the socket").
    assert quiet["one_socket"]

    flood = subprocess.Popen(
        testbed.ns_exec(hostile.ns) + [sys.executable, "-c", FLOOD, silent],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flood.stdout is not None and flood.stdout.readline().strip() == "ready"
        testbed.run(testbed.gw, "ip", "neigh", "flush", "dev", "br-lan", check=False)
        flooded = probe(testbed, 1.0, phone.ip, silent)
    finally:
        assert flood.stdin is not None
        flood.stdin.close()
        flood.wait(10)
    assert flooded["again"] == {phone.ip: phone.mac}
    assert flooded["answers"] == {phone.ip: phone.mac, silent: None}, (
        f"the flooding neighbour {hostile.mac} changed the probe's answers: {flooded}"
    )
