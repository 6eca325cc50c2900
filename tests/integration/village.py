"""A village and its province in network namespaces, for the integration tests.

    phone ── br-lan ── <p>-gw ── eth0 ── <p>-up ── prov0 ═══ slow, lossy ═══ eth0 ── <p>-prov
                      gateway + sync agent     "internet"        203.0.113.1/24     collector
                                                                                 203.0.113.10

The link between the village's upstream and the province is slow (tbf both ways) and lossy
(an nftables ``numgen random`` drop rule in the province's namespace). Everything here runs
inside the testbed's namespaces; PostgreSQL is reached through its Unix socket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from hotspot.control import ControlClient
from tests.netns.helpers import wait_until
from testsupport.testbed import Testbed, write_toml

ROOT = Path(__file__).resolve().parents[2]
PROV_IP = "203.0.113.10"
PROV_GW = "203.0.113.1"
COLLECTOR_PORT = 8000


def collector_toml(path: Path, database_url: str, **settings: Any) -> Path:
    """The province's collector's file: listening in its namespace, one worker of four
    threads unless ``settings`` say otherwise."""
    collector = {
        "database_url": database_url,
        "bind": f"{PROV_IP}:{COLLECTOR_PORT}",
        "workers": 1,
        "threads": 4,
        **settings,
    }
    return write_toml(path, {"collector": collector})


def blackhole(*, output: bool = False) -> str:
    """nft rules that cut the village's uplink (``eth0`` of the namespace they are loaded in):
    what is forwarded and received through it is dropped, and with ``output`` what the
    namespace itself sends."""
    chains = [
        "  chain cut_forward { type filter hook forward priority -10; policy accept;\n"
        '    iifname "eth0" drop\n    oifname "eth0" drop\n  }\n',
        "  chain cut_input { type filter hook input priority -10; policy accept;\n"
        '    iifname "eth0" drop\n  }\n',
    ]
    if output:
        chains.append(
            "  chain cut_output { type filter hook output priority -10; policy accept;\n"
            '    oifname "eth0" drop\n  }\n'
        )
    return "table inet blackhole {\n" + "".join(chains) + "}\n"


def hotspot(config: Path | str, *args: str) -> list[str]:
    return [sys.executable, "-m", "hotspot_cli", "--config", str(config), *args]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """:func:`tests.netns.helpers.wait_until`, the one bounded poll of the root tiers, in
    the argument order these tests use."""
    return wait_until(predicate, timeout, interval=interval, what=what)


def add_province(bed: Testbed, *, rate_kbit: int, loss_pct: int) -> str:
    """The collector's namespace, behind a slow and lossy link; returns its name."""
    prov = bed.add_host("prov", via=bed.up, link="prov0", gateway_ip=PROV_GW, ip=PROV_IP)
    bed.run(bed.up, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for ns, dev in ((bed.up, "prov0"), (prov, "eth0")):
        bed.run(
            ns,
            "tc",
            "qdisc",
            "replace",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            f"{rate_kbit}kbit",
            "burst",
            "4kb",
            "latency",
            "300ms",
        )
    if loss_pct:
        bed.run(
            prov,
            "nft",
            "-f",
            "-",
            input=(
                "table inet lossy {\n"
                "  chain in { type filter hook input priority 0; policy accept;\n"
                f'    iifname "eth0" numgen random mod 100 < {loss_pct} counter drop\n  }}\n'
                "  chain out { type filter hook output priority 0; policy accept;\n"
                f'    oifname "eth0" numgen random mod 100 < {loss_pct} counter drop\n  }}\n'
                "}\n"
            ),
        )
    return prov


def lossy_drops(bed: Testbed, prov: str) -> int:
    out = bed.run(prov, "nft", "-j", "list", "table", "inet", "lossy", check=False).stdout
    if not out:
        return 0
    total = 0
    for obj in json.loads(out)["nftables"]:
        for e in obj.get("rule", {}).get("expr", []):
            if "counter" in e:
                total += e["counter"]["packets"]
    return total


class Proc:
    """A long-running ``hotspot`` command in a namespace, logging to a file."""

    def __init__(self, bed: Testbed, ns: str, args: list[str], log: Path):
        self.bed, self.ns, self.args, self.log = bed, ns, args, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        out.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class GatewayRunner(Proc):
    """The real ``hotspot gateway run`` in the gateway namespace."""

    def __init__(self, bed: Testbed, workdir: Path, overrides: dict[str, Any]):
        data = bed.gateway_settings(workdir, uplink_kbps=200_000, flush_seconds=2)
        for section, values in overrides.items():
            data.setdefault(section, {}).update(values)
        self.socket: str = data["control"]["socket"]
        self.config = write_toml(workdir / "hotspot.toml", data)
        super().__init__(
            bed,
            bed.gw,
            hotspot(self.config, "gateway", "run", "--log-level", "DEBUG"),
            workdir / "gateway.log",
        )

    def start(self, timeout: float = 15) -> GatewayRunner:
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        super().start()

        def up() -> bool:
            if not self.alive():
                raise RuntimeError(f"gateway exited:\n{self.text()[-3000:]}")
            if not os.path.exists(self.socket):
                return False
            try:
                self.call("ping")
                return True
            except Exception:  # noqa: BLE001 - still starting
                return False

        wait_for(up, timeout, "gateway control socket")
        return self

    def call(self, op: str, **args: Any) -> Any:
        with ControlClient(self.socket) as ctl:
            return ctl.call(op, **args)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        rc = super().stop(sig, timeout)
        self.bed.run(self.bed.gw, "nft", "delete", "table", "inet", "hotspot", check=False)
        return rc
