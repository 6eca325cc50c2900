"""Performance benchmark of the gateway: ``python3 -m bench.gateway [--quick]`` (as root).

Builds its own village in network namespaces (prefix ``hsb``), runs the real
``hotspot gateway run`` in the gateway namespace and measures

1. authorize → first forwarded packet (p50/p99 ms), with 0 and with 1000 other sessions;
2. TCP forwarding throughput through the gateway against an unshaped baseline path;
3. reconcile: full restart recovery of 1000 sessions, and a steady-state ``reconcile`` op;
4. the gateway's memory (RSS) and idle CPU with 0 and 1000 sessions.

Writes ``bench/results/gateway.json`` and prints a summary. Everything it made (namespaces,
processes, files in a temporary directory) is removed at the end, on failure and on Ctrl-C
too. See bench/README.md for what every figure means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import math
import os
import platform
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from hotspot import protocol as proto
from hotspot.control import ControlClient
from hotspot.model import EndReason, Source
from testsupport.testbed import UPSTREAM_IP, Crowd, Testbed, run_prefix, sh, write_toml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PREFIX = "hsb"
TABLE = "hotspot"
TIER = "bench"
PROBE_PORT = 9999
IPERF_PORT = 5201
MAX_KBPS = 10_000_000  # the configuration's ceiling for tiers and the uplink: 10 Gbit/s
CLK_TCK = os.sysconf("SC_CLK_TCK")
METRICS_LISTEN = "127.0.0.1:9105"  # in the gateway's namespace (--metrics-cost)
METRICS_URL = f"http://{METRICS_LISTEN}/metrics"


# -- small helpers --------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def dist(values: list[float], unit: str, digits: int = 2) -> dict[str, Any]:
    """Summary of samples: n, p50, p90, p99, min, max, mean, with the unit in the key."""
    if not values:
        return {"n": 0}
    r = lambda v: round(v, digits)  # noqa: E731
    return {
        "n": len(values),
        f"p50_{unit}": r(pct(values, 50)),
        f"p90_{unit}": r(pct(values, 90)),
        f"p99_{unit}": r(pct(values, 99)),
        f"min_{unit}": r(min(values)),
        f"max_{unit}": r(max(values)),
        f"mean_{unit}": r(statistics.fmean(values)),
    }


def spread(values: list[float], unit: str, digits: int = 3) -> dict[str, Any]:
    """Repeated throughput samples: median, min, max and (max-min)/median."""
    if not values:
        return {"n": 0}
    med = statistics.median(values)
    return {
        "n": len(values),
        f"median_{unit}": round(med, digits),
        f"min_{unit}": round(min(values), digits),
        f"max_{unit}": round(max(values), digits),
        "spread_pct": round(100 * (max(values) - min(values)) / med, 1) if med else None,
        f"samples_{unit}": [round(v, digits) for v in values],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def system_busy() -> tuple[int, int]:
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(vals), vals[3] + vals[4]  # total, idle + iowait


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class Log:
    def __init__(self, quiet: bool = False):
        self.t0 = time.monotonic()
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# -- the gateway process --------------------------------------------------------------------


class GatewayProc:
    """The real ``hotspot gateway run`` in the gateway namespace; every line it logs is
    stamped with CLOCK_MONOTONIC on arrival (the log format has no time when not on a tty)."""

    def __init__(self, bed: Testbed, config: Path, socket_path: str, log_path: Path):
        self.bed = bed
        self.config = config
        self.socket = socket_path
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.lines: list[tuple[float, str]] = []
        self._client: ControlClient | None = None
        self.spawned_at = 0.0
        self.entry = ["-m", "hotspot_cli"]  # bench.login_trace: bench/trace_gateway.py
        self.repo = REPO  # the code the gateway runs (bench.login_trace --tree: another)

    @property
    def pid(self) -> int:
        """The gateway's python process. ``ip netns exec`` execs its command in place, so
        it is normally the Popen pid itself; otherwise a child running hotspot_cli."""
        assert self.proc is not None
        pid = self.proc.pid
        if self.entry[-1].encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            if self.entry[-1].encode() in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
        raise RuntimeError("cannot find the gateway's python process")

    def start(self, timeout: float = 120.0) -> float:
        """Spawn and wait until the control socket answers; returns the seconds it took.
        The engine's start (every session back in the kernel) precedes the socket."""
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.lines = []
        cmd = self.bed.ns_exec(self.bed.gw) + [
            sys.executable,
            *self.entry,
            "--config",
            str(self.config),
            "gateway",
            "run",
            "--log-level",
            "INFO",
        ]
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.repo,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(self.repo)},
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        deadline = self.spawned_at + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise RuntimeError(
                    f"gateway exited {self.proc.returncode}:\n"
                    + "\n".join(l for _, l in self.lines[-30:])
                )
            if os.path.exists(self.socket):
                try:
                    self.send(proto.PingRequest())
                    return time.monotonic() - self.spawned_at
                except Exception:  # noqa: BLE001 - still starting
                    self.close_client()
            time.sleep(0.01)
        raise RuntimeError("gateway did not come up in time")

    def _read(self, proc: subprocess.Popen) -> None:
        with open(self.log_path, "a") as out:
            for raw in proc.stdout:  # type: ignore[union-attr]
                t = time.monotonic()
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append((t, line))
                out.write(f"{t:.3f} {line}\n")
                out.flush()

    def line_time(self, needle: str) -> float | None:
        for t, line in self.lines:
            if needle in line:
                return t
        return None

    @property
    def client(self) -> ControlClient:
        if self._client is None:
            self._client = ControlClient(self.socket, timeout=60)
        return self._client

    def send(self, request: proto.Request[proto.R]) -> proto.R:
        return self.client.send(request)

    def raw_send(self, request: proto.Request[proto.R]) -> tuple[proto.R, int]:
        """One request on a fresh connection, reading the whole reply line however long
        it is, to measure its size. Returns (result, reply bytes)."""
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)
            sock.connect(self.socket)
            sock.sendall(proto.encode(request.to_wire()))
            buf = bytearray()
            while not buf.endswith(b"\n"):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
        reply = json.loads(buf)
        if not reply.get("ok"):
            raise RuntimeError(f"{request.op}: {reply.get('error')}")
        return reply["result"], len(buf)

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def stop(self) -> None:
        self.close_client()
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# -- the benchmark --------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.quick = args.quick
        q = self.quick
        self.crowd_n = args.sessions or (100 if q else 1000)
        self.trials = args.trials or (20 if q else 120)
        self.flows = args.flows or (4 if q else 16)
        self.rounds = args.rounds or (1 if q else 3)
        self.iperf_seconds = args.seconds or (1 if q else 2)
        self.iperf_omit = 0 if q else 1  # seconds of slow start left out
        self.settle = 2.1 if q else 2.5  # > one tick before reading memory
        self.window = 2.0 if q else 6.0  # idle-CPU window
        self.reconcile_reps = 5 if q else 10
        self.recoveries = 1 if q else 2
        self.log = Log(args.quiet)
        # --metrics-cost: namespaces of this process (hsm-<pid>-…): a full bench running
        # meanwhile removes every namespace named hsb-… when it builds and when it ends.
        prefix = run_prefix("hsm") if getattr(args, "metrics_cost", False) else PREFIX
        self.bed = Testbed(prefix=prefix, clients=1)
        self.crowd: Crowd | None = None
        self.work = Path(tempfile.mkdtemp(prefix="hsb-bench-"))
        self.socket = str(self.work / "control.sock")
        self.procs: list[subprocess.Popen] = []
        self.gw: GatewayProc | None = None
        self.configs: dict[str, Path] = {}
        self.arrivals: queue.Queue[tuple[float, int, float]] = queue.Queue()
        self.pace_us: list[float] = []
        self.r: dict[str, Any] = {}

    # -- plumbing ------------------------------------------------------------------------

    def spawn(self, ns: str, *args: str, stdout: Any = subprocess.DEVNULL) -> subprocess.Popen:
        proc = subprocess.Popen(
            self.bed.ns_exec(ns) + list(args),
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    def gw_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.bed.run(self.bed.gw, *args, check=check)

    def write_config(
        self, name: str, db: str | None = None, gateway: dict[str, Any] | None = None
    ) -> Path:
        data = {
            "network": {
                "lan_interface": "br-lan",
                "wan_interface": "eth0",
                "lan_address": self.bed.lan_address,
                "uplink_down_kbps": MAX_KBPS,
                "uplink_up_kbps": MAX_KBPS,
                "lan_local_kbps": MAX_KBPS,
            },
            "database": {"url": f"sqlite:///{self.work}/{db or name}.db"},
            "control": {"socket": self.socket},
            # production defaults for the tick; named so a change of defaults shows here
            "gateway": {
                "table": TABLE,
                "tick_seconds": 2.0,
                "flush_seconds": 60,
                "leaf_qdisc": "auto",
                **(gateway or {}),
            },
            "tiers": {
                TIER: {
                    "down_kbps": MAX_KBPS,
                    "up_kbps": MAX_KBPS,
                    "session_minutes": 0,
                    "idle_minutes": 0,
                    "daily_minutes": 0,
                    "daily_mb": 0,
                }
            },
        }
        path = write_toml(self.work / f"{name}.toml", data)
        self.configs[name] = path
        return path

    def start_gateway(self, name: str) -> float:
        if self.gw is not None and self.gw.running:
            self.gw.stop()
        self.gw = GatewayProc(
            self.bed, self.configs[name], self.socket, self.work / f"gateway-{name}.log"
        )
        return self.gw.start()

    def stop_gateway(self) -> None:
        if self.gw is not None:
            self.gw.stop()

    def wipe_kernel(self) -> None:
        """No hotspot table, no HTB: the state after a reboot."""
        self.gw_run("nft", "delete", "table", "inet", TABLE, check=False)
        for dev in ("br-lan", "eth0"):
            self.gw_run("tc", "qdisc", "del", "dev", dev, "root", check=False)

    def kernel_counts(self) -> dict[str, int]:
        out = self.gw_run(
            "nft", "-j", "list", "set", "inet", TABLE, "authorized", check=False
        ).stdout
        elems = 0
        if out.strip():
            for item in json.loads(out).get("nftables", []):
                if "set" in item:
                    elems = len(item["set"].get("elem", []))
        classes = {}
        for dev in ("br-lan", "eth0"):
            text = self.gw_run("tc", "class", "show", "dev", dev).stdout
            classes[dev] = sum(1 for line in text.splitlines() if line.startswith("class htb"))
        return {
            "authorized_elements": elems,
            "htb_classes_br_lan": classes["br-lan"],
            "htb_classes_eth0": classes["eth0"],
        }

    def member_id(self, i: int) -> tuple[str, str]:
        assert self.crowd is not None
        m = self.crowd.members[i]
        return m.ip, m.mac

    # -- set-up --------------------------------------------------------------------------

    def build(self) -> None:
        self.log(f"building namespaces ({self.bed.prefix}-*), work dir {self.work}")
        self.bed.build()
        self.phone = self.bed.phones[0]
        # the phone must be a neighbour of the gateway: the portal authorizes by address
        # (keeps sending for up to 5 s: a new bridge port may take a moment to forward)
        self.bed.run(
            self.phone.ns,
            "ping",
            "-c1",
            "-i0.2",
            "-w5",
            str(ipaddress.IPv4Interface(self.bed.lan_address).ip),
        )
        self.write_config("full")  # the phone's trials, then the crowd: the 1000-session db
        self.write_config("one")

    def add_crowd(self) -> None:
        t = time.monotonic()
        self.crowd = self.bed.add_crowd(self.crowd_n)
        self.r["setup"]["crowd_build_s"] = round(time.monotonic() - t, 2)
        self.log(f"crowd of {self.crowd_n} macvlan clients built in {time.monotonic() - t:.1f} s")

    # -- 1. authorize → first forwarded packet ---------------------------------------------

    def start_probe(self) -> tuple[subprocess.Popen, subprocess.Popen]:
        probe = str(REPO / "bench" / "probe.py")
        recv = self.spawn(
            self.bed.up,
            sys.executable,
            "-u",
            probe,
            "recv",
            UPSTREAM_IP,
            str(PROBE_PORT),
            "20",
            stdout=subprocess.PIPE,
        )

        def reader() -> None:
            for raw in recv.stdout:  # type: ignore[union-attr]
                parts = raw.split()
                if parts and parts[0] == b"I":
                    self.pace_us.append(float(parts[1]))
                elif len(parts) == 3:
                    self.arrivals.put((float(parts[0]), int(parts[1]), float(parts[2])))

        threading.Thread(target=reader, daemon=True).start()
        time.sleep(0.3)
        send = self.spawn(
            self.phone.ns, sys.executable, probe, "send", UPSTREAM_IP, str(PROBE_PORT), "100"
        )
        return recv, send

    def first_packet_trials(self, n: int) -> dict[str, Any]:
        """Authorize the phone by address (as the portal does), note when its first datagram
        reaches the upstream host, deauthorize; ``n`` times at random phases of the tick."""
        assert self.gw is not None
        first, reply, deauth, failures = [], [], [], 0
        for _ in range(n):
            while not self.arrivals.empty():
                self.arrivals.get_nowait()
            t0 = time.monotonic()
            self.gw.send(proto.AuthorizeRequest(ip=self.phone.ip, tier=TIER, source=Source.FREE))
            t1 = time.monotonic()
            got = None
            deadline = t0 + 5.0
            while time.monotonic() < deadline:
                try:
                    arrival, _seq, _sent = self.arrivals.get(
                        timeout=max(0.0, deadline - time.monotonic())
                    )
                except queue.Empty:
                    break
                if arrival > t0:
                    got = arrival
                    break
            t2 = time.monotonic()
            self.gw.send(proto.DeauthorizeRequest(ip=self.phone.ip, reason=EndReason.LOGOUT))
            deauth.append((time.monotonic() - t2) * 1000)
            if got is None:
                failures += 1
            else:
                first.append((got - t0) * 1000)
            reply.append((t1 - t0) * 1000)
            time.sleep(0.03 + random.random() * 0.05)  # > the receiver's 20 ms gap
        return {
            "first_packet": dist(first, "ms"),
            "authorize_reply": dist(reply, "ms"),
            "deauthorize_reply": dist(deauth, "ms"),
            "trials": n,
            "no_packet_within_5s": failures,
        }

    # -- 4. RSS and idle CPU ---------------------------------------------------------------

    def footprint(self, seconds: float) -> dict[str, Any]:
        assert self.gw is not None
        pid = self.gw.pid
        c0, w0 = proc_cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu = proc_cpu_seconds(pid) - c0
        wall = time.monotonic() - w0
        return {
            "rss_mb": round(proc_status_kb(pid, "VmRSS") / 1024, 1),
            "peak_rss_mb": round(proc_status_kb(pid, "VmHWM") / 1024, 1),
            "idle_cpu_pct_of_one_core": round(100 * cpu / wall, 1),
            "window_s": round(wall, 1),
            "sessions": self.gw.send(proto.StatusRequest())["sessions"],
        }

    # -- 3. reconcile ----------------------------------------------------------------------

    def reconcile_steady(self, reps: int) -> dict[str, Any]:
        assert self.gw is not None
        times, changed = [], []
        for _ in range(reps):
            t = time.monotonic()
            out = self.gw.send(proto.ReconcileRequest())
            times.append((time.monotonic() - t) * 1000)
            if out.get("changed"):
                changed.append(out["changed"])
            time.sleep(random.random() * 0.3)
        t = time.monotonic()
        rows, size = self.gw.raw_send(proto.ListRequest())
        list_ms = (time.monotonic() - t) * 1000
        # the product's own client on the same op (a reply over 64 KiB used to break it)
        try:
            ok = len(self.gw.send(proto.ListRequest())) == len(rows)
            client_error = None
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            ok, client_error = False, f"{type(exc).__name__}: {str(exc)[:120]}"
            self.gw.close_client()
        return {
            "reconcile_op": dist(times, "ms", 1),
            "plans_not_empty": changed,
            "list_op_ms": round(list_ms, 1),
            "list_rows": len(rows),
            "list_reply_bytes": size,
            "control_client_list_ok": ok,
            "control_client_list_error": client_error,
        }

    def recovery(self, wipe: bool) -> dict[str, Any]:
        """Stop the gateway; optionally wipe the kernel state; start it and time until the
        control socket answers (by then engine.start() has put every session back)."""
        assert self.gw is not None
        self.stop_gateway()
        if wipe:
            self.wipe_kernel()
        ready = self.start_gateway("full")
        g = self.gw
        t_lan = g.line_time("tc: HTB on br-lan ready")
        t_eng = g.line_time("engine started")
        out = {
            "ready_s": round(ready, 3),
            "engine_start_from_log_s": round(t_eng - t_lan, 3) if t_lan and t_eng else None,
            "spawn_to_first_engine_log_s": round(t_lan - g.spawned_at, 3) if t_lan else None,
            "kernel_after": self.kernel_counts(),
            "sessions": g.send(proto.StatusRequest())["sessions"],
        }
        return out

    def engine_start_exact(self, wipe: bool, profile: Path | None = None) -> dict[str, Any]:
        """``SessionEngine.start()`` timed in-process (bench/engine_start.py), gateway stopped."""
        self.stop_gateway()
        if wipe:
            self.wipe_kernel()
        args = [sys.executable, str(REPO / "bench" / "engine_start.py"), str(self.configs["full"])]
        if profile:
            args += ["--profile", str(profile)]
        out = self.bed.run(self.bed.gw, *args, timeout=300).stdout
        return json.loads(out.strip().splitlines()[-1])

    # -- 2. throughput ---------------------------------------------------------------------

    def iperf_servers(self, count: int) -> None:
        for port in range(IPERF_PORT, IPERF_PORT + count):
            self.spawn(self.bed.up, "iperf3", "-s", "-B", UPSTREAM_IP, "-p", str(port))
        self.bed.wait_port(self.bed.up, UPSTREAM_IP, IPERF_PORT)
        self.bed.wait_port(self.bed.up, UPSTREAM_IP, IPERF_PORT + count - 1)

    def one_segment_per_skb(self) -> None:
        """Senders hand the stack MTU-sized packets (no GSO super-packets): every 1500-byte
        packet then meets the ruleset and HTB once, which is what a Pi forwarding real
        traffic pays, and the figures are per-packet costs, not the 10 Gbit/s HTB ceiling."""
        self.bed.run(self.bed.up, "ip", "link", "set", "eth0", "gso_max_segs", "1")
        assert self.crowd is not None
        cmds = ["link set eth0 gso_max_segs 1"] + [
            f"link set {m.ifname} gso_max_segs 1" for m in self.crowd.members
        ]
        self.bed.ip_batch(self.crowd.ns, *cmds)

    def flow_members(self, who: str) -> list[int]:
        """Crowd members sending the ``flows`` flows: all from member 0 ("one") or one
        each from members spread over the crowd ("many")."""
        n, k = self.crowd_n, self.flows
        return [0] * k if who == "one" else [(i * n) // k for i in range(k)]

    def iperf(self, who: str, reverse: bool) -> dict[str, Any]:
        """One run of ``flows`` iperf3 processes at once (one TCP flow each, own server port),
        bound to the crowd members of :meth:`flow_members`. Aggregate Gbit/s and CPU."""
        assert self.crowd is not None
        base = [
            "iperf3",
            "-c",
            UPSTREAM_IP,
            "-t",
            str(self.iperf_seconds),
            "-O",
            str(self.iperf_omit),
            "-J",
        ] + (["-R"] if reverse else [])
        jobs: list[subprocess.Popen] = []
        for k, i in enumerate(self.flow_members(who)):
            m = self.crowd.members[i]
            jobs.append(
                self.spawn(
                    self.crowd.ns,
                    *base,
                    "-p",
                    str(IPERF_PORT + k),
                    "-B",
                    m.ip,
                    "--bind-dev",
                    m.ifname,
                    stdout=subprocess.PIPE,
                )
            )
        gw_pid = self.gw.pid if self.gw is not None and self.gw.running else None
        c0 = proc_cpu_seconds(gw_pid) if gw_pid else 0.0
        s0, w0 = system_busy(), time.monotonic()
        bps, errors = 0.0, []
        for job in jobs:
            out, _ = job.communicate(timeout=self.iperf_seconds + 60)
            self.procs.remove(job)
            try:
                data = json.loads(out)
                if "error" in data:
                    errors.append(data["error"])
                else:
                    bps += data["end"]["sum_received"]["bits_per_second"]
            except (json.JSONDecodeError, KeyError) as exc:
                errors.append(f"iperf3 output: {exc}")
        wall = time.monotonic() - w0
        s1 = system_busy()
        busy = 100 * (1 - (s1[1] - s0[1]) / max(1, s1[0] - s0[0]))
        res = {"gbit_s": bps / 1e9, "system_busy_pct": round(busy, 1), "errors": errors}
        if gw_pid:
            res["gateway_cpu_pct"] = round(100 * (proc_cpu_seconds(gw_pid) - c0) / wall, 1)
        time.sleep(0.3)
        return res

    def baseline_on(self) -> None:
        """The unshaped path: the same namespaces, bridge and veths; no gateway process, no
        hotspot table, no HTB (the devices' own noqueue); one masquerade rule in a plain
        table (NAT and conntrack stay, as in the product)."""
        self.stop_gateway()
        self.wipe_kernel()
        lan = ipaddress.IPv4Interface(self.bed.lan_address).network
        rules = (
            "table ip hsb_baseline {\n chain postrouting {\n"
            "  type nat hook postrouting priority 100; policy accept;\n"
            f'  ip saddr {lan} oifname "eth0" masquerade\n }}\n}}\n'
        )
        self.bed.run(self.bed.gw, "nft", "-f", "-", input=rules)

    def baseline_off(self) -> None:
        self.gw_run("nft", "delete", "table", "ip", "hsb_baseline", check=False)

    def throughput(self) -> dict[str, Any]:
        n = self.crowd_n
        # case → (gateway state, who sends)
        cases = {
            "baseline_1": ("baseline", "one"),
            "baseline_many": ("baseline", "many"),
            "shaped_1": ("one", "one"),
            f"shaped_{n}_same_flows_as_1": ("full", "one"),
            f"shaped_{n}": ("full", "many"),
        }
        samples: dict[str, dict[str, list[float]]] = {c: {"down": [], "up": []} for c in cases}
        extra: dict[str, dict[str, list[float]]] = {
            c: {"gateway_cpu_pct": [], "system_busy_pct": []} for c in cases
        }
        errors: list[str] = []
        qdiscs: dict[str, str] = {}
        load: list[float] = []

        def run(case: str) -> None:
            for direction, reverse in (("down", True), ("up", False)):
                res = self.iperf(cases[case][1], reverse)
                errors.extend(f"{case}/{direction}: {e}" for e in res["errors"])
                samples[case][direction].append(res["gbit_s"])
                extra[case]["system_busy_pct"].append(res["system_busy_pct"])
                if "gateway_cpu_pct" in res:
                    extra[case]["gateway_cpu_pct"].append(res["gateway_cpu_pct"])

        for rnd in range(self.rounds):
            order = ["baseline", "one", "full"]
            if rnd % 2:
                order.reverse()  # interleave: drifts of the machine hit every case alike
            for state in order:
                load.append(os.getloadavg()[0])
                if state == "baseline":
                    self.baseline_on()
                    if not qdiscs:
                        for dev in ("br-lan", "eth0"):
                            qdiscs[dev] = self.gw_run(
                                "tc", "qdisc", "show", "dev", dev
                            ).stdout.strip()
                    self.log(f"round {rnd + 1}: baseline (plain masquerade, no HTB)")
                else:
                    self.start_gateway(state)
                    assert self.gw is not None
                    sessions = self.gw.send(proto.StatusRequest())["sessions"]
                    self.log(f"round {rnd + 1}: gateway with {sessions} session(s)")
                    time.sleep(0.5)
                for case, (st, _who) in cases.items():
                    if st == state:
                        run(case)
                if state == "baseline":
                    self.baseline_off()
        out: dict[str, Any] = {
            "unit": "Gbit/s (iperf3 TCP goodput at the receivers, summed)",
            "flows": self.flows,
            "seconds_per_run": self.iperf_seconds,
            "omitted_first_s": self.iperf_omit,
            "rounds": self.rounds,
            "members_one": self.flow_members("one")[:1],
            "members_many": self.flow_members("many"),
            "baseline_qdiscs": qdiscs,
            "loadavg_1min_per_state": [round(x, 2) for x in load],
            "errors": errors,
        }
        med: dict[tuple[str, str], float | None] = {}
        for case, (state, who) in cases.items():
            out[case] = {"state": state, "senders": who}
            for direction in ("down", "up"):
                vals = samples[case][direction]
                out[case][direction] = spread(vals, "gbit_s")
                med[(case, direction)] = statistics.median(vals) if vals else None
            for key, vals in extra[case].items():
                if vals:
                    out[case][f"median_{key}"] = round(statistics.median(vals), 1)
        ratios: dict[str, Any] = {}
        for direction in ("down", "up"):
            m = lambda c: med[(c, direction)]  # noqa: E731
            ratios[direction] = {
                "throughput_1_over_baseline": ratio(m("shaped_1"), m("baseline_1")),
                f"throughput_{n}_over_throughput_1": ratio(m(f"shaped_{n}"), m("shaped_1")),
                f"throughput_{n}_over_throughput_1_same_flows": ratio(
                    m(f"shaped_{n}_same_flows_as_1"), m("shaped_1")
                ),
                f"throughput_{n}_over_baseline_same_flows": ratio(
                    m(f"shaped_{n}"), m("baseline_many")
                ),
            }
        out["ratios"] = ratios
        return out

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        r = self.r
        r["meta"] = self.meta()
        r["setup"] = {}
        self.build()

        # 1a. authorize latency with no other session
        self.log("starting the gateway (empty database)")
        r["setup"]["first_start_ready_s"] = round(self.start_gateway("full"), 3)
        assert self.gw is not None
        status = self.gw.send(proto.StatusRequest())
        r["meta"]["leaf_qdisc"] = status["leaf_qdisc"]
        time.sleep(self.settle)
        r["footprint_0"] = self.footprint(self.window)
        recv, send = self.start_probe()
        time.sleep(0.5)
        self.log(f"authorize → first packet, 0 other sessions: {self.trials} trials")
        lat0 = self.first_packet_trials(self.trials)
        self.kill(send)

        # 1000 sessions, authorized over the control socket with explicit MAC + address
        self.add_crowd()
        self.log(f"authorizing {self.crowd_n} crowd members over the control socket")
        t_all, each = time.monotonic(), []
        for i in range(self.crowd_n):
            ip, mac = self.member_id(i)
            t = time.monotonic()
            self.gw.send(proto.AuthorizeRequest(ip=ip, mac=mac, tier=TIER, source=Source.ADMIN))
            each.append((time.monotonic() - t) * 1000)
        total = time.monotonic() - t_all
        r["bulk_authorize"] = {
            "sessions": self.crowd_n,
            "total_s": round(total, 2),
            "per_second": round(self.crowd_n / total, 1),
            "latency": dist(each, "ms"),
            "latency_first_100": dist(each[:100], "ms"),
            "latency_last_100": dist(each[-100:], "ms"),
        }
        time.sleep(self.settle)
        r[f"footprint_{self.crowd_n}"] = self.footprint(self.window)

        # 1b. authorize latency with 1000 other sessions
        send = self.start_probe_sender_only()
        time.sleep(0.5)
        self.log(f"authorize → first packet, {self.crowd_n} other sessions: {self.trials} trials")
        lat1000 = self.first_packet_trials(self.trials)
        self.kill(send)
        self.kill(recv)
        r["authorize_to_first_packet"] = self.latency_summary(lat0, lat1000)

        # a device with no neighbour entry, authorized with an explicit MAC (the admin CLI)
        r["authorize_explicit_mac_no_neighbour"] = self.no_neighbour_authorize()

        # 3b. steady-state reconcile
        self.log("reconcile op, nothing differing")
        r["reconcile_steady"] = self.reconcile_steady(self.reconcile_reps)

        # 3a. restart recovery
        self.log("restart recovery: wiped kernel / kernel left in place")
        rec: dict[str, Any] = {
            "wiped_kernel": [self.recovery(wipe=True) for _ in range(self.recoveries)],
            "kernel_in_place": [self.recovery(wipe=False)],
        }
        rec["engine_start_exact_wiped"] = self.engine_start_exact(wipe=True)
        rec["engine_start_exact_in_place"] = self.engine_start_exact(wipe=False)
        r["reconcile_restart"] = rec

        # 2. throughput: "one" = a database with crowd member 0 only; "full" = all of them
        self.log("throughput: preparing the one-session database")
        self.start_gateway("one")
        ip, mac = self.member_id(0)
        self.gw.send(proto.AuthorizeRequest(ip=ip, mac=mac, tier=TIER, source=Source.ADMIN))
        self.stop_gateway()
        self.one_segment_per_skb()
        self.iperf_servers(self.flows)
        r["throughput"] = self.throughput()
        self.stop_gateway()
        r["meta"]["finished"] = now_iso()
        r["meta"]["loadavg_at_end"] = list(os.getloadavg())
        r["meta"]["duration_s"] = round(time.monotonic() - self.log.t0, 1)
        return r

    # -- the metrics' cost (issue #14 item 5) ---------------------------------------------

    def authorize_replies(self, n: int) -> list[float]:
        """``n`` authorize → deauthorize rounds of the phone; the authorize replies, ms."""
        assert self.gw is not None
        out = []
        for _ in range(n):
            t = time.monotonic()
            self.gw.send(proto.AuthorizeRequest(ip=self.phone.ip, tier=TIER, source=Source.FREE))
            out.append((time.monotonic() - t) * 1000)
            self.gw.send(proto.DeauthorizeRequest(ip=self.phone.ip, reason=EndReason.LOGOUT))
            time.sleep(random.random() * 0.02)
        return out

    def scrape_times(self, n: int) -> list[float]:
        out = []
        for _ in range(n):
            done = self.gw_run(
                "curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", METRICS_URL, check=False
            )
            if done.returncode == 0:
                out.append(float(done.stdout) * 1000)
        return out

    def run_metrics_cost(self) -> dict[str, Any]:
        """The authorize reply with the metrics listener off and on (scraped every 0.5 s, 30
        times Prometheus's usual rate), alternating in rounds on one database with
        ``crowd_n`` other sessions: the ratio is of the same machine in the same minutes."""
        r = self.r
        r["meta"] = self.meta()
        r["setup"] = {}
        self.build()
        self.write_config("plain", db="metrics-cost")
        self.write_config("metrics", db="metrics-cost", gateway={"metrics_listen": METRICS_LISTEN})
        self.start_gateway("plain")
        self.add_crowd()
        assert self.gw is not None
        for i in range(self.crowd_n):
            ip, mac = self.member_id(i)
            self.gw.send(proto.AuthorizeRequest(ip=ip, mac=mac, tier=TIER, source=Source.ADMIN))
        times: dict[str, list[float]] = {"plain": [], "metrics": []}
        scrapes: list[float] = []
        for rnd in range(self.rounds):
            order = ["plain", "metrics"] if rnd % 2 == 0 else ["metrics", "plain"]
            for name in order:
                self.log(f"round {rnd + 1}/{self.rounds}: {name}, {self.trials} authorizations")
                self.start_gateway(name)
                time.sleep(self.settle)
                scraper = None
                if name == "metrics":
                    scraper = self.spawn(
                        self.bed.gw,
                        "sh",
                        "-c",
                        f"while :; do curl -s -o /dev/null {METRICS_URL}; sleep 0.5; done",
                    )
                    scrapes += self.scrape_times(5)
                times[name] += self.authorize_replies(self.trials)
                if scraper is not None:
                    self.kill(scraper)
        self.stop_gateway()
        plain, metrics = dist(times["plain"], "ms"), dist(times["metrics"], "ms")
        r["metrics_cost"] = {
            "sessions": self.crowd_n,
            "trials_each": len(times["plain"]),
            "rounds": self.rounds,
            "authorize_reply_plain": plain,
            "authorize_reply_metrics": metrics,
            "ratio_p50": ratio(metrics.get("p50_ms"), plain.get("p50_ms")),
            "ratio_p99": ratio(metrics.get("p99_ms"), plain.get("p99_ms")),
            "scrape": dist(scrapes, "ms"),
            "scrape_interval_s": 0.5,
        }
        r["meta"]["finished"] = now_iso()
        r["meta"]["loadavg_at_end"] = list(os.getloadavg())
        r["meta"]["duration_s"] = round(time.monotonic() - self.log.t0, 1)
        return r

    def start_probe_sender_only(self) -> subprocess.Popen:
        return self.spawn(
            self.phone.ns,
            sys.executable,
            str(REPO / "bench" / "probe.py"),
            "send",
            UPSTREAM_IP,
            str(PROBE_PORT),
            "100",
        )

    def latency_summary(self, lat0: dict[str, Any], lat1000: dict[str, Any]) -> dict[str, Any]:
        p0, p1 = lat0["first_packet"], lat1000["first_packet"]
        return {
            "what": "authorize sent on the control socket → first datagram of the phone "
            "arriving at the upstream host",
            "sessions_0": lat0,
            f"sessions_{self.crowd_n}": lat1000,
            "probe_interval_us_median": round(statistics.median(self.pace_us), 1)
            if self.pace_us
            else None,
            "ratio_p50_vs_0": ratio(p1.get("p50_ms"), p0.get("p50_ms")),
            "ratio_p99_vs_0": ratio(p1.get("p99_ms"), p0.get("p99_ms")),
        }

    def no_neighbour_authorize(self) -> dict[str, Any]:
        assert self.gw is not None
        lan = ipaddress.IPv4Interface(self.bed.lan_address).network
        ip = str(lan.broadcast_address - 2)  # outside the crowd and the phones
        times = []
        for k in range(2):
            mac = f"02:dd:00:00:00:{k:02x}"
            t = time.monotonic()
            self.gw.send(proto.AuthorizeRequest(ip=ip, mac=mac, tier=TIER, source=Source.ADMIN))
            times.append(round((time.monotonic() - t) * 1000, 1))
            self.gw.send(proto.DeauthorizeRequest(mac=mac, reason=EndReason.KICK))
        return {
            "ip": ip,
            "authorize_ms": times,
            "note": "MAC and address both given, no neighbour entry for the address",
        }

    def meta(self) -> dict[str, Any]:
        def cmd(*args: str) -> str:
            try:
                return sh(list(args), check=False).stdout.strip().splitlines()[0]
            except (IndexError, OSError):
                return "?"

        cpu = "?"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
        commit = cmd("git", "-C", str(REPO), "rev-parse", "HEAD")
        dirty = bool(
            sh(
                ["git", "-C", str(REPO), "status", "--porcelain", "gateway", "hotspot"], check=False
            ).stdout.strip()
        )
        return {
            "started": now_iso(),
            "mode": "quick" if self.quick else "full",
            "loadavg_at_start": list(os.getloadavg()),
            "machine": {
                "nproc": os.cpu_count(),
                "kernel": platform.release(),
                "cpu": cpu,
                "mem_mb": mem,
            },
            "python": platform.python_version(),
            "nft": cmd("nft", "--version"),
            "iperf3": cmd("iperf3", "--version"),
            "git_commit": commit,
            "product_code_dirty": dirty,
            "params": {
                "sessions": self.crowd_n,
                "trials": self.trials,
                "crowd_flows": self.flows,
                "rounds": self.rounds,
                "iperf_seconds": self.iperf_seconds,
                "tier_kbps": MAX_KBPS,
                "uplink_kbps": MAX_KBPS,
                "tick_seconds": 2.0,
                "probe_interval_us": 100,
            },
        }

    def cleanup(self) -> None:
        try:
            self.stop_gateway()
        except Exception as exc:  # noqa: BLE001
            print(f"cleanup: gateway: {exc}", file=sys.stderr)
        for proc in list(self.procs):
            try:
                self.kill(proc)
            except Exception:  # noqa: BLE001
                pass
        self.bed.destroy()
        logs = RESULTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for f in self.work.glob("*.log"):
            shutil.copy(f, logs / f.name)
        shutil.rmtree(self.work, ignore_errors=True)


# -- summary --------------------------------------------------------------------------------


def summary(r: dict[str, Any]) -> str:
    lines = []
    a = r.get("authorize_to_first_packet")
    n = r.get("meta", {}).get("params", {}).get("sessions")
    if a:
        for key in ("sessions_0", f"sessions_{n}"):
            fp, rep = a[key]["first_packet"], a[key]["authorize_reply"]
            lines.append(
                f"authorize→first packet ({key.replace('_', ' ')}): p50 "
                f"{fp.get('p50_ms')} ms, p99 {fp.get('p99_ms')} ms "
                f"(reply p50 {rep.get('p50_ms')} / p99 {rep.get('p99_ms')} ms)"
            )
    t = r.get("throughput")
    if t:
        for d in ("down", "up"):
            g = lambda c: t[c][d].get("median_gbit_s")  # noqa: E731
            rat = t["ratios"][d]
            lines.append(
                f"throughput {d} ({t['flows']} flows, Gbit/s): baseline {g('baseline_1')}, "
                f"1 client {g('shaped_1')}, {n} clients {g(f'shaped_{n}')} "
                f"[baseline same flows {g('baseline_many')}]; "
                f"1/baseline {rat['throughput_1_over_baseline']}, "
                f"{n}/1 {rat[f'throughput_{n}_over_throughput_1']} "
                f"(same flows as 1: {rat[f'throughput_{n}_over_throughput_1_same_flows']})"
            )
    rs = r.get("reconcile_steady")
    if rs:
        rc = rs["reconcile_op"]
        lines.append(
            f"reconcile op ({n} sessions, nothing differs): p50 {rc.get('p50_ms')} ms, "
            f"max {rc.get('max_ms')} ms; list op {rs['list_op_ms']} ms"
        )
    rr = r.get("reconcile_restart")
    if rr:
        w = rr["wiped_kernel"]
        lines.append(
            "restart recovery, wiped kernel: ready "
            + ", ".join(f"{x['ready_s']} s" for x in w)
            + f"; engine.start() {rr['engine_start_exact_wiped']['engine_start_ms']} ms "
            f"(wiped), {rr['engine_start_exact_in_place']['engine_start_ms']} ms (in place)"
        )
    for key in ("footprint_0", f"footprint_{n}"):
        f = r.get(key)
        if f:
            lines.append(
                f"gateway with {f['sessions']} sessions: RSS {f['rss_mb']} MB, idle CPU "
                f"{f['idle_cpu_pct_of_one_core']} % of a core"
            )
    mc = r.get("metrics_cost")
    if mc:
        a, b = mc["authorize_reply_plain"], mc["authorize_reply_metrics"]
        lines.append(
            f"authorize reply, {mc['sessions']} sessions, metrics off / on (scraped every "
            f"{mc['scrape_interval_s']} s): p50 {a.get('p50_ms')} / {b.get('p50_ms')} ms "
            f"(x{mc['ratio_p50']}), p99 {a.get('p99_ms')} / {b.get('p99_ms')} ms "
            f"(x{mc['ratio_p99']}); a scrape p50 {mc['scrape'].get('p50_ms')} ms"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.gateway", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small N, smoke run (< 60 s)")
    p.add_argument("--sessions", type=int, help="crowd size (default 1000; quick 100)")
    p.add_argument("--trials", type=int, help="authorize trials per condition (120; quick 20)")
    p.add_argument("--flows", type=int, help="concurrent crowd flows (16; quick 4)")
    p.add_argument("--rounds", type=int, help="interleaved throughput rounds (3; quick 1)")
    p.add_argument(
        "--seconds",
        type=int,
        help="iperf3 seconds per run (2 after 1 omitted; quick 1, none omitted)",
    )
    p.add_argument(
        "--metrics-cost",
        action="store_true",
        help="only the authorize reply with the metrics listener off and on "
        "(bench/results/gateway-metrics.json)",
    )
    p.add_argument("--output", help="default bench/results/gateway.json (gateway-metrics.json)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    if args.output is None:
        args.output = str(
            RESULTS / ("gateway-metrics.json" if args.metrics_cost else "gateway.json")
        )
    if os.geteuid() != 0:
        print("bench.gateway: needs root (network namespaces, nftables, tc)", file=sys.stderr)
        return 2
    missing = [t for t in ("ip", "nft", "tc", "iperf3") if shutil.which(t) is None]
    if missing:
        print(f"bench.gateway: missing tools: {', '.join(missing)}", file=sys.stderr)
        return 2

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # also when started in the background, where SIGINT comes in ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bench = Bench(args)
    code = 0
    try:
        bench.run_metrics_cost() if args.metrics_cost else bench.run()
    except KeyboardInterrupt:
        print("bench.gateway: interrupted; cleaning up", file=sys.stderr)
        bench.r["error"] = "interrupted"
        code = 130
    except Exception as exc:  # noqa: BLE001 - report, clean up, keep partial results
        import traceback

        traceback.print_exc()
        bench.r["error"] = f"{type(exc).__name__}: {exc}"
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            bench.cleanup()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(bench.r, indent=2) + "\n")
    print(summary(bench.r))
    print(f"results: {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
