"""The crowd after the power returns: ``python3 -m bench.crowd [--quick] [--phones N]`` (root).

A village in network namespaces (prefix ``hsc-<pid>``) with the real programs, as the
device runs them: ``hotspot gateway run``, dnsmasq with the configurations ``hotspot
provision`` renders (DHCP and the walled resolver), ``hotspot portal run`` (gunicorn), an
upstream web server and resolver. Then every phone comes back at once: ``--phones`` (300)
phones start within ``--window`` (60 s), each gets a lease by real DHCP, runs Android's
captive probe (DNS through the gateway, ``GET /generate_204`` → redirected to the portal),
and every second one taps "Terima & Sambungkan" on the portal and loads a page from the
upstream host. Before the crowd, a few phones do the same alone, one after another: the
baseline of the same run.

Figures: time until 95% have a lease, until 95% of those who log in are online, failed
requests (must be 0), the memory of the gateway, the portal (gunicorn master and workers)
and dnsmasq. ``bench/results/crowd.json``; see bench/README.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from hotspot import config as config_mod
from hotspot.control import ControlClient
from provisioning import render as R
from testsupport.testbed import (
    UPSTREAM_IP,
    Testbed,
    portal_settings,
    remove_stale_testbeds,
    run_prefix,
    sh,
    veth,
    write_toml,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
GW_LAN_IP = "10.10.0.1"
PORTAL_PORT = 8080
MARKER = "hotspot-bench-upstream-page"
DHCP_RANGE = ("10.10.0.20", "10.10.3.250")  # 983 addresses: the crowd and the baseline fit


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (None without values)."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def rnd(v: float | None, digits: int = 2) -> float | None:
    return None if v is None else round(v, digits)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- processes and their memory ---------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant."""
    out = [pid]
    for p in out:
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class ControlLatency:
    """The gateway's answer time to the portal's most common question (``client``, what a
    page asks about the phone: it waits for the engine's lock like every login), asked every
    ``interval`` seconds from the gateway namespace's side of the socket."""

    def __init__(self, socket_path: str, ip: str, interval: float = 0.25):
        self.socket_path = socket_path
        self.ip = ip
        self.interval = interval
        self.samples: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from hotspot.protocol import ClientRequest

        with ControlClient(self.socket_path, timeout=30) as ctl:
            while not self._stop.is_set():
                t = time.monotonic()
                try:
                    ctl.send(ClientRequest(ip=self.ip))
                    self.samples.append(time.monotonic() - t)
                except Exception:  # noqa: BLE001 - counted: the figure is the point
                    self.errors += 1
                self._stop.wait(self.interval)

    def __enter__(self) -> ControlLatency:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, Any]:
        v = [x * 1000 for x in self.samples]
        return {
            "n": len(v),
            "errors": self.errors,
            "p50_ms": rnd(pct(v, 50), 1),
            "p95_ms": rnd(pct(v, 95), 1),
            "max_ms": rnd(max(v), 1) if v else None,
        }


class MemorySampler:
    """RSS of named process trees every ``interval`` seconds: peak and last, in MB."""

    def __init__(self, roots: dict[str, int], interval: float = 0.5):
        self.roots = roots
        self.interval = interval
        self.peak: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.processes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, float]:
        now = {}
        for name, root in self.roots.items():
            pids = tree(root)
            now[name] = sum(rss_kb(p) for p in pids) / 1024
            self.processes[name] = max(self.processes.get(name, 0), len(pids))
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last = self.sample()
            for k, v in self.last.items():
                self.peak[k] = max(self.peak.get(k, 0.0), v)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, Any]:
        return {
            name: {
                "peak_mb": round(self.peak.get(name, 0.0), 1),
                "end_mb": round(self.last.get(name, 0.0), 1),
                "processes": self.processes.get(name, 0),
            }
            for name in self.roots
        }


# -- the village -------------------------------------------------------------------------------


