"""The tick's kernel read, by candidate (issue #12, item 4): root, a namespace of its own.

    sudo python3 -m bench.tick_read                       # 1,015 classes (a /22's pool), 1,000 clients
    sudo python3 -m bench.tick_read --classes 1015 16381 --clients 1000 10000

In a fresh network namespace (``unshare -n``, so nothing is left behind and nothing of a
village is met): one veth with the gateway's HTB tree, N client classes with their tbf
leaves (as the DHCP pool's), and the gateway's nftables table with M clients. Each read is
timed (wall and the process's CPU, which includes the kernel's work for the call):

* ``classes_pyroute2`` — pyroute2's ``get_classes`` (what the tick used before rtnl_dump);
* ``classes_attribute_walk`` — ``rtnl_dump.dump``: struct, but every attribute of every
  message walked and a ``TcObject`` built;
* ``classes_lean`` — ``rtnl_dump.htb_counters``: one unpack per HTB class, the tbf leaves'
  classes skipped on their kind (the tick's read until 2026-12-01);
* ``classes_lean_htb_only`` — the same with the HTB root's handle as the dump's
  ``tcm_parent``: the kernel sends the root qdisc's classes only, no leaf's (the tick's read
  now, through ``Shaper.readings``, timed as ``readings_lean``);
* ``classes_asked_N`` — ``rtnl_dump.htb_classes`` of N classes: one ``RTM_GETTCLASS`` a
  class, 128 to a ``send`` (a tick's read of its sessions' classes when they are few of
  the pool's, ``Shaper.readings(minors)``);
* ``readings_beside_a_busy_thread`` — ``Shaper.readings`` while another thread runs Python
  without pause: its ``recv`` calls keeping the interpreter lock when the data is queued
  (gateway/netlink_recv.py, now), and ``..._socket_recv`` with ``socket.recv`` (before),
  which lets go of it for every 32 KB buffer and waits up to the other thread's switch
  interval (5 ms) to get it back;
* ``nft_listing`` — the table's listing through libnftables and its JSON (the tick's look
  at the login sets until 2026-12-01); ``nft_listing_parsed`` with ``parse_elements``;
  ``nft_listing_c`` the library's call alone (no interpreter held);
* ``nft_login_sets`` — the four login sets' netlink dumps read with ``struct``
  (``Nftables.login_sets``, gateway/nftnetlink.py: the tick's look now);
  ``nft_login_sets_agree`` whether it gives what ``parse_elements`` makes of the listing;
* ``neighbour_pins`` — the pins (every client's PERMANENT neighbour entry), one dump read
  with ``struct`` (``Neighbours.pinned``): with the login sets, what a tick's whole look
  reads besides the classes and a partial look leaves out (``neighbour_pins_count``: how
  many it found);
* ``nft_counters`` — the same listing with a counter on every client's map element: what
  per-client nft counters would cost to read instead of the classes';
* ``login_transaction_during_listings`` — a small nft transaction (a login's size) run
  back to back while another thread lists the table back to back, for 5 s: with the
  listing on its own libnftables context (now) and on the transactions' (before).

Output ``bench/results/tick_read.json``; machine, kernel and load in ``meta``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
MAX_CLASSES = 0x3FFE - 1  # minors 2 .. 0x3ffe: the host indexes a /18 has qdisc handles for


def _timed(fn: Any, n: int) -> dict[str, Any]:
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    wall.sort()
    cpu.sort()
    return {
        "n": n,
        "wall_p50_ms": round(wall[len(wall) // 2], 3),
        "wall_max_ms": round(wall[-1], 3),
        "cpu_p50_ms": round(cpu[len(cpu) // 2], 3),
    }


def _concurrent(nft: Any, listing: Any, seconds: float) -> dict[str, Any]:
    from gateway import ruleset

    stop = time.monotonic() + seconds
    waits: list[float] = []
    errors: list[str] = []
    mac = "02:00:00:00:00:01"

    def lister() -> None:
        while time.monotonic() < stop:
            try:
                listing()
            except Exception as exc:  # noqa: BLE001 (counted and reported, the bench goes on)
                errors.append(repr(exc))

    thread = threading.Thread(target=lister)
    thread.start()
    i = 0
    while time.monotonic() < stop:
        verb = "add" if i % 2 == 0 else "delete"
        i += 1
        ref = {"family": ruleset.FAMILY, "table": "hotspot", "name": ruleset.BLOCKED}
        t = time.perf_counter()
        try:
            nft.apply([{verb: {"element": {**ref, "elem": [mac]}}}])
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        waits.append((time.perf_counter() - t) * 1000)
    thread.join()
    waits.sort()
    return {
        "transactions": len(waits),
        "p50_ms": round(waits[len(waits) // 2], 3),
        "p99_ms": round(waits[min(len(waits) - 1, int(len(waits) * 0.99))], 3),
        "max_ms": round(waits[-1], 3),
        "errors": errors[:3],
    }


def _beside_a_busy_thread(read: Any, n: int) -> dict[str, Any]:
    """``read`` timed while another thread runs Python without pause (a login, the event
    threads, at their busiest): the dump's ``recv`` calls as now (the interpreter lock kept
    when the data is queued, gateway/netlink_recv.py) and as before (``socket.recv``, which
    lets go of it each time and waits for the other thread's switch interval to get it
    back)."""
    from gateway import rtnl_dump

    stop = threading.Event()

    def busy() -> None:
        spin = 0
        while not stop.is_set():
            spin += 1

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        out = {"readings_beside_a_busy_thread": _timed(read, n)}
        queued = rtnl_dump.recv_queued
        rtnl_dump.recv_queued = lambda sock, size: sock.recv(size)
        try:
            out["readings_beside_a_busy_thread_socket_recv"] = _timed(read, n)
        finally:
            rtnl_dump.recv_queued = queued
    finally:
        stop.set()
        thread.join()
    return out


def measure(classes: int, clients: int, reads: int) -> dict[str, Any]:
    """In this process, which must already be in a namespace of its own."""
    import ipaddress

    from gateway import rtnl_dump, ruleset, shaping
    from gateway.neighbours import Neighbours
    from gateway.netlink import IPRoute
    from gateway.nftables import Nftables, parse_elements
    from gateway.tc import Shaper

    def sh(cmd: str) -> None:
        subprocess.run(cmd, shell=True, check=True, capture_output=True)

    sh("ip link set lo up; ip link add bench0 type veth peer name bench1")
    sh("ip link set bench0 up; ip link set bench1 up")
    sh("tc qdisc add dev bench0 root handle 1: htb default fffe")
    sh("tc class add dev bench0 parent 1: classid 1:ffff htb rate 1gbit")
    ipr = IPRoute()
    shaper = Shaper(ipr, "bench0", [], leaf="pfifo")
    t = time.perf_counter()
    shaper.apply_bulk([(m, 2048, True) for m in range(2, classes + 2)], [])
    made_s = time.perf_counter() - t
    index = shaper.index
    out: dict[str, Any] = {"classes": classes, "clients": clients, "classes_made_s": made_s}
    few = max(3, reads // 6)
    out["classes_pyroute2"] = _timed(lambda: list(ipr.get_classes(index=index)), few)
    out["classes_attribute_walk"] = _timed(lambda: rtnl_dump.dump(index), reads)
    out["classes_lean"] = _timed(lambda: rtnl_dump.htb_counters(index), reads)
    out["classes_lean_htb_only"] = _timed(
        lambda: rtnl_dump.htb_counters(index, shaping.ROOT_HANDLE), reads
    )
    out["readings_lean"] = _timed(shaper.readings, reads)
    # A tick's read of its sessions' classes alone (one request a class, batched), by count.
    for asked in (10, 100, 1000, 4000):
        if asked <= classes:
            handles = [0x10000 | m for m in range(2, asked + 2)]
            out[f"classes_asked_{asked}"] = _timed(
                lambda handles=handles: rtnl_dump.htb_classes(index, handles), reads
            )
    out.update(_beside_a_busy_thread(shaper.readings, reads))

    net = ipaddress.IPv4Network("10.10.0.0/22" if clients < 1000 else "10.10.0.0/18")
    layout = ruleset.Layout(
        table="hotspot",
        lan="bench0",
        wan="bench1",
        gateway_ip=str(net.network_address + 1),
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
    members = [
        ruleset.Client(
            str(ip),
            "02:00:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed),
            shaping.classid_str(shaping.client_minor(str(ip), net)),
        )
        for ip in hosts
    ]
    blocked = [f"02:bb:00:00:{i >> 8:02x}:{i & 255:02x}" for i in range(min(clients, 100))]
    nft.apply(ruleset.table_commands(layout, members, blocked))
    listing = json.dumps(
        {"nftables": [{"list": {"table": {"family": ruleset.FAMILY, "name": "hotspot"}}}]}
    ).encode()
    out["nft_listing"] = _timed(nft.elements, reads)
    out["nft_listing_parsed"] = _timed(lambda: parse_elements(nft.elements()), reads)
    out["nft_login_sets"] = _timed(nft.login_sets, reads)
    out["nft_login_sets_agree"] = nft.login_sets() == parse_elements(nft.elements())
    # The pins: every client's address a PERMANENT neighbour entry on the LAN.
    sh(f"ip addr add {net.network_address + 1}/{net.prefixlen} dev bench0")
    pins = "\n".join(
        f"neigh replace {m.ip} lladdr {m.mac} nud permanent dev bench0" for m in members
    )
    subprocess.run(["ip", "-batch", "-"], input=pins, text=True, check=True, capture_output=True)
    lan = Neighbours(ipr, "bench0")
    out["neighbour_pins"] = _timed(lambda: lan.pinned(net), reads)
    out["neighbour_pins_count"] = len(lan.pinned(net))
    out["nft_listing_c"] = _timed(lambda: nft._reader.run(listing), reads)
    out["login_transaction_during_listings"] = {
        "own_context": _concurrent(nft, nft.elements, 5.0),
    }
    shared = Nftables(layout)
    shared._reader, shared._read_lock = shared._backend, shared._lock
    out["login_transaction_during_listings"]["shared_context"] = _concurrent(
        shared, shared.elements, 5.0
    )
    # Per-client nft counters instead of the classes': a map of the clients with a counter
    # on each element, listed the same way.
    name = "bench_counted"
    ref = {"family": ruleset.FAMILY, "table": "hotspot", "name": name}
    counted: list[Any] = [
        {"elem": {"val": m.ip, "counter": {"packets": 0, "bytes": 0}}} for m in members
    ]
    try:
        nft.apply(
            [
                {"add": {"set": {**ref, "type": "ipv4_addr", "stmt": [{"counter": None}]}}},
                {"add": {"element": {**ref, "elem": counted}}},
            ]
        )
        out["nft_counters"] = _timed(lambda: nft.set_elements(name), reads)
    except Exception as exc:  # noqa: BLE001 (a kernel without counters on elements)
        out["nft_counters"] = {"error": repr(exc)}
    return out


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
    p.add_argument("--classes", type=int, nargs="+", default=[1015])
    p.add_argument("--clients", type=int, nargs="+", default=[1000])
    p.add_argument("--reads", type=int, default=30)
    p.add_argument("--output", default=str(RESULTS / "tick_read.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.classes[0], args.clients[0], args.reads)))
        return 0
    if os.geteuid() != 0:
        print("bench.tick_read: needs root (a network namespace of its own)", file=sys.stderr)
        return 2
    if len(args.classes) != len(args.clients):
        print("bench.tick_read: --classes and --clients pair up: as many of each", file=sys.stderr)
        return 2
    if not all(1 <= n <= MAX_CLASSES for n in args.classes):
        # the classes are host indexes 2.. of a /18 (gateway/shaping.py: at most 0x3ffe)
        print(f"bench.tick_read: --classes must be 1 to {MAX_CLASSES}", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"meta": meta(), "sizes": []}
    for classes, clients in zip(args.classes, args.clients, strict=True):
        cmd = ["unshare", "-n", sys.executable, "-m", "bench.tick_read", "--child"]
        cmd += ["--classes", str(classes), "--clients", str(clients), "--reads", str(args.reads)]
        load = os.getloadavg()[0]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
        size = json.loads(done.stdout)
        size["load_average"] = [load, os.getloadavg()[0]]
        result["sizes"].append(size)
    result["meta"]["load_average_end"] = os.getloadavg()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
