"""What a big libnftables call leaves behind is given back (gateway/nftables.py,
``BIG_CALL_BYTES``; issue #12, item 3): against the real kernel and libnftables, in a fresh
namespace, the gateway's table with 5,000 clients. A listing of the whole table used to keep
libnftables' cache of it (every element) in the reading context — 21 MB of the C heap at
10,000 clients — and a big call's freed JSON stayed in glibc's heap until the hourly trim.

Now the reading context is made afresh after a big listing (its cache freed with the old)
and the heap is trimmed: the bytes in use do not grow with the listings, every listing still
reads every element, a small listing keeps its context; and when no fresh context can be
made (the abuse case: libnftables out of memory), the old one stays and still answers."""

from __future__ import annotations

from tests.netns.gateway.test_ctnetlink_kernel import run_in_namespace

SCRIPT = """
import ctypes, gc, ipaddress, json, logging
from gateway import nftables, ruleset, shaping
from gateway.nftables import Nftables, parse_elements

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2

def in_use_mb():
    gc.collect()
    return libc.mallinfo2().uordblks / 2**20

warnings = []
class Caught(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("gateway.nftables").addHandler(Caught())

net = ipaddress.ip_network("10.10.0.0/18")
layout = ruleset.Layout(
    table="hsmem", lan="lo", wan="lo", gateway_ip="10.10.0.1", lan_network=str(net),
    portal_port=8080, portal_ports=(8080,), portal_conn_rate=10, portal_conn_limit=20,
    lan_tcp_ports=(), walled_garden=(),
)
hosts = list(net.hosts())[1:5001]
clients = [
    ruleset.Client(str(ip), "02:00:" + ":".join(f"{b:02x}" for b in ip.packed),
                   shaping.classid_str(shaping.client_minor(str(ip), net)))
    for ip in hosts
]
nft = Nftables(layout)
nft.apply(ruleset.table_commands(layout, clients, blocked=["02:00:00:00:00:99"]))
out = {}
before = in_use_mb()
reader = nft._reader.ctx
counts = []
for _ in range(3):
    authorized, down, up, blocked = parse_elements(nft.elements())
    counts.append([len(authorized), len(down), len(up), len(blocked)])
out["counts"] = counts
out["reader_renewed"] = nft._reader.ctx != reader
out["in_use_growth_mb"] = round(in_use_mb() - before, 2)

reader = nft._reader.ctx
out["small_listing"] = nft.set_elements(ruleset.BLOCKED)
out["small_listing_kept_context"] = nft._reader.ctx == reader

# Abuse: libnftables cannot make a context any more.
real_new = nftables._Library.__init__
def refused(self):
    raise OSError("nft_ctx_new failed")
nftables._Library.__init__ = refused
reader = nft._reader.ctx
authorized, _, _, _ = parse_elements(nft.elements())
out["refused_count"] = len(authorized)
out["refused_kept_context"] = nft._reader.ctx == reader
authorized, _, _, _ = parse_elements(nft.elements())
out["refused_again_count"] = len(authorized)
nftables._Library.__init__ = real_new
out["warnings"] = warnings
nft.remove()
nft.close()
print(json.dumps(out))
"""


def test_a_big_listing_leaves_no_cache_and_every_listing_reads_every_element():
    result = run_in_namespace("hsnm", "", SCRIPT)
    assert result["counts"] == [[5000, 5000, 5000, 1]] * 3
    assert result["reader_renewed"]
    # Before: libnftables' cache of the 15,000 elements stayed (12.4 MB grown; now 0.7).
    assert result["in_use_growth_mb"] < 2.0, result
    assert result["small_listing"] == ["02:00:00:00:00:99"]
    assert result["small_listing_kept_context"]
    assert result["refused_count"] == result["refused_again_count"] == 5000
    assert result["refused_kept_context"]
    assert len(result["warnings"]) == 2
    assert all("no fresh reading context" in w for w in result["warnings"])
