"""tc adapter: one HTB tree on one device.

A login's class change and a kick's removal are one rtnetlink message each, packed by
:mod:`gateway.rtnl_dump`; the qdiscs (root, leaves) go through pyroute2; a big change (start-up after a
reboot, a large reconcile) is one ``tc -batch`` run; a full counter read is one class dump
parsed by :mod:`gateway.rtnl_dump`.

Each client class has a ``tbf`` leaf at a rate no tier reaches, whose only job is to split
GSO/GRO super-packets (up to 64 KB, from TSO on the sender or GRO on the NIC) into frames:
HTB would otherwise let a 1 Mbit/s class send 64 KB at once and then stall for half a
second. Under the tbf sits fq_codel where the kernel has it; else tbf's own byte FIFO.

Every qdisc made here has an explicit handle outside the kernel's automatic range
(:mod:`gateway.shaping` explains why and how they are numbered).
"""

from __future__ import annotations

import errno
import logging
import shutil
import subprocess
from collections.abc import Callable, Collection, Iterable
from typing import Any, NamedTuple

from gateway import rtnl_dump, shaping
from gateway.netlink import IPRoute, NetlinkError
from gateway.shaping import HtbClass
from hotspot.errors import ErrorCode, KernelError

log = logging.getLogger(__name__)

# progress(done, total): class changes applied so far, of all this call's.
BatchProgress = Callable[[int, int], None]

TC_H_ROOT = 0xFFFFFFFF
BULK_THRESHOLD = 16  # changes at once above which one `tc -batch` beats netlink calls
BATCH_CHANGES = 1000  # class changes a `tc -batch` run (see Shaper.apply_bulk)
# A class asked for by itself costs the kernel and the parse about four times its share of
# a whole dump (bench.tick_read, 16,381 classes, Intel Xeon: 1,000 asked for 9.0 ms, 4,000
# 35.8 ms, the dump 38.2 ms): fewer classes than a quarter of the last dump's are asked for,
# more are dumped.
GET_PER_DUMP_COST = 4
# The slowest run, a /18's last thousand classes, takes about 5 s on the development machine
# (16,382 in 40 s: bench/README.md): the timeout is for a tc that hangs, not a slow kernel.
BATCH_TIMEOUT_S = 120.0
# The GSO splitter: far above any tier, a burst of a few frames so that every real frame
# fits (tbf drops a non-GSO packet larger than its burst) and super-packets are split.
SPLITTER_RATE = "10gbit"
SPLITTER_BURST = 4 * shaping.MTU_QUANTUM
SPLITTER_LIMIT = shaping.PFIFO_LIMIT * shaping.MTU_QUANTUM


