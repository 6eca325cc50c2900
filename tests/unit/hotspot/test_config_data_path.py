"""The [network] keys of the data path before login (issue #10): probe hosts, the walled
resolver's port and rate, the uplink's open ports."""

from __future__ import annotations

import pytest

from hotspot import config as config_mod
from hotspot.errors import ConfigError


def net(**over):
    return config_mod.load(overrides={"network": over}).network


def test_defaults():
    n = config_mod.load().network
    for host in (
        "connectivitycheck.gstatic.com",
        "www.google.com",
        "clients3.google.com",
        "captive.apple.com",
        "www.msftconnecttest.com",
        "dns.msftncsi.com",
        "detectportal.firefox.com",
        "connectivitycheck.platform.hicloud.com",
        "connectivity.samsung.com.cn",
    ):
        assert host in n.captive_probe_hosts
    assert n.walled_dns_port == 5300 and n.walled_dns_rate == 20 and n.wan_tcp_ports == ()


def test_probe_hosts_are_overridable_and_normalised():
    assert net(
        captive_probe_hosts=["Captive.Apple.com.", "captive.apple.com"]
    ).captive_probe_hosts == ("captive.apple.com",)
    assert net(captive_probe_hosts=[]).captive_probe_hosts == ()


@pytest.mark.parametrize(
    "over, key",
    [
        ({"captive_probe_hosts": "captive.apple.com"}, "network.captive_probe_hosts"),
        ({"captive_probe_hosts": ["localhost"]}, "network.captive_probe_hosts[0]"),
        ({"captive_probe_hosts": ["10.0.0.1"]}, "network.captive_probe_hosts[0]"),
        ({"captive_probe_hosts": ["a b.example"]}, "network.captive_probe_hosts[0]"),
        ({"captive_probe_hosts": [5]}, "network.captive_probe_hosts[0]"),
        ({"walled_dns_port": 53}, "network.walled_dns_port"),
        ({"walled_dns_port": 8080}, "network.walled_dns_port"),  # the portal's
        ({"walled_dns_port": "5300"}, "network.walled_dns_port"),
        ({"walled_dns_rate": 0}, "network.walled_dns_rate"),
        ({"wan_tcp_ports": [22, 0]}, "network.wan_tcp_ports[1]"),
        ({"wan_tcp_ports": [True]}, "network.wan_tcp_ports[0]"),
        ({"wan_tcp_ports": 22}, "network.wan_tcp_ports"),
    ],
)
def test_bad_values_name_the_key(over, key):
    with pytest.raises(ConfigError) as err:
        net(**over)
    assert err.value.key == key


def test_wan_ports():
    assert net(wan_tcp_ports=[22, 22, 2222]).wan_tcp_ports == (22, 2222)


def test_a_hand_made_network_table_without_the_new_keys_gets_their_defaults():
    data = config_mod.merge(config_mod.DEFAULTS, {})
    for key in ("captive_probe_hosts", "walled_dns_port", "walled_dns_rate", "wan_tcp_ports"):
        del data["network"][key]
    n = config_mod.validate(data).network
    assert n.walled_dns_port == 5300 and n.captive_probe_hosts
