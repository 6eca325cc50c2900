"""The conntrack step of a kick or an expiry, in-process: ``sudo python3 -m bench.kick``.

In a namespace of its own (``hsk-<pid>``), with ``--background`` entries of other clients
in the table (each size in turn, the table only growing), a client makes ``k`` UDP flows
(k in ``--entries``) and then every one of them is forgotten, four ways, alternating within
each trial:

* ``dump``: the adapter without its index (gateway/conntrack.py's fallback, the way every
  kick went before): a dump of the client's entries filtered by the kernel, which walks its
  whole hash table, then the deletions in one datagram — the baseline of the ratios;
* ``kernel_flush``: one ``IPCTNL_MSG_CT_DELETE`` with the source alone and a ``CTA_FILTER``:
  the kernel deletes what matches itself, walking the table without copying anything out;
* ``mark_flush``: the same by ``ct mark`` (an nft rule marks the client's flows, as a
  per-client mark in the ruleset would): ``CTA_MARK``/``CTA_MARK_MASK``;
* ``index``: the adapter with its client-flow index (gateway/ctnetlink.py's
  ``ClientFlowIndex``), the way a kick goes now.

Per call: the CPU of the whole process (``process_time``: the kernel's work for the calling
thread included, and the index's thread) and the wall time. Then what the index costs: its
memory per entry (``tracemalloc`` over a seeding of the table) and the CPU of a new flow with
the index running against without it (``--event-flows`` flows made and read, alternating),
and what a seeding of the whole table costs (at start, and again after lost events).
Output ``bench/results/kick.json`` with the machine, ``nf_conntrack_buckets`` and the load.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.conntrack_step import meta
from bench.gateway import dist, ratio

CLIENT = "127.0.0.7"
CLIENT_MARK = 7
PREFIX_TWIN = "127.0.0.71"  # the client's address is a prefix of its string: must survive
NETWORK = ipaddress.IPv4Network("127.0.0.0/8")  # the "LAN" of the bench: every source here
WAYS = ("dump", "kernel_flush", "mark_flush", "index")


CTA_MARK = 8
CTA_MARK_MASK = 21


def filtered_flush_request(ip: str, seq: int) -> bytes:
    """A deletion by the kernel itself of every IPv4 entry whose original source is ``ip``:
    ``IPCTNL_MSG_CT_DELETE`` with an original tuple of the source alone and a ``CTA_FILTER``
    (accepted by this 6.18 kernel; a kernel without it refuses the half tuple, it never
    flushes everything) — a walk of the whole hash table, nothing copied to user space."""
    from gateway import ctnetlink as m

    tuple_orig = m._nested(
        m.CTA_TUPLE_ORIG, m._nested(m.CTA_TUPLE_IP, m._attr(m.CTA_IP_V4_SRC, socket.inet_aton(ip)))
    )
    cta_filter = m._nested(
        m.CTA_FILTER, m._attr(m.CTA_FILTER_ORIG_FLAGS, m._U32.pack(m.CTA_FILTER_FLAG_IP_SRC))
    )
    return m._message(m.CT_DELETE, m.NLM_F_REQUEST | m.NLM_F_ACK, seq, tuple_orig + cta_filter)


def mark_flush_request(mark: int, seq: int) -> bytes:
    """A deletion by the kernel of every IPv4 entry whose ``ct mark`` is ``mark``: the same
    walk."""
    from gateway import ctnetlink as m

    payload = m._attr(CTA_MARK, struct.pack("!I", mark)) + m._attr(CTA_MARK_MASK, b"\xff" * 4)
    return m._message(m.CT_DELETE, m.NLM_F_REQUEST | m.NLM_F_ACK, seq, payload)


class KernelFlush:
    """One acknowledged request on a netfilter socket of its own; a refusal raises."""

    def __init__(self) -> None:
        from gateway import ctnetlink

        self.sock = ctnetlink.netfilter_socket()
        self.seq = 0

    def __call__(self, request: Callable[[int], bytes]) -> None:
        from gateway import ctnetlink as m

        self.seq += 1
        self.sock.send(request(self.seq))
        while True:
            data = self.sock.recv(m.RECV_BUFFER)
            for kind, _flags, seq, start, _end in m.messages(data):
                if kind == m.NLMSG_ERROR and seq == self.seq:
                    code = m.error_code(data, start)
                    if code:
                        raise m.CtNetlinkError(code, os.strerror(code))
                    return

    def close(self) -> None:
        self.sock.close()


def make_flows(src: str, count: int, first: int = 0) -> None:
    """``count`` UDP flows from ``src``: one socket, one datagram to each of ``count``
    loopback addresses (each a flow of its own), numbered from ``first``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        for i in range(first, first + count):
            s.sendto(b"q", (f"127.1.{i // 250}.{i % 250 + 1}", 1000))


