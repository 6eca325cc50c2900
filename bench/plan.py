"""The reconcile's pure plan (``gateway.reconcile.plan``) at the tick's sizes: N running
sessions on a /18 with its whole DHCP pool's classes, the kernel's snapshot equal to what
the database wants (the common tick: nothing to change), then the same with one change of
each kind. No root, no kernel: the plan is pure data.

    python3 -m bench.plan                                   # 1,000 and 10,000 sessions
    python3 -m bench.plan --tree /tmp/base --sessions 10000 --repeat 40

``--tree DIR``: the same measurement with the code of another checkout (a ``git worktree``
of the baseline), in a subprocess, in the same run; ``ratios`` are this tree's p50/p99 ÷ the
baseline's. Output ``bench/results/plan.json``; machine and load average in ``meta``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.engine_db import dist, meta

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
LAN = ipaddress.IPv4Network("10.64.0.0/18")
POOL = ("10.64.0.10", "10.64.63.254")


def measure(n: int, repeat: int) -> dict[str, Any]:
    from gateway import reconcile, shaping

    pool = reconcile.Pool.from_range(*POOL, LAN, 1000, 500)
    wanted = [
        reconcile.Wanted(
            ip=str(LAN.network_address + 10 + i),
            mac=f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
            down_kbps=2000,
            up_kbps=1000,
        )
        for i in range(n)
    ]
    classid = {w.ip: shaping.classid_str(shaping.client_minor(w.ip, LAN)) for w in wanted}
    snap = reconcile.Snapshot(
        authorized={(w.ip, w.mac) for w in wanted},
        down_map=dict(classid),
        up_map=dict(classid),
        pinned={w.ip: w.mac for w in wanted},
        down_ceil=dict.fromkeys(pool.minors, 1000),
        up_ceil=dict.fromkeys(pool.minors, 500),
    )
    for w in wanted:
        minor = shaping.client_minor(w.ip, LAN)
        snap.down_ceil[minor], snap.up_ceil[minor] = 2000, 1000
    # One session gone, one new at another rate, one device blocked.
    changed = wanted[1:] + [
        reconcile.Wanted(
            ip=str(LAN.network_address + 10 + n), mac="02:aa:00:00:00:01", down_kbps=3000, up_kbps=1
        )
    ]
    out: dict[str, Any] = {
        "sessions": n,
        "pool_classes": len(pool.minors),
        "code": reconcile.__file__,
    }
    for name, want, blocked in (
        ("unchanged", wanted, set()),
        ("one_change_of_each_kind", changed, {"02:bb:00:00:00:01"}),
    ):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            plan = reconcile.plan(want, blocked, snap, LAN, pool)
            times.append((time.perf_counter() - t) * 1000)
        out[name] = {**dist(times), "summary": plan.summary()}
    return out


def ratios(mine: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, res in mine.items():
        for case in ("unchanged", "one_change_of_each_kind"):
            for p in ("p50_ms", "p99_ms"):
                a, b = res[case][p], base[n][case][p]
                out[f"{n}/{case}/{p}"] = round(a / b, 3) if a is not None and b else None
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--repeat", type=int, default=30, help="plans per size and case (30)")
    p.add_argument("--tree", help="a baseline checkout, measured in the same run")
    p.add_argument("--output", default=str(RESULTS / "plan.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not all(1 <= n <= 16000 for n in args.sessions) or args.repeat < 1:
        print("bench.plan: --sessions in 1..16000 (the /18's pool), --repeat ≥ 1", file=sys.stderr)
        return 2
    if args.child:
        print(json.dumps({str(n): measure(n, args.repeat) for n in args.sessions}))
        return 0
    result: dict[str, Any] = {"meta": meta(), "args": vars(args)}
    if args.tree:
        tree = Path(args.tree).resolve()
        if not (tree / "gateway" / "reconcile.py").is_file():
            print(f"bench.plan: --tree: no gateway/reconcile.py in {tree}", file=sys.stderr)
            return 2
        # This file, run with the baseline's packages first on the path.
        cmd = [sys.executable, "-c", _CHILD, str(tree), str(REPO), "--child", "--repeat"]
        cmd += [str(args.repeat), "--sessions", *map(str, args.sessions)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result["baseline"] = json.loads(done.stdout)
        result["baseline_tree"] = str(tree)
    result["this_tree"] = {str(n): measure(n, args.repeat) for n in args.sessions}
    if args.tree:
        result["ratios"] = ratios(result["this_tree"], result["baseline"])
    result["meta"]["load_average_end"] = list(os.getloadavg())
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


# The baseline's child: the baseline's ``gateway`` (and what it imports) loaded first, then
# this checkout's bench (a baseline older than this file has no bench/plan.py).
_CHILD = (
    "import runpy, sys; sys.path.insert(0, sys.argv[1]); "
    "import gateway.reconcile, gateway.shaping; sys.path.insert(0, sys.argv[2]); "
    "sys.argv = ['bench.plan', *sys.argv[3:]]; runpy.run_module('bench.plan', run_name='__main__')"
)

if __name__ == "__main__":
    sys.exit(main())
