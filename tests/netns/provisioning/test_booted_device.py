"""The real device, booted (issue #11, item 1): a minimal Debian 12 made with debootstrap
(cached between runs, testsupport/booted.py), booted with ``systemd-nspawn --boot``, systemd
as its PID 1. Inside it, docs/provisioning.md's installation (``pip install`` of this
checkout into ``/opt/hotspot``) and one ``hotspot provision`` on the running system; then:

* hotspot-gateway, hotspot-portal and hotspot-sync run under systemd with their sandbox
  (the unit's properties, and what the kernel says of the running processes);
* a phone namespace on the container's LAN bridge gets a lease from its dnsmasq, is
  redirected to the portal, accepts the terms (HTTP POST) and browses to the upstream;
* ``systemctl kill -s KILL hotspot-gateway``: systemd starts it again (notify), the phone
  stays online without logging in again;
* ``systemctl reboot`` of the container (nspawn boots it again): the phone is online again
  within 10 s of the gateway's start, without logging in again;
* a power cut (SIGKILL of nspawn and everything in the container, no shutdown at all), then
  a cold boot of the same root: the same, and the database passes its integrity check.

    phone ──veth── <p>-lan (bridge br0) ──veth── [container eth0 → br-lan 10.10.0.1/22]
                                                  [container eth1 192.0.2.1] ──veth── <p>-up
                                                                    192.0.2.2, 198.51.100.10

nspawn runs in a namespace of its own (``<p>-dev``) and creates the two veth pairs there at
every boot; the fixture moves their host ends into ``<p>-lan`` and ``<p>-up`` (as a cable
plugged into the switch and the modem). Root only; skipped without debootstrap or
systemd-nspawn (Debian packages debootstrap and systemd-container; .ci/run installs them).
The first run builds the cache (debootstrap and the venv's requirements from PyPI: several
minutes); later runs copy it (an overlay mount) and take about a minute and a half.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import tomllib
from pathlib import Path

import pytest

from tests.netns.helpers import curl, portal_exchange, wait_until
from testsupport import booted, dhclient
from testsupport import testbed as tb
from testsupport.testbed import UPSTREAM_IP, WAN_GW_IP, WAN_UP_IP, Phone, write_toml

pytestmark = pytest.mark.skipif(
    bool(booted.missing_tools()) or shutil.which("dhclient") is None,
    reason="needs debootstrap, systemd-nspawn (systemd-container), nsenter and dhclient",
)

BASE = "hsb"
PREFIX = tb.run_prefix(BASE)
COLLECTOR_PORT = 9180
PHONE_MAC = "02:00:00:00:b0:01"
LINKS = {"lan-h": "eth0", "wan-h": "eth1"}  # host end → the container's name
SERVICES = ("hotspot-gateway", "hotspot-portal", "hotspot-sync")
HOTSPOT = f"{booted.VENV}/bin/hotspot"
ONLINE_WITHIN_S = 10.0

VILLAGE_TOML = f"""\
[village]
name = "Desa Uji Nyala"

[network]
wan_interface = "eth1"
lan_ports = ["eth0"]

[wifi]
enabled = false

[dhcp]
lease_minutes = 60
upstream_dns = ["{WAN_UP_IP}"]

[sync]
upstream_url = "http://{UPSTREAM_IP}:{COLLECTOR_PORT}"
gateway_id = "uji-nyala"
secret = "{"n" * 40}"
interval_seconds = 5
health_seconds = 5
backoff_max_seconds = 5
"""

# The operating system's own uplink configuration (NetworkManager or ifupdown on a real
# device; systemd-networkd here): `hotspot provision` leaves the uplink alone.
UPLINK_NETWORK = f"""\
[Match]
Name=eth1

