"""Where the gateway's memory goes at 10 / 1,000 / 10,000 sessions (issue #12, item 3).

    python3 -m bench.memory engine --sessions 10 1000 10000     # no root: the kernel faked
    sudo python3 -m bench.memory kernel --classes 16381 --clients 10000 --flows 10
    sudo python3 -m bench.memory nft --clients 1000 10000    # libnftables: before / after

``engine``: for each size, a fresh child process (so that one size's high-water marks are
not the next one's) with the session engine of bench/engine_db.py (real SQLite, the kernel
faked by ``tests/unit/fakes.py``) on a /18 — the gateway's start-up with N sessions already
in the database (as ``bench.login``'s "start again with the sessions") and ``--ticks``
ticks with every session passing traffic. Measured twice, in two children:

* without tracemalloc: ``VmRSS`` and ``VmHWM`` after the imports, after the start, after the
  ticks, and the Python-level size of the engine's per-session state (``sys.getsizeof``
  walked over ``engine.live``, ``_last_raw``, ``pending``…: what 10,000 sessions hold);
* with tracemalloc (one frame): the traced bytes now and at their peak, and the top
  allocation sites by ``file:line`` and by module, after the ticks — the live Python heap.

``kernel`` (root, ``unshare -n``: a namespace of its own, nothing left behind): the real
kernel-facing reads a faked kernel hides, at a /18's size — one device's HTB tree with
``--classes`` client classes and their tbf leaves (bench/tick_read.py's), the gateway's
nftables table with ``--clients`` clients, as many PERMANENT neighbour pins, and
``--flows`` UDP flows per client in conntrack with the client-flow index
(``gateway/ctnetlink.py``'s ``ClientFlowIndex``) seeded from them. For each read of a tick
(``Shaper.readings``, ``Nftables.elements`` + ``parse_elements``, ``Neighbours.pinned``):
the process's RSS before, after with the result held and after it is dropped (what the
allocator keeps: a high-water mark), then under tracemalloc the traced peak during the read
(transient) and the bytes its result holds (what a tick keeps while it runs).

``nft`` (root): the gateway's table with N clients installed, then listed ``--listings``
times, in a fresh process and namespace each, alternating before (as if
gateway/nftables.py's ``BIG_CALL_BYTES`` were never reached) and after: RSS after the
table's transaction and after the listings, the peak, glibc's bytes in use and free, the
CPU of a listing; ``median_after_over_before`` the ratios of the medians.

Output ``bench/results/memory_<part>.json``; machine and load average in ``meta``. These
are sizes, not times: the load changes little of them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hotspot.memory import malloc_trim

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
LAN = "10.10.0.1/18"
MB = 1 << 20


def status_kb(key: str) -> int:
    """A line of /proc/self/status (VmRSS, VmHWM), kB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def rss_mb() -> float:
    return round(status_kb("VmRSS") / 1024, 2)


def hwm_mb() -> float:
    return round(status_kb("VmHWM") / 1024, 2)


