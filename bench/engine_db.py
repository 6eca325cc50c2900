"""The session engine's own work (Python and the database) for a login, a kick and a tick,
with the kernel faked: no root, no namespaces, seconds per size.

    python3 -m bench.engine_db                                  # 10 and 1000 sessions
    python3 -m bench.engine_db --tree /tmp/base --sessions 10 1000 --trials 200
    PYTHONMALLOC=malloc python3 -m bench.engine_db --tree . --baseline-env PYTHONMALLOC=pymalloc
    python3 -m bench.engine_db --profile authorize --sessions 1000   # cProfile, top 30

For each crowd size N: a fresh SQLite database (the gateway's settings), N sessions on the
free tier (authorized by MAC and address, so no neighbour lookup), then ``--trials``
authorize/deauthorize pairs of one more phone by address (the portal's way) and ``--ticks``
ticks with every session's classes passing traffic (every tick accounts all of them; every
``--flush-every``-th tick also flushes, as ``flush_seconds`` does). The fake kernel
(``tests/unit/fakes.py``) costs microseconds: what is measured is the engine's Python and
database work, which the in-process phases of ``bench.login`` call ``python_and_database``.

The database is opened as the daemon opens it: no commit checkpoints the WAL; after every
tick, once 1,000 pages wait, a checkpoint (the tick's ``checkpoint`` phase, outside
``whole``), and in the trials the same check every ``tick_seconds`` (untimed).
``HOTSPOT_BENCH_CHECKPOINT=commit`` measures SQLite's automatic checkpoint inside the commits
instead (the gateway before 2026-12-02): ``--tree . --baseline-env
HOTSPOT_BENCH_CHECKPOINT=commit`` compares the two in one run.

``--tree DIR``: run the same measurement again with the code of another checkout (a
``git worktree`` of the baseline), in a subprocess, in the same run: ``ratios`` are this
tree's p50/p99 ÷ the baseline's. Output ``bench/results/engine_db.json``; machine and load
average in ``meta``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
LAN = "10.10.0.1/22"  # a /18 for more than 1,000 sessions
CHECKPOINT_ENV = "HOTSPOT_BENCH_CHECKPOINT"  # "commit": SQLite's own, inside the commits


def checkpoint_in_commit() -> bool:
    return os.environ.get(CHECKPOINT_ENV) == "commit"


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))], 3)


def dist(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": pct(values, 50),
        "p99_ms": pct(values, 99),
        "p999_ms": pct(values, 99.9),
        "max_ms": round(max(values), 3) if values else None,
    }


def _locked_fake(fake_cls: Any) -> Any:
    """The fake kernel with each call atomic, as a real kernel's are (the concurrent part
    reads it from the tick's thread while logins change it from another)."""
    import threading

    class Locked(fake_cls):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self._kernel = threading.RLock()

        def counters(self, minors: Any = None) -> Any:
            with self._kernel:
                return super().counters(minors)

        def snapshot(self, *a: Any, **kw: Any) -> Any:
            with self._kernel:
                return super().snapshot(*a, **kw)

        def apply(self, plan: Any) -> Any:
            with self._kernel:
                return super().apply(plan)

        def class_counters(self, minor: int) -> Any:
            with self._kernel:
                return super().class_counters(minor)

        def traffic(self, *a: Any, **kw: Any) -> None:
            with self._kernel:
                super().traffic(*a, **kw)

    return Locked


class _WaitClock:
    """The engine's lock, noting how long the logins' thread waited for it (the first
    acquire of a nesting), as bench.login_phases does."""

    def __init__(self, inner: Any, thread: Any):
        import threading

        self.inner, self.thread = inner, thread
        self.depth = threading.local()
        self.waits: list[float] = []

    def acquire(self, *a: Any, **kw: Any) -> bool:
        import threading

        depth = getattr(self.depth, "n", 0)
        t = time.perf_counter()
        got = bool(self.inner.acquire(*a, **kw))
        if depth == 0 and threading.current_thread() is self.thread:
            self.waits.append((time.perf_counter() - t) * 1000)
        self.depth.n = depth + 1
        return got

    def release(self) -> None:
        self.depth.n -= 1
        self.inner.release()

    __enter__ = acquire

    def __exit__(self, *exc: Any) -> None:
        self.release()


