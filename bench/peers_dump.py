"""What one dump of the portal's peers costs the gateway, by the set's size.

``portal_peers`` (``ipv4_addr . ether_addr``, 30-s timeouts) holds one element per device
whose frames reached the portal lately: a handful on a quiet day, every walled phone after a
power cut. The gateway dumps it whole (``gateway.nftnetlink.NftNetlink.set_elements``)
for every request by address (who else is at that address: ``not-your-session``) and, while
any device may resume, once a tick. Since 2026-12-01 the tick's dump runs without the
engine lock; the per-request one stays (its answer must be fresh), and decodes only the
elements of the requester's address (``at``): both are measured, ``at`` as ``elements_at``.

    sudo python3 -m bench.peers_dump                      # 0, 100, 600, 2,000 elements
    sudo python3 -m bench.peers_dump --sizes 0 1000 --repeat 500

Root (one network namespace of its own, removed at the end). ``ratios``: each size's p50 and
p99 ÷ the empty set's, measured in the same run. Output ``bench/results/peers_dump.json``;
machine and load average in ``meta``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.engine_db import dist, meta
from testsupport.testbed import run_prefix

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
TABLE = """table inet hotspot {
  set portal_peers {
    type ipv4_addr . ether_addr
    flags dynamic, timeout
    timeout 30s
  }
}
"""


def measure_in_namespace(sizes: list[int], repeat: int) -> dict[str, Any]:
    """In the bench's namespace (a child process): the dump's times at each size."""
    from gateway.nftnetlink import NftNetlink

    subprocess.run(["nft", "-f", "-"], input=TABLE, text=True, check=True)
    nft = NftNetlink()
    out: dict[str, Any] = {}
    have = 0
    for n in sorted(sizes):
        if n > have:
            elements = ", ".join(
                f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255} . 02:aa:00:{i >> 16:02x}:"
                f"{(i >> 8) & 255:02x}:{i & 255:02x}"
                for i in range(have, n)
            )
            subprocess.run(
                ["nft", "-f", "-"],
                input=f"add element inet hotspot portal_peers {{ {elements} }}\n",
                text=True,
                check=True,
            )
            have = n
        times: dict[str, list[float]] = {"whole": [], "at": []}
        for _ in range(repeat):
            t = time.perf_counter()
            got = nft.set_elements("inet", "hotspot", "portal_peers")
            times["whole"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            mine = nft.set_elements("inet", "hotspot", "portal_peers", at="10.64.0.0")
            times["at"].append((time.perf_counter() - t) * 1000)
        if len(got) != n or len(mine) != min(n, 1):
            raise RuntimeError(f"dumped {len(got)} elements of {n}, {len(mine)} at 10.64.0.0")
        out[str(n)] = {kind: dist(t) for kind, t in times.items()}
    nft.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m bench.peers_dump", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 100, 600, 2000])
    ap.add_argument("--repeat", type=int, default=200, help="dumps at each size (200)")
    ap.add_argument("--output", type=Path, default=RESULTS / "peers_dump.json")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if any(n < 0 or n > 60_000 for n in args.sizes) or not 10 <= args.repeat <= 100_000:
        print("bench.peers_dump: --sizes in 0..60000, --repeat in 10..100000", file=sys.stderr)
        return 2
    if args.inside:
        print(json.dumps(measure_in_namespace(args.sizes, args.repeat)))
        return 0
    if os.geteuid() != 0:
        print("bench.peers_dump: needs root (a network namespace, nftables)", file=sys.stderr)
        return 2
    ns = run_prefix("hpd")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        child = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "bench.peers_dump", "--inside"]
            + ["--repeat", str(args.repeat), "--sizes", *map(str, args.sizes)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    if child.returncode != 0:
        print(f"bench.peers_dump: {child.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return 1
    measured = json.loads(child.stdout)
    whole = {n: r["whole"] for n, r in measured.items()}
    at = {n: r["at"] for n, r in measured.items()}
    base = whole.get("0")
    ratios = {
        n: {k: round(r[k] / base[k], 1) if base and base[k] else None for k in ("p50_ms", "p99_ms")}
        for n, r in whole.items()
        if n != "0"
    }
    at_over_whole = {
        n: {k: round(at[n][k] / r[k], 2) if r[k] else None for k in ("p50_ms", "p99_ms")}
        for n, r in whole.items()
    }
    report = {
        "meta": meta(),
        "repeat": args.repeat,
        "elements": whole,
        "elements_at": at,
        "ratios_to_empty": ratios,
        "ratios_at_to_whole": at_over_whole,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for n, r in whole.items():
        print(
            f"{n:>6} elements: whole p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; "
            f"one address's p50 {at[n]['p50_ms']} ms, p99 {at[n]['p99_ms']} ms"
        )
    print(f"→ {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
