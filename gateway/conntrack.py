"""conntrack adapter: forget a client's connections, so a kicked client's running transfer
stops at once instead of riding on its established entries, and a client that just logged in
leaves the walled resolver and the portal's redirect at once."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from gateway.ctnetlink import ClientFlowIndex, CtEntry, CtNetlink, RedirectIndex
from hotspot.errors import ErrorCode, KernelError

log = logging.getLogger(__name__)

DNS_PORT = 53
HTTP_PORT = 80


class Conntrack:
    def __init__(self) -> None:
        # One netlink socket for the daemon's life, opened at the first flush (it was
        # pyroute2's Conntrack on a thread of its own: see gateway/ctnetlink.py for why not).
        self.ct = CtNetlink()
        # The walled (redirected) flows, kept by the kernel's events: a login looks its
        # client's up here instead of dumping (a dump walks the kernel's whole hash table).
        self.redirects: RedirectIndex | None = None
        # Every flow of the LAN's clients, kept the same way: a kick or an expiry deletes its
        # client's entries by their tuples instead of dumping.
        self.flows: ClientFlowIndex | None = None

    def watch_redirects(self, local: str, ports: dict[int, tuple[int, ...]]) -> None:
        """Start the index of the flows NAT redirects to ``local``'s ``ports`` (port ->
        protocols). Without it (the kernel refused the events) a login dumps, as before."""
        if self.redirects is not None:
            return
        index = RedirectIndex(self.ct, local, ports)
        try:
            index.start()
        except OSError as exc:
            log.warning("conntrack: no events (%s): a login walks the table instead", exc)
            return
        self.redirects = index
        log.info("conntrack: index of redirected flows started (%d now)", len(index))

    def watch_clients(self, network: ipaddress.IPv4Network) -> None:
        """Start the index of every flow ``network``'s addresses originate (seeded on its
        own thread: kicks dump until it is in). Without it (the kernel refused the events)
        a kick dumps, as before."""
        if self.flows is not None:
            return
        index = ClientFlowIndex(network, _conntrack_max())
        try:
            index.start()
        except OSError as exc:
            index.close()
            log.warning("conntrack: no events (%s): a kick walks the table instead", exc)
            return
        self.flows = index

    def flush_client(self, ip: str) -> int:
        """Delete every entry the client originated (before and after NAT). Returns the count.

        The entries come from the index the kernel's events keep
        (:class:`gateway.ctnetlink.ClientFlowIndex`): a hash lookup per entry, no walk of
        the kernel's table; when the index cannot say (not seeded yet, events lost, or no
        events at all), from a dump of the client's entries."""
        if self.flows is None:
            return self._flush(ip, lambda _entry: True, "entries")
        try:
            tuples = self.flows.tuples_from(ip)
            if tuples is None:
                return self._flush(ip, lambda _entry: True, "entries")
            deleted = self.ct.delete_tuples(tuples)
            self.flows.forget(ip, tuples)
        except OSError as exc:
            raise KernelError(f"conntrack flush of {ip}: {exc}", code=ErrorCode.CONNTRACK) from exc
        log.debug("conntrack: %d entries of %s deleted (indexed)", deleted, ip)
        return deleted

    def flush_walled(self, ip: str, portal: tuple[str, int]) -> int:
        """At login: delete the client's flows that NAT sent somewhere else than where they
        were going while it was walled — its DNS (to the walled resolver) and its plain-HTTP
        connections to any host (redirected to the portal at ``portal``, address and port).

        A browser keeps the connections it opened while walled (keep-alive, and sockets
        opened ahead of need); NAT chose their destination at their first packet, so without
        this the next page after login would come from the portal again. With its entry gone,
        the next packet of such a connection is not redirected: the real host answers it with
        a reset and the browser opens a new connection, which goes out. Connections to the
        gateway's own address stay (``http://<gateway>/`` is the portal for everyone).

        The client's redirected entries come from the index the kernel's events keep
        (:class:`gateway.ctnetlink.RedirectIndex`): no dump, so no walk of the kernel's
        whole hash table; without the index, from a dump of the client's entries."""

        def wanted(entry: CtEntry) -> bool:
            return _is_dns(entry) or _is_redirected_http(entry, portal)

        if self.redirects is None:
            return self._flush(ip, wanted, "walled entries")
        try:
            indexed = self.redirects.entries_from(ip)
            if indexed is None:  # events lost to a flood: the index cannot say
                return self._flush(ip, wanted, "walled entries")
            entries = [e for e in indexed if wanted(e)]
            deleted = self.ct.delete(entries)
            self.redirects.forget(entries)
        except OSError as exc:
            raise KernelError(f"conntrack flush of {ip}: {exc}", code=ErrorCode.CONNTRACK) from exc
        log.debug("conntrack: %d walled entries of %s deleted (indexed)", deleted, ip)
        return deleted

    def _flush(self, ip: str, wanted: Callable[[CtEntry], bool], what: str) -> int:
        try:
            # One dump of the client's entries (filtered by the kernel, which walks its whole
            # hash table for it: a login or a kick costs one walk, however many kinds of
            # entry it forgets), then every deletion in one message; one already gone (it
            # timed out meanwhile) is not an error.
            deleted = self.ct.delete([e for e in self.ct.entries_from(ip) if wanted(e)])
        except OSError as exc:
            raise KernelError(f"conntrack flush of {ip}: {exc}", code=ErrorCode.CONNTRACK) from exc
        log.debug("conntrack: %d %s of %s deleted", deleted, what, ip)
        return deleted

    def close(self) -> None:
        if self.redirects is not None:
            self.redirects.close()
            self.redirects = None
        if self.flows is not None:
            self.flows.close()
            self.flows = None
        self.ct.close()


CONNTRACK_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")
DEFAULT_CONNTRACK_MAX = 262_144


def _conntrack_max() -> int:
    """The kernel's table size (the client-flow index's bound): the running namespace's."""
    try:
        return int(CONNTRACK_MAX.read_text())
    except (OSError, ValueError) as exc:
        log.warning(
            "conntrack: %s unreadable (%s): %d assumed", CONNTRACK_MAX, exc, DEFAULT_CONNTRACK_MAX
        )
        return DEFAULT_CONNTRACK_MAX


def _is_dns(entry: CtEntry) -> bool:
    orig = entry.tuple_orig
    return orig.proto in (socket.IPPROTO_UDP, socket.IPPROTO_TCP) and orig.dport == DNS_PORT


def _is_redirected_http(entry: CtEntry, portal: tuple[str, int]) -> bool:
    """A plain-HTTP connection to another host that NAT redirected to the portal: its
    replies come from the portal's address and port."""
    orig, reply = entry.tuple_orig, entry.tuple_reply
    return (
        orig.proto == socket.IPPROTO_TCP
        and orig.dport == HTTP_PORT
        and orig.daddr != portal[0]
        and (reply.saddr, reply.sport) == portal
    )
