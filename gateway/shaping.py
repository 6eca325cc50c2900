"""Pure traffic-shaping plan: which HTB class a client gets and with which figures.

One HTB tree per direction: download on the LAN bridge's egress, upload on the WAN's egress.

    1:        htb, default 1:fffe
    1:ffff    the backhaul: rate = ceil = uplink capacity
      1:<n>   one class per client; n = the client's host index in the LAN subnet
        <2n>:     its tbf leaf (the GSO splitter, see gateway.tc)
          <2n+1>: fq_codel under the tbf, where the leaf is fq_codel
    1:fffe    unclassified traffic (the gateway's own); on the LAN a sibling of 1:ffff
              at LAN speed (portal pages never cross the backhaul), on the WAN a child of it
      7ffe:   its pfifo leaf, or
      7fff:   its fq_codel leaf

Client classes are guaranteed almost nothing and may borrow up to their tier: every byte
they send is borrowed from 1:ffff, so the uplink cap holds, and equal quanta make the
clients share it equally when it is full.

Every qdisc has an explicit handle whose major is in 0x0001-0x7fff (see
:func:`splitter_handle`).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

ROOT_HANDLE = 0x10000  # "1:"
BACKHAUL_MINOR = 0xFFFF
DEFAULT_MINOR = 0xFFFE
MTU_QUANTUM = 1514  # one full Ethernet frame per DRR round, the same for every client
GUARANTEED_KBPS = 8
ETHERNET_HEADER = 14
PFIFO_LIMIT = 128

# Qdisc handles. A qdisc created without a handle gets one from a machine-wide kernel
# counter that walks the majors 0x8000-0xfffe (qdisc_alloc_handle), whatever the device
# or namespace. An explicit handle in that range may already belong to a qdisc the counter
# gave out on the same device, and then the kernel refuses to create ours (EINVAL): a
# client could never be shaped (and so never authorized) until the next reboot. So every
# qdisc here has an explicit handle with a major in 0x0001-0x7fff, which the kernel never
# hands out on its own. A qdisc handle is a major alone, so that is 32,767 handles per
# device: the root, two per client (tbf, fq_codel) and the default class's leaves fit a
# /18 exactly (a larger LAN is refused at start-up).
MAX_HOST_INDEX = 0x3FFE  # the largest host index of a /18 (16,382 hosts)
# The default class's leaf has one handle per kind: the kernel changes a qdisc's
# parameters in place but never its kind (that is EINVAL too), so a switch between pfifo
# and fq_codel must be a new qdisc grafted in place of the old one.
DEFAULT_LEAF_HANDLES = {"pfifo": 0x7FFE << 16, "fq_codel": 0x7FFF << 16}


def classid(minor: int) -> int:
    return ROOT_HANDLE | minor


def classid_str(minor: int) -> str:
    return f"1:{minor:x}"


@functools.lru_cache(maxsize=65536)
def client_minor(ip: str | ipaddress.IPv4Address, network: ipaddress.IPv4Network) -> int:
    """The HTB minor id of a client: its host index in the LAN subnet (10.10.0.42 → 0x2a)."""
    addr = ipaddress.IPv4Address(ip)
    if addr not in network or addr in (network.network_address, network.broadcast_address):
        raise ValueError(f"{addr} is not a host address of {network}")
    minor = int(addr) - int(network.network_address)
    if minor >= DEFAULT_MINOR:
        raise ValueError(f"{addr} has no class id in {network}")
    return minor


def client_ip(minor: int, network: ipaddress.IPv4Network) -> str:
    return str(ipaddress.IPv4Address(int(network.network_address) + minor))


def splitter_handle(minor: int) -> int:
    """The handle of client ``minor``'s tbf leaf: major 2 × host index (10.10.0.42 → 54:)."""
    if not 1 <= minor <= MAX_HOST_INDEX:
        raise ValueError(
            f"host index {minor:#x} has no qdisc handle (at most {MAX_HOST_INDEX:#x}: a /18)"
        )
    return (2 * minor) << 16


def splitter_child_handle(minor: int) -> int:
    """The handle of the fq_codel under client ``minor``'s tbf: the next major (→ 55:)."""
    return splitter_handle(minor) + (1 << 16)


def shapeable(network: ipaddress.IPv4Network) -> bool:
    """Whether every host address of ``network`` has qdisc handles (a /18 or smaller)."""
    return network.num_addresses - 2 <= MAX_HOST_INDEX


def burst_bytes(kbps: int) -> int:
    """About 4 ms of traffic and never less than a frame and a half: keeps HTB accurate at
    20 Mbit/s and above without letting a slow class send a long burst."""
    return max(1600, kbps * 1000 // 8 // 250)


@dataclass(frozen=True)
class HtbClass:
    minor: int
    parent_minor: int | None  # None: attached to the qdisc root
    rate_kbps: int
    ceil_kbps: int

    @property
    def handle(self) -> str:
        return classid_str(self.minor)


def skeleton(uplink_kbps: int, local_kbps: int | None) -> list[HtbClass]:
    """The fixed classes of one direction; ``local_kbps`` set means the LAN side."""
    backhaul = HtbClass(BACKHAUL_MINOR, None, uplink_kbps, uplink_kbps)
    if local_kbps is not None:
        default = HtbClass(DEFAULT_MINOR, None, local_kbps, local_kbps)
    else:
        default = HtbClass(
            DEFAULT_MINOR, BACKHAUL_MINOR, min(GUARANTEED_KBPS, uplink_kbps), uplink_kbps
        )
    return [backhaul, default]


def client_class(minor: int, tier_kbps: int) -> HtbClass:
    return HtbClass(minor, BACKHAUL_MINOR, min(GUARANTEED_KBPS, tier_kbps), tier_kbps)


def ip_layer_bytes(frame_bytes: int, packets: int) -> int:
    """HTB counts whole frames; carriers (and our reports) count IP packets."""
    return max(0, frame_bytes - ETHERNET_HEADER * packets)
