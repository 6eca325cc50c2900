"""The conntrack step of a login or a kick, in-process: ``sudo python3 -m bench.conntrack_step``.

In a namespace of its own (``hsc-<pid>``), with ``--background`` entries of other clients in
the table, a client gets ``k`` DNS flows (k in ``--entries``) and then forgets them — by
the product's adapter (gateway/conntrack.py: gateway/ctnetlink.py's client) and by the
baseline measured in the same run, pyroute2 0.9's ``Conntrack`` on a thread of its own as
the adapter used it before (``dump_entries(tuple_orig=NFCTAttrTuple(saddr=ip))``, then
``delete`` per entry). Trials alternate between the two. Per call: the CPU of the whole
process (``process_time``: the kernel's work for the calling thread included, and pyroute2's
threads) and the wall time. ``kernel_walk`` is a dump of an address with no entry by the
new client: the kernel's walk of its hash table (``nf_conntrack_buckets``, machine-wide)
and little else. Output ``bench/results/conntrack.json`` with the machine and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.gateway import dist, ratio

CLIENT = "127.0.0.7"
WALLED_DNS_PORT = 5300
NOBODY = "127.0.0.9"


def old_adapter() -> tuple[Any, Any]:
    """The adapter before the change: pyroute2's Conntrack, every call on one thread."""
    from pyroute2.conntrack import Conntrack
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    import gateway.netlink  # noqa: F401  (the bare pyroute2 package, as the daemon has it)
    from gateway.netlink_thread import OnOneThread

    ct = OnOneThread(Conntrack, name="conntrack")

    def flush(ip: str) -> int:
        deleted = 0
        for entry in ct.dump_entries(tuple_orig=NFCTAttrTuple(saddr=ip)):
            try:
                ct.delete(entry)
                deleted += 1
            except NetlinkError as exc:
                if exc.code != 2:
                    raise
        return deleted

    return flush, ct