[Network]
Address={WAN_GW_IP}/24
Gateway={WAN_UP_IP}
"""


def _remove_stale() -> None:
    tb.remove_stale_testbeds(BASE)


class Site:
    """The namespaces around the device, and the device."""

    def __init__(self, work: Path, root: Path):
        self.bed = tb.Testbed(prefix=PREFIX)
        self.work = work
        self.dev = f"{PREFIX}-dev"
        self.lan = f"{PREFIX}-lan"
        self.up = self.bed.up
        self.phone = Phone(ns=f"{PREFIX}-c1", mac=PHONE_MAC, ip="")
        self.unplugged_at = 0.0  # see wire()
        self.device = booted.Device(
            root=root, ns=self.dev, links=dict(LINKS), console=work / "console.log"
        )

    def build(self) -> None:
        for ns in (self.dev, self.lan, self.up, self.phone.ns):
            tb.sh(["ip", "netns", "add", ns])
            self.bed.run(ns, "ip", "link", "set", "lo", "up")
        self.bed.ip_batch(self.lan, "link add br0 type bridge", "link set br0 up")
        tb.veth("eth0", self.phone.ns, "ph1", self.lan, address=PHONE_MAC)
        self.bed.ip_batch(self.lan, "link set ph1 master br0", "link set ph1 up")
        self.bed.run(self.phone.ns, "ip", "link", "set", "eth0", "up")
        self.bed.run(self.up, "ip", "addr", "add", f"{UPSTREAM_IP}/32", "dev", "lo")

    def wire(self) -> None:
        """Plug the new boot's cables: the LAN end into the bridge, the uplink end into the
        upstream namespace (192.0.2.2)."""
        self.device.host_links()
        # The last boot's pairs go with its network namespace, a moment after it ends.
        for ns, name in ((self.lan, "lan-h"), (self.up, "wan-h")):
            wait_until(
                lambda: tb.sh(["ip", "-n", ns, "link", "show", name], check=False).returncode,
                30,
                0.05,
                what=f"the last boot's {name} gone",
            )
        # From here on the last boot's kernel (its table and forwarding: after a power cut
        # its network namespace is torn down a moment after its processes died) forwards
        # nothing more: whatever reaches the upstream now went through this boot.
        self.unplugged_at = time.monotonic()
        self.bed.ip_batch(
            self.dev, f"link set lan-h netns {self.lan}", f"link set wan-h netns {self.up}"
        )
        self.bed.ip_batch(self.lan, "link set lan-h master br0", "link set lan-h up")
        self.bed.ip_batch(self.up, f"addr add {WAN_UP_IP}/24 dev wan-h", "link set wan-h up")

    def boot(self) -> None:
        self.device.start()
        self.wire()
        self.device.wait_booted()

    def destroy(self) -> None:
        # Nothing of the run's root is kept: no need to wait for an orderly shutdown.
        self.device.kill()
        self.bed.destroy()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("booted")


@pytest.fixture(scope="module")
def site(work):
    """The device: a cached root, this checkout installed, booted and provisioned."""
    _remove_stale()
    log = work / "build.log"
    t0 = time.monotonic()
    try:
        lower = booted.venv_root(log)
    except booted.BootError as exc:
        pytest.fail(f"cannot build the Debian root: {exc}")
    cached = time.monotonic() - t0
    run_root = booted.RunRoot.make(lower, work / "run")
    root = run_root.path
    s = Site(work, root)
    try:
        booted.install_checkout(root, log)
        (root / "root/village.toml").write_text(VILLAGE_TOML)
        (root / "etc/systemd/network/20-uplink.network").write_text(UPLINK_NETWORK)
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        (root / "etc/resolv.conf").write_text(f"nameserver {WAN_UP_IP}\n")
        (root / "etc/hostname").write_text("desa-uji\n")
        installed = time.monotonic() - t0
        s.build()
        s.boot()
        booted_at = time.monotonic() - t0
        prov = s.device.run(
            HOTSPOT, "provision", "--config", "/root/village.toml", check=False, timeout=600
        )
        (work / "provision.log").write_text(prov.stdout + prov.stderr)
        assert prov.returncode == 0, prov.stdout + prov.stderr
        s.provision_output = prov.stdout  # type: ignore[attr-defined]
        s.timings = {  # type: ignore[attr-defined]
            "cache_s": round(cached, 1),
            "installed_s": round(installed, 1),
            "booted_s": round(booted_at, 1),
            "provisioned_s": round(time.monotonic() - t0, 1),
        }
        (work / "timings.json").write_text(json.dumps(s.timings))
        print("booted device timings:", s.timings)
        yield s
    finally:
        s.destroy()
        run_root.remove()


@pytest.fixture(scope="module")
def collector(site, work):
    from tests.netns.portal.test_disk_full import RECORDING_COLLECTOR

    script = work / "collector.py"
    script.write_text(RECORDING_COLLECTOR)
    log, ready = work / "collector.jsonl", work / "collector.ready"
    site.bed.popen(
        site.up,
        "python3",
        str(script),
        UPSTREAM_IP,
        str(COLLECTOR_PORT),
        str(log),
        str(ready),
        log_path=work / "collector.err",
    )
    site.bed.wait_path(ready)
    webroot = work / "www"
    webroot.mkdir()
    (webroot / "index.html").write_text("<h1>upstream ok</h1>")
    site.bed.popen(
        site.up,
        "python3",
        "-m",
        "http.server",
        "80",
        "--bind",
        UPSTREAM_IP,
        "--directory",
        str(webroot),
    )
    site.bed.wait_port(site.up, UPSTREAM_IP, 80)
    return log


def portal_url(path: str = "/") -> str:
    return f"http://10.10.0.1:8080{path}"


@pytest.fixture(scope="module")
def phone(site, collector, work):
    """The phone: a lease from the device's dnsmasq, then what it saw before and after
    *Terima & Sambungkan*."""
    lease_dir = work / "dhclient"
    lease_dir.mkdir()
    bound = lease_dir / dhclient.BOUND
    site.bed.popen(
        site.phone.ns,
        *dhclient.command(lease_dir, "eth0", timeout=60, retry=1, once=True),
        log_path=lease_dir / "dhclient.log",
    )
    wait_until(bound.exists, 90, 0.1, what="the phone's lease from the device's dnsmasq")
    env = dhclient.lease_env(bound)
    site.phone.ip = env["new_ip_address"]
    seen: dict[str, object] = {"lease": env}
    seen["walled"] = curl(site.bed, site.phone.ns, f"http://{UPSTREAM_IP}/index.html")
    jar = str(work / "phone.jar")
    status, page = portal_exchange(site.bed, site.phone, "/", jar)
    assert status == 200, (status, page[:300])
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page[:800]
    seen["accept"] = portal_exchange(
        site.bed, site.phone, "/accept", jar, csrf_token=token.group(1)
    )
    seen["online"] = wait_until(
        lambda: is_online(site), 15, 0.2, what="the phone online after accepting"
    )
    return seen


def is_online(site: Site, timeout: float = 1) -> bool:
    got = curl(site.bed, site.phone.ns, f"http://{UPSTREAM_IP}/index.html", timeout=timeout)
    return got.body == "<h1>upstream ok</h1>"


def sessions(site: Site) -> list[dict]:
    out = site.device.run(HOTSPOT, "clients", "list", "--json").stdout
    return json.loads(out)


def main_pid(site: Site, unit: str) -> int:
    return int(site.device.show(unit, "MainPID")["MainPID"])


def proc_status(site: Site, pid: int) -> dict[str, str]:
    text = site.device.run("cat", f"/proc/{pid}/status").stdout
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


# -- the tests ------------------------------------------------------------------------------


def test_provision_runs_the_services_under_systemd_with_their_sandbox(site):
    dev = site.device
    for unit in SERVICES + ("dnsmasq", "hotspot-walled-dns", "systemd-networkd"):
        assert dev.systemctl("is-active", unit) == "active", dev.run(
            "systemctl", "status", "--no-pager", "-l", unit, check=False
        ).stdout
        assert dev.systemctl("is-enabled", unit) == "enabled", unit
    # The gateway told systemd it is ready (Type=notify) and pings its watchdog.
    gw = dev.show(
        "hotspot-gateway", "Type", "WatchdogUSec", "NotifyAccess", "WatchdogTimestampMonotonic"
    )
    assert gw["Type"] == "notify" and gw["WatchdogUSec"] == "30s", gw
    first_ping = int(gw["WatchdogTimestampMonotonic"])
    assert first_ping > 0, gw
    wait_until(
        lambda: (
            int(
                dev.show("hotspot-gateway", "WatchdogTimestampMonotonic")[
                    "WatchdogTimestampMonotonic"
                ]
            )
            > first_ping
        ),
        40,
        0.5,
        what="a later watchdog ping",
    )
    # The sandbox, as systemd reads the units ...
    want = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "MemoryDenyWriteExecute": "yes",
        "LockPersonality": "yes",
    }
    for unit in SERVICES:
        props = dev.show(unit, *want, "CapabilityBoundingSet", "User")
        assert {k: props[k] for k in want} == want, (unit, props)
    assert dev.show("hotspot-gateway", "CapabilityBoundingSet")["CapabilityBoundingSet"] == (
        "cap_net_admin cap_net_raw cap_sys_time"
    )
    assert dev.show("hotspot-portal", "User")["User"] == "hotspot"
    assert dev.show("hotspot-sync", "User")["User"] == "hotspot-sync"
    # ... and as the kernel applies them to the running processes.
    for unit in SERVICES:
        st = proc_status(site, main_pid(site, unit))
        assert st["NoNewPrivs"] == "1", (unit, st)
        assert st["Seccomp"] == "2", (unit, st)  # the system-call filter
        if unit != "hotspot-gateway":
            assert st["CapEff"] == "0000000000000000", (unit, st)
            assert st["Uid"].split()[0] != "0", (unit, st)
    gw_caps = int(proc_status(site, main_pid(site, "hotspot-gateway"))["CapBnd"], 16)
    # CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_TIME (the collector's time): nothing else — as far
    # as the container has them (systemd-nspawn keeps CAP_SYS_TIME from its services: the
    # host's clock is not the container's to set)
    container = int(proc_status(site, 1)["CapBnd"], 16)
    assert gw_caps == ((1 << 12) | (1 << 13) | (1 << 25)) & container
    # A second run finds nothing to do.
    again = dev.run(HOTSPOT, "provision", check=False, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


DNS_CONF_DIR = "/var/lib/hotspot-dns"  # [dns_filter] conf_dir's default


def test_the_gateways_reload_request_restarts_dnsmasq_through_systemd(site):
    """The resolvers' live files (issue #15): the sandboxed gateway leaves a request, the path
    unit starts the root reload service, which restarts dnsmasq on the generation in force —
    and a request for the generation already applied restarts nothing."""
    dev = site.device
    assert dev.systemctl("is-enabled", "hotspot-dns-reload.path") == "enabled"
    assert dev.systemctl("is-active", "hotspot-dns-reload.path") == "active"

    def status() -> dict:
        got = dev.run("cat", f"{DNS_CONF_DIR}/reload-status.json", check=False)
        return json.loads(got.stdout) if got.returncode == 0 else {}

    # the gateway asked once at its start; systemd ran the reload as root
    def current() -> str:
        return dev.run("readlink", f"{DNS_CONF_DIR}/current", check=False).stdout.strip()

    try:
        wait_until(
            lambda: (
                status().get("result") == "applied" and current().endswith(status()["generation"])
            ),
            90,
            0.5,
            what="the reload service's status for the generation in force",
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}: current={current()} status={status()} "
            + dev.run("ls", "-la", DNS_CONF_DIR, check=False).stdout
            + dev.run("journalctl", "--no-pager", "-u", "hotspot-dns-reload*", check=False).stdout[
                -3000:
            ]
        ) from exc
    assert dev.show("hotspot-dns-reload", "Result")["Result"] == "success", dev.run(
        "journalctl", "--no-pager", "-u", "hotspot-dns-reload", check=False
    ).stdout[-3000:]
    assert dev.systemctl("is-active", "dnsmasq") == "active"
    ran = dev.show("hotspot-dns-reload", "ExecMainExitTimestampMonotonic")
    dnsmasq_pid = main_pid(site, "dnsmasq")
    # the same request again (renamed into place, as the gateway writes it)
    dev.run(
        "sh",
        "-c",
        f"cp {DNS_CONF_DIR}/reload-request {DNS_CONF_DIR}/.again && "
        f"mv {DNS_CONF_DIR}/.again {DNS_CONF_DIR}/reload-request",
    )
    wait_until(
        lambda: dev.show("hotspot-dns-reload", "ExecMainExitTimestampMonotonic") != ran,
        60,
        0.5,
        what="the reload service run again by the path unit",
    )
    assert dev.show("hotspot-dns-reload", "Result")["Result"] == "success"
    assert main_pid(site, "dnsmasq") == dnsmasq_pid  # unchanged: not restarted


def test_phone_leases_is_redirected_accepts_and_browses(site, phone, collector):
    lease = phone["lease"]
    assert lease["new_routers"] == "10.10.0.1"
    assert lease["new_rfc8910_captive_portal"] == portal_url("/api/captive")
    walled = phone["walled"]
    # Walled: the request for the upstream page got the portal instead.
    assert "upstream ok" not in walled.body and walled.code == "302", walled
    assert "http://10.10.0.1:8080/" in walled.body, walled
    status, body = phone["accept"]
    assert status == 303 and portal_url("/ok") in body, (status, body[:300])
    assert is_online(site)
    [row] = [s for s in sessions(site) if s["mac"] == PHONE_MAC]
    assert row["ip"] == site.phone.ip
    # The sync agent reports through its sandbox to the (recording) collector upstream.
    wait_until(
        lambda: collector.exists() and collector.read_text().strip(),
        60,
        0.5,
        what="a record from hotspot-sync at the collector",
    )


def test_gateway_killed_is_restarted_by_systemd_and_keeps_the_session(site, phone):
    dev = site.device
    before = dev.show("hotspot-gateway", "MainPID", "NRestarts")
    dev.run("systemctl", "kill", "-s", "KILL", "hotspot-gateway")
    wait_until(
        lambda: (
            dev.show("hotspot-gateway", "NRestarts")["NRestarts"] != before["NRestarts"]
            and dev.systemctl("is-active", "hotspot-gateway") == "active"
        ),
        60,
        0.2,
        what="hotspot-gateway started again by systemd",
    )
    after = dev.show("hotspot-gateway", "MainPID", "NRestarts")
    assert after["MainPID"] != before["MainPID"]
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    wait_until(lambda: is_online(site), 15, 0.2, what="the phone online after the restart")
    assert [s["mac"] for s in sessions(site)] == [PHONE_MAC]


def test_gateway_past_its_memory_ceiling_is_started_again_by_systemd(site, phone):
    """``[gateway] restart_above_mb`` below the gateway's own size: at its first tick it
    stops with status 75 and systemd (``Restart=always``) starts it again, and again; the
    phone stays online. Back at the usual figure it stays up, the session the same.
    (Here, not with the unit's ``MemoryMax=``: nspawn gives this container no memory
    controller of its own.)"""
    dev = site.device
    conf = dev.root / "etc/hotspot/hotspot.toml"
    usual = conf.read_text()
    data = tomllib.loads(usual)
    data.setdefault("gateway", {})["restart_above_mb"] = 32
    before = int(dev.show("hotspot-gateway", "NRestarts")["NRestarts"])
    try:
        write_toml(conf, data)
        dev.run("systemctl", "restart", "hotspot-gateway")
        wait_until(
            lambda: int(dev.show("hotspot-gateway", "NRestarts")["NRestarts"]) >= before + 2,
            60,
            0.5,
            what="hotspot-gateway stopped past its ceiling and started again, twice",
        )
        journal = dev.run(
            "journalctl", "-u", "hotspot-gateway", "--no-pager", "-o", "cat", "-n", "400"
        ).stdout
        assert "past [gateway] restart_above_mb = 32: stopping to be started again" in journal
        assert "status=75/" in journal, journal[-3000:]
        assert is_online(site, timeout=3)
    finally:
        conf.write_text(usual)
        dev.run("systemctl", "restart", "hotspot-gateway")
    wait_until(
        lambda: dev.systemctl("is-active", "hotspot-gateway") == "active" and is_online(site),
        30,
        0.5,
        what="hotspot-gateway up again on the usual ceiling, the phone online",
    )
    settled = dev.show("hotspot-gateway", "NRestarts")["NRestarts"]
    time.sleep(5)  # two ticks and more: no stop this time
    assert dev.show("hotspot-gateway", "NRestarts")["NRestarts"] == settled
    assert [s["mac"] for s in sessions(site)] == [PHONE_MAC]


# A phone's datagrams to the upstream, every 20 ms, and the upstream's record of each
# arrival (the monotonic clock, shared with the container and the test).
UDP_PORT = 9999
UDP_SEND = f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while True:
    try:
        s.sendto(b"x", ("{UPSTREAM_IP}", {UDP_PORT}))
    except OSError:
        pass
    time.sleep(0.02)
"""
UDP_RECORD = f"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{UPSTREAM_IP}", {UDP_PORT}))
with open(sys.argv[1], "a") as log:
    while True:
        s.recvfrom(64)
        log.write(f"{{time.monotonic():.3f}}\\n")
        log.flush()
