"""The login path at several crowd sizes: ``python3 -m bench.login`` (as root).

    sudo python3 -m bench.login                          # 10, 1000 and 10000 sessions
    sudo python3 -m bench.login --sessions 10 1000 --trials 60

For each crowd size N, on the same /18 LAN (16,373 DHCP pool addresses, so the pool's HTB
classes are the same for every N): a fresh village (``bench.gateway``'s, namespace prefix
``hsl-<pid>``), the real gateway, N crowd members authorized over the control socket, then

* ``first_packet``: authorize → first forwarded datagram of the phone, by address, over the
  control socket (``bench.gateway``'s trials, random phases against the 2-s tick);
* ``footprint``: the gateway's RSS;
* ``phases`` (bench/login_phases.py, in-process, the gateway stopped): where an authorize's and
  a deauthorize's time goes, the tick's phases and how long an authorize waited for the lock.

``ratios``: p99 at the largest N ÷ p99 at the smallest, for the first packet, the tick's
phases and the lock wait. Writes ``bench/results/login.json``; the machine and its load are
in ``meta`` and per size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench import gateway as gb
from hotspot.model import Source
from testsupport.testbed import Testbed, run_prefix

LAN = "10.10.0.1/18"
# The bench's unlimited tier is named "free": the pool's classes have its rates (the
# gateway's pool tier), so a login here is the common one — no class to change.
gb.TIER = "free"


class LoginBench(gb.Bench):
    def __init__(self, args: argparse.Namespace, n: int):
        args.sessions = n
        args.quick = False
        super().__init__(args)
        self.bed = Testbed(prefix=run_prefix("hsl"), clients=1, lan_address=args.lan)
        self.crowd_n = n

    def start_gateway(self, name: str) -> float:
        """As bench.gateway's, with room for a /18 pool's classes at start-up (minutes on
        a loaded 2-core machine: see bench/README.md)."""
        if self.gw is not None and self.gw.running:
            self.gw.stop()
        self.gw = gb.GatewayProc(
            self.bed, self.configs[name], self.socket, self.work / f"gateway-{name}.log"
        )
        return self.gw.start(timeout=self.args.start_timeout)

    def seed_sessions(self) -> None:
        """One ADMIN session per crowd member on the bench tier, with its device row."""
        from sqlalchemy import create_engine, insert

        from hotspot.model import ClientSession, Device

        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        devices, sessions = [], []
        for i in range(self.crowd_n):
            ip, mac = self.member_id(i)
            devices.append({"mac": mac, "first_seen": now, "last_seen": now, "blocked": False})
            sessions.append(
                {
                    "mac": mac,
                    "ip": ip,
                    "tier": gb.TIER,
                    "source": Source.ADMIN,
                    "down_kbps": gb.MAX_KBPS,
                    "up_kbps": gb.MAX_KBPS,
                    "idle_minutes": 0,
                    "started_at": now,
                    "last_activity_at": now,
                    "expires_at": None,
                    "bytes_down": 0,
                    "bytes_up": 0,
                }
            )
        db = create_engine(f"sqlite:///{self.work}/full.db")
        with db.begin() as conn:
            conn.execute(insert(Device), devices)
            conn.execute(insert(ClientSession), sessions)
        db.dispose()

    def phases(self, tree: Path) -> dict[str, Any]:
        """bench/login_phases.py of ``tree`` (its own code), in the gateway's namespace."""
        res = self.bed.run(
            self.bed.gw,
            sys.executable,
            str(tree / "bench" / "login_phases.py"),
            str(self.configs["full"]),
            self.phone.ip,
            self.phone.mac,
            "--trials",
            str(self.args.phase_trials),
            "--tier",
            gb.TIER,
            "--ticks",
            str(self.args.phase_ticks),
            timeout=900,
        )
        result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        return result

    def measure(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sessions": self.crowd_n, "loadavg_at_start": os.getloadavg()}
        self.r["setup"] = {}
        self.build()
        out["first_start_ready_s"] = round(self.start_gateway("full"), 3)
        assert self.gw is not None
        self.add_crowd()
        out["crowd_build_s"] = self.r["setup"]["crowd_build_s"]
        # The crowd's sessions are written to the database while the gateway is stopped and
        # put into the kernel by its start (as after a restart): 10,000 authorizations over
        # the control socket would take longer than the rest of the run together.
        self.stop_gateway()
        self.seed_sessions()
        t = time.monotonic()
        out["start_with_sessions_ready_s"] = round(self.start_gateway("full"), 3)
        out["kernel_after_start"] = self.kernel_counts()
        self.log(f"gateway up with {self.crowd_n} sessions in {time.monotonic() - t:.1f} s")
        time.sleep(self.settle)
        out["footprint"] = self.footprint(2.0)
        recv, send = self.start_probe()
        time.sleep(0.5)
        out["first_packet"] = self.first_packet_trials(self.trials)
        self.kill(send)
        self.kill(recv)
        self.stop_gateway()
        if self.args.tree:  # the baseline's code first, on the same village and database
            out["phases_baseline"] = self.phases(Path(self.args.tree).resolve())
            out["phases_baseline"]["tree"] = str(Path(self.args.tree).resolve())
        t = time.monotonic()
        out["phases"] = self.phases(gb.REPO)
        out["phases_s"] = round(time.monotonic() - t, 1)
        if self.args.tree:
            out["phases_ratio"] = phase_ratios(out["phases"], out["phases_baseline"])
        out["kernel"] = self.kernel_counts()
        out["loadavg_at_end"] = os.getloadavg()
        return out


def phase_ratios(mine: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """This tree ÷ the baseline (``--tree``), p50 and p99: the in-process authorize and
    deauthorize (whole, Python and database, lock wait) and every tick phase."""
    pairs = []
    for op in ("authorize", "deauthorize"):
        for part in ("total", "python_and_database", "lock_wait"):
            pairs.append((f"{op}_{part}", mine[op].get(part), base[op].get(part)))
    for phase, d in sorted(mine.get("tick", {}).items()):
        pairs.append((f"tick_{phase}", d, base.get("tick", {}).get(phase)))
    return {
        name: {q: gb.ratio(m.get(q), b.get(q)) if m and b else None for q in ("p50_ms", "p99_ms")}
        for name, m, b in pairs
    }


def p99(d: dict[str, Any] | None, key: str = "p99_ms") -> float | None:
    return None if not d else d.get(key)


def ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    if len(ok) < 2:
        return {}
    lo, hi = ok[0], ok[-1]
    name = f"{hi['sessions']}_over_{lo['sessions']}"
    out: dict[str, Any] = {
        f"first_packet_p99_{name}": gb.ratio(
            p99(hi["first_packet"]["first_packet"]), p99(lo["first_packet"]["first_packet"])
        ),
        f"first_packet_p50_{name}": gb.ratio(
            p99(hi["first_packet"]["first_packet"], "p50_ms"),
            p99(lo["first_packet"]["first_packet"], "p50_ms"),
        ),
        f"authorize_in_process_p99_{name}": gb.ratio(
            p99(hi["phases"]["authorize"]["total"]), p99(lo["phases"]["authorize"]["total"])
        ),
    }
    for phase in sorted(hi["phases"].get("tick", {})):
        out[f"tick_{phase}_p99_{name}"] = gb.ratio(
            p99(hi["phases"]["tick"].get(phase)), p99(lo["phases"]["tick"].get(phase))
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.login", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[10, 1000, 10000])
    p.add_argument("--trials", type=int, default=120, help="first-packet trials per size")
    p.add_argument("--phase-trials", type=int, default=150, help="in-process trials per size")
    p.add_argument(
        "--phase-ticks",
        type=float,
        default=0.0,
        help="seconds between the in-process phases' ticks (0: the config's tick_seconds; "
        "3600: none, to see what the ticks add to a login's tail)",
    )
    p.add_argument("--lan", default=LAN, help=f"the LAN's gateway address/prefix ({LAN})")
    p.add_argument("--start-timeout", type=float, default=1800, help="seconds (1800)")
    p.add_argument("--output", default=str(gb.RESULTS / "login.json"))
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--tree",
        help="a baseline checkout (a `git worktree`): its in-process phases are measured too, "
        "on the same village, in the same run (phases_baseline, phases_ratio)",
    )
    args = p.parse_args(argv)
    if args.tree and not (Path(args.tree) / "bench" / "login_phases.py").is_file():
        print(f"bench.login: --tree: no bench/login_phases.py in {args.tree}", file=sys.stderr)
        return 2
    args.flows = args.rounds = args.seconds = None
    if os.geteuid() != 0:
        print("bench.login: needs root (network namespaces, nftables, tc)", file=sys.stderr)
        return 2
    missing = [t for t in ("ip", "nft", "tc") if shutil.which(t) is None]
    if missing:
        print(f"bench.login: missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        hosts = ipaddress.IPv4Interface(args.lan).network.num_addresses - 2
    except ValueError:
        print(f"bench.login: --lan: not an address/prefix: {args.lan!r}", file=sys.stderr)
        return 2
    if any(n < 1 or n > hosts - 20 for n in args.sessions):
        print(f"bench.login: --sessions: each between 1 and {hosts - 20}", file=sys.stderr)
        return 2

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    result: dict[str, Any] = {"runs": []}
    code = 0
    for n in sorted(args.sessions):
        bench = LoginBench(args, n)
        if "meta" not in result:
            result["meta"] = bench.meta()
            result["meta"]["lan"] = args.lan
        bench.log(f"--- {n} sessions ---")
        try:
            result["runs"].append(bench.measure())
        except KeyboardInterrupt:
            result["runs"].append({"sessions": n, "error": "interrupted"})
            code = 130
        except Exception as exc:  # noqa: BLE001 - report, clean up, keep the other sizes
            import traceback

            traceback.print_exc()
            result["runs"].append({"sessions": n, "error": f"{type(exc).__name__}: {exc}"})
            code = 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                bench.cleanup()
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
        if code == 130:
            break
    result["ratios"] = ratios(result["runs"])
    result["meta"]["finished"] = gb.now_iso()
    result["meta"]["loadavg_at_end"] = list(os.getloadavg())
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for run in result["runs"]:
        if "error" in run:
            print(f"{run['sessions']:>6} sessions: {run['error']}")
            continue
        fp = run["first_packet"]["first_packet"]
        ph = run["phases"]
        print(
            f"{run['sessions']:>6} sessions: first packet p50 {fp.get('p50_ms')} "
            f"p99 {fp.get('p99_ms')} ms; in-process authorize p99 "
            f"{ph['authorize']['total']['p99_ms']} ms, lock wait max "
            f"{ph['authorize'].get('lock_wait', {}).get('max_ms')} ms; tick p99 "
            + ", ".join(f"{k} {v['p99_ms']}" for k, v in sorted(ph.get("tick", {}).items()))
            + f"; RSS {run['footprint']['rss_mb']} MB"
        )
    print(json.dumps(result["ratios"]))
    print(f"results: {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
