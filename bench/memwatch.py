"""Where a daemon's memory goes, for the soak: ``python -m bench.memwatch OUT SECONDS [--native] -- -m MODULE ARGS…``.

Runs ``MODULE`` (``hotspot_cli gateway run …``) as ``python -m`` would, in this process, and a
daemon thread that every ``SECONDS`` appends one JSON line to ``OUT``:

* by default with ``tracemalloc`` on (one frame per allocation: cheap enough for a soak): the
  traced total and peak, the top allocation sites by size, and the live objects by type
  (``gc``) — the Python heap (bench.soak ``--memwatch``);
* with ``--native``, no tracemalloc (the RSS stays the product's): what the Python heap does
  not show — glibc's ``mallinfo2`` (bytes the arenas hold, in use and free) and its arenas
  (``malloc_info``), SQLite's own allocator (``sqlite3_status64``: memory used, page cache),
  the SQLite connections alive and the threads by name, and the process's mappings grouped
  from ``/proc/self/smaps`` (bench.soak ``--native-watch``).

The bench compares the first and the last snapshots. Nothing of this is in the product: the
daemon does not know it is watched.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import runpy
import sqlite3
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

TOP = 40


def snapshot() -> dict[str, Any]:
    # Counted first: the snapshot's own Statistic and Traceback objects are not the daemon's.
    types = Counter(type(o).__name__ for o in gc.get_objects())
    snap = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    sites = snap.statistics("lineno")
    current, peak = tracemalloc.get_traced_memory()
    return {
        "t": time.time(),
        "traced_kb": current // 1024,
        "peak_kb": peak // 1024,
        "gc_objects": sum(types.values()),
        "sites": [
            {
                "at": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
                "kb": s.size // 1024,
                "count": s.count,
            }
            for s in sites[:TOP]
        ],
        "types": dict(types.most_common(TOP)),
    }


POOL_SIZE = 16 << 10  # obmalloc's pools (3.10+ on 64-bit), each aligned to its size
ARENA_SIZE = 1 << 20  # obmalloc's arenas: mmap'd, page-aligned, so grouped approximately
SMALL = 512  # obmalloc serves requests up to this size; larger ones go to malloc


def pins(top: int = 25) -> dict[str, Any]:
    """What keeps obmalloc's arenas from going back to the system (tracemalloc on).

    An arena is returned only when every one of its pools is empty, so a few long-lived
    objects allocated among many short-lived ones keep a whole MiB each. Every object the
    gc tracks, and what they refer to directly (strings, ints, bytes held by them), is
    placed by its address in its 16 KiB pool and (about) its 1 MiB arena; for the arenas
    that are mostly empty — at most ``SPARSE`` of their pools in use by these objects —
    the allocation sites (tracemalloc, one frame) of the objects in them, with the count
    of such arenas each site is found in. Approximate: memory obmalloc serves that is not
    an object (a dict's or a list's table) is not seen."""
    seen: set[int] = set()
    objs = gc.get_objects()
    more = []
    for o in objs:
        for r in gc.get_referents(o):
            if not gc.is_tracked(r):
                more.append(r)
    by_arena: dict[int, dict[int, list[object]]] = {}
    for o in (*objs, *more):
        addr = id(o)
        if addr in seen:
            continue
        seen.add(addr)
        try:
            if sys.getsizeof(o) > SMALL:
                continue
        except TypeError:
            continue
        pool = addr & ~(POOL_SIZE - 1)
        by_arena.setdefault(addr // ARENA_SIZE, {}).setdefault(pool, []).append(o)
    sparse = {a: pools for a, pools in by_arena.items() if len(pools) <= SPARSE}
    site_arenas: Counter[str] = Counter()
    site_objects: Counter[str] = Counter()
    type_arenas: Counter[str] = Counter()
    for pools in sparse.values():
        sites_here: set[str] = set()
        types_here: set[str] = set()
        for members in pools.values():
            for o in members:
                tb = tracemalloc.get_object_traceback(o)
                site = f"{tb[0].filename}:{tb[0].lineno}" if tb else "(before tracing)"
                site_objects[site] += 1
                sites_here.add(site)
                types_here.add(type(o).__name__)
        site_arenas.update(sites_here)
        type_arenas.update(types_here)
    del objs, more
    return {
        "arenas_seen": len(by_arena),
        "pools_seen": sum(len(p) for p in by_arena.values()),
        "sparse_arenas": len(sparse),
        "sparse_arena_pools": sum(len(p) for p in sparse.values()),
        "sites_in_sparse_arenas": [
            {"at": site, "arenas": n, "objects": site_objects[site]}
            for site, n in site_arenas.most_common(top)
        ],
        "types_in_sparse_arenas": dict(type_arenas.most_common(top)),
    }


SPARSE = 4  # an arena with this many pools or fewer holding objects: mostly empty


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes the main and thread arenas got from the system (brk and mmap'd heaps)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in chunks mmap'd on their own (≥ 128 kB)
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use
            "fordblks",  # bytes free, held by the arenas (what malloc_trim could give back)
            "keepcost",
        )
    ]


SQLITE_STATUS_MEMORY_USED, SQLITE_STATUS_PAGECACHE_OVERFLOW, SQLITE_STATUS_MALLOC_COUNT = 0, 2, 9


def _libs() -> tuple[ctypes.CDLL, ctypes.CDLL | None]:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    libc.fopen.restype = ctypes.c_void_p
    try:  # the library _sqlite3 already loaded: the same process-wide counters
        sqlite = ctypes.CDLL("libsqlite3.so.0")
    except OSError:
        sqlite = None
    return libc, sqlite


def _sqlite_status(sqlite: ctypes.CDLL, op: int) -> tuple[int, int]:
    cur, high = ctypes.c_int64(), ctypes.c_int64()
    sqlite.sqlite3_status64(op, ctypes.byref(cur), ctypes.byref(high), 0)
    return cur.value, high.value


def _arenas(libc: ctypes.CDLL) -> list[dict[str, int]]:
    """Per arena, from ``malloc_info``'s XML: the bytes it holds from the system, and free."""
    with tempfile.NamedTemporaryFile("r", suffix=".xml") as tmp:
        fp = libc.fopen(tmp.name.encode(), b"w")
        if not fp:
            return []
        try:
            libc.malloc_info(0, ctypes.c_void_p(fp))
        finally:
            libc.fclose(ctypes.c_void_p(fp))
        xml = Path(tmp.name).read_text()
    arenas = []
    for heap in re.finditer(r'<heap nr="(\d+)">(.*?)</heap>', xml, re.S):
        body = heap.group(2)
        current = re.search(r'<system type="current" size="(\d+)"/>', body)
        free = re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"/>', body)
        # The free chunks by size (malloc_info's bins): free memory in small chunks between
        # live ones stays resident after a trim; a trim gives back the whole pages of large
        # ones, and the top of the heap grows when no free chunk fits a request.
        by_size = {"lt_1k_kb": 0, "1k_64k_kb": 0, "ge_64k_kb": 0}
        for lo, total in re.findall(r'<size from="(\d+)" to="\d+" total="(\d+)"', body):
            key = "lt_1k_kb" if int(lo) < 1024 else "1k_64k_kb" if int(lo) < 65536 else "ge_64k_kb"
            by_size[key] += int(total)
        arenas.append(
            {
                "nr": int(heap.group(1)),
                "system_kb": int(current.group(1)) // 1024 if current else 0,
                "free_kb": sum(int(x) for x in free) // 1024,
                **{k: v // 1024 for k, v in by_size.items()},
            }
        )
    return arenas


def smaps_groups(pid: int | str = "self") -> dict[str, dict[str, int]]:
    """The process's mappings by kind: ``[heap]`` (the main arena's brk), ``anon`` (thread
    arenas, mmap'd chunks, Python's obmalloc arenas), ``[stack]``, and files by name
    (``hotspot.db-shm``: SQLite's shared memory of the WAL index; libraries); RSS and
    count, kB."""
    groups: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = line.split(maxsplit=5)
            if "-" in head[0] and not head[0].endswith(":"):
                name = head[5].strip() if len(head) > 5 else "anon"
                if name.startswith("/"):
                    name = os.path.basename(name)
                elif name.startswith("[stack"):
                    name = "[stack]"
                current = groups.setdefault(name, {"rss_kb": 0, "maps": 0})
                current["maps"] += 1
            elif head[0] == "Rss:" and current is not None:
                current["rss_kb"] += int(head[1])
    return groups


_OBMALLOC = {
    "arenas": "# arenas allocated current",
    "arenas_highwater": "# arenas highwater mark",
    "allocated_bytes": "# bytes in allocated blocks",
    "available_bytes": "# bytes in available blocks",
}


def obmalloc() -> dict[str, int]:
    """Python's small-object allocator (``sys._debugmallocstats``, which writes to fd 2: it
    is caught in a file for the instant it takes): its 1 MiB arenas, the bytes in objects
    and the bytes free in its pools (fragmentation: an arena goes back to the system only
    when all of it is free)."""
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    out = {}
    for key, label in _OBMALLOC.items():
        m = re.search(re.escape(label) + r"\s*=\s*([\d,]+)", text)
        if m:
            out[key] = int(m.group(1).replace(",", ""))
    return out


def native_snapshot(libc: ctypes.CDLL, sqlite: ctypes.CDLL | None) -> dict[str, Any]:
    mi = libc.mallinfo2()
    out: dict[str, Any] = {
        "t": time.time(),
        "mallinfo": {
            "arena_kb": mi.arena // 1024,
            "mmap_kb": mi.hblkhd // 1024,
            "in_use_kb": mi.uordblks // 1024,
            "free_kb": mi.fordblks // 1024,
            "top_pad_kb": mi.keepcost // 1024,
        },
        "arenas": _arenas(libc),
        "obmalloc": obmalloc(),
        "sqlite_connections": sum(1 for o in gc.get_objects() if type(o) is sqlite3.Connection),
        "threads": dict(
            Counter(re.sub(r"[-_ ]?\d+.*$", "", t.name) for t in threading.enumerate())
        ),
        "smaps": smaps_groups(),
    }
    if sqlite is not None:
        used, used_high = _sqlite_status(sqlite, SQLITE_STATUS_MEMORY_USED)
        overflow, _ = _sqlite_status(sqlite, SQLITE_STATUS_PAGECACHE_OVERFLOW)
        allocs, _ = _sqlite_status(sqlite, SQLITE_STATUS_MALLOC_COUNT)
        out["sqlite"] = {
            "memory_used_kb": used // 1024,
            "memory_high_kb": used_high // 1024,
            "pagecache_overflow_kb": overflow // 1024,
            "allocations": allocs,
        }
    return out


def watch(out: Path, every: float, native: bool, with_pins: bool = False) -> None:
    libs = _libs() if native else None
    while True:
        time.sleep(every)
        try:
            if libs:
                data = native_snapshot(*libs)
            else:
                data = snapshot()
                if with_pins:  # (_debugmallocstats says nothing while tracemalloc hooks it)
                    data["pins"] = pins()
            line = json.dumps(data)
        except Exception as exc:  # noqa: BLE001 - the watcher must never take the daemon down
            line = json.dumps({"t": time.time(), "error": repr(exc)})
        with out.open("a") as fh:
            fh.write(line + "\n")


def main() -> None:
    args = sys.argv[1:]
    native = len(args) > 2 and args[2] == "--native"
    if native:
        del args[2]
    with_pins = len(args) > 2 and args[2] == "--pins"
    if with_pins:
        del args[2]
    if len(args) < 5 or args[2] != "--" or args[3] != "-m":
        print(
            "usage: python -m bench.memwatch OUT SECONDS [--native|--pins] -- -m MODULE ARGS…",
            file=sys.stderr,
        )
        sys.exit(2)
    out, every, module, rest = Path(args[0]), float(args[1]), args[4], args[5:]
    if not native:
        tracemalloc.start(1)
    threading.Thread(
        target=watch, args=(out, every, native, with_pins), name="memwatch", daemon=True
    ).start()
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