def during_ticks(
    engine: Any, dp: Any, clock: Any, crowd: list[str], phone: str, ticks: int, db: Any
) -> dict:
    """Ticks back to back in a thread (every session passing traffic, every 5th flushing)
    while this thread logs the phone in and out: how long each authorize waited for the
    engine lock, and took, with a tick running beside it."""
    import threading

    from hotspot.db import checkpoint_if_due
    from hotspot.model import EndReason, Source

    in_commit = checkpoint_in_commit()
    waits = _WaitClock(engine.lock, threading.current_thread())
    engine.lock = waits
    done = threading.Event()
    tick_ms: list[float] = []

    def ticker() -> None:
        try:
            for k in range(ticks):
                for ip in crowd:
                    dp.traffic(ip, down=1500, up=100)
                clock.advance(seconds=0.01)
                t = time.perf_counter()
                engine.tick(force_flush=k % 5 == 4)
                tick_ms.append((time.perf_counter() - t) * 1000)
                if not in_commit:
                    checkpoint_if_due(db)  # as the daemon: after the tick, the lock free
        finally:
            done.set()

    thread = threading.Thread(target=ticker)
    thread.start()
    auth: list[float] = []
    while not done.is_set():
        before = len(waits.waits)
        t = time.perf_counter()
        engine.authorize(ip=phone, tier="free", source=Source.FREE)
        auth.append((time.perf_counter() - t) * 1000)
        del waits.waits[before + 1 :]  # the authorize's own first acquire only
        engine.deauthorize(ip=phone, reason=EndReason.LOGOUT)
        del waits.waits[before + 1 :]
    thread.join()
    engine.lock = waits.inner
    return {
        "ticks": len(tick_ms),
        "tick_whole": dist(tick_ms),
        "authorize": dist(auth),
        "lock_wait": dist(waits.waits),
    }