def deep_size(root: Any) -> int:
    """Bytes of ``root`` and everything it reaches through containers and plain objects
    (``__dict__`` and ``__slots__``), each object once; classes, modules and functions are
    not followed (they are the program's, not the data's)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    skip = (type, type(sys), type(deep_size))
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, (str, bytes, int, float, bool)) or obj is None:
            continue
        else:
            if hasattr(obj, "__dict__"):
                stack.append(vars(obj))
            for name in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, name):
                    stack.append(getattr(obj, name))
    return total


def top_sites(snap: tracemalloc.Snapshot, key: str, n: int) -> list[dict[str, Any]]:
    out = []
    for stat in snap.statistics(key)[:n]:
        frame = stat.traceback[0]
        at = (
            f"{_short(frame.filename)}:{frame.lineno}"
            if key == "lineno"
            else _short(frame.filename)
        )
        out.append({"at": at, "kb": stat.size // 1024, "count": stat.count})
    return out


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    try:
        return str(Path(filename).resolve().relative_to(REPO))
    except ValueError:
        return filename


def by_package(snap: tracemalloc.Snapshot) -> dict[str, int]:
    """Traced kB by top-level package (the first part of the file's short name)."""
    out: dict[str, int] = {}
    for stat in snap.statistics("filename"):
        name = _short(stat.traceback[0].filename)
        head = name.split("/", 1)[0] if "/" in name else name
        out[head] = out.get(head, 0) + stat.size
    ranked = sorted(out.items(), key=lambda kv: -kv[1])[:15]
    return {k: v // 1024 for k, v in ranked}


def allocators() -> dict[str, Any]:
    """Python's small-object arenas (live objects and the free room in their pools) and
    glibc's heap (bytes in use, bytes free that a trim could give back), MB."""
    from bench.memwatch import SQLITE_STATUS_MEMORY_USED, _libs, _sqlite_status, obmalloc

    libc, sqlite = _libs()
    mi = libc.mallinfo2()
    ob = obmalloc()
    sqlite_used = _sqlite_status(sqlite, SQLITE_STATUS_MEMORY_USED)[0] if sqlite else 0
    return {
        "sqlite_memory_used_mb": round(sqlite_used / MB, 1),  # its page caches among them
        "obmalloc_arenas_mb": round(ob.get("arenas", 0) * 1.0, 1),  # 1 MiB each
        "obmalloc_in_objects_mb": round(ob.get("allocated_bytes", 0) / MB, 1),
        "obmalloc_free_in_pools_mb": round(ob.get("available_bytes", 0) / MB, 1),
        "glibc_heap_mb": round((mi.arena + mi.hblkhd) / MB, 1),
        "glibc_in_use_mb": round(mi.uordblks / MB, 1),
        "glibc_free_mb": round(mi.fordblks / MB, 1),
    }


# -- the engine, the kernel faked ------------------------------------------------------------


def seed(url: str, n: int, hosts: Iterable[Any]) -> None:
    """N running free-tier sessions and their devices, written directly (bench.login's)."""
    import datetime as dt

    from sqlalchemy import create_engine, insert

    from hotspot.model import ClientSession, Device, Source

    now = dt.datetime(2026, 11, 28, 3, 0, 0)
    devices, sessions = [], []
    for i, ip in zip(range(n), hosts, strict=False):
        mac = f"02:10:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01"
        devices.append({"mac": mac, "first_seen": now, "last_seen": now, "blocked": False})
        sessions.append(
            {
                "mac": mac,
                "ip": str(ip),
                "tier": "free",
                "source": Source.FREE,
                "down_kbps": 2048,
                "up_kbps": 512,
                "idle_minutes": 0,
                "started_at": now,
                "last_activity_at": now,
                "expires_at": None,
                "bytes_down": 0,
                "bytes_up": 0,
            }
        )
    db = create_engine(url)
    with db.begin() as conn:
        if devices:
            conn.execute(insert(Device), devices)
            conn.execute(insert(ClientSession), sessions)
    db.dispose()


def engine_child(n: int, ticks: int, traced: bool) -> dict[str, Any]:
    """One size in this process: the start with N sessions, then the ticks."""
    import datetime as dt
    import ipaddress
    import tempfile

    if traced:
        tracemalloc.start(1)
    from bench.engine_db import _locked_fake
    from gateway.engine import SessionEngine
    from hotspot import config as config_mod
    from hotspot.db import open_database
    from tests.unit.fakes import Clock, FakeDataPath

    out: dict[str, Any] = {"sessions": n, "rss_after_imports_mb": rss_mb()}
    with tempfile.TemporaryDirectory(prefix="hs-memory-") as tmp:
        url = f"sqlite:///{tmp}/hotspot.db"
        cfg = config_mod.load(
            overrides={
                "database": {"url": url},
                "control": {"socket": f"{tmp}/control.sock"},
                "network": {"lan_address": LAN},
                "dhcp": {"range_start": "10.10.0.10", "range_end": "10.10.63.250"},
                "gateway": {"flush_seconds": 3600},
            }
        )
        db = open_database(url)
        net = ipaddress.IPv4Network(LAN, strict=False)
        hosts = net.hosts()
        next(hosts)  # the gateway
        seed(url, n, hosts)
        out["rss_after_seed_mb"] = rss_mb()
        dp = _locked_fake(FakeDataPath)(str(net))
        clock = Clock(dt.datetime(2026, 11, 28, 3, 0, 0))
        engine = SessionEngine(cfg, db, dp, clock=clock, monotonic=clock.monotonic)
        gc.collect()
        if traced:
            tracemalloc.reset_peak()
        engine.start()
        # The fake keeps every plan it applied (a test reads them): not the gateway's.
        dp.applied.clear()
        out["pool_classes"] = len(engine.pool.minors) if hasattr(engine.pool, "minors") else None
        out["live_sessions"] = len(engine.live)
        out["rss_after_start_mb"] = rss_mb()
        out["hwm_after_start_mb"] = hwm_mb()
        if traced:
            out["traced_after_start_kb"], out["traced_peak_start_kb"] = (
                v // 1024 for v in tracemalloc.get_traced_memory()
            )
            tracemalloc.reset_peak()
        ips = [s.ip for s in engine.live.values()]
        for k in range(ticks):
            for ip in ips:
                dp.traffic(ip, down=1500, up=100)
            clock.advance(seconds=cfg.gateway.tick_seconds)
            engine.tick(force_flush=k == ticks - 1)
        dp.applied.clear()
        gc.collect()
        out["rss_after_ticks_mb"] = rss_mb()
        out["hwm_after_ticks_mb"] = hwm_mb()
        if traced:
            now, peak = tracemalloc.get_traced_memory()
            out["traced_after_ticks_kb"], out["traced_peak_ticks_kb"] = now // 1024, peak // 1024
            snap = tracemalloc.take_snapshot().filter_traces(
                (tracemalloc.Filter(False, tracemalloc.__file__),)
            )
            # The fake kernel's own state (the real one is the kernel's): counted apart.
            fakes = snap.filter_traces((tracemalloc.Filter(True, "*/tests/unit/fakes.py"),))
            out["fake_kernel_kb"] = sum(s.size for s in fakes.statistics("filename")) // 1024
            snap = snap.filter_traces((tracemalloc.Filter(False, "*/tests/unit/fakes.py"),))
            out["sites"] = top_sites(snap, "lineno", 30)
            out["by_file"] = top_sites(snap, "filename", 25)
            out["by_package"] = by_package(snap)
        else:
            # What the engine itself keeps per session (Python objects, deep).
            parts = {
                "live": engine.live,
                "_last_raw": engine._last_raw,
                "pending": engine.pending,
                "pending_hourly": engine.pending_hourly,
                "resumable": engine.resumable,
                "_online": engine._online,
                "pool": engine.pool,
                "_draining": engine._draining,
                "fake_kernel_state": dp.state,
            }
            out["engine_kb"] = {k: deep_size(v) // 1024 for k, v in parts.items()}
            out["gc_objects"] = len(gc.get_objects())
            out["allocators_after_ticks"] = allocators()
            trim = malloc_trim()
            if trim is not None:
                trim(0)
            out["rss_after_trim_mb"] = rss_mb()
            out["allocators_after_trim"] = allocators()
        db.dispose()
    return out


def engine_main(args: argparse.Namespace) -> dict[str, Any]:
    sizes: dict[str, Any] = {}
    for n in args.sessions:
        one: dict[str, Any] = {"load_average": [os.getloadavg()[0]]}
        for traced in (False, True):
            cmd = [sys.executable, "-m", "bench.memory", "engine", "--child", "--sessions", str(n)]
            cmd += ["--ticks", str(args.ticks)] + (["--traced"] if traced else [])
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"bench.memory engine {n}: {done.stderr.strip()[-2000:]}")
            one["traced" if traced else "plain"] = json.loads(done.stdout.splitlines()[-1])
        one["load_average"].append(os.getloadavg()[0])
        sizes[str(n)] = one
    return sizes


# -- the real kernel's reads, in a namespace of its own -------------------------------------


def _sh(cmd: str, stdin: str | None = None) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True, input=stdin, text=True)


def measure_read(name: str, read: Callable[[], Any]) -> dict[str, Any]:
    """RSS around one read (no tracemalloc: the allocator's real behaviour), then the same
    read under tracemalloc: its peak and what its result holds."""
    gc.collect()
    before = rss_mb()
    result = read()
    held_rss = rss_mb()
    size = len(result) if hasattr(result, "__len__") else None
    del result
    gc.collect()
    after = rss_mb()
    tracemalloc.start(1)
    base = tracemalloc.get_traced_memory()[0]
    result = read()
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    del result
    gc.collect()
    left = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    gc.collect()
    return {
        "read": name,
        "items": size,
        "rss_before_mb": before,
        "rss_result_held_mb": held_rss,
        "rss_after_drop_mb": after,
        "rss_kept_by_allocator_mb": round(after - before, 2),
        "traced_peak_mb": round((peak - base) / MB, 2),
        "traced_result_mb": round((held - base) / MB, 2),
        "traced_after_drop_mb": round((left - base) / MB, 2),
    }


def kernel_child(classes: int, clients: int, flows: int) -> dict[str, Any]:
    import ipaddress
    import socket

    from gateway import ruleset, shaping
    from gateway.ctnetlink import ClientFlowIndex
    from gateway.neighbours import Neighbours
    from gateway.netlink import IPRoute
    from gateway.nftables import Nftables, parse_elements
    from gateway.tc import Shaper

    out: dict[str, Any] = {"classes": classes, "clients": clients, "flows_per_client": flows}
    out["rss_after_imports_mb"] = rss_mb()
    net = ipaddress.IPv4Network("10.10.0.0/18")
    _sh("ip link set lo up; ip link add bench0 type veth peer name bench1")
    _sh("ip link set bench0 up; ip link set bench1 up")
    _sh("tc qdisc add dev bench0 root handle 1: htb default fffe")
    _sh("tc class add dev bench0 parent 1: classid 1:ffff htb rate 1gbit")
    ipr = IPRoute()
    shaper = Shaper(ipr, "bench0", [], leaf="pfifo")
    t = time.perf_counter()
    shaper.apply_bulk([(m, 2048, True) for m in range(2, classes + 2)], [])
    out["classes_made_s"] = round(time.perf_counter() - t, 1)
    out["rss_after_classes_mb"] = rss_mb()

    layout = ruleset.Layout(
        table="hotspot",
        lan="bench0",
        wan="bench1",
        gateway_ip="10.10.0.1",
        lan_network=str(net),
        portal_port=8080,
        portal_ports=(8080,),
        portal_conn_rate=10,
        portal_conn_limit=20,
        lan_tcp_ports=(22,),
        walled_garden=(),
    )
    nft = Nftables(layout)
    hosts = list(net.hosts())[1 : clients + 1]

    def mac_of(ip: ipaddress.IPv4Address) -> str:
        return "02:00:" + ":".join(f"{b:02x}" for b in ip.packed)

    members = [
        ruleset.Client(str(ip), mac_of(ip), shaping.classid_str(shaping.client_minor(str(ip), net)))
        for ip in hosts
    ]
    nft.apply(ruleset.table_commands(layout, members))
    del members
    pins = "".join(
        f"neigh replace {ip} lladdr {mac_of(ip)} nud permanent dev bench0\n" for ip in hosts
    )
    _sh("ip -batch -", stdin=pins)
    out["rss_after_table_mb"] = rss_mb()

    reads = [
        ("Shaper.readings (one device)", lambda: shaper.readings()),
        ("Nftables.elements", nft.elements),
        ("Nftables.elements + parse_elements", lambda: parse_elements(nft.elements())),
        ("Neighbours.pinned", lambda: Neighbours(ipr, "bench0").pinned(net)),
    ]
    out["reads"] = [measure_read(name, fn) for name, fn in reads]
    out["reads_again"] = [measure_read(name, fn) for name, fn in reads]

    # Conntrack: every client's address local (a /18 on lo is local as a whole), ``flows``
    # UDP flows from each to loopback addresses; the index seeded from them.
    _sh(f"ip addr add 10.10.0.1/{net.prefixlen} dev lo")
    _sh("sysctl -qw net.netfilter.nf_conntrack_udp_timeout=900")
    _sh(
        "nft -f -",
        stdin="table ip bench_ct {\n chain out {\n type filter hook output priority 0;"
        " ct state new counter\n }\n}\n",
    )
    t = time.perf_counter()
    for ip in hosts:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((str(ip), 0))
            for k in range(flows):
                s.sendto(b"q", (f"127.1.0.{k + 1}", 1000))
    out["flows_made_s"] = round(time.perf_counter() - t, 1)
    gc.collect()
    before = rss_mb()
    tracemalloc.start(1)
    index = ClientFlowIndex(net, 1 << 30)
    index.start()
    deadline = time.monotonic() + 120
    while not index.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    entries = len(index)
    index.close()
    out["client_flow_index"] = {
        "entries": entries,
        "traced_held_mb": round(held / MB, 2),
        "traced_peak_mb": round(peak / MB, 2),
        "bytes_per_entry": round(held / entries, 1) if entries else None,
        "rss_rise_mb (tracemalloc on)": round(rss_mb() - before, 2),
    }
    out["hwm_mb"] = hwm_mb()
    return out


def nft_child(clients: int, listings: int, give_back: bool) -> dict[str, Any]:
    """The gateway's table installed with ``clients`` clients, then ``listings`` listings
    (the tick's): RSS after each step, glibc's and Python's allocators at the end, the CPU
    of a listing. ``give_back`` False: as before gateway/nftables.py's BIG_CALL_BYTES."""
    import ipaddress

    from gateway import nftables, ruleset, shaping

    if not give_back:
        nftables.BIG_CALL_BYTES = 1 << 62
    net = ipaddress.IPv4Network("10.10.0.0/18")
    layout = ruleset.Layout(
        table="hotspot",
        lan="lo",
        wan="lo",
        gateway_ip="10.10.0.1",
        lan_network=str(net),
        portal_port=8080,
        portal_ports=(8080,),
        portal_conn_rate=10,
        portal_conn_limit=20,
        lan_tcp_ports=(22,),
        walled_garden=(),
    )
    members = [
        ruleset.Client(
            str(ip),
            "02:00:" + ":".join(f"{b:02x}" for b in ip.packed),
            shaping.classid_str(shaping.client_minor(str(ip), net)),
        )
        for ip in list(net.hosts())[1 : clients + 1]
    ]
    nft = nftables.Nftables(layout)
    out: dict[str, Any] = {"clients": clients, "give_back": give_back, "rss_start_mb": rss_mb()}
    nft.apply(ruleset.table_commands(layout, members))
    del members
    gc.collect()
    out["rss_after_install_mb"] = rss_mb()
    cpu: list[float] = []
    for _ in range(listings):
        c = time.process_time()
        nftables.parse_elements(nft.elements())
        cpu.append((time.process_time() - c) * 1000)
    gc.collect()
    out["rss_after_listings_mb"] = rss_mb()
    out["hwm_mb"] = hwm_mb()
    out["allocators"] = allocators()
    cpu.sort()
    out["listing_cpu_p50_ms"] = round(cpu[len(cpu) // 2], 1)
    nft.close()
    return out


def nft_main(args: argparse.Namespace) -> dict[str, Any]:
    """Before and after, alternating, each in a fresh process and namespace."""
    if os.geteuid() != 0:
        raise SystemExit("bench.memory nft: needs root (a network namespace of its own)")
    sizes: dict[str, Any] = {}
    for clients in args.clients:
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            for name in ("before", "after"):
                cmd = ["unshare", "-n", sys.executable, "-m", "bench.memory", "nft", "--child"]
                cmd += ["--clients", str(clients), "--listings", str(args.listings)]
                cmd += ["--before"] if name == "before" else []
                done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"bench.memory nft: {done.stderr.strip()[-2000:]}")
                runs[name].append(json.loads(done.stdout.splitlines()[-1]))
        ratios = {}
        for key in (
            "rss_after_install_mb",
            "rss_after_listings_mb",
            "hwm_mb",
            "listing_cpu_p50_ms",
        ):
            b = sorted(r[key] for r in runs["before"])[len(runs["before"]) // 2]
            a = sorted(r[key] for r in runs["after"])[len(runs["after"]) // 2]
            ratios[key] = {"before": b, "after": a, "ratio": round(a / b, 3) if b else None}
        sizes[str(clients)] = {
            "load_average": [load, os.getloadavg()[0]],
            "median_after_over_before": ratios,
            "runs": runs,
        }
    return sizes


def kernel_main(args: argparse.Namespace) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise SystemExit("bench.memory kernel: needs root (a network namespace of its own)")
    cmd = ["unshare", "-n", sys.executable, "-m", "bench.memory", "kernel", "--child"]
    cmd += ["--classes", str(args.classes), "--clients", str(args.clients)]
    cmd += ["--flows", str(args.flows)]
    load = os.getloadavg()[0]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench.memory kernel: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    result["load_average"] = [load, os.getloadavg()[0]]
    return result


def meta() -> dict[str, Any]:
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="part", required=True)
    e = sub.add_parser("engine", help="the engine, the kernel faked (no root)")
    e.add_argument("--sessions", type=int, nargs="+", default=[10, 1000, 10000])
    e.add_argument("--ticks", type=int, default=5)
    e.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    k = sub.add_parser("kernel", help="the real kernel's reads (root, a namespace)")
    k.add_argument("--classes", type=int, default=16381)
    k.add_argument("--clients", type=int, default=10000)
    k.add_argument("--flows", type=int, default=10, help="UDP flows per client in conntrack")
    n = sub.add_parser("nft", help="the nft table's memory before and after the give-back")
    n.add_argument("--clients", type=int, nargs="+", default=[1000, 10000])
    n.add_argument("--listings", type=int, default=8)
    n.add_argument("--rounds", type=int, default=2)
    n.add_argument("--before", action="store_true", help=argparse.SUPPRESS)
    for one in (e, k, n):
        one.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
        one.add_argument("--output")
    args = p.parse_args(argv)
    if args.child:
        if args.part == "engine":
            res = engine_child(args.sessions[0], args.ticks, args.traced)
        elif args.part == "nft":
            res = nft_child(args.clients[0], args.listings, not args.before)
        else:
            res = kernel_child(args.classes, args.clients, args.flows)
        print(json.dumps(res))
        return 0
    if args.part == "kernel" and not 1 <= args.classes <= 0x3FFD:
        print("bench.memory: --classes must be 1 to 16381 (a /18's host indexes)", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"meta": meta(), "args": vars(args)}
    parts = {"engine": engine_main, "kernel": kernel_main, "nft": nft_main}
    result["results"] = parts[args.part](args)
    result["meta"]["load_average_end"] = os.getloadavg()
    output = Path(args.output or RESULTS / f"memory_{args.part}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
