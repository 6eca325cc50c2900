"""Where an authorize's time goes inside the running gateway, over the control socket:
``python3 -m bench.login_trace`` (as root).

    sudo python3 -m bench.login_trace --sessions 10 --trials 40 [--lan 10.10.0.1/22] [--tree DIR]

``bench.login``'s village and first-packet trials, with the gateway started by
``bench/trace_gateway.py`` (perf_counter stamps on the authorize path, logged per request).
For each phase: the time from the request's line being read to its start and end (p50, p99,
ms), wall and the serving thread's CPU; and each daemon thread's CPU over the trials (from
``/proc``). A phase whose wall time is far above its CPU time is waiting: for the kernel, a
lock, another thread or the run queue. Writes ``bench/results/login_trace.json`` (machine and
load in ``meta``). ``--tree DIR``: the gateway runs that checkout's code (a baseline, traced the
same way; the village and the driver are this tree's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import gateway as gb
from bench import login as bl


def _cpu_ticks(pid: int) -> dict[int, int]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = int(fields[11]) + int(fields[12])
    return out


def phases(traces: list[list[list[Any]]]) -> dict[str, Any]:
    """label → wall and CPU (ms since the request was read) at p50 and p99."""
    by: dict[str, list[tuple[float, float]]] = {}
    for trace in traces:
        seen = set()
        for label, wall, cpu in trace:
            if label in seen:  # (a phase met twice in one request: its first time)
                continue
            seen.add(label)
            by.setdefault(label, []).append((wall, cpu))
    out = {}
    for label, rows in by.items():
        walls, cpus = [w for w, _ in rows], [c for _, c in rows]
        out[label] = {
            "n": len(rows),
            "wall_p50_ms": round(statistics.median(walls), 3),
            "wall_p99_ms": round(sorted(walls)[min(len(walls) - 1, int(len(walls) * 0.99))], 3),
            "cpu_p50_ms": round(statistics.median(cpus), 3),
        }
    return out


class TraceBench(bl.LoginBench):
    def start_gateway(self, name: str) -> float:
        if self.gw is not None and self.gw.running:
            self.gw.stop()
        self.gw = gb.GatewayProc(
            self.bed, self.configs[name], self.socket, self.work / f"gateway-{name}.log"
        )
        self.gw.entry = [str(gb.REPO / "bench" / "trace_gateway.py")]
        if self.args.tree:
            self.gw.repo = Path(self.args.tree).resolve()
        return self.gw.start(timeout=self.args.start_timeout)

    def trace(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sessions": self.crowd_n, "loadavg_at_start": os.getloadavg()}
        self.r["setup"] = {}
        self.build()
        self.start_gateway("full")
        self.add_crowd()
        self.stop_gateway()
        self.seed_sessions()
        self.start_gateway("full")
        assert self.gw is not None
        time.sleep(self.settle)
        recv, send = self.start_probe()
        time.sleep(0.5)
        pid = self.gw.pid
        before, t0 = _cpu_ticks(pid), time.monotonic()
        out["first_packet"] = self.first_packet_trials(self.trials)
        after, wall = _cpu_ticks(pid), time.monotonic() - t0
        self.kill(send)
        self.kill(recv)
        names: dict[int, str] = {}
        traces = []
        for _, line in self.gw.lines:
            if "THREADS " in line:
                names = {v: k for k, v in json.loads(line.split("THREADS ", 1)[1]).items()}
            elif "TRACE " in line:
                traces.append(json.loads(line.split("TRACE ", 1)[1]))
        tick = os.sysconf("SC_CLK_TCK")
        out["thread_cpu_pct_of_one_core"] = {
            f"{names.get(tid, '?')} ({tid})": round(
                100 * (after[tid] - before.get(tid, 0)) / tick / wall, 1
            )
            for tid in sorted(after, key=lambda t: before.get(t, 0) - after[t])
        }
        out["authorize"] = phases([t for t in traces if any(r[0] == "authorize>" for r in t)])
        out["deauthorize"] = phases([t for t in traces if any(r[0] == "deauthorize>" for r in t)])
        out["loadavg_at_end"] = os.getloadavg()
        self.stop_gateway()
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m bench.login_trace", description=__doc__.split("\n")[0]
    )
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--lan", default="10.10.0.1/22")
    p.add_argument("--start-timeout", type=float, default=1800)
    p.add_argument("--output", default=str(gb.RESULTS / "login_trace.json"))
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--tree", help="the gateway's code from this checkout (a baseline)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.login_trace: needs root (network namespaces, nftables, tc)", file=sys.stderr)
        return 2
    if args.tree and not (Path(args.tree) / "gateway" / "engine.py").is_file():
        print(f"bench.login_trace: --tree: no gateway/engine.py in {args.tree}", file=sys.stderr)
        return 2
    args.phase_trials = 1
    args.flows = args.rounds = args.seconds = None
    bench = TraceBench(args, args.sessions)
    result: dict[str, Any] = {"meta": bench.meta()}
    result["meta"]["tree"] = str(Path(args.tree).resolve()) if args.tree else None
    try:
        result["run"] = bench.trace()
    finally:
        bench.cleanup()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    fp = result["run"]["first_packet"]["first_packet"]
    print(f"first packet p50 {fp.get('p50_ms')} p99 {fp.get('p99_ms')} ms")
    for label, d in result["run"]["authorize"].items():
        print(
            f"  {label:22s} wall p50 {d['wall_p50_ms']:8.3f}  p99 {d['wall_p99_ms']:8.3f}  CPU p50 {d['cpu_p50_ms']:7.3f}"
        )
    print(json.dumps(result["run"]["thread_cpu_pct_of_one_core"]))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
