"""Time ``SessionEngine.start()`` alone, in the gateway's namespace, with the gateway stopped.

    ip netns exec <p>-gw python3 bench/engine_start.py CONFIG [--profile FILE]

Builds the same objects ``hotspot gateway run`` builds (database, DataPath, SessionEngine),
then times the start call: end what expired, read the active sessions, create the HTB
classes and replace the nftables table with every session in it. The kernel state is left
as the gateway would leave it. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.datapath import DataPath
from gateway.engine import SessionEngine
from hotspot import config as config_mod
from hotspot.db import open_database


def main() -> None:
    path = sys.argv[1]
    profile = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--profile" else None
    cfg = config_mod.load(path)
    db = open_database(cfg.database.url)
    dp = DataPath(cfg)
    engine = SessionEngine(cfg, db, dp)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    started = time.perf_counter()
    engine.start()
    elapsed = time.perf_counter() - started
    if prof is not None and profile is not None:
        prof.disable()
        prof.dump_stats(profile)
    dp.close()
    print(json.dumps({"engine_start_ms": round(elapsed * 1000, 1), "sessions": len(engine.live)}))


if __name__ == "__main__":
    main()