"""


@pytest.fixture(scope="module")
def udp_arrivals(site, phone, work):
    """The phone sends a datagram to the upstream every 20 ms from now on; returns the
    upstream's log of arrival times."""
    log = work / "udp-arrivals.log"
    site.bed.popen(site.up, "python3", "-c", UDP_RECORD, str(log))
    time.sleep(0.5)
    site.bed.popen(site.phone.ns, "python3", "-c", UDP_SEND)
    wait_until(log.exists, 10, 0.1, what="the first datagram at the upstream")
    return log


def arrivals(log: Path, after: float, before: float) -> list[float]:
    times = [float(t) for t in log.read_text().split()]
    return [t for t in times if after < t < before]


def online_after_gateway_start(site: Site, start_boot, udp_log: Path) -> dict[str, float]:
    """Boot again (``start_boot``), wire the cables, and measure when the phone is online
    again relative to the gateway's start and to its READY (the same monotonic clock on both
    sides: there is no time namespace). Also the machine's load, which the start-up depends
    on."""
    dev = site.device
    load_before = os.getloadavg()[0]
    start_boot()
    site.wire()
    new_boot = site.unplugged_at
    first_online = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if is_online(site, timeout=0.5):
            first_online = time.monotonic()
            break
        time.sleep(0.1)
    assert first_online is not None, dev.console_tail()
    dev.wait_booted()
    gw = dev.show(
        "hotspot-gateway", "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic"
    )
    started = int(gw["ExecMainStartTimestampMonotonic"]) / 1e6
    ready = int(gw["ActiveEnterTimestampMonotonic"]) / 1e6
    return {
        "gateway_start_to_ready_s": round(ready - started, 2),
        "online_after_gateway_start_s": round(first_online - started, 2),
        "online_after_gateway_ready_s": round(first_online - ready, 2),
        "load_1min": round(max(load_before, os.getloadavg()[0]), 1),
        # the logged-in phone's datagrams that reached the upstream before the gateway ran
        "forwarded_before_gateway_start": len(arrivals(udp_log, new_boot, started)),
    }


