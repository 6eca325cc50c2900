"""Fixtures that build a simulated village in network namespaces and run the real gateway
in it. Root only: without root every test here is skipped, saying so."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hotspot.control import ControlClient
from testsupport.testbed import Testbed, run_prefix, write_toml
from testsupport.testbed import remove_stale_testbeds as tb_remove_stale

from .helpers import GW_LAN_IP, PORTAL_MARKER, PORTAL_PORT, start_listener

REQUIRED = ("ip", "nft", "tc", "iperf3", "curl", "conntrack")


def _missing_tools() -> list[str]:
    return [t for t in REQUIRED if shutil.which(t) is None]


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    skip = None
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: network namespaces, nftables and tc")
    elif _missing_tools():
        skip = pytest.mark.skip(
            reason=f"missing tools: {', '.join(_missing_tools())} (run .ci/run)"
        )
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.root)
            if skip is not None:
                item.add_marker(skip)


class GatewayProcess:
    """The real ``hotspot gateway run`` inside the gateway namespace."""

    def __init__(self, bed: Testbed, workdir: Path, overrides: dict[str, Any] | None = None):
        self.bed = bed
        self.workdir = workdir
        self.log = workdir / "gateway.log"
        data = bed.gateway_settings(workdir)
        for section, values in (overrides or {}).items():
            data.setdefault(section, {}).update(values)
        self.settings = data  # what it runs on (written to config_path)
        self.socket: str = data["control"]["socket"]
        self.config_path = write_toml(workdir / "hotspot.toml", data)
        self.proc: subprocess.Popen | None = None
        self._client: ControlClient | None = None

    def hotspot(self, *args: str) -> list[str]:
        """The command line of ``hotspot ARGS…`` on this gateway's configuration."""
        return [sys.executable, "-m", "hotspot_cli", "--config", str(self.config_path), *args]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.bed.run(self.bed.gw, *self.hotspot(*args), check=check)

    def add_operator(self, name: str, role: str, password: str) -> None:
        """``hotspot operators add`` as on the gateway's terminal (the password typed on
        stdin): how the first admin is made."""
        made = subprocess.run(
            self.hotspot("operators", "add", name, "--role", role),
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        if os.path.exists(self.socket):
            # A socket left by kill -9 must not fool the wait below.
            os.unlink(self.socket)
        self.proc = self.bed.popen(
            self.bed.gw, *self.hotspot("gateway", "run", "--log-level", "DEBUG"), log_path=self.log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gateway exited {self.proc.returncode}:\n{self.log.read_text()}"
                )
            if os.path.exists(self.socket):
                try:
                    self.call("ping")
                    return self
                except Exception:  # noqa: BLE001 - still starting
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not come up:\n{self.log.read_text()}")

    def start_portal(self, timeout: float = 30.0) -> None:
        """``hotspot portal run`` on this gateway's configuration, in the gateway namespace
        (its log: ``portal.log``); returns once the portal listens."""
        log = self.workdir / "portal.log"
        self.bed.popen(self.bed.gw, *self.hotspot("portal", "run"), log_path=log)
        try:
            self.bed.wait_port(self.bed.gw, GW_LAN_IP, PORTAL_PORT, timeout=timeout)
        except Exception:  # noqa: BLE001 - any failure to start: show the portal's log
            raise RuntimeError(log.read_text()) from None

    @property
    def client(self) -> ControlClient:
        if self._client is None:
            self._client = ControlClient(self.socket)
        return self._client

    def call(self, op: str, **args: Any) -> Any:
        return self.client.call(op, **args)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout=15)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


# Namespaces are named hst-<pid of this pytest>-…: two runs at once never tear down each
# other's testbeds, and a crashed run's leftovers are removed by the next run (its pid is gone).
PREFIX = run_prefix("hst")


def remove_stale_testbeds() -> None:
    tb_remove_stale("hst")


@pytest.fixture
def testbed(request):
    clients = getattr(request, "param", 2)
    remove_stale_testbeds()
    bed = Testbed(prefix=PREFIX, clients=clients)
    bed.build()
    yield bed
    bed.destroy()


@pytest.fixture
def upstream(testbed, tmp_path):
    webroot = tmp_path / "www"
    webroot.mkdir()
    (webroot / "index.html").write_text("<h1>upstream ok</h1>")
    (webroot / "big.bin").write_bytes(os.urandom(1024) * 20480)  # 20 MiB
    testbed.start_upstream(webroot)
    return webroot


@pytest.fixture
def gateway_factory(testbed, tmp_path):
    made: list[GatewayProcess] = []

    def make(overrides: dict[str, Any] | None = None, start: bool = True) -> GatewayProcess:
        gw = GatewayProcess(testbed, tmp_path, overrides)
        made.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in made:
        gw.stop()
    # Leave no kernel state behind in the (about to be deleted) namespace either.
    testbed.run(testbed.gw, "nft", "delete", "table", "inet", "hotspot", check=False)


@pytest.fixture
def gateway(gateway_factory, upstream):
    return gateway_factory()


@pytest.fixture
def listen(testbed, tmp_path):
    """``listen(ns, kind, host, port)``: a recording udp/tcp listener (see helpers.Listener);
    stopped with the testbed."""
    logs = tmp_path / "listeners"
    logs.mkdir(exist_ok=True)

    def make(ns: str, kind: str, host: str, port: int, marker: str | None = None):
        return start_listener(testbed, ns, kind, host, port, logs, marker)

    return make


@pytest.fixture
def portal(testbed, listen):
    """A stand-in for the portal: answers every GET on 10.10.0.1:8080 (gateway namespace)
    with :data:`PORTAL_MARKER`; its log records the requests."""
    return listen(testbed.gw, "http", GW_LAN_IP, PORTAL_PORT, PORTAL_MARKER)
