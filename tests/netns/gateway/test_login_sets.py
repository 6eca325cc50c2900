"""The tick's look at the login sets (gateway/nftnetlink.py ``login_sets``, issue #12 item 4)
against the real kernel: the gateway's table in a fresh namespace with 2,000 clients (a /22's
and more), blocked devices, a client whose classes were changed by hand and one taken out by
hand — what the four netlink dumps read is what ``parse_elements`` makes of libnftables'
listing, every time; each dump carries the ruleset's generation, which a transaction moves
(which dnsmasq's ``nftset=`` moves too); the look is one pass whatever moves it meanwhile; a
missing table is libnftables' one-line error, not a traceback; a dump that fails falls back
to the listing and says so."""

from __future__ import annotations

from tests.netns.gateway.test_ctnetlink_kernel import run_in_namespace

SCRIPT = """
import ipaddress, json, logging, subprocess
from gateway import nftnetlink, ruleset, shaping
from gateway.nftables import Nftables, parse_elements
from hotspot.errors import KernelError

warnings = []
class Kept(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("gateway").addHandler(Kept(logging.WARNING))
net = ipaddress.ip_network("10.10.0.0/18")
layout = ruleset.Layout(
    table="hslook", lan="lo", wan="lo", gateway_ip="10.10.0.1", lan_network=str(net),
    portal_port=8080, portal_ports=(8080,), portal_conn_rate=10, portal_conn_limit=20,
    lan_tcp_ports=(), walled_garden=(),
)
nft = Nftables(layout)
out = {}
try:
    nft.login_sets()
except KernelError as exc:
    out["missing_table"] = [exc.code.value, str(exc).count("\\n")]
hosts = list(net.hosts())[1:2001]
clients = [
    ruleset.Client(
        str(ip), "02:00:" + ":".join(f"{b:02x}" for b in ip.packed),
        shaping.classid_str(shaping.client_minor(str(ip), net)),
    )
    for ip in hosts
]
blocked = ["02:bb:00:00:00:01", "0a:1b:2c:3d:4e:5f"]
nft.install(clients, blocked)

def agree():
    ours = nft.login_sets()
    theirs = parse_elements(nft.elements())
    return ours == theirs, [len(ours[0]), len(ours[1]), len(ours[2]), len(ours[3])]

out["installed"] = agree()
# By hand, as an engineer might: a class map entry pointed elsewhere, a pair taken out.
subprocess.run(["nft", "add", "element", "inet", "hslook", "down_class",
                "{ 10.10.0.2 : 1:ffff }"], check=False)
subprocess.run(["nft", "delete", "element", "inet", "hslook", "down_class",
                "{ 10.10.0.2 }"], check=True)
subprocess.run(["nft", "add", "element", "inet", "hslook", "down_class",
                "{ 10.10.0.2 : 1:abc }"], check=True)
subprocess.run(["nft", "delete", "element", "inet", "hslook", "authorized",
                "{ 10.10.0.3 . 02:00:0a:0a:00:03 }"], check=True)
out["by_hand"] = agree()
ours = nft.login_sets()
out["changed_class"] = ours[1]["10.10.0.2"]
out["removed_pair"] = ("10.10.0.3", "02:00:0a:0a:00:03") in ours[0]

# Every dump carries the ruleset's generation; a transaction moves it.
nl = nft.look
def generations():
    return sorted(nl._dump_set("inet", "hslook", ruleset.AUTHORIZED, lambda *a: [], []))
before = generations()
nft.apply(ruleset.client_commands(layout, "delete", clients[:1]))
after = generations()
out["generations"] = [before, after]

# Between two of the look's dumps, a transaction on another set (dnsmasq's ``nftset=``
# adding a walled-garden address) moves the generation: the look is one pass, and right.
nl = nft.look
real_dump = nl._dump_set
calls = []
def dnsmasq_meanwhile(family, table, name, parse, into):
    calls.append(name)
    if len(calls) == 2:
        subprocess.run(["nft", "add", "element", "inet", "hslook", ruleset.WALLED_DNS,
                        "{ 192.0.2.7 timeout 60s }"], check=True)
    return real_dump(family, table, name, parse, into)
nl._dump_set = dnsmasq_meanwhile
out["other_set_meanwhile"] = agree()
out["dumps"] = len(calls)

# A login between two of the dumps: the look is still one pass, and shows it half (the
# pair not yet, its map entries already): the engine's own generation, moved by the login,
# keeps the tick from acting on such a look (tests/unit/gateway/test_tick_slices.py).
calls.clear()
def login_meanwhile(family, table, name, parse, into):
    calls.append(name)
    if len(calls) == 2:
        nft.apply(ruleset.client_commands(layout, "add", clients[:1]))
    return real_dump(family, table, name, parse, into)
nl._dump_set = login_meanwhile
torn = nft.login_sets()
out["login_meanwhile"] = [
    (clients[0].ip, clients[0].mac) in torn[0], clients[0].ip in torn[1], len(calls)
]
nl._dump_set = real_dump

# A dump that fails: the listing through libnftables, with a warning.
def broken(*args):
    raise nftnetlink.NftNetlinkError(5, "nf_tables: simulated")
nl._dump_set = broken
library = []
real_run = nft._reader.run
nft._reader.run = lambda payload: (library.append(1), real_run(payload))[1]
out["fallback"] = nft.login_sets() == parse_elements(nft.elements())
out["fallback_listings"] = len(library)
out["warnings"] = warnings
print(json.dumps(out))
"""


def test_the_login_sets_read_over_netlink_are_what_libnftables_lists():
    result = run_in_namespace("hsls", "", SCRIPT)
    assert result["missing_table"] == ["nftables", 0]
    assert result["installed"] == [True, [2000, 2000, 2000, 2]]
    assert result["by_hand"] == [True, [1999, 2000, 2000, 2]]
    assert result["changed_class"] == "1:abc"
    assert not result["removed_pair"]
    before, after = result["generations"]
    assert len(before) == 1 and len(after) == 1 and before != after
    assert result["other_set_meanwhile"] == [True, [1998, 1999, 1999, 2]]
    assert result["dumps"] == 4  # one pass: no second look, no listing
    assert result["login_meanwhile"] == [False, True, 4]
    assert result["fallback"] and result["fallback_listings"] == 2
    assert result["warnings"] == [
        "nf_tables: reading the login sets: [Errno 5] nf_tables: simulated; through libnftables"
    ]  # one, for the failed dump; the missing table was not one
