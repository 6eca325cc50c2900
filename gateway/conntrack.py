"""conntrack adapter: forget a client's connections, so a kicked client's running transfer
stops at once instead of riding on its established entries, and a client that just logged in
leaves the walled resolver and the portal's redirect at once."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from gateway.ctnetlink import CtEntry, CtNetlink
from hotspot.errors import ErrorCode, KernelError

log = logging.getLogger(__name__)

DNS_PORT = 53
HTTP_PORT = 80


class Conntrack:
    def __init__(self) -> None:
        # One netlink socket for the daemon's life, opened at the first flush (it was
        # pyroute2's Conntrack on a thread of its own: see gateway/ctnetlink.py for why not).
        self.ct = CtNetlink()

    def flush_client(self, ip: str) -> int:
        """Delete every entry the client originated (before and after NAT). Returns the count."""
        return self._flush(ip, lambda _entry: True, "entries")

    def flush_walled(self, ip: str, portal: tuple[str, int]) -> int:
        """At login: delete the client's flows that NAT sent somewhere else than where they
        were going while it was walled — its DNS (to the walled resolver) and its plain-HTTP
        connections to any host (redirected to the portal at ``portal``, address and port).

        A browser keeps the connections it opened while walled (keep-alive, and sockets
        opened ahead of need); NAT chose their destination at their first packet, so without
        this the next page after login would come from the portal again. With its entry gone,
        the next packet of such a connection is not redirected: the real host answers it with
        a reset and the browser opens a new connection, which goes out. Connections to the
        gateway's own address stay (``http://<gateway>/`` is the portal for everyone). One
        dump of the client's entries, filtered by the kernel: as cheap as the DNS flush."""
        return self._flush(
            ip, lambda e: _is_dns(e) or _is_redirected_http(e, portal), "walled entries"
        )

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
        self.ct.close()


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
