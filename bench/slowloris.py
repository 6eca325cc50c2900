"""Slowloris benchmark: ``python3 -m bench.slowloris [--seconds 8]`` (no root needed).

The real portal (``create_app`` and its start-up on SQLite, 2 workers × 16 threads as
``hotspot portal run`` starts it) on loopback, with each candidate worker class:

* ``gthread``: gunicorn's stock threaded worker (no request read deadline) — the baseline;
* ``deadline``: :class:`hotspot.httpworker.DeadlineThreadWorker` (``read_timeout`` 10 s).

For each: villagers (8 threads, one ``GET /info`` per new connection, as a phone's captive
sheet does; ``/info`` is a rendered page that needs no gateway) for ``--seconds``, first
alone, then while one client holds 4 × workers × threads slowloris sockets (no nftables here: the worker alone). Reported: requests/s, p50/p99 ms,
failures (5 s timeout), each worker's RSS; ratios against the baseline measured in the same
run. The load generator shares the machine's cores with the portal, so figures are a floor.
Writes ``bench/results/slowloris.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
HOST = "127.0.0.1"
WORKERS, THREADS, READ_TIMEOUT = 2, 16, 10

SERVER = """
import sys
from hotspot import config as config_mod
from portal import server
from portal.startup import prepare
cfg = config_mod.load(sys.argv[1])
server.prepare_files(cfg, None)
opts = server.gunicorn_options(cfg, bind=sys.argv[2], log_level="warning")
if sys.argv[3] == "gthread":
    opts["worker_class"] = "gthread"
server.make_server(prepare(cfg), opts).run()
"""


def _get(port: int) -> float | None:
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        conn.request("GET", "/info", headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return (time.perf_counter() - started) * 1000 if resp.status == 200 else None
    except OSError:
        return None


def _villagers(port: int, seconds: float, threads: int = 8) -> dict[str, Any]:
    times: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def one() -> None:
        while time.monotonic() < stop:
            ms = _get(port)
            with lock:
                if ms is None:
                    failures[0] += 1
                else:
                    times.append(ms)

    pool = [threading.Thread(target=one) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    times.sort()
    return {
        "requests_per_s": round(len(times) / seconds, 1),
        "p50_ms": round(statistics.median(times), 1) if times else None,
        "p99_ms": round(times[int(0.99 * (len(times) - 1))], 1) if times else None,
        "ok": len(times),
        "failed": failures[0],
    }


def _rss_mb(pid: int) -> list[float]:
    import psutil

    return [round(c.memory_info().rss / 1e6, 1) for c in psutil.Process(pid).children()]


def candidate(kind: str, seconds: float, work: Path) -> dict[str, Any]:
    from testsupport.loopback import free_port
    from testsupport.testbed import portal_settings, write_toml

    port = free_port(HOST)
    config = write_toml(
        work / f"{kind}.toml",
        {
            "network": {"lan_address": f"{HOST}/18", "portal_port": port},
            "database": {"url": f"sqlite:///{work}/{kind}.db"},
            "control": {"socket": str(work / "no-gateway.sock")},
            "portal": portal_settings(
                work, workers=WORKERS, threads=THREADS, read_timeout=READ_TIMEOUT
            ),
        },
    )
    subprocess.run(
        [sys.executable, "-m", "hotspot_cli", "--config", str(config), "db", "upgrade"],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(config), f"{HOST}:{port}", kind],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while _get(port) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: the portal did not come up")
            time.sleep(0.2)
        time.sleep(1)
        out: dict[str, Any] = {"worker": kind, "rss_mb_idle": _rss_mb(proc.pid)}
        out["normal"] = _villagers(port, seconds)
        count = 4 * WORKERS * THREADS
        attack = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "testsupport.slowloris",
                HOST,
                str(port),
                str(count),
                str(seconds + 4),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)
        out["under_attack"] = _villagers(port, seconds)
        out["rss_mb_under_attack"] = _rss_mb(proc.pid)
        result = json.loads(attack.communicate(timeout=60)[0])
        out["attack"] = {
            "sockets": count,
            "still_open_at_end": result["still_open"],
            "closed_after_s_max": max(
                (c["closed_after"] for c in result["connections"] if c["closed_after"]),
                default=None,
            ),
        }
        return out
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-slowloris-") as tmp:
        runs = [candidate(kind, args.seconds, Path(tmp)) for kind in ("gthread", "deadline")]
    base, new = runs
    ratios = {
        phase: {
            # None: the baseline answered nothing at all, no ratio to give.
            "requests_per_s": round(new[phase]["requests_per_s"] / base[phase]["requests_per_s"], 2)
            if base[phase]["requests_per_s"]
            else None,
        }
        for phase in ("normal", "under_attack")
    }
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "loadavg_before": load_before,
            "client": "threads in one process, same machine, loopback",
        },
        "portal": {"workers": WORKERS, "threads": THREADS, "read_timeout": READ_TIMEOUT},
        "seconds": args.seconds,
        "baseline": "gthread",
        "candidates": runs,
        "deadline_vs_gthread": ratios,
    }
    result["machine"]["loadavg_after"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "slowloris.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
