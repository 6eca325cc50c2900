"""conntrack adapter: forget a client's connections, so a kicked client's running transfer
stops at once instead of riding on its established entries."""

from __future__ import annotations

import logging

from pyroute2 import Conntrack as _Conntrack
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from hotspot.errors import ErrorCode, KernelError

log = logging.getLogger(__name__)


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
        deleted = 0
        try:
            entries = list(self.ct.dump_entries(tuple_orig=NFCTAttrTuple(saddr=ip)))
            for entry in entries:
                try:
                    self.ct.delete(entry)
                    deleted += 1
                except NetlinkError as exc:
                    if exc.code != 2:  # already gone: it timed out meanwhile
                        raise
        except NetlinkError as exc:
            raise KernelError(f"conntrack flush of {ip}: {exc}", code=ErrorCode.CONNTRACK) from exc
        log.debug("conntrack: %d entries of %s deleted", deleted, ip)
        return deleted

    def close(self) -> None:
        if self._ct is not None:
            self._ct.close()
            self._ct = None