class Village:
    """The gateway namespace with the device's programs, the upstream host, and one crowd
    namespace of macvlan phones without addresses (``bench.phones`` gives them leases)."""

    def __init__(self, work: Path, prefix: str, members: int, settings: dict[str, Any]):
        self.work = work
        self.bed = Testbed(prefix=prefix, clients=0)
        self.members = members
        self.extra_settings = settings
        self.crowd_ns = f"{prefix}-crowd"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def settings(self) -> dict[str, Any]:
        data = config_mod.merge(
            self.bed.gateway_settings(self.work),
            {
                "gateway": {"tick_seconds": 2.0, "flush_seconds": 60},
                "portal": portal_settings(self.work),
                "wifi": {"enabled": False},
                "dhcp": {
                    "range_start": DHCP_RANGE[0],
                    "range_end": DHCP_RANGE[1],
                    "lease_minutes": 60,
                    "upstream_dns": [UPSTREAM_IP],
                },
            },
        )
        return config_mod.merge(data, self.extra_settings)

    def hotspot(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hotspot_cli", "--config", str(self.config_path), *args]

    def popen(self, name: str, ns: str, args: list[str]) -> subprocess.Popen[bytes]:
        proc = self.bed.popen(ns, *args, log_path=self.work / f"{name}.log")
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, n: int = 30) -> str:
        path = self.work / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""
        )

    def wait(self, what: str, ready: Any, timeout: float, name: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}:\n{self.log_tail(name)}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what}: not ready after {timeout:.0f} s\n{self.log_tail(name)}")

    def build(self) -> None:
        self.work.chmod(0o755)  # dnsmasq drops to its own user and reads its files here
        self.bed.build()
        ns = self.crowd_ns
        sh(["ip", "netns", "add", ns])
        self.bed.run(
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
        )
        veth("eth0", ns, "crowd0", self.bed.gw)
        self.bed.run(self.bed.gw, "ip", "link", "set", "crowd0", "master", "br-lan", "up")
        cmds = ["link set lo up", "link set eth0 up"]
        for i in range(self.members):
            cmds.append(f"link add m{i} link eth0 address {member_mac(i)} type macvlan mode bridge")
            cmds.append(f"link set m{i} up")
        self.bed.ip_batch(ns, *cmds, timeout=300)

    def start(self) -> None:
        data = self.settings()
        self.config_path = write_toml(self.work / "hotspot.toml", data)
        self.config_path.chmod(0o644)
        self.config = config_mod.load(str(self.config_path))
        www = self.work / "www"
        www.mkdir()
        (www / "index.html").write_text(f"<html><body>{MARKER}</body></html>\n")
        up = self.bed.up
        self.popen(
            "upstream-http",
            up,
            [sys.executable, "-m", "http.server", "80", "--bind", UPSTREAM_IP, "-d", str(www)],
        )
        self.popen(
            "upstream-dns",
            up,
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                f"--listen-address={UPSTREAM_IP}",
                "--bind-interfaces",
                f"--address=/#/{UPSTREAM_IP}",  # every name: the upstream host
                f"--pid-file={self.work}/upstream-dns.pid",
                "--log-facility=-",
            ],
        )
        self.popen("gateway", self.bed.gw, self.hotspot("gateway", "run", "--log-level", "INFO"))
        sock = str(data["control"]["socket"])

        def gateway_up() -> bool:
            if not os.path.exists(sock):
                return False
            try:
                with ControlClient(sock) as ctl:
                    ctl.call("ping")
                return True
            except Exception:  # noqa: BLE001 - still starting
                return False

        self.wait("the gateway's control socket", gateway_up, 60, "gateway")
        files = {f.path: f for f in R.render(self.config, b"", hotspot=sys.executable)}
        for name, path in (("dnsmasq", R.DNSMASQ), ("walled-dns", R.WALLED_DNS_CONF)):
            conf = self.work / f"{name}.conf"
            conf.write_bytes(files[path].content)
            conf.chmod(0o644)
            self.popen(
                name,
                self.bed.gw,
                [
                    "dnsmasq",
                    "--keep-in-foreground",
                    f"--conf-file={conf}",
                    f"--pid-file={self.work}/{name}.pid",
                    "--log-facility=-",
                    *(
                        [f"--dhcp-leasefile={self.work}/dnsmasq.leases", "--no-hosts"]
                        if name == "dnsmasq"
                        else []
                    ),
                ],
            )
        self.popen("portal", self.bed.gw, self.hotspot("portal", "run"))
        port = self.config.network.walled_dns_port
        for what, ns, host, p, name in (
            ("upstream web server", up, UPSTREAM_IP, 80, "upstream-http"),
            ("upstream resolver", up, UPSTREAM_IP, 53, "upstream-dns"),
            ("dnsmasq", self.bed.gw, GW_LAN_IP, 53, "dnsmasq"),
            ("walled resolver", self.bed.gw, GW_LAN_IP, port, "walled-dns"),
            ("portal", self.bed.gw, GW_LAN_IP, PORTAL_PORT, "portal"),
        ):
            self.wait(what, lambda ns=ns, host=host, p=p: self.bed.port_open(ns, host, p), 60, name)

    def pid_of(self, name: str) -> int:
        """The program's own process (``ip netns exec`` execs in place)."""
        return self.procs[name].pid

    def destroy(self) -> None:
        self.bed.destroy()


