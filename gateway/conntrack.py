"""conntrack adapter: forget a client's connections, so a kicked client's running transfer
stops at once instead of riding on its established entries, and a client that just logged in
leaves the walled resolver at once."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from pyroute2 import Conntrack as _Conntrack
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from hotspot.errors import ErrorCode, KernelError

log = logging.getLogger(__name__)

DNS_PORT = 53


class Conntrack:
    def __init__(self) -> None:
        self._ct: _Conntrack | None = None

    @property
    def ct(self) -> _Conntrack:
        if self._ct is None:
            self._ct = _Conntrack()
        return self._ct

    def flush_client(self, ip: str) -> int:
        """Delete every entry the client originated (before and after NAT). Returns the count."""
        return self._flush(ip, lambda _entry: True, "entries")

    def flush_client_dns(self, ip: str) -> int:
        """Delete the client's DNS flows (to port 53, UDP and TCP). NAT chose their resolver
        at their first packet: a phone that keeps its DNS socket would otherwise stay with
        the walled resolver after login until the flow idles out."""
        return self._flush(ip, _is_dns, "DNS entries")

    def _flush(self, ip: str, wanted: Callable[[Any], bool], what: str) -> int:
        deleted = 0
        try:
            # One dump (filtered here, by pyroute2): a login or a kick costs one walk of the
            # table, however many kinds of entry it forgets.
            entries = [
                e for e in self.ct.dump_entries(tuple_orig=NFCTAttrTuple(saddr=ip)) if wanted(e)
            ]
            for entry in entries:
                try:
                    self.ct.delete(entry)
                    deleted += 1
                except NetlinkError as exc:
                    if exc.code != 2:  # already gone: it timed out meanwhile
                        raise
        except NetlinkError as exc:
            raise KernelError(f"conntrack flush of {ip}: {exc}", code=ErrorCode.CONNTRACK) from exc
        log.debug("conntrack: %d %s of %s deleted", deleted, what, ip)
        return deleted

    def close(self) -> None:
        if self._ct is not None:
            self._ct.close()
            self._ct = None


def _is_dns(entry: Any) -> bool:
    orig = entry.tuple_orig
    return orig.proto in (socket.IPPROTO_UDP, socket.IPPROTO_TCP) and orig.dport == DNS_PORT