def assert_back_online(site: Site, figures: dict[str, float]) -> None:
    """Online again without logging in: the session came back with the data path, before
    the gateway said READY (the phone is online at READY at the latest, give or take one
    poll). The gateway's own start-up (Python, nftables, tc) is recorded, not bounded here:
    on these shared 2 cores it depends on the others' load (docs/reliability.md)."""
    assert figures["online_after_gateway_start_s"] > 0, figures  # not before the gateway
    assert figures["online_after_gateway_ready_s"] <= ONLINE_WITHIN_S, figures
    # Nothing is forwarded before the gateway's table is in place: IPv4 forwarding was set at
    # boot by /etc/sysctl.d/90-hotspot.conf and routed the LAN unfiltered until then.
    assert figures["forwarded_before_gateway_start"] == 0, figures
    journal = site.device.run(
        "journalctl", "-b", "-u", "hotspot-gateway", "--no-pager", "-o", "cat"
    ).stdout
    assert "1 sessions restored" in journal, journal
    assert [s["mac"] for s in sessions(site)] == [PHONE_MAC]


def test_reboot_phone_online_again_without_logging_in(site, phone, udp_arrivals, work):
    dev = site.device
    old_pid1 = dev.pid1()

    def reboot() -> None:
        dev.run("systemctl", "reboot", check=False)
        wait_until(
            lambda: dev.pid1() not in (None, old_pid1),
            120,
            0.05,
            what="the container booting again",
        )

    figures = online_after_gateway_start(site, reboot, udp_arrivals)
    (work / "reboot.json").write_text(json.dumps(figures))
    print("after systemctl reboot:", figures)
    assert dev.exits[-1] == booted.REBOOT_EXIT  # nspawn said "reboot" and booted it again
    assert_back_online(site, figures)


def test_power_cut_then_cold_boot_phone_online_again(site, phone, udp_arrivals, work):
    dev = site.device

    def power_cut_and_boot() -> None:
        dev.kill()
        dev.start()

    figures = online_after_gateway_start(site, power_cut_and_boot, udp_arrivals)
    (work / "power_cut.json").write_text(json.dumps(figures))
    print("after a power cut:", figures)
    assert_back_online(site, figures)
    check = dev.run(
        "python3",
        "-c",
        "import sqlite3; print(sqlite3.connect('/var/lib/hotspot/hotspot.db')"
        ".execute('PRAGMA integrity_check').fetchone()[0])",
    )
    assert check.stdout.strip() == "ok"
    # Nothing left failed after a cold boot.
    assert dev.systemctl("is-system-running") == "running", dev.systemctl("--failed")
