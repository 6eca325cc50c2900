"""Where an authorize's time goes, and what the tick costs, in-process, in the gateway's
namespace with the gateway stopped (the bench's database and kernel state are used as is).

    ip netns exec <p>-gw python3 bench/login_phases.py CONFIG PHONE_IP [--trials N]

Builds what ``hotspot gateway run`` builds (database, DataPath, SessionEngine, the control
socket's Dispatcher), starts the engine, then:

* authorize/deauthorize of ``PHONE_IP`` by address (the portal's way), ``trials`` times, each
  one timed whole and by phase (every adapter call is wrapped with a timer: the portal-peer
  listing, the neighbour lookup, tc, the neighbour pin, the nftables transaction, conntrack,
  the counter reads; what is left is Python and the database);
* the control socket's own cost: one ``ping`` round trip on a real Unix socket, and the JSON
  decoding/encoding of an authorize request and its reply;
* ticks: ``engine.tick()`` in a thread every ``tick_seconds``, with the trials running
  against it; the tick's phases as the engine records them (``engine.tick_phases``), and
  how long each authorize waited for the engine lock.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import conntrack, datapath, neighbours, nftables, tc
from gateway.cli import SWITCH_INTERVAL_S
from gateway.control_server import ControlServer, Dispatcher
from gateway.engine import SessionEngine
from hotspot import config as config_mod
from hotspot import protocol as proto
from hotspot.db import checkpoint_if_due, open_database
from hotspot.model import EndReason, Source

_current: threading.local = threading.local()
PROFILE_ENV = "LOGIN_PHASES_PROFILE"


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))], 3)


def dist(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": pct(values, 50),
        "p90_ms": pct(values, 90),
        "p99_ms": pct(values, 99),
        "max_ms": round(max(values), 3) if values else None,
    }


def timed(owner: Any, name: str, label: str) -> None:
    """Wrap ``owner.name`` so that its time is added to the running operation's ``label``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        phases = getattr(_current, "phases", None)
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            if phases is not None:
                phases[label] += (time.perf_counter() - t) * 1000

    setattr(owner, name, wrapper)


