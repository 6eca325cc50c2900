"""The resolver with a big blocklist (issue #15, item 2): dnsmasq's memory, answer time and
start time with N blocked names, against the same dnsmasq with an empty list in the same run.

    python3 -m bench.dnsfilter                 # 0, 100,000 and 1,000,000 names (~2 minutes)
    python3 -m bench.dnsfilter --sizes 0,10000 --queries 300   # a smoke run

Everything runs on 127.0.0.1 at free ports: the dnsmasq under test (the gateway's settings:
cache-size=1000, max-cache-ttl=300, the list as ``address=/name/portal`` lines written by
hotspot/dnsfilter.py) and a second dnsmasq as the upstream (answers every name, TTL 300).
No packet leaves the machine. Results: bench/results/dnsfilter.json (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hotspot import dnsfilter

PORTAL = "10.10.0.1"
UPSTREAM_ANSWER = "203.0.113.7"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def query(sock: socket.socket, port: int, name: str, timeout: float = 2.0) -> tuple[float, str]:
    """(seconds, first A answer or rcode text) of one A query."""
    ident = random.randrange(65536)
    q = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    sock.settimeout(timeout)
    t0 = time.perf_counter()
    sock.sendto(q, ("127.0.0.1", port))
    while True:
        data = sock.recv(4096)
        if struct.unpack(">H", data[:2])[0] == ident:
            break
    elapsed = time.perf_counter() - t0
    rcode = data[3] & 0xF
    ancount = struct.unpack(">H", data[6:8])[0]
    if rcode or not ancount:
        return elapsed, f"rcode{rcode}"
    # The answer's address: the last 4 bytes of a one-A answer.
    return elapsed, socket.inet_ntoa(data[-4:])


def names(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    tlds = ("com", "net", "org", "info", "xyz", "id", "co.id", "top", "site", "online")
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    out: set[str] = set()
    while len(out) < n:
        label = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(6, 16)))
        out.add(f"{label}.{rnd.choice(tlds)}")
    return sorted(out)


def rss_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
        "n": len(values),
    }


def start(
    conf: Path, port: int, upstream: int, extra: list[str]
) -> tuple[subprocess.Popen[bytes], float]:
    cmd = [
        "dnsmasq",
        "--keep-in-foreground",
        "--no-daemon" if False else "--keep-in-foreground",
        f"--conf-file={conf}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        f"--port={port}",
        "--no-resolv",
        "--no-hosts",
        f"--server=127.0.0.1#{upstream}",
        "--cache-size=1000",
        "--max-cache-ttl=300",
        "--pid-file=",
        "--user=root",
        *extra,
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"dnsmasq exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            try:
                query(s, port, "ready.probe.example", timeout=0.05)
                return proc, time.perf_counter() - t0
            except OSError:
                continue
    raise RuntimeError("dnsmasq did not answer within 300 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(
    size: int, listed: list[str], work: Path, upstream: int, queries: int, form: str = "address"
) -> dict[str, Any]:
    conf = work / f"blocked-{size}.conf"
    t0 = time.perf_counter()
    if form == "hosts":
        # The comparison: exact names in a hosts file (dnsmasq keeps them in its hashed cache;
        # SIGHUP re-reads it), the name and its www. subdomain.
        hosts = work / f"blocked-{size}.hosts"
        hosts.write_text("".join(f"{PORTAL} {n} www.{n}\n" for n in listed[:size]))
        conf.write_text(f"addn-hosts={hosts}\n")
    else:
        conf.write_text(dnsfilter.render_blocked(listed[:size], PORTAL))
    render_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    test = subprocess.run(
        ["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True, text=True, check=False
    )
    test_s = time.perf_counter() - t0
    port = free_port()
    proc, start_s = start(conf, port, upstream, [])
    try:
        rss_start = rss_kb(proc.pid)
        rnd = random.Random(size)
        blocked_t: list[float] = []
        cached_t: list[float] = []
        uncached_t: list[float] = []
        wrong = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(queries):
                if size:
                    name = rnd.choice(listed[:size])
                    if i % 2:
                        name = "www." + name  # a subdomain of a blocked name
                    t, ans = query(s, port, name)
                    blocked_t.append(t)
                    wrong += ans != PORTAL
                name = f"u{i}-{rnd.randrange(10**9)}.allowed.example"
                t, ans = query(s, port, name)
                uncached_t.append(t)
                wrong += ans != UPSTREAM_ANSWER
                t, ans = query(s, port, name)
                cached_t.append(t)
                wrong += ans != UPSTREAM_ANSWER
        rss_after = rss_kb(proc.pid)
    finally:
        stop(proc)
    # Restart (what a new list costs: dnsmasq re-reads address= lines only when it starts).
    t0 = time.perf_counter()
    proc, restart_start = start(conf, port, upstream, [])
    stop(proc)
    restart_s = time.perf_counter() - t0
    return {
        "form": form,
        "names": size,
        "conf_mb": round(conf.stat().st_size / 1e6, 1),
        "render_s": round(render_s, 2),
        "dnsmasq_test_s": round(test_s, 2),
        "dnsmasq_test_ok": test.returncode == 0,
        "start_to_first_answer_s": round(start_s, 2),
        "restart_to_first_answer_s": round(restart_start, 2),
        "restart_total_s": round(restart_s, 2),
        "rss_after_start_mb": round(rss_start["VmRSS"] / 1024, 1),
        "rss_after_queries_mb": round(rss_after["VmRSS"] / 1024, 1),
        "rss_peak_mb": round(rss_after["VmHWM"] / 1024, 1),
        "blocked": summary_ms(blocked_t) if blocked_t else None,
        "allowed_cached": summary_ms(cached_t),
        "allowed_uncached": summary_ms(uncached_t),
        "wrong_answers": wrong,
    }


def machine() -> dict[str, object]:
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    mem = {}
    for line in Path("/proc/meminfo").read_text().splitlines()[:3]:
        k, _, v = line.partition(":")
        mem[k] = int(v.split()[0]) // 1024
    version = subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True).stdout
    return {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "kernel": platform.release(),
        "loadavg_1_5_15": [float(x) for x in load],
        "memory_mb": mem,
        "dnsmasq": version.splitlines()[0] if version else "?",
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0,100000,1000000")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument(
        "--form",
        choices=("address", "hosts"),
        default="address",
        help="address=/name/ lines (subdomains too, the gateway's) or a hosts file (exact)",
    )
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" / "dnsfilter.json"))
    args = ap.parse_args(argv)
    sizes = sorted(int(x) for x in args.sizes.split(","))
    if sizes[0] != 0:
        sizes.insert(0, 0)  # the baseline is always measured in the same run
    result: dict[str, object] = {
        "machine_before": machine(),
        "queries_per_kind": args.queries,
        "form": args.form,
    }
    t0 = time.perf_counter()
    listed = names(max(sizes))
    result["generate_names_s"] = round(time.perf_counter() - t0, 2)
    with tempfile.TemporaryDirectory(prefix="bench-dnsfilter-") as tmp:
        work = Path(tmp)
        raw = work / "list.txt"
        raw.write_text("".join(n + "\n" for n in listed))
        t0 = time.perf_counter()
        parsed = dnsfilter.parse_file(raw)
        result["parse_list_s"] = round(time.perf_counter() - t0, 2)
        result["parse_list_names"] = len(parsed.names)
        up_conf = work / "upstream.conf"
        up_conf.write_text(f"address=/#/{UPSTREAM_ANSWER}\nlocal-ttl=300\n")
        up_port = free_port()
        upstream = subprocess.Popen(
            [
                "dnsmasq",
                "--keep-in-foreground",
                f"--conf-file={up_conf}",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                f"--port={up_port}",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                "--user=root",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            runs: list[dict[str, Any]] = []
            for size in sizes:
                runs.append(measure(size, parsed.names, work, up_port, args.queries, args.form))
                print(json.dumps(runs[-1]), flush=True)
        finally:
            stop(upstream)
    base = runs[0]
    ratios = {}
    for r in runs[1:]:
        ratios[str(r["names"])] = {
            "rss_over_baseline": round(
                float(r["rss_after_queries_mb"]) / float(base["rss_after_queries_mb"]), 1
            ),
            "uncached_p50_over_baseline": round(
                r["allowed_uncached"]["p50_ms"] / base["allowed_uncached"]["p50_ms"],
                2,
            ),
            "cached_p50_over_baseline": round(
                r["allowed_cached"]["p50_ms"] / base["allowed_cached"]["p50_ms"],
                2,
            ),
            "start_over_baseline": round(
                float(r["start_to_first_answer_s"])
                / max(0.001, float(base["start_to_first_answer_s"])),
                1,
            ),
        }
    result["runs"] = runs
    result["ratios"] = ratios
    result["machine_after"] = machine()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