def make_flows(src: str, count: int, dport: int = 53) -> None:
    """``count`` UDP flows from ``src``: one socket, one datagram to each of ``count``
    loopback addresses (each a flow of its own)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        for i in range(count):
            s.sendto(b"q", (f"127.1.{i // 250}.{i % 250 + 1}", dport))


def inside(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.conntrack import Conntrack

    for i in range(args.background // 100):
        make_flows(f"127.2.{i // 250}.{i % 250 + 1}", 100, dport=1000)  # not redirected
    for i in range(args.background_walled // 10):
        make_flows(f"127.3.{i // 250}.{i % 250 + 1}", 10)  # other walled phones' lookups
    by_dump = Conntrack()
    by_index = Conntrack()
    by_index.watch_redirects("127.0.0.1", {WALLED_DNS_PORT: (socket.IPPROTO_UDP,)})
    old_flush, old_ct = old_adapter()
    portal = ("127.0.0.1", 8080)
    ways: dict[str, Any] = {
        "old": old_flush,  # every entry of the client (all are its walled lookups here)
        "dump": lambda ip: by_dump.flush_walled(ip, portal),
        "index": lambda ip: by_index.flush_walled(ip, portal),
    }
    results: dict[str, Any] = {}

    def timed(fn: Any, ip: str) -> tuple[float, float, int]:
        c0, t0 = time.process_time(), time.perf_counter()
        n = fn(ip)
        return (time.process_time() - c0) * 1e3, (time.perf_counter() - t0) * 1e3, n

    for k in args.entries:
        cpu: dict[str, list[float]] = {w: [] for w in ways}
        wall: dict[str, list[float]] = {w: [] for w in ways}
        for trial in range(args.trials + 2):
            order = list(ways)[trial % 3 :] + list(ways)[: trial % 3]
            for which in order:
                make_flows(CLIENT, k)
                c, w, n = timed(ways[which], CLIENT)
                if n != k:
                    raise SystemExit(f"{which}: {n} of {k} entries deleted")
                if trial >= 2:  # the first two warm up (sockets, imports)
                    cpu[which].append(c)
                    wall[which].append(w)
        one = results[f"entries_{k}"] = {}
        for which in ways:
            one[f"{which}_cpu"] = dist(cpu[which], "ms", 3)
            one[f"{which}_wall"] = dist(wall[which], "ms", 3)
        for which in ("dump", "index"):
            one[f"cpu_p50_{which}_over_old"] = ratio(
                dist(cpu[which], "ms", 4)["p50_ms"], dist(cpu["old"], "ms", 4)["p50_ms"]
            )
    walk: list[float] = []
    for _ in range(args.trials):
        c0 = time.process_time()
        by_dump.ct.entries_from(NOBODY)
        walk.append((time.process_time() - c0) * 1e3)
    results["kernel_walk_cpu"] = dist(walk, "ms", 3)
    assert by_index.redirects is not None
    results["index_seeds"] = by_index.redirects.seeds
    results["index_entries_at_end"] = len(by_index.redirects)
    old_ct.close()
    by_dump.close()
    by_index.close()
    return results


def meta(args: argparse.Namespace) -> dict[str, Any]:
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return "?"

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "nf_conntrack_buckets": read("/proc/sys/net/netfilter/nf_conntrack_buckets"),
        "commit": commit,
        "loadavg_at_start": list(os.getloadavg()),
        "parameters": {k: v for k, v in vars(args).items() if k != "inside"},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, nargs="+", default=[0, 5, 50])
    ap.add_argument("--background", type=int, default=5000, help="other clients' entries")
    ap.add_argument(
        "--background-walled", type=int, default=500, help="other walled phones' lookups"
    )
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--output", default="bench/results/conntrack.json")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inside:
        print(json.dumps(inside(args)))
        return 0
    if os.geteuid() != 0:
        print("bench.conntrack_step: needs root (a network namespace)", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"meta": meta(args)}
    ns = f"hsc-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        exec_ns = ["ip", "netns", "exec", ns]
        subprocess.run([*exec_ns, "ip", "link", "set", "lo", "up"], check=True)
        # The walled resolver's redirect (as the gateway's for a walled phone), on locally
        # sent datagrams: DNS to any address goes to port 5300. Unreplied UDP entries live
        # 30 s by default: set longer, so that the background stays for the whole run.
        ruleset = (
            "table ip t {\n chain c {\n type nat hook output priority -100;"
            f" udp dport 53 redirect to :{WALLED_DNS_PORT}\n }}\n}}\n"
        )
        subprocess.run([*exec_ns, "nft", "-f", "-"], input=ruleset.encode(), check=True)
        subprocess.run(
            [*exec_ns, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=600"], check=True
        )
        cmd = [*exec_ns, sys.executable, "-m", "bench.conntrack_step", "--inside"]
        cmd += ["--entries", *map(str, args.entries), "--background", str(args.background)]
        cmd += ["--background-walled", str(args.background_walled)]
        cmd += ["--trials", str(args.trials)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        report["results"] = json.loads(out)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    report["meta"]["loadavg_at_end"] = list(os.getloadavg())
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    for name, r in report["results"].items():
        if name.startswith("entries_"):
            print(
                f"{name}: CPU p50 old {r['old_cpu']['p50_ms']} ms, dump {r['dump_cpu']['p50_ms']},"
                f" index {r['index_cpu']['p50_ms']}; wall p50/p99 old {r['old_wall']['p50_ms']}"
                f"/{r['old_wall']['p99_ms']}, dump {r['dump_wall']['p50_ms']}"
                f"/{r['dump_wall']['p99_ms']}, index {r['index_wall']['p50_ms']}"
                f"/{r['index_wall']['p99_ms']}"
            )
    walk = report["results"]["kernel_walk_cpu"]
    print(f"kernel walk (a dump of nobody): CPU p50 {walk['p50_ms']} ms, p99 {walk['p99_ms']} ms")
    print(f"load {report['meta']['loadavg_at_start']} -> {report['meta']['loadavg_at_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