class TimedLock:
    """The engine's RLock, noting how long each first acquire of a thread waited."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.depth = threading.local()

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        depth = getattr(self.depth, "n", 0)
        t = time.perf_counter()
        got = bool(self.inner.acquire(*args, **kwargs))
        if depth == 0:
            phases = getattr(_current, "phases", None)
            if phases is not None:
                phases["lock_wait"] += (time.perf_counter() - t) * 1000
        self.depth.n = depth + 1
        return got

    def release(self) -> None:
        self.depth.n -= 1
        self.inner.release()

    __enter__ = acquire

    def __exit__(self, *exc: Any) -> None:
        self.release()


def instrument() -> None:
    timed(datapath.DataPath, "macs_seen_at", "portal_peers_listing")
    timed(neighbours.Neighbours, "lookup", "neighbour_lookup")
    timed(neighbours.Neighbours, "arp_probe", "arp_probe")
    timed(neighbours.Neighbours, "pin", "neighbour_pin")
    timed(neighbours.Neighbours, "unpin", "neighbour_unpin")
    timed(tc.Shaper, "apply_bulk", "tc_classes")
    timed(tc.Shaper, "reading", "tc_final_readings")
    timed(nftables.Nftables, "apply", "nft_transaction")
    timed(conntrack.Conntrack, "flush_walled", "conntrack_walled")
    timed(conntrack.Conntrack, "flush_client", "conntrack_client")
    timed(datapath.DataPath, "apply", "datapath_apply_total")


def control_costs(dispatcher: Dispatcher, phone: str, reps: int = 200) -> dict[str, Any]:
    """A ping over a real Unix socket (the round trip, thread hand-off and JSON of a tiny
    request), and the JSON work of an authorize request and a typical reply."""
    with tempfile.TemporaryDirectory(prefix="hs-phases-") as tmp:
        path = os.path.join(tmp, "c.sock")
        server = ControlServer(path, dispatcher, group=None)
        server.start()
        try:
            rtt = []
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(path)
                f = sock.makefile("rb")
                line = proto.encode(proto.PingRequest().to_wire())
                for _ in range(reps):
                    t = time.perf_counter()
                    sock.sendall(line)
                    f.readline()
                    rtt.append((time.perf_counter() - t) * 1000)
        finally:
            server.stop()
    request = proto.encode(
        proto.AuthorizeRequest(ip=phone, tier="bench", source=Source.FREE).to_wire()
    )
    sample = {"ok": True, "result": {"id": 1, "mac": "02:00:00:00:00:01", "ip": phone}}
    parse, enc = [], []
    for _ in range(reps):
        t = time.perf_counter()
        proto.parse_request(json.loads(request))
        parse.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        json.dumps(sample)
        enc.append((time.perf_counter() - t) * 1000)
    return {"ping_round_trip": dist(rtt), "parse_request": dist(parse), "encode_reply": dist(enc)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("phone")
    ap.add_argument("phone_mac")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--tier", default="bench")
    ap.add_argument("--ticks", type=float, default=0.0, help="tick interval (0: config's)")
    args = ap.parse_args()
    # The daemon's switch interval (gateway/cli.py): with Python's default (5 ms) a login
    # waiting for the interpreter beside a tick waited up to five times longer than in the
    # daemon. (Trees before 2026-12-01 measured with the default.)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    cfg = config_mod.load(args.config)
    # As the daemon opens it (gateway/daemon.py): no commit checkpoints the WAL, the
    # ticker does after a tick once 1,000 pages wait (the tick's "checkpoint", not in
    # "total").
    db = open_database(cfg.database.url, autocheckpoint=False)
    dp = datapath.DataPath(cfg)
    engine = SessionEngine(cfg, db, dp)
    t = time.perf_counter()
    engine.start()
    start_ms = (time.perf_counter() - t) * 1000
    # A kick dumps until the client-flow index is seeded (on its thread): measure the index.
    flows = getattr(dp.conntrack, "flows", None)
    deadline = time.monotonic() + 30
    while flows is not None and not flows.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    instrument()
    engine.lock = TimedLock(engine.lock)  # type: ignore[assignment]
    dispatcher = Dispatcher(engine, lambda: {})
    out: dict[str, Any] = {"engine_start_ms": round(start_ms, 1), "sessions": len(engine.live)}
    out["control"] = control_costs(dispatcher, args.phone)

    tick_every = args.ticks or cfg.gateway.tick_seconds
    stop = threading.Event()
    ticks: list[dict[str, float]] = []

    def ticker() -> None:
        while not stop.wait(tick_every):
            _current.phases = defaultdict(float)
            t0 = time.perf_counter()
            engine.tick()
            rec = dict(getattr(engine, "tick_phases", {}) or {})
            rec["total"] = (time.perf_counter() - t0) * 1000
            t1 = time.perf_counter()
            checkpoint_if_due(db)
            rec["checkpoint"] = (time.perf_counter() - t1) * 1000
            ticks.append(rec)

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    per_op: dict[str, list[dict[str, float]]] = {"authorize": [], "deauthorize": []}
    calls: dict[str, Callable[[], Any]] = {
        "authorize": lambda: engine.authorize(ip=args.phone, tier=args.tier, source=Source.FREE),
        "deauthorize": lambda: engine.deauthorize(ip=args.phone, reason=EndReason.LOGOUT),
    }
    lan_index = dp.neighbours._index()
    # The authorizes alone under cProfile, their statistics to the file named (the phases'
    # figures are then the profiled ones: for where the time goes, not for how much).
    profiler = cProfile.Profile() if os.environ.get(PROFILE_ENV) else None
    for i in range(args.trials):
        # The phone has just talked to the portal: its neighbour entry is there (as a kick
        # leaves it, released to STALE, and as the probe's datagrams keep it in bench.gateway).
        dp.ipr.neigh(
            "replace", dst=args.phone, lladdr=args.phone_mac, ifindex=lan_index, state=0x04
        )
        for op in ("authorize", "deauthorize"):
            _current.phases = defaultdict(float)
            if profiler is not None and op == "authorize":
                profiler.enable()
            t = time.perf_counter()
            calls[op]()
            total = (time.perf_counter() - t) * 1000
            if profiler is not None:
                profiler.disable()
            rec = dict(_current.phases)
            rec["total"] = total
            per_op[op].append(rec)
            _current.phases = None
        time.sleep(0.02 + (i % 7) * 0.01)
    stop.set()
    thread.join(timeout=30)
    if profiler is not None:
        profiler.dump_stats(os.environ[PROFILE_ENV])
    for op, recs in per_op.items():
        labels = sorted({k for r in recs for k in r})
        out[op] = {k: dist([r.get(k, 0.0) for r in recs]) for k in labels}
        outside = ("portal_peers_listing", "neighbour_lookup", "arp_probe", "lock_wait")
        out[op]["python_and_database"] = dist(
            [
                r["total"]
                - r.get("datapath_apply_total", 0.0)
                - sum(r.get(k, 0.0) for k in outside)
                for r in recs
            ]
        )
    labels = sorted({k for r in ticks for k in r})
    out["tick"] = {k: dist([r.get(k, 0.0) for r in ticks]) for k in labels}
    out["tick_count"] = len(ticks)
    dp.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
