"""Where a login's CPU goes: ``python3 -m bench.portal_profile [--logins 200] [--profile]``.

No root. The real session engine and control server (SQLite, a kernel-less data path: the
stand-in of ``bench.portal``) serve the control socket in their own process; the portal's
app runs in this one, through Flask's test client (no gunicorn, no HTTP parsing), each phone
with its own source address. Every step of a villager's login is run for ``--logins`` phones
in turn — the splash ``GET /``, ``POST /accept`` (or ``POST /voucher`` with a code of a batch
made here), the success page ``GET /ok`` — and for each step: the control ops the portal
sent (counted at the portal's gateway link), the portal's CPU per request (this process's
``process_time``) and the gateway's (its ``/proc`` counters around the step). ``--profile``
adds cProfile's top functions of each step's portal side.

Writes ``bench/results/portal-profile.json``; bench/README.md ("Where a login's CPU goes").
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import ipaddress
import json
import os
import platform
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.portal import REPO, RESULTS, wait_for, write_config

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def gateway_cpu(pid: int) -> float:
    """The process's user + system CPU seconds (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CountingLink:
    """The portal's gateway link, counting the ops it sends."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.ops: collections.Counter[str] = collections.Counter()

    def send(self, request: Any) -> Any:
        self.ops[request.op] += 1
        return self.inner.send(request)

    def call(self, op: str, **args: Any) -> Any:
        self.ops[op] += 1
        return self.inner.call(op, **args)


def phones(n: int, offset: int) -> list[str]:
    base = int(ipaddress.IPv4Address("127.0.2.0")) + offset
    return [str(ipaddress.IPv4Address(base + i)) for i in range(n)]


def run(logins: int, profile: bool) -> dict[str, Any]:
    from hotspot import config as config_mod
    from portal.app import create_app
    from portal.gateway import GatewayLink
    from portal.startup import prepare

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hotspot-portal-profile-") as tmpdir:
        tmp = Path(tmpdir)
        port = 8080
        cfg_path = tmp / "hotspot.toml"
        write_config(cfg_path, tmp, port, 2)
        env = {**os.environ, "HOTSPOT_CONFIG": str(cfg_path), "PYTHONPATH": str(REPO)}
        log = open(tmp / "gateway.log", "ab")
        gw = subprocess.Popen(
            [sys.executable, "-m", "bench.portal", "--serve-gateway", str(cfg_path)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            wait_for(lambda: (tmp / "control.sock").exists(), 30, "the gateway")
            cfg = config_mod.load(str(cfg_path))
            link = CountingLink(GatewayLink(cfg.control.socket))
            state = prepare(cfg, gateway=link, voucher_key=os.urandom(32))
            app = create_app(state=state)
            codes = voucher_codes(state, logins + 5)
            base_url = f"http://127.0.0.1:{port}"
            for kind, offset in (("accept", 0), ("voucher", 5000)):
                # a few logins first: templates compiled, connections open
                steps(app, base_url, link, phones(5, offset + 4000), kind, codes, None, gw.pid)
                out[kind] = steps(
                    app, base_url, link, phones(logins, offset), kind, codes, profile, gw.pid
                )
        finally:
            gw.send_signal(signal.SIGTERM)
            try:
                gw.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gw.kill()
            log.close()
    return out


def voucher_codes(state: Any, count: int) -> list[str]:
    from hotspot.vouchers.batches import create_batch

    assert state.vouchers is not None, "no voucher key"
    batch = create_batch(state.db, state.vouchers.key, "harian", count)
    return list(batch.codes)


def steps(
    app: Any,
    base_url: str,
    link: CountingLink,
    ips: list[str],
    kind: str,
    codes: list[str],
    profile: bool | None,
    gw_pid: int,
) -> dict[str, Any]:
    clients = [app.test_client() for _ in ips]
    tokens: list[str] = []
    result: dict[str, Any] = {}

    def step(name: str, one: Any) -> None:
        link.ops.clear()
        prof = cProfile.Profile() if profile else None
        g0, p0, w0 = gateway_cpu(gw_pid), time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        for i, (c, ip) in enumerate(zip(clients, ips)):
            one(i, c, ip)
        if prof:
            prof.disable()
        g1, p1, w1 = gateway_cpu(gw_pid), time.process_time(), time.perf_counter()
        n = len(ips)
        entry: dict[str, Any] = {
            "portal_cpu_ms": round((p1 - p0) * 1000 / n, 2),
            "gateway_cpu_ms": round((g1 - g0) * 1000 / n, 2),
            "wall_ms": round((w1 - w0) * 1000 / n, 2),
            "control_ops": {op: round(k / n, 2) for op, k in sorted(link.ops.items())},
        }
        if prof:
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(35)
            entry["profile"] = s.getvalue().splitlines()
        result[name] = entry

    def splash(i: int, c: Any, ip: str) -> None:
        r = c.get(base_url + "/", environ_overrides={"REMOTE_ADDR": ip})
        assert r.status_code == 200, r.status_code
        m = CSRF.search(r.get_data(as_text=True))
        assert m, "no CSRF token"
        tokens.append(m.group(1))

    def post(i: int, c: Any, ip: str) -> None:
        if kind == "accept":
            form = {"csrf_token": tokens[i]}
            path = "/accept"
        else:
            form = {"csrf_token": tokens[i], "code": codes.pop()}
            path = "/voucher"
        r = c.post(base_url + path, data=form, environ_overrides={"REMOTE_ADDR": ip})
        assert r.status_code == 303, (r.status_code, r.headers.get("X-Hotspot-Error"))

    def ok(i: int, c: Any, ip: str) -> None:
        r = c.get(base_url + "/ok", environ_overrides={"REMOTE_ADDR": ip})
        assert r.status_code == 200, r.status_code

    step("splash", splash)
    step(f"post_{kind}", post)
    step("ok", ok)
    total = {
        k: round(sum(e[k] for e in result.values()), 2)
        for k in ("portal_cpu_ms", "gateway_cpu_ms", "wall_ms")
    }
    ops: collections.Counter[str] = collections.Counter()
    for e in result.values():
        ops.update(e["control_ops"])
    total["control_ops"] = dict(ops)
    result["login"] = total
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m bench.portal_profile", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--logins", type=int, default=200)
    ap.add_argument("--profile", action="store_true", help="cProfile each step's portal side")
    ap.add_argument("--output", default=str(RESULTS / "portal-profile.json"))
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    result = run(args.logins, args.profile)
    result["meta"] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "git_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip(),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "logins": args.logins,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    for kind in ("accept", "voucher"):
        for name, e in result[kind].items():
            print(
                f"{kind:7} {name:13} portal {e['portal_cpu_ms']:6.2f} ms  gateway "
                f"{e['gateway_cpu_ms']:6.2f} ms  wall {e['wall_ms']:6.2f} ms  ops {e['control_ops']}"
            )
    print(f"load {load0} → {result['meta']['loadavg_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