def member_mac(i: int) -> str:
    return f"02:cc:00:00:{i >> 8:02x}:{i & 0xFF:02x}"


def run_phones(
    village: Village, name: str, members: list[dict[str, Any]], deadline_s: float
) -> dict[str, Any]:
    """``bench.phones`` in the crowd namespace with ``members``; its JSON result."""
    spec = {
        "gateway_ip": GW_LAN_IP,
        "portal_url": f"http://{GW_LAN_IP}:{PORTAL_PORT}",
        "upstream_url": f"http://{UPSTREAM_IP}/",
        "upstream_marker": MARKER,
        "http_timeout_s": 10,
        "dhcp_deadline_s": 60,
        "online_deadline_s": 30,
        "members": members,
    }
    spec_path = village.work / f"{name}.spec.json"
    result_path = village.work / f"{name}.result.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(
        village.bed.ns_exec(village.crowd_ns)
        + [sys.executable, "-m", "bench.phones", str(spec_path), str(result_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=deadline_s,
        check=False,
    )
    if proc.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"bench.phones failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(result_path.read_text())


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    phones = result["phones"]
    logins = [p for p in phones if p["logs_in"]]
    leases = [p["lease_s"] for p in phones if p["lease_s"] is not None]
    online = [p["online_s"] for p in logins if p["online_s"] is not None]
    failures = [{"phone": p["index"], "error": e} for p in phones for e in p["failures"]]

    def time_to(share: float, values: list[float], of: int) -> float | None:
        """When ``share`` of ``of`` phones had reached it (None if fewer ever did)."""
        need = math.ceil(share * of)
        return rnd(sorted(values)[need - 1]) if need and len(values) >= need else None

    def dist(values: list[float]) -> dict[str, Any]:
        return {
            "n": len(values),
            "p50_s": rnd(pct(values, 50), 3),
            "p95_s": rnd(pct(values, 95), 3),
            "max_s": rnd(max(values), 3) if values else None,
            "mean_s": rnd(statistics.fmean(values), 3) if values else None,
        }

    return {
        "phones": len(phones),
        "logging_in": len(logins),
        "leased": len(leases),
        "online": len(online),
        "time_to_95pct_leased_s": time_to(0.95, leases, len(phones)),
        "time_to_95pct_online_s": time_to(0.95, online, len(logins)),
        "time_to_all_leased_s": time_to(1.0, leases, len(phones)),
        "time_to_all_online_s": time_to(1.0, online, len(logins)),
        "last_phone_started_s": rnd(max((p["start_s"] for p in phones), default=0.0)),
        "lease_after_discover": dist(
            [p["lease_after_start_s"] for p in phones if p["lease_after_start_s"] is not None]
        ),
        "online_after_accept": dist(
            [p["online_after_accept_s"] for p in logins if p["online_after_accept_s"] is not None]
        ),
        "join_to_online": dist(
            [p["online_s"] - p["start_s"] for p in logins if p["online_s"] is not None]
        ),
        "probe_redirected": sum(1 for p in phones if p["probe_s"] is not None),
        "option_114_seen": sum(1 for p in phones if p["captive_api"]),
        "requests": sum(p["requests"] for p in phones),
        "failed_requests": len(failures),
        "failures_by_step": dict(
            collections.Counter(f["error"].split(":", 1)[0] for f in failures)
        ),
        "failures": failures[:20],
        "dhcp_retransmits": sum(p["dhcp_retransmits"] for p in phones),
        "online_polls_over_1": sum(1 for p in logins if p["online_polls"] > 1),
        "wall_s": rnd(result["wall_s"]),
    }


def meta(args: argparse.Namespace) -> dict[str, Any]:
    def cmd(*a: str) -> str:
        try:
            return sh(list(a), check=False).stdout.strip().splitlines()[0]
        except (IndexError, OSError):
            return "?"

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return {
        "started": now_iso(),
        "mode": "quick" if args.quick else "full",
        "loadavg_at_start": list(os.getloadavg()),
        "machine": {
            "nproc": os.cpu_count(),
            "kernel": platform.release(),
            "cpu": cpu,
            "mem_mb": int(Path("/proc/meminfo").read_text().split()[1]) // 1024,
        },
        "python": platform.python_version(),
        "dnsmasq": cmd("dnsmasq", "--version"),
        "git_commit": cmd("git", "-C", str(REPO), "rev-parse", "HEAD"),
        "params": {
            "phones": args.phones,
            "window_s": args.window,
            "login_share": 0.5,
            "baseline_phones": args.baseline,
            "tick_seconds": 2.0,
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    remove_stale_testbeds("hsc")
    report: dict[str, Any] = {"meta": meta(args)}
    work = Path(tempfile.mkdtemp(prefix="hotspot-crowd-"))
    village = Village(work, run_prefix("hsc"), args.baseline + args.phones, {})
    rng = random.Random(args.seed)
    try:
        log(f"building the village: {args.phones} + {args.baseline} phones (macvlan)")
        village.build()
        village.start()
        roots = {
            "gateway": village.pid_of("gateway"),
            "portal": village.pid_of("portal"),
            "dnsmasq": village.pid_of("dnsmasq"),
        }
        with MemorySampler(roots) as mem:
            time.sleep(1.0)
            report["memory_idle"] = mem.sample()
            report["memory_idle"] = {k: round(v, 1) for k, v in report["memory_idle"].items()}
            log(f"baseline: {args.baseline} phones, one after another")
            base_members = [
                {
                    "index": i,
                    "ifname": f"m{i}",
                    "mac": member_mac(i),
                    "logs_in": True,
                    "start_at": i * 2.5,
                }
                for i in range(args.baseline)
            ]
            alone = run_phones(village, "baseline", base_members, 300)
            base = summarize(alone)
            # The gateway's answer about a phone that is there (one of the baseline's): an
            # address nobody holds would measure the ARP probe's half-second timeout instead.
            asked = next((p["ip"] for p in alone["phones"] if p.get("ip")), "")
            log(
                f"baseline: lease {base['lease_after_discover']['p50_s']} s, online after "
                f"accept {base['online_after_accept']['p50_s']} s, {base['failed_requests']} failed"
            )
            members = [
                {
                    "index": args.baseline + i,
                    "ifname": f"m{args.baseline + i}",
                    "mac": member_mac(args.baseline + i),
                    "logs_in": i % 2 == 0,
                    "start_at": rng.uniform(0, args.window),
                }
                for i in range(args.phones)
            ]
            load_before = os.getloadavg()[0]
            log(f"the crowd: {args.phones} phones within {args.window:.0f} s")
            sock = str(village.config.control.socket)
            with ControlLatency(sock, asked) as idle:
                time.sleep(3)
            with ControlLatency(sock, asked) as busy:
                crowd = summarize(run_phones(village, "crowd", members, args.window + 300))
            report["control_client_op_idle"] = {"asked_about": asked, **idle.report()}
            report["control_client_op_during_crowd"] = busy.report()
            load_after = os.getloadavg()[0]
            report["memory_during_crowd"] = mem.report()
        with ControlClient(str(village.config.control.socket)) as ctl:
            sessions = ctl.call("list")
        report["baseline"] = base
        report["crowd"] = crowd
        report["gateway_sessions_after"] = len(sessions) if isinstance(sessions, list) else None
        report["ratios"] = {
            "lease_p95_crowd_over_p50_alone": ratio(
                crowd["lease_after_discover"]["p95_s"], base["lease_after_discover"]["p50_s"]
            ),
            "online_after_accept_p95_crowd_over_p50_alone": ratio(
                crowd["online_after_accept"]["p95_s"], base["online_after_accept"]["p50_s"]
            ),
        }
        report["meta"]["loadavg_1min_before_after_crowd"] = [
            round(load_before, 2),
            round(load_after, 2),
        ]
        report["meta"]["loadavg_at_end"] = list(os.getloadavg())
        report["meta"]["ended"] = now_iso()
        report["ok"] = (
            crowd["failed_requests"] == 0
            and crowd["leased"] == crowd["phones"]
            and crowd["online"] == crowd["logging_in"]
        )
        return report
    finally:
        logs = RESULTS / "logs" / "crowd"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True, exist_ok=True)
        for f in work.glob("*.log"):
            shutil.copy(f, logs / f.name)
        village.destroy()
        shutil.rmtree(work, ignore_errors=True)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.crowd", description=__doc__.split("\n")[0])
    ap.add_argument("--phones", type=int, default=None, help="phones in the crowd (300)")
    ap.add_argument("--window", type=float, default=None, help="they all start within (60 s)")
    ap.add_argument("--baseline", type=int, default=5, help="phones alone first (5)")
    ap.add_argument("--quick", action="store_true", help="60 phones within 15 s")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--output", type=Path, default=RESULTS / "crowd.json")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.crowd: needs root (network namespaces, nftables, dnsmasq)", file=sys.stderr)
        return 2
    missing = [t for t in ("ip", "nft", "tc", "dnsmasq") if shutil.which(t) is None]
    if missing:
        print(f"bench.crowd: missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.phones is None:
        args.phones = 60 if args.quick else 300
    if args.window is None:
        args.window = 15.0 if args.quick else 60.0
    if not 1 <= args.phones <= 900 or args.window <= 0 or not 0 <= args.baseline <= 20:
        print("bench.crowd: --phones 1..900, --window > 0, --baseline 0..20", file=sys.stderr)
        return 2
    report = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    c = report["crowd"]
    mem = report["memory_during_crowd"]
    print(
        f"crowd: {c['phones']} phones, 95% leased at {c['time_to_95pct_leased_s']} s, "
        f"95% of {c['logging_in']} online at {c['time_to_95pct_online_s']} s, "
        f"failed requests {c['failed_requests']} of {c['requests']}, "
        f"DHCP retransmits {c['dhcp_retransmits']}; peak RSS gateway "
        f"{mem['gateway']['peak_mb']} MB, portal {mem['portal']['peak_mb']} MB, dnsmasq "
        f"{mem['dnsmasq']['peak_mb']} MB → {args.output}"
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
