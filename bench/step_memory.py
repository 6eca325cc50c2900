"""The gateway's memory under the soak's midnights, in-process and in minutes (issue #11).

    python3 -m bench.step_memory                        # this tree, 14,000 cycles
    python3 -m bench.step_memory --tree /tmp/base       # and a baseline checkout, same run

``bench.soak --day-seconds 120`` makes each midnight by stepping the village clock, and the
gateway follows every step (``SessionEngine._follow_step``). This drives the same work
without root or namespaces, about twenty times faster: the session engine on a real SQLite
database with the fake kernel (``tests/unit/fakes.py``), 16 phones logging in on the free
tier or with a voucher (its first use stamped as the portal stamps it), kicked, ticking with
traffic (every 4th tick flushing), and every ``--day-cycles`` cycles a step of the clock to
5 s before the next local midnight. Every tenth of the run it records the process's RSS,
Python's obmalloc arenas (``sys._debugmallocstats``) and its allocated blocks.

``growth`` is last minus first after the first fifth (the start-up's own rise left out);
with ``--tree``, ``ratios`` are this tree's growth ÷ the baseline's (None when the
baseline's is 0). Output ``bench/results/step_memory.json``; machine and load in ``meta``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PHONES = 16
VOUCHERS = 10_000


def obmalloc_arenas() -> int:
    """Python's arenas in use now: ``sys._debugmallocstats`` writes to the C stderr."""
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    os.close(write)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    for line in b"".join(chunks).decode().splitlines():
        if line.startswith("# arenas allocated current"):
            return int(line.rsplit("=", 1)[1])
    raise RuntimeError("sys._debugmallocstats: no arena count")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status: no VmRSS")


def measure(cycles: int, day_cycles: int, seed: int) -> dict[str, Any]:
    """One run, in this process, with the code on ``sys.path`` (this tree or ``--tree``)."""
    from sqlalchemy import select, update

    from gateway.engine import SessionEngine
    from hotspot import config as config_mod
    from hotspot.db import open_database
    from hotspot.errors import HotspotError
    from hotspot.model import EndReason, Source, Voucher, VoucherState
    from hotspot.vouchers.batches import create_batch
    from hotspot.vouchers.packages import sync_packages
    from tests.unit.fakes import Clock, FakeDataPath

    # The steps' warnings, one a midnight, are the product's; not this bench's output.
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hs-step-memory-") as tmp:
        cfg = config_mod.load(
            overrides={
                "database": {"url": f"sqlite:///{tmp}/hotspot.db"},
                "control": {"socket": f"{tmp}/control.sock"},
                "network": {"lan_address": "10.10.0.1/22"},
                "packages": {
                    "jam": {"title": "Satu jam", "price": 1000, "tier": "premium", "hours": 1}
                },
            }
        )
        db = open_database(cfg.database.url)
        sync_packages(db, cfg.packages.values())
        for _ in range(VOUCHERS // 1000):
            create_batch(db, b"k" * 32, "jam", 1000)
        with db.connect() as conn:
            stock = [vid for (vid,) in conn.execute(select(Voucher.id).order_by(Voucher.id))]
        dp = FakeDataPath("10.10.0.0/22")
        clock = Clock(dt.datetime(2026, 11, 30, 3, 0, 0))
        engine = SessionEngine(cfg, db, dp, clock=clock, monotonic=clock.monotonic)
        engine.start()
        rnd = random.Random(seed)
        phones = [(f"10.10.0.{10 + i}", f"02:aa:00:00:{i:02x}:01") for i in range(PHONES)]
        samples: list[dict[str, Any]] = []
        used = steps = 0
        started = time.perf_counter()
        for cycle in range(cycles):
            ip, mac = phones[rnd.randrange(PHONES)]
            pick = rnd.random()
            try:
                if pick < 0.3:
                    engine.authorize(ip=ip, mac=mac, tier="free", source=Source.FREE)
                elif pick < 0.45 and used < len(stock):
                    vid, now = stock[used], clock()
                    used += 1
                    end = now + dt.timedelta(hours=1)
                    with db.begin() as conn:  # the portal's redemption: the first use
                        conn.execute(
                            update(Voucher)
                            .where(Voucher.id == vid)
                            .values(
                                state=VoucherState.ACTIVE.value,
                                sold_at=now,
                                first_used_at=now,
                                expires_at=end,
                            )
                        )
                    engine.authorize(
                        ip=ip,
                        mac=mac,
                        tier="premium",
                        source=Source.VOUCHER,
                        voucher_id=vid,
                        expires_at=end,
                    )
                elif pick < 0.6:
                    engine.deauthorize(ip=ip, mac=mac, reason=EndReason.LOGOUT)
                else:
                    for phone, _ in phones:
                        dp.traffic(phone, down=rnd.randrange(100_000), up=1000)
                    clock.advance(seconds=2)
                    engine.tick(force_flush=cycle % 4 == 0)
            except HotspotError:  # a used-up day, a replaced session: the churn goes on
                pass
            dp.applied.clear()  # the fake's record of plans, not the engine's memory
            if cycle % day_cycles == day_cycles - 1:
                now = clock.now
                local = now + dt.timedelta(hours=7)  # the village's (WIB)
                midnight = dt.datetime(local.year, local.month, local.day) + dt.timedelta(
                    days=1, hours=-7
                )
                clock.jump(seconds=(midnight - now).total_seconds() - 5)
                steps += 1
            if cycle % max(1, cycles // 10) == 0 or cycle == cycles - 1:
                samples.append(
                    {
                        "cycle": cycle,
                        "s": round(time.perf_counter() - started, 1),
                        "rss_mb": round(rss_mb(), 1),
                        "obmalloc_arenas": obmalloc_arenas(),
                        "allocated_blocks": sys.getallocatedblocks(),
                        "vouchers_used": used,
                        "steps": steps,
                    }
                )
        db.dispose()
    after = samples[len(samples) // 5 :]
    growth = {
        key: round(after[-1][key] - after[0][key], 1)
        for key in ("rss_mb", "obmalloc_arenas", "allocated_blocks")
    }
    return {
        "code": sys.modules[SessionEngine.__module__].__file__,
        "samples": samples,
        "growth": growth,
    }


def meta() -> dict[str, Any]:
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=14_000)
    p.add_argument(
        "--day-cycles", type=int, default=280, help="a clock step to midnight every N cycles"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tree", help="a baseline checkout, measured in the same run")
    p.add_argument("--output", default=str(RESULTS / "step_memory.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:  # the baseline's run, its code first on sys.path
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
        print(json.dumps(measure(args.cycles, args.day_cycles, args.seed)))
        return 0
    result: dict[str, Any] = {"meta": meta(), "args": vars(args)}
    if args.tree:
        tree = str(Path(args.tree).resolve())
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child"]
        cmd += ["--cycles", str(args.cycles), "--day-cycles", str(args.day_cycles)]
        cmd += ["--seed", str(args.seed)]
        env = {**os.environ, "PYTHONPATH": tree}
        done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
        result["baseline"] = json.loads(done.stdout)
        result["baseline_tree"] = tree
        result["meta"]["load_average_between"] = os.getloadavg()
    result["this_tree"] = measure(args.cycles, args.day_cycles, args.seed)
    if args.tree:
        mine, base = result["this_tree"]["growth"], result["baseline"]["growth"]
        result["ratios"] = {k: round(mine[k] / base[k], 3) if base[k] else None for k in mine}
    result["meta"]["load_average_end"] = os.getloadavg()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "baseline"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
