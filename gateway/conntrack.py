"""conntrack adapter: forget a client's connections, so a kicked client's running transfer
stops at once instead of riding on its established entries; and, after their reply, the
walled (redirected) entries of clients that logged in (:class:`WalledSweep`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway.netlink import Conntrack as _Conntrack
from gateway.netlink import NetlinkError, NFCTAttrTuple
from gateway.netlink_thread import OnOneThread
from hotspot.errors import ErrorCode, KernelError

log = logging.getLogger(__name__)


class Conntrack:
    def __init__(self, name: str = "conntrack") -> None:
        self.name = name
        self._ct: OnOneThread[_Conntrack] | None = None

    @property
    def ct(self) -> OnOneThread[_Conntrack]:
        if self._ct is None:
            # One thread for every call: pyroute2 leaks a socket per calling thread.
            self._ct = OnOneThread(_Conntrack, name=self.name)
        return self._ct

    def flush_client(self, ip: str) -> int:
        """Delete every entry the client originated (before and after NAT). Returns the count."""
        return self._flush(ip, lambda _entry: True, "entries")

    def _flush(self, ip: str, wanted: Callable[[Any], bool], what: str) -> int:
        deleted = 0
        try:
            # One dump, filtered by source address in the kernel, which walks the machine's
            # whole table for it: a kick costs one walk, however few entries the client has.
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


class WalledSweep:
    """Deletes the walled (redirected, ``ct mark`` ``mark``) conntrack entries of clients that
    logged in, after their reply and in batches: at most one walk of the conntrack table per
    ``delay`` seconds, for every client that logged in meanwhile.

    The table refuses those connections from the login on (``ruleset.WALLED_CT_MARK``); this
    is the cleanup behind it, so that a resolver reusing one socket for minutes is not refused
    all that time. The walk costs the same for one client as for a hundred (the kernel goes
    through the machine's whole hash table, ~15 ms of CPU on the bench machine, tens under
    load): after a power cut, when hundreds log in within seconds, one walk serves them all.
    It runs on a thread and netlink socket of its own: a kick's flush never queues behind it.
    A failure is logged; the entries then time out (2 minutes for DNS when unused)."""

    def __init__(self, mark: int, delay: float = 0.5, name: str = "walled-sweep"):
        self.mark = mark
        self.delay = delay
        self._conntrack = Conntrack(name=name)
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._scheduled = False

    def add(self, ip: str) -> None:
        """``ip`` logged in: its walled entries go at the next sweep (within ``delay``)."""
        with self._lock:
            self._pending.add(ip)
            if self._scheduled:
                return
            self._scheduled = True
        self._conntrack.ct.soon(self._sweep)

    def _sweep(self) -> int:
        time.sleep(self.delay)  # on the sweep's own thread: gathers the logins meanwhile
        with self._lock:
            ips, self._pending = self._pending, set()
            self._scheduled = False
        deleted = 0
        try:
            # Filtered by mark in the kernel: only redirected entries come back.
            for entry in self._conntrack.ct.dump_entries(mark=self.mark):
                if entry.tuple_orig.saddr not in ips:
                    continue  # a walled client's: it still needs its redirect
                try:
                    self._conntrack.ct.delete(entry)
                    deleted += 1
                except NetlinkError as exc:
                    if exc.code != 2:  # already gone: it timed out meanwhile
                        raise
        except NetlinkError as exc:
            log.warning("conntrack: walled entries of %d logins: %s", len(ips), exc)
            return deleted
        log.debug("conntrack: %d walled entries of %d logins deleted", deleted, len(ips))
        return deleted

    def close(self) -> None:
        self._conntrack.close()
