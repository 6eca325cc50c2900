"""tc adapter: one HTB tree on one device, over rtnetlink (pyroute2).

Every call is one or two netlink messages; a full counter read is one class dump.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Iterable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hotspot.errors import KernelError
from gateway import shaping
from gateway.shaping import HtbClass

log = logging.getLogger(__name__)

TC_H_ROOT = 0xFFFFFFFF


@dataclass(frozen=True)
class ClassReading:
    minor: int
    ceil_kbps: int
    bytes: int  # 64-bit frame bytes, never wraps in practice
    packets: int  # 32-bit, wraps


def detect_leaf(ipr: IPRoute, index: int, wanted: str) -> str:
    """``fq_codel`` where the kernel has it (a Pi does), else ``pfifo``."""
    if wanted != "auto":
        return wanted
    # Probe on a throwaway class of a throwaway root would disturb traffic; instead try to
    # attach fq_codel under the default class, which is what we want there anyway.
    try:
        ipr.tc("replace", "fq_codel", index=index, parent=shaping.classid(shaping.DEFAULT_MINOR))
    except NetlinkError as exc:
        if exc.code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL):
            return "pfifo"
        raise
    return "fq_codel"


class Shaper:
    """The HTB tree of one device (LAN bridge: download; WAN: upload)."""

    def __init__(self, ipr: IPRoute, ifname: str, skeleton: list[HtbClass], leaf: str = "auto"):
        self.ipr = ipr
        self.ifname = ifname
        self.skeleton = skeleton
        self.wanted_leaf = leaf
        self.leaf = "pfifo" if leaf == "auto" else leaf
        self._index: int | None = None

    @property
    def index(self) -> int:
        if self._index is None:
            found = self.ipr.link_lookup(ifname=self.ifname)
            if not found:
                raise KernelError(f"tc: no interface named {self.ifname}", code="no-interface")
            self._index = found[0]
        return self._index

    def _tc(self, *args, **kwargs) -> None:
        try:
            self.ipr.tc(*args, index=self.index, **kwargs)
        except NetlinkError as exc:
            raise KernelError(f"tc {args[0]} {args[1]} on {self.ifname}: {exc}", code="tc") from exc

    def _root_is_ours(self) -> bool:
        for q in self.ipr.get_qdiscs(index=self.index):
            if q.get("parent") == TC_H_ROOT:
                return q.get_attr("TCA_KIND") == "htb" and q.get("handle") == shaping.ROOT_HANDLE
        return False

    def install(self) -> bool:
        """Make sure the root HTB and the fixed classes exist (keeping client classes, so a
        restart does not interrupt anybody). Returns True when the root was (re)created."""
        created = False
        if not self._root_is_ours():
            self._tc("replace", "htb", handle=shaping.ROOT_HANDLE, parent=TC_H_ROOT,
                     default=shaping.DEFAULT_MINOR, r2q=10)
            created = True
        for cls in self.skeleton:
            self._put_class(cls)
        self.leaf = detect_leaf(self.ipr, self.index, self.wanted_leaf)
        self._put_leaf(shaping.DEFAULT_MINOR)
        log.info("tc: HTB on %s ready (leaf %s%s)", self.ifname, self.leaf,
                 ", created" if created else "")
        return created

    def _put_class(self, cls: HtbClass) -> None:
        parent = (shaping.ROOT_HANDLE if cls.parent_minor is None
                  else shaping.classid(cls.parent_minor))
        self._tc("replace-class", "htb", handle=shaping.classid(cls.minor), parent=parent,
                 rate=f"{cls.rate_kbps}kbit", ceil=f"{cls.ceil_kbps}kbit",
                 burst=shaping.burst_bytes(cls.rate_kbps),
                 cburst=shaping.burst_bytes(cls.ceil_kbps), quantum=shaping.MTU_QUANTUM)

    def _put_leaf(self, minor: int) -> None:
        parent = shaping.classid(minor)
        if self.leaf == "fq_codel":
            self._tc("replace", "fq_codel", parent=parent)
        else:
            self._tc("replace", "pfifo", parent=parent, limit=shaping.PFIFO_LIMIT)

    def set_client(self, minor: int, ceil_kbps: int, *, new: bool = True) -> None:
        """Create or change a client's class; a new class also gets its leaf qdisc."""
        self._put_class(shaping.client_class(minor, ceil_kbps))
        if new:
            self._put_leaf(minor)

    def delete_client(self, minor: int) -> None:
        try:
            self.ipr.tc("del-class", index=self.index, handle=shaping.classid(minor),
                        parent=shaping.classid(shaping.BACKHAUL_MINOR))
        except NetlinkError as exc:
            if exc.code != errno.ENOENT:
                raise KernelError(f"tc del-class 1:{minor:x} on {self.ifname}: {exc}",
                                  code="tc") from exc

    def readings(self) -> dict[int, ClassReading]:
        """Every client class with its ceiling and counters, from one netlink dump."""
        out: dict[int, ClassReading] = {}
        try:
            dump = self.ipr.get_classes(index=self.index)
        except NetlinkError as exc:
            raise KernelError(f"tc dump on {self.ifname}: {exc}", code="tc") from exc
        for msg in dump:
            handle = msg.get("handle")
            if handle >> 16 != 1 or msg.get_attr("TCA_KIND") != "htb":
                continue
            minor = handle & 0xFFFF
            if minor in (shaping.BACKHAUL_MINOR, shaping.DEFAULT_MINOR):
                continue
            opts = msg.get_attr("TCA_OPTIONS")
            parms = opts.get_attr("TCA_HTB_PARMS") if opts is not None else None
            ceil = (opts.get_attr("TCA_HTB_CEIL64") if opts is not None else None) or (
                parms["ceil"] if parms else 0)
            stats = msg.get_attr("TCA_STATS2")
            basic = stats.get_attr("TCA_STATS_BASIC") if stats is not None else None
            out[minor] = ClassReading(
                minor=minor, ceil_kbps=round(ceil * 8 / 1000),
                bytes=basic["bytes"] if basic else 0, packets=basic["packets"] if basic else 0)
        return out

    def remove(self) -> None:
        try:
            self.ipr.tc("del", index=self.index, parent=TC_H_ROOT)
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.EINVAL):
                raise KernelError(f"tc del root on {self.ifname}: {exc}", code="tc") from exc

    def delete_clients(self, minors: Iterable[int]) -> None:
        for minor in minors:
            self.delete_client(minor)