class ClassReading(NamedTuple):
    # (a tuple, not a frozen dataclass: the tick makes two thousand a tick with a /22's
    # pool, and a frozen dataclass's construction cost a third of the lean dump's time)
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
        ipr.tc(
            "replace",
            "fq_codel",
            index=index,
            parent=shaping.classid(shaping.DEFAULT_MINOR),
            handle=shaping.DEFAULT_LEAF_HANDLES["fq_codel"],
        )
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
        # How many classes the last whole dump of the device gave (None before the first).
        self._classes_seen: int | None = None

    @property
    def index(self) -> int:
        if self._index is None:
            found = self.ipr.link_lookup(ifname=self.ifname)
            if not found:
                raise KernelError(
                    f"tc: no interface named {self.ifname}", code=ErrorCode.NO_INTERFACE
                )
            self._index = found[0]
        return self._index

    def _tc(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.ipr.tc(*args, index=self.index, **kwargs)
        except NetlinkError as exc:
            raise KernelError(
                f"tc {args[0]} {args[1]} on {self.ifname}: {exc}", code=ErrorCode.TC
            ) from exc

    def _dump(self, what: int = rtnl_dump.RTM_GETTCLASS) -> list[rtnl_dump.TcObject]:
        try:
            return rtnl_dump.dump(self.index, what)
        except OSError as exc:
            raise KernelError(f"tc dump on {self.ifname}: {exc}", code=ErrorCode.TC) from exc

    def _root_is_ours(self) -> bool:
        for q in self._dump(rtnl_dump.RTM_GETQDISC):
            if q.parent == TC_H_ROOT:
                return q.kind == "htb" and q.handle == shaping.ROOT_HANDLE
        return False

    def install(self) -> bool:
        """Make sure the root HTB and the fixed classes exist (keeping client classes, so a
        restart does not interrupt anybody). Returns True when the root was (re)created."""
        created = False
        if not self._root_is_ours():
            self._tc(
                "replace",
                "htb",
                handle=shaping.ROOT_HANDLE,
                parent=TC_H_ROOT,
                default=shaping.DEFAULT_MINOR,
                r2q=10,
            )
            created = True
        for cls in self.skeleton:
            self._put_class(cls)
        self.leaf = detect_leaf(self.ipr, self.index, self.wanted_leaf)
        self._put_default_leaf()
        log.info(
            "tc: HTB on %s ready (leaf %s%s)",
            self.ifname,
            self.leaf,
            ", created" if created else "",
        )
        return created

    def _put_class(self, cls: HtbClass) -> None:
        parent = (
            shaping.ROOT_HANDLE if cls.parent_minor is None else shaping.classid(cls.parent_minor)
        )
        try:
            rtnl_dump.put_htb_class(
                rtnl_dump.htb_class_body(
                    self.index,
                    shaping.classid(cls.minor),
                    parent,
                    rate_bytes=cls.rate_kbps * 1000 // 8,
                    ceil_bytes=cls.ceil_kbps * 1000 // 8,
                    burst=shaping.burst_bytes(cls.rate_kbps),
                    cburst=shaping.burst_bytes(cls.ceil_kbps),
                    quantum=shaping.MTU_QUANTUM,
                )
            )
        except OSError as exc:
            raise KernelError(
                f"tc replace-class htb 1:{cls.minor:x} on {self.ifname}: {exc}",
                code=ErrorCode.TC,
            ) from exc

    def _put_default_leaf(self) -> None:
        parent = shaping.classid(shaping.DEFAULT_MINOR)
        handle = shaping.DEFAULT_LEAF_HANDLES[self.leaf]
        if self.leaf == "fq_codel":
            self._tc("replace", "fq_codel", parent=parent, handle=handle)
        else:
            self._tc("replace", "pfifo", parent=parent, handle=handle, limit=shaping.PFIFO_LIMIT)

    def _put_leaf(self, minor: int) -> None:
        handle = shaping.splitter_handle(minor)
        self._tc(
            "replace",
            "tbf",
            parent=shaping.classid(minor),
            handle=handle,
            rate=SPLITTER_RATE,
            burst=SPLITTER_BURST,
            limit=SPLITTER_LIMIT,
        )
        if self.leaf == "fq_codel":
            self._tc(
                "replace",
                "fq_codel",
                parent=handle | 1,
                handle=shaping.splitter_child_handle(minor),
            )

    def stale_leaves(self, minors: Iterable[int]) -> set[int]:
        """Which of these client classes lack the leaf qdiscs :meth:`set_client` makes, by
        kind and handle (a tree left by an older gateway, a leaf replaced by hand), from
        one qdisc dump."""
        leaf_at = {q.parent: q for q in self._dump(rtnl_dump.RTM_GETQDISC)}
        stale = set()
        for minor in minors:
            if not 1 <= minor <= shaping.MAX_HOST_INDEX:
                continue  # not a host of a LAN we can shape: the reconcile removes it
            tbf = leaf_at.get(shaping.classid(minor))
            handle = shaping.splitter_handle(minor)
            if tbf is None or tbf.kind != "tbf" or tbf.handle != handle:
                stale.add(minor)
            elif self.leaf == "fq_codel":
                child = leaf_at.get(handle | 1)
                if (
                    child is None
                    or child.kind != "fq_codel"
                    or child.handle != shaping.splitter_child_handle(minor)
                ):
                    stale.add(minor)
        return stale

    def _batch_lines(
        self, changes: Iterable[tuple[int, int, bool]], deletions: Iterable[int]
    ) -> list[str]:
        dev = self.ifname
        lines = []
        for minor, kbps, with_leaf in changes:
            cls = shaping.client_class(minor, kbps)
            lines.append(
                f"class replace dev {dev} parent 1:{shaping.BACKHAUL_MINOR:x} "
                f"classid {cls.handle} htb rate {cls.rate_kbps}kbit ceil {cls.ceil_kbps}kbit "
                f"burst {shaping.burst_bytes(cls.rate_kbps)} "
                f"cburst {shaping.burst_bytes(cls.ceil_kbps)} quantum {shaping.MTU_QUANTUM}"
            )
            if with_leaf:
                major = shaping.splitter_handle(minor) >> 16
                lines.append(
                    f"qdisc replace dev {dev} parent {cls.handle} handle {major:x}: "
                    f"tbf rate {SPLITTER_RATE} burst {SPLITTER_BURST} "
                    f"limit {SPLITTER_LIMIT}"
                )
                if self.leaf == "fq_codel":
                    child = shaping.splitter_child_handle(minor) >> 16
                    lines.append(
                        f"qdisc replace dev {dev} parent {major:x}:1 handle {child:x}: fq_codel"
                    )
        for minor in deletions:
            lines.append(f"class del dev {dev} classid {shaping.classid_str(minor)}")
        return lines

    def apply_bulk(
        self,
        changes: list[tuple[int, int, bool]],
        deletions: list[int],
        progress: BatchProgress | None = None,
    ) -> None:
        """Many class changes at once: netlink calls for a few, ``tc -batch`` runs for many.
        A change is (minor, ceiling, whether its leaf qdiscs must be made too).

        Many is at most :data:`BATCH_CHANGES` a run, each with its own timeout: a new class
        costs the kernel a walk of every class of the qdisc (bench/README.md, "The /18"),
        so a /18's first start creates 16,382 classes a device in minutes on a slow or busy
        machine, and one run for them all outlived any timeout. ``progress(done, total)``
        is called before each run (the daemon extends systemd's start timeout with it)."""
        if len(changes) + len(deletions) <= BULK_THRESHOLD:
            for minor, kbps, with_leaf in changes:
                self.set_client(minor, kbps, with_leaf=with_leaf)
            self.delete_clients(deletions)
            return
        tc = shutil.which("tc")
        if tc is None:
            raise KernelError("tc binary not found (package iproute2)", code=ErrorCode.TC)
        total = len(changes) + len(deletions)
        done = 0
        for first in range(0, total, BATCH_CHANGES):
            if progress is not None:
                progress(done, total)
            chunk_changes = changes[first : first + BATCH_CHANGES]
            chunk_deletions = deletions[
                max(0, first - len(changes)) : max(0, first + BATCH_CHANGES - len(changes))
            ]
            self._run_batch(tc, self._batch_lines(chunk_changes, chunk_deletions))
            done += len(chunk_changes) + len(chunk_deletions)
        if progress is not None:
            progress(done, total)

    def _run_batch(self, tc: str, lines: list[str]) -> None:
        # -force: a class deleted meanwhile must not stop the rest of the batch.
        try:
            proc = subprocess.run(
                [tc, "-force", "-batch", "-"],
                input="\n".join(lines) + "\n",
                text=True,
                capture_output=True,
                timeout=BATCH_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise KernelError(
                f"tc -batch on {self.ifname}: {len(lines)} lines not done in "
                f"{BATCH_TIMEOUT_S:.0f} s",
                code=ErrorCode.TC,
            ) from exc
        if proc.returncode != 0:
            errors = [
                ln
                for ln in proc.stderr.splitlines()
                if ln.strip()
                and "Cannot find specified class" not in ln
                and "No such file or directory" not in ln
                and not ln.startswith("Command failed")
            ]
            if errors:
                raise KernelError(f"tc -batch on {self.ifname}: {errors[0]}", code=ErrorCode.TC)

    def set_client(self, minor: int, ceil_kbps: int, *, with_leaf: bool = True) -> None:
        """Create or change a client's class; a new class also needs its leaf qdiscs (as does
        one whose leaves are stale: they are replaced)."""
        self._put_class(shaping.client_class(minor, ceil_kbps))
        if with_leaf:
            self._put_leaf(minor)

    def delete_client(self, minor: int) -> None:
        """Remove a client's class (the kernel removes its leaf qdiscs with it)."""
        try:
            rtnl_dump.delete_class(
                self.index, shaping.classid(minor), shaping.classid(shaping.BACKHAUL_MINOR)
            )
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise KernelError(
                    f"tc del-class 1:{minor:x} on {self.ifname}: {exc}", code=ErrorCode.TC
                ) from exc

    def readings(self, minors: Collection[int] | None = None) -> dict[int, ClassReading]:
        """Client classes with their ceiling and counters: every one (``minors`` None), from
        one netlink dump (the tick's: :func:`rtnl_dump.htb_counters` reads only what this
        needs), or only ``minors`` (those that exist). A few are asked for one by one
        (:func:`rtnl_dump.htb_classes`, in batches); when they are many of the classes
        there are, the dump costs less and is taken, its other classes left out."""
        out: dict[int, ClassReading] = {}
        if minors is not None and not minors:
            return out
        # Before the first dump the device's size is not known: up to 16 are asked for.
        seen = self._classes_seen if self._classes_seen is not None else 17 * GET_PER_DUMP_COST
        asked = minors is not None and len(minors) * GET_PER_DUMP_COST < seen
        try:
            if asked and minors is not None:
                handles = [0x10000 | m for m in sorted(minors)]
                classes = rtnl_dump.htb_classes(self.index, handles)
            else:
                classes = rtnl_dump.htb_counters(self.index, shaping.ROOT_HANDLE)
                self._classes_seen = len(classes)
        except OSError as exc:
            raise KernelError(f"tc read on {self.ifname}: {exc}", code=ErrorCode.TC) from exc
        for handle, ceil, nbytes, packets in classes:
            minor = handle & 0xFFFF
            if handle >> 16 != 1 or minor in (shaping.BACKHAUL_MINOR, shaping.DEFAULT_MINOR):
                continue
            if minors is not None and not asked and minor not in minors:
                continue
            out[minor] = ClassReading(minor, round(ceil * 8 / 1000), nbytes, packets & 0xFFFFFFFF)
        return out

    def reading(self, minor: int) -> ClassReading | None:
        """One client class's ceiling and counters (None when it does not exist): one
        netlink request, whatever the number of classes (a session's final counters)."""
        try:
            obj = rtnl_dump.get_class(self.index, 0x10000 | minor)
        except OSError as exc:
            raise KernelError(
                f"tc get-class 1:{minor:x} on {self.ifname}: {exc}", code=ErrorCode.TC
            ) from exc
        return None if obj is None or obj.kind != "htb" else _reading(minor, obj)

    def remove(self) -> None:
        try:
            self.ipr.tc("del", index=self.index, parent=TC_H_ROOT)
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.EINVAL):
                raise KernelError(
                    f"tc del root on {self.ifname}: {exc}", code=ErrorCode.TC
                ) from exc

    def delete_clients(self, minors: Iterable[int]) -> None:
        for minor in minors:
            self.delete_client(minor)


def _reading(minor: int, obj: rtnl_dump.TcObject) -> ClassReading:
    return ClassReading(
        minor=minor,
        ceil_kbps=round(obj.ceil_bytes_per_s * 8 / 1000),
        bytes=obj.bytes,
        packets=obj.packets & 0xFFFFFFFF,
    )
