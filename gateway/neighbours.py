"""Neighbour adapter: which MAC is at which address on the LAN, and the pinned entries.

The kernel's neighbour table answers almost always (the client has just talked to the
portal); otherwise one ARP request is sent. What a client says about its own MAC is never
asked.

A running session's address is *pinned*: a PERMANENT neighbour entry with the session's MAC,
which no ARP reply or gratuitous ARP can change (the kernel only lets an administrator
replace it). One netlink message per pin or release.

A session's end *releases* its pin: the entry goes back to an ordinary STALE one with the
same MAC, as if the kernel had learned it, so the kernel checks it again before it next
sends there (STALE → DELAY → PROBE), any ARP may change it, and the device's next login
finds its MAC in the table without an ARP probe (a kick and a login again, a move between
tiers). Deleting the entry instead cost the next login a probe of up to ``probe_timeout``.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

from gateway import arp, rtnl_dump
from gateway.netlink import IPRoute, NetlinkError
from hotspot.errors import ErrorCode, KernelError, UsageError
from hotspot.mac import normalize_mac

log = logging.getLogger(__name__)

# NUD states that carry a usable link-layer address.
_NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # REACHABLE STALE DELAY PROBE PERMANENT NOARP
NUD_STALE = 0x04
NUD_PERMANENT = 0x80


def _mac_bytes(mac: str) -> bytes:
    """Six bytes of a normalised MAC; ValueError for anything else."""
    raw = bytes.fromhex(normalize_mac(mac).replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


class Neighbours:
    def __init__(self, ipr: IPRoute, ifname: str, probe_timeout: float = 0.5):
        self.ipr = ipr
        self.ifname = ifname
        self.probe_timeout = probe_timeout
        self._ifindex: int | None = None
        self.prober = arp.ArpProber(ifname)  # one socket kept open (see gateway/arp.py)

    def _index(self) -> int:
        if self._ifindex is None:
            found = self.ipr.link_lookup(ifname=self.ifname)
            if not found:
                raise KernelError(f"no interface named {self.ifname}", code=ErrorCode.NO_INTERFACE)
            self._ifindex = found[0]
        return self._ifindex

    def table(self) -> dict[str, str]:
        """ip → mac for every usable IPv4 neighbour on the LAN."""
        out: dict[str, str] = {}
        try:
            entries = self.ipr.get_neighbours(family=2, ifindex=self._index())
        except NetlinkError as exc:
            raise KernelError(f"neighbour dump: {exc}", code=ErrorCode.NEIGHBOURS) from exc
        for n in entries:
            lladdr = n.get_attr("NDA_LLADDR")
            if lladdr and n.get("state", 0) & _NUD_USABLE:
                try:
                    out[n.get_attr("NDA_DST")] = normalize_mac(lladdr)
                except UsageError:
                    continue
        return out

    def pinned(self, network: ipaddress.IPv4Network) -> dict[str, str]:
        """ip → mac of every PERMANENT entry on the LAN for a client address of ``network``
        (the pins; one dump, parsed by :mod:`gateway.rtnl_dump`: the tick reads them)."""
        out: dict[str, str] = {}
        try:
            entries = rtnl_dump.neighbours(self._index())
        except OSError as exc:
            raise KernelError(f"neighbour dump: {exc}", code=ErrorCode.NEIGHBOURS) from exc
        # (as integers: an IPv4Address per entry was a fifth of the read with 10,000 pins)
        first, last = int(network.network_address), int(network.broadcast_address)
        for n in entries:
            if not (n.state & NUD_PERMANENT and len(n.lladdr) == 6):
                continue
            if not first < int.from_bytes(socket.inet_aton(n.ip), "big") < last:
                continue
            out[n.ip] = n.lladdr.hex(":")
        return out

    # A login's and a kick's requests (lookup, pin, unpin) go through gateway/rtnl_dump.py
    # on the calling thread: pyroute2 took ~0.7 ms each, plus a hop to the netlink thread
    # and back (bench/README.md, "The gap over the socket").

    def pin(self, ip: str, mac: str) -> None:
        """Make ``ip`` → ``mac`` a PERMANENT entry (replacing whatever was there)."""
        try:
            rtnl_dump.set_neighbour(self._index(), ip, _mac_bytes(mac), NUD_PERMANENT)
        except (OSError, ValueError, UsageError) as exc:
            raise KernelError(f"pinning {ip} to {mac}: {exc}", code=ErrorCode.NEIGHBOURS) from exc

    def release(self, ip: str, mac: str) -> None:
        """Make the pin of ``ip`` an ordinary STALE entry of ``mac`` (see the module's
        docstring)."""
        try:
            rtnl_dump.set_neighbour(self._index(), ip, _mac_bytes(mac), NUD_STALE)
        except (OSError, ValueError, UsageError) as exc:
            raise KernelError(f"releasing {ip} ({mac}): {exc}", code=ErrorCode.NEIGHBOURS) from exc

    def unpin(self, ip: str) -> None:
        """Remove the entry of ``ip``; one already gone is fine."""
        try:
            rtnl_dump.delete_neighbour(self._index(), ip)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise KernelError(f"unpinning {ip}: {exc}", code=ErrorCode.NEIGHBOURS) from exc

    def lookup(self, ip: str) -> str | None:
        """One targeted RTM_GETNEIGH: cost does not grow with the number of clients."""
        try:
            n = rtnl_dump.neighbour(self._index(), ip)
        except OSError as exc:
            raise KernelError(
                f"neighbour lookup of {ip}: {exc}", code=ErrorCode.NEIGHBOURS
            ) from exc
        if n is None or len(n.lladdr) != 6 or not n.state & _NUD_USABLE:
            return None
        try:
            return normalize_mac(n.lladdr.hex(":"))
        except UsageError:
            return None

    def mac_of(self, ip: str, probe: bool = True) -> str | None:
        mac = self.lookup(ip)
        if mac is None and probe:
            mac = self.arp_probe(ip)
        return mac

    def ip_of(self, mac: str) -> str | None:
        for ip, known in self.table().items():
            if known == mac:
                return ip
        return None

    def close(self) -> None:
        self.prober.close()

    def arp_probe(self, ip: str) -> str | None:
        """One ARP who-has on the LAN; the answer's sender MAC, or None."""
        try:
            mac = self.prober.probe(ip, self.probe_timeout)
        except OSError as exc:
            raise KernelError(f"ARP probe of {ip}: {exc}", code=ErrorCode.NEIGHBOURS) from exc
        if mac is None:
            return None
        try:
            return normalize_mac(mac)
        except UsageError:
            return None