def measure(n: int, trials: int, ticks: int, flush_every: int, profile: str | None) -> dict:
    """One size, in this process, with the code on ``sys.path`` (this tree or ``--tree``)."""
    import ipaddress

    from gateway.engine import SessionEngine
    from hotspot import config as config_mod
    from hotspot.db import checkpoint_if_due, open_database
    from hotspot.model import EndReason, Source
    from tests.unit.fakes import Clock, FakeDataPath

    lan = LAN if n <= 1000 else "10.10.0.1/18"
    with tempfile.TemporaryDirectory(prefix="hs-engine-db-") as tmp:
        cfg = config_mod.load(
            overrides={
                "database": {"url": f"sqlite:///{tmp}/hotspot.db"},
                "control": {"socket": f"{tmp}/control.sock"},
                "network": {"lan_address": lan},
                "gateway": {"flush_seconds": 3600},
            }
        )
        in_commit = checkpoint_in_commit()
        db = open_database(cfg.database.url, autocheckpoint=in_commit)
        net = ipaddress.IPv4Network(lan, strict=False)
        dp = _locked_fake(FakeDataPath)(str(net))
        clock = Clock(dt.datetime(2026, 11, 28, 3, 0, 0))
        engine = SessionEngine(cfg, db, dp, clock=clock, monotonic=clock.monotonic)
        engine.start()
        hosts = net.hosts()
        next(hosts)  # the gateway
        crowd = []
        for i in range(n):
            ip = str(next(hosts))
            mac = f"02:10:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01"
            engine.authorize(ip=ip, mac=mac, tier="free", source=Source.FREE)
            crowd.append(ip)
        phone, phone_mac = str(next(hosts)), "02:20:00:00:00:01"
        dp.neighbours[phone] = phone_mac
        prof = cProfile.Profile() if profile else None
        auth: list[float] = []
        deauth: list[float] = []
        every = cfg.gateway.tick_seconds
        due = time.monotonic() + every
        for _ in range(trials):
            if not in_commit and time.monotonic() >= due:
                checkpoint_if_due(db)  # as the daemon after its tick (untimed)
                due += every
            if prof is not None and profile == "authorize":
                prof.enable()
            t = time.perf_counter()
            engine.authorize(ip=phone, tier="free", source=Source.FREE)
            auth.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            engine.deauthorize(ip=phone, reason=EndReason.LOGOUT)
            deauth.append((time.perf_counter() - t) * 1000)
            if prof is not None:
                prof.disable()
            clock.advance(seconds=0.05)
        tick_phases: dict[str, list[float]] = {}
        for k in range(ticks):
            for ip in crowd:
                dp.traffic(ip, down=1500, up=100)
            clock.advance(seconds=cfg.gateway.tick_seconds)
            if prof is not None and profile == "tick":
                prof.enable()
            t = time.perf_counter()
            engine.tick(force_flush=flush_every > 0 and k % flush_every == flush_every - 1)
            whole = (time.perf_counter() - t) * 1000
            if prof is not None:
                prof.disable()
            phases = dict(engine.tick_phases)
            phases["whole"] = whole
            if not in_commit:
                t = time.perf_counter()
                checkpoint_if_due(db)
                phases["checkpoint"] = (time.perf_counter() - t) * 1000
            for name, ms in phases.items():
                tick_phases.setdefault(name, []).append(ms)
        concurrent = during_ticks(engine, dp, clock, crowd, phone, max(3, ticks // 2), db)
        out: dict[str, Any] = {
            "code": sys.modules[SessionEngine.__module__].__file__,
            "checkpoint": "in the commits" if in_commit else "after a tick, from 1,000 pages",
            "sessions": len(engine.live),
            "during_ticks": concurrent,
            "authorize": dist(auth),
            "deauthorize": dist(deauth),
            "tick": {name: dist(v) for name, v in sorted(tick_phases.items())},
        }
        db.dispose()
        if prof is not None:
            stats = pstats.Stats(prof, stream=sys.stderr)
            stats.sort_stats("cumulative").print_stats(35)
            stats.sort_stats("tottime").print_stats(25)
        return out


def meta() -> dict[str, Any]:
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pythonmalloc": os.environ.get("PYTHONMALLOC", ""),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "switch_interval_s": sys.getswitchinterval(),
    }


def run_sizes(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in args.sessions:
        load_before = os.getloadavg()[0]
        res = measure(n, args.trials, args.ticks, args.flush_every, args.profile)
        res["load_average"] = [load_before, os.getloadavg()[0]]
        out[str(n)] = res
    return out


def ratios(mine: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """This tree ÷ the baseline, p50, p99 (and p99.9 where both have it), for the authorize,
    the kick and each tick phase."""
    out: dict[str, Any] = {}
    for n, res in mine.items():
        b = base.get(n)
        if b is None:
            continue
        pairs = [("authorize", res["authorize"], b["authorize"])]
        pairs.append(("deauthorize", res["deauthorize"], b["deauthorize"]))
        if "during_ticks" in res and "during_ticks" in b:
            for name in ("authorize", "lock_wait", "tick_whole"):
                pairs.append(
                    (f"during_ticks_{name}", res["during_ticks"][name], b["during_ticks"][name])
                )
        for phase, d in res["tick"].items():
            if phase in b["tick"]:
                pairs.append((f"tick_{phase}", d, b["tick"][phase]))
        out[n] = {
            name: {
                q: round(m[q] / o[q], 3) if m[q] is not None and o[q] else None
                for q in ("p50_ms", "p99_ms", "p999_ms")
                if q in m and q in o
            }
            for name, m, o in pairs
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[10, 1000])
    p.add_argument("--trials", type=int, default=150, help="authorize/kick pairs per size")
    p.add_argument("--ticks", type=int, default=30, help="ticks per size")
    p.add_argument("--flush-every", type=int, default=5, help="every n-th tick flushes (0: none)")
    p.add_argument("--tree", help="a baseline checkout, measured in the same run")
    p.add_argument(
        "--baseline-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the baseline's environment differs by this (with --tree; e.g. --tree . "
        "--baseline-env PYTHONMALLOC=pymalloc: the allocator's cost, same code)",
    )
    p.add_argument("--profile", choices=("authorize", "tick"), help="cProfile to stderr")
    p.add_argument(
        "--switch-interval",
        type=float,
        help="sys.setswitchinterval (seconds) for the measurement (Python's default: 0.005)",
    )
    p.add_argument("--output", default=str(RESULTS / "engine_db.json"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if any("=" not in kv for kv in args.baseline_env) or (args.baseline_env and not args.tree):
        print("bench.engine_db: --baseline-env NAME=VALUE, with --tree", file=sys.stderr)
        return 2
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.child:  # the baseline's measurement, with its code first on sys.path
        # (run as a script: its own folder, bench/, first on sys.path would shadow the
        # packages with bench/gateway.py)
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
        print(json.dumps(run_sizes(args)))
        return 0
    result: dict[str, Any] = {"meta": meta(), "args": vars(args)}
    if args.tree:
        tree = str(Path(args.tree).resolve())
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child"]
        cmd += ["--sessions", *map(str, args.sessions), "--trials", str(args.trials)]
        cmd += ["--ticks", str(args.ticks), "--flush-every", str(args.flush_every)]
        if args.switch_interval:
            cmd += ["--switch-interval", str(args.switch_interval)]
        env = {**os.environ, "PYTHONPATH": tree}
        env.update(kv.split("=", 1) for kv in args.baseline_env)
        done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
        result["baseline"] = json.loads(done.stdout)
        result["baseline_tree"] = tree
    result["this_tree"] = run_sizes(args)
    if args.tree:
        result["ratios"] = ratios(result["this_tree"], result["baseline"])
    result["meta"]["load_average_end"] = os.getloadavg()
    if not args.profile:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
