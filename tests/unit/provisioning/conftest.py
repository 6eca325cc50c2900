"""Fixtures for the provisioning tests: a typical village file, a fake host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioning import render as R
from provisioning.install import Host, Step

VILLAGE_TOML = """\
# Desa Sungai Duren: a Raspberry Pi 4, USB uplink on eth1, access points on eth0.
[village]
name = "Desa Sungai Duren"

[network]
wan_interface = "eth1"
lan_ports = ["eth0"]
walled_garden_domains = ["belajar.id", "kemdikbud.go.id"]

[wifi]
ssid = "WiFi Desa Gratis"
channel = 6
country = "ID"

[dhcp]
lease_minutes = 60

[sync]
upstream_url = "https://hotspot.jambiprov.go.id"
gateway_id = "sungai-duren"
secret = "0123456789abcdef0123456789abcdef-very-secret"
"""


# The units provisioning enables and starts, in that order.
SERVICES = (
    "systemd-networkd",
    "systemd-timesyncd",
    "hostapd",
    "dnsmasq",
    "hotspot-walled-dns",
    "hotspot-dns-reload.path",
    "hotspot-gateway",
    "hotspot-portal",
    "hotspot-sync",
)

# The files a village renders, in order.
RENDERED_PATHS = [
    R.SYSUSERS,
    R.TMPFILES,
    R.CONFIG_PATH,
    R.SYSCTL,
    R.TIMESYNCD,
    R.NETDEV,
    R.NETWORK,
    R.PORTS_NETWORK,
    R.NM_CONF,
    R.DNSMASQ,
    R.DNSMASQ_DROPIN,
    R.WALLED_DNS_CONF,
    R.HOSTAPD,
    R.HOSTAPD_DROPIN,
    "/etc/systemd/system/hotspot-dns-reload.path",
    "/etc/systemd/system/hotspot-dns-reload.service",
    "/etc/systemd/system/hotspot-walled-dns.service",
    "/etc/systemd/system/hotspot-gateway.service",
    "/etc/systemd/system/hotspot-portal.service",
    "/etc/systemd/system/hotspot-sync.service",
]


@pytest.fixture
def village_file(tmp_path) -> Path:
    path = tmp_path / "village.toml"
    path.write_text(VILLAGE_TOML)
    return path


class FakeHost(Host):
    """A machine in a given state; records the steps instead of running them."""

    def __init__(self, *, root: bool = True, provisioned: bool = False):
        self.root = root
        self.users = {"hotspot", "hotspot-sync"} if provisioned else set()
        # our own group: chown to it works for any test runner
        self.groups = {
            "root": 0,
            **({"hotspot": os.getgid(), "hotspot-data": os.getgid()} if provisioned else {}),
        }
        everything = set(SERVICES)
        self.enabled = set(everything) if provisioned else set()
        self.active = set(everything) if provisioned else set()
        self.masked = set() if provisioned else {"hostapd"}
        self.forward = provisioned
        self.db = provisioned
        self.dirs_ok = provisioned
        self.files = (
            {
                "/etc/hotspot/voucher.key",
                "/var/lib/hotspot/portal.secret",
                "/var/lib/hotspot/hotspot.db",
            }
            if provisioned
            else set()
        )
        self.blocked = not provisioned
        self.missing: list[str] = []
        self.done: list[list[str]] = []

    def is_root(self) -> bool:
        return self.root

    def user_exists(self, name: str) -> bool:
        return name in self.users

    def group_gid(self, name: str) -> int | None:
        return self.groups.get(name)

    def missing_packages(self, names):
        return [n for n in names if n in self.missing]

    def unit_enabled(self, unit: str) -> bool:
        return unit.removesuffix(".service") in self.enabled

    def unit_masked(self, unit: str) -> bool:
        return unit in self.masked

    def unit_active(self, unit: str) -> bool:
        return unit.removesuffix(".service") in self.active

    def forwarding(self) -> bool:
        return self.forward

    def dir_ok(self, path, mode, user, group) -> bool:
        return self.dirs_ok

    def db_current(self, url: str) -> bool:
        return self.db

    def file_mode(self, path: str) -> int | None:
        return 0o660 if path in self.files else None

    def exists(self, path: str) -> bool:
        return path in self.files

    def wlan_blocked(self) -> bool:
        return self.blocked

    def do(self, step: Step) -> None:
        self.done.append(step.argv)

    def run(self, argv) -> None:
        self.done.append(list(argv))


@pytest.fixture
def fake_host():
    return FakeHost
