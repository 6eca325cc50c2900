"""Where a daemon's memory goes, for the soak: ``python -m bench.memwatch OUT SECONDS -- -m MODULE ARGS…``.

Runs ``MODULE`` (``hotspot_cli gateway run …``) as ``python -m`` would, in this process, with
``tracemalloc`` on (one frame per allocation: cheap enough for a soak) and a daemon thread
that every ``SECONDS`` appends one JSON line to ``OUT``: the traced total and peak, the top
allocation sites by size, and the live objects by type (``gc``). The bench compares the
first and the last snapshots (bench.soak ``--memwatch``). Nothing of this is in the
product: the gateway does not know it is watched.
"""

from __future__ import annotations

import gc
import json
import runpy
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

TOP = 40


def snapshot() -> dict[str, Any]:
    # Counted first: the snapshot's own Statistic and Traceback objects are not the daemon's.
    types = Counter(type(o).__name__ for o in gc.get_objects())
    snap = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )
    sites = snap.statistics("lineno")
    current, peak = tracemalloc.get_traced_memory()
    return {
        "t": time.time(),
        "traced_kb": current // 1024,
        "peak_kb": peak // 1024,
        "gc_objects": sum(types.values()),
        "sites": [
            {
                "at": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
                "kb": s.size // 1024,
                "count": s.count,
            }
            for s in sites[:TOP]
        ],
        "types": dict(types.most_common(TOP)),
    }


def watch(out: Path, every: float) -> None:
    while True:
        time.sleep(every)
        try:
            line = json.dumps(snapshot())
        except Exception as exc:  # noqa: BLE001 - the watcher must never take the daemon down
            line = json.dumps({"t": time.time(), "error": repr(exc)})
        with out.open("a") as fh:
            fh.write(line + "\n")


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 5 or args[2] != "--" or args[3] != "-m":
        print("usage: python -m bench.memwatch OUT SECONDS -- -m MODULE ARGS…", file=sys.stderr)
        sys.exit(2)
    out, every, module, rest = Path(args[0]), float(args[1]), args[4], args[5:]
    tracemalloc.start(1)
    threading.Thread(target=watch, args=(out, every), name="memwatch", daemon=True).start()
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
