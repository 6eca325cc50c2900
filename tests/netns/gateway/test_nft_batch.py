"""A login's nftables change as one nf_tables batch of our own (gateway/nftnetlink.py), against
the real kernel: the gateway's whole table installed in a fresh namespace, a login's elements
added and a kick's removed without libnftables, a batch with one bad element changes nothing,
a hostile address never reaches the kernel, a kernel that refuses our encoding gets
libnftables (and keeps it), and the portal peers read back; then with the real gateway, a
phone let out and walled again by that batch, its first packets through."""

from __future__ import annotations

from tests.netns.gateway.test_ctnetlink_kernel import run_in_namespace
from tests.netns.helpers import authorize, is_online, is_walled, wait_until

SCRIPT = """
import json, subprocess
from gateway import nftnetlink, ruleset
from gateway.nftables import Nftables
from hotspot.errors import KernelError

layout = ruleset.Layout(
    table="hsbatch", lan="lo", wan="lo", gateway_ip="10.10.0.1", lan_network="10.10.0.0/22",
    portal_port=8080, portal_ports=(8080,), portal_conn_rate=10, portal_conn_limit=20,
    lan_tcp_ports=(), walled_garden=(),
)
nft = Nftables(layout)
nft.install()
library_runs = []
real_run = nft._backend.run
def counted(payload):
    library_runs.append(payload)
    return real_run(payload)
nft._backend.run = counted
sent = []
real_socket = nft.netlink._socket
def spied():
    sock = real_socket()
    class Spy:
        def __getattr__(self, name):
            return getattr(sock, name)
        def send(self, data):
            sent.append(len(data))
            return sock.send(data)
    return Spy()
nft.netlink._socket = spied

def kernel():
    out = subprocess.run(["nft", "-j", "list", "table", "inet", "hsbatch"],
                         capture_output=True, text=True, check=True).stdout
    sets = {}
    for item in json.loads(out)["nftables"]:
        for kind in ("set", "map"):
            if kind in item:
                sets[item[kind]["name"]] = item[kind].get("elem", [])
    return {name: sets[name] for name in ("authorized", "down_class", "up_class", "blocked")}

phone = ruleset.Client("10.10.0.5", "02:00:00:00:00:05", "1:5")
other = ruleset.Client("10.10.0.6", "02:00:00:00:00:06", "1:6")
out = {}
nft.apply(ruleset.client_commands(layout, "add", [phone]))
out["after_login"] = kernel()
out["login_library_runs"] = len(library_runs)
out["login_sends"] = len(sent)

# One bad element (a pair that is not there) with a good one: nothing of it applies.
before = kernel()
bad = ruleset.client_commands(layout, "add", [other]) + ruleset.element_command(
    layout, "delete", ruleset.AUTHORIZED, [ruleset.authorized_elem("10.10.0.9", "02:00:00:00:00:09")])
try:
    nft.apply(bad)
    out["bad"] = "applied"
except KernelError as exc:
    out["bad"] = exc.code.value
out["bad_changed_nothing"] = kernel() == before
out["netlink_kept"] = nft.netlink is not None

# A hostile address: refused before any kernel call.
runs, sends = len(library_runs), len(sent)
hostile = ruleset.client_commands(layout, "add", [ruleset.Client("10.10.0.5 } ; flush ruleset ; {", "02:00:00:00:00:05", "1:5")])
try:
    nft.apply(hostile)
    out["hostile"] = "applied"
except KernelError as exc:
    out["hostile"] = exc.code.value
out["hostile_reached_kernel"] = (len(library_runs), len(sent)) != (runs, sends)

# The kick.
runs = len(library_runs)
nft.apply(ruleset.client_commands(layout, "delete", [phone]))
out["after_kick"] = kernel()
out["kick_library_runs"] = len(library_runs) - runs

# The portal peers, as dnsmasq-free as the data path fills them.
subprocess.run(["nft", "add", "element", "inet", "hsbatch", "portal_peers",
                "{ 10.10.0.7 . 02:00:00:00:00:07, 10.10.0.8 . 02:00:00:00:00:08 timeout 10s }"], check=True)
out["peers"] = sorted([ip, mac, t, left is not None and 0 < left <= (t or 30000)]
                      for ip, mac, t, left in nft.peers("portal_peers"))
# A login's look at one address: that address's elements only, a forged group address too.
subprocess.run(["nft", "add", "element", "inet", "hsbatch", "portal_peers",
                "{ 10.10.0.8 . 01:00:5e:00:00:01 }"], check=True)
out["peers_at"] = sorted(mac for _ip, mac, _t, _left in nft.peers("portal_peers", at="10.10.0.8"))
out["peers_at_nobody"] = nft.peers("portal_peers", at="10.10.0.99")

# A kernel that refuses our encoding (here: MACs of 10 bytes, a key of the wrong length):
# libnftables applies the same change, and is used from then on.
nftnetlink._FIELDS["ether_addr"] = lambda value: bytes(10)
runs = len(library_runs)
nft.apply(ruleset.client_commands(layout, "add", [phone]))
out["fallback_library_runs"] = len(library_runs) - runs
out["fallback_applied"] = kernel()["authorized"]
out["netlink_after_fallback"] = nft.netlink is not None
print(json.dumps(out))
"""


def test_a_login_and_a_kick_as_one_batch_against_the_kernel():
    result = run_in_namespace("hsnb", "", SCRIPT)
    pair = {"concat": ["10.10.0.5", "02:00:00:00:00:05"]}
    assert result["after_login"] == {
        "authorized": [pair],
        "down_class": [["10.10.0.5", "1:5"]],
        "up_class": [["10.10.0.5", "1:5"]],
        "blocked": [],
    }
    assert result["login_library_runs"] == 0 and result["login_sends"] == 1
    assert result["bad"] == "nftables" and result["bad_changed_nothing"], result
    assert result["netlink_kept"]
    assert result["hostile"] == "nftables" and not result["hostile_reached_kernel"]
    assert result["after_kick"] == {
        "authorized": [],
        "down_class": [],
        "up_class": [],
        "blocked": [],
    }
    assert result["kick_library_runs"] == 0
    assert result["peers"] == [
        ["10.10.0.7", "02:00:00:00:00:07", None, True],
        ["10.10.0.8", "02:00:00:00:00:08", 10000, True],
    ]
    assert result["peers_at"] == ["01:00:5e:00:00:01", "02:00:00:00:00:08"]
    assert result["peers_at_nobody"] == []
    assert result["fallback_library_runs"] == 1
    assert result["fallback_applied"] == [pair]
    assert not result["netlink_after_fallback"]


def test_a_phone_is_let_out_and_walled_again_by_the_batch(testbed, gateway):
    phone = testbed.phones[0]
    assert is_walled(testbed, phone.ns)
    authorize(gateway, phone)
    wait_until(lambda: is_online(testbed, phone.ns), 5, what="the phone let out")
    gateway.call("deauthorize", mac=phone.mac, reason="admin-kick")
    wait_until(lambda: is_walled(testbed, phone.ns), 5, what="the phone walled again")
    log = gateway.log.read_text()
    assert "libnftables from now on" not in log, log[-2000:]