def background(start: int, total: int) -> None:
    """Other clients' entries ``start``..``total``: 100 flows from each source."""
    for n in range(start // 100, total // 100):
        make_flows(f"127.2.{n // 250}.{n % 250 + 1}", 100)


def inside(args: argparse.Namespace) -> dict[str, Any]:
    from gateway import ctnetlink
    from gateway.conntrack import Conntrack

    by_dump = Conntrack()
    by_index = Conntrack()
    by_index.watch_clients(NETWORK)
    kernel = ctnetlink.CtNetlink()  # the checks' dumps
    flush = KernelFlush()
    ways: dict[str, Any] = {
        "dump": by_dump.flush_client,
        "kernel_flush": lambda ip: flush(lambda seq: filtered_flush_request(ip, seq)),
        "mark_flush": lambda ip: flush(lambda seq: mark_flush_request(CLIENT_MARK, seq)),
        "index": by_index.flush_client,
    }
    make_flows(PREFIX_TWIN, 3)
    results: dict[str, Any] = {}
    made = 0
    for size in args.background:
        background(made, size)
        made = size
        assert by_index.flows is not None
        deadline = time.monotonic() + 60
        while not by_index.flows.ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        for k in args.entries:
            cpu: dict[str, list[float]] = {w: [] for w in WAYS}
            wall: dict[str, list[float]] = {w: [] for w in WAYS}
            for trial in range(args.trials + 2):
                order = list(WAYS)[trial % 4 :] + list(WAYS)[: trial % 4]
                for which in order:
                    make_flows(CLIENT, k)
                    c0, t0 = time.process_time(), time.perf_counter()
                    ways[which](CLIENT)
                    w = (time.perf_counter() - t0) * 1e3
                    c = (time.process_time() - c0) * 1e3
                    if trial < 2:  # warm-up, and a check that every way forgets them all
                        left = len(kernel.entries_from(CLIENT))
                        twins = len(kernel.entries_from(PREFIX_TWIN))
                        if left or twins != 3:
                            raise SystemExit(f"{which}: {left} entries left, {twins} of 3 twins")
                        continue
                    cpu[which].append(c)
                    wall[which].append(w)
            one = results[f"background_{size}_entries_{k}"] = {}
            for which in WAYS:
                one[f"{which}_cpu"] = dist(cpu[which], "ms", 3)
                one[f"{which}_wall"] = dist(wall[which], "ms", 3)
            base_cpu = dist(cpu["dump"], "ms", 4)["p50_ms"]
            base_wall = dist(wall["dump"], "ms", 4)["p50_ms"]
            for which in WAYS[1:]:
                one[f"cpu_p50_{which}_over_dump"] = ratio(
                    dist(cpu[which], "ms", 4)["p50_ms"], base_cpu
                )
                one[f"wall_p50_{which}_over_dump"] = ratio(
                    dist(wall[which], "ms", 4)["p50_ms"], base_wall
                )
        results[f"background_{size}_index"] = {
            "entries": len(by_index.flows),
            "seeds": by_index.flows.seeds,
            "losses": by_index.flows.losses,
        }
    results["index_memory"] = index_memory(NETWORK)
    results["event_cost"] = event_cost(args.event_flows, args.event_rounds)
    kernel.close()
    flush.close()
    by_dump.close()
    by_index.close()
    return results


def index_memory(network: ipaddress.IPv4Network) -> dict[str, Any]:
    """What a seeding of the whole table costs (wall and the process's CPU, from start to
    ready: the index's thread dumps and parses it), then the bytes the index holds per entry:
    another seeding under tracemalloc (the dump's transient buffers are gone by the
    snapshot)."""
    from gateway.ctnetlink import ClientFlowIndex

    index = ClientFlowIndex(network, 1 << 30)
    c0, t0 = time.process_time(), time.perf_counter()
    index.start()
    while not index.ready() and time.perf_counter() - t0 < 60:
        time.sleep(0.001)
    seed_wall = (time.perf_counter() - t0) * 1e3
    seed_cpu = (time.process_time() - c0) * 1e3
    index.close()
    index = ClientFlowIndex(network, 1 << 30)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    index.start()
    deadline = time.monotonic() + 60
    while not index.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename"))
    entries = len(index)
    index.close()
    return {
        "entries": entries,
        "seed_wall_ms": round(seed_wall, 1),
        "seed_cpu_ms": round(seed_cpu, 1),
        "bytes": held,
        "bytes_per_entry": round(held / entries, 1) if entries else None,
    }


def event_cost(flows: int, rounds: int) -> dict[str, Any]:
    """CPU of the whole process to make ``flows`` new flows (from fresh sources, so that
    each is new) with a client-flow index reading their events, against without one;
    alternating, ``rounds`` of each. The difference per flow is the index's."""
    from gateway.ctnetlink import ClientFlowIndex

    with_index: list[float] = []
    without: list[float] = []
    for r in range(rounds * 2):
        use = r % 2 == 0
        index = ClientFlowIndex(NETWORK, 1 << 30) if use else None
        if index is not None:
            index.start()
            while not index.ready():
                time.sleep(0.01)
            base = len(index)
        c0 = time.process_time()
        for n in range(flows // 100):
            make_flows(f"127.3.{r}.{n % 250 + 1}", 100, first=(n // 250) * 100)
        if index is not None:
            deadline = time.monotonic() + 30
            while len(index) < base + flows and time.monotonic() < deadline:
                time.sleep(0.001)
            if len(index) < base + flows:
                raise SystemExit(f"index read {len(index) - base} of {flows} new flows")
        per_flow = (time.process_time() - c0) * 1e6 / flows
        (with_index if use else without).append(per_flow)
        if index is not None:
            index.close()
    w = dist(with_index, "us", 2)
    wo = dist(without, "us", 2)
    return {
        "flows_per_round": flows,
        "cpu_per_new_flow_with_index": w,
        "cpu_per_new_flow_without": wo,
        "index_share_per_flow_us": round(w["p50_us"] - wo["p50_us"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, nargs="+", default=[0, 10, 300])
    ap.add_argument("--background", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--event-flows", type=int, default=5000)
    ap.add_argument("--event-rounds", type=int, default=5)
    ap.add_argument("--output", default="bench/results/kick.json")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.background = sorted(args.background)
    if args.inside:
        print(json.dumps(inside(args)))
        return 0
    if os.geteuid() != 0:
        print("bench.kick: needs root (a network namespace)", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"meta": meta(args)}
    ns = f"hsk-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        exec_ns = ["ip", "netns", "exec", ns]
        subprocess.run([*exec_ns, "ip", "link", "set", "lo", "up"], check=True)
        # Connection tracking on, and the client's flows marked (for mark_flush). Unreplied
        # UDP entries live 30 s by default: longer, so that the background stays.
        ruleset = (
            "table ip t {\n chain c {\n type filter hook output priority 0;"
            f" ip saddr {CLIENT} ct mark set {CLIENT_MARK}\n }}\n}}\n"
        )
        subprocess.run([*exec_ns, "nft", "-f", "-"], input=ruleset.encode(), check=True)
        subprocess.run(
            [*exec_ns, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=900"], check=True
        )
        cmd = [*exec_ns, sys.executable, "-m", "bench.kick", "--inside"]
        cmd += ["--entries", *map(str, args.entries)]
        cmd += ["--background", *map(str, args.background)]
        cmd += ["--trials", str(args.trials), "--event-flows", str(args.event_flows)]
        cmd += ["--event-rounds", str(args.event_rounds)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        report["results"] = json.loads(out)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    report["meta"]["loadavg_at_end"] = list(os.getloadavg())
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    for name, r in report["results"].items():
        if "_entries_" in name:
            cells = ", ".join(
                f"{w} {r[f'{w}_cpu']['p50_ms']}/{r[f'{w}_wall']['p50_ms']}" for w in WAYS
            )
            print(f"{name} (CPU/wall p50 ms): {cells}")
    print(f"index memory: {report['results']['index_memory']}")
    print(f"event cost: {report['results']['event_cost']}")
    print(f"load {report['meta']['loadavg_at_start']} -> {report['meta']['loadavg_at_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
