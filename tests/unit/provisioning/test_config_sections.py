"""[wifi], [dhcp] and the provisioning keys of [network]: defaults, and every bad value
stops the load naming its key."""

from __future__ import annotations

import pytest

from hotspot import config as config_mod
from hotspot.errors import ConfigError


def test_defaults():
    cfg = config_mod.load()
    assert cfg.wifi.enabled and cfg.wifi.ssid == "WiFi Desa Gratis"
    assert (cfg.wifi.interface, cfg.wifi.channel, cfg.wifi.country, cfg.wifi.band) == (
        "wlan0",
        6,
        "ID",
        "g",
    )
    # The hosts below .10 stay free for access points and the like; the gateway is outside.
    assert (cfg.dhcp.range_start, cfg.dhcp.range_end) == ("10.10.0.10", "10.10.3.254")
    assert cfg.dhcp.size == 1013
    assert cfg.dhcp.lease_minutes == 120 and cfg.dhcp.upstream_dns == ()
    assert cfg.network.walled_garden_domains == () and cfg.network.lan_ports == ()


def test_a_typical_pi_file(tmp_path):
    path = tmp_path / "village.toml"
    path.write_text(
        '[network]\nwan_interface = "eth1"\nlan_ports = ["eth0"]\n'
        'walled_garden_domains = ["Belajar.ID.", "kemdikbud.go.id"]\n'
        '[wifi]\nssid = "Wifi Desa Sungai Duren"\nchannel = 36\ncountry = "id"\n'
        '[dhcp]\nrange_start = "10.10.0.50"\nrange_end = "10.10.1.200"\nlease_minutes = 60\n'
        'upstream_dns = ["1.1.1.1", "2606:4700:4700::1111"]\n'
    )
    cfg = config_mod.load(path)
    assert cfg.network.lan_ports == ("eth0",)
    assert cfg.network.walled_garden_domains == ("belajar.id", "kemdikbud.go.id")
    assert (cfg.wifi.channel, cfg.wifi.band, cfg.wifi.country) == (36, "a", "ID")
    assert (cfg.dhcp.range_start, cfg.dhcp.range_end, cfg.dhcp.size) == (
        "10.10.0.50",
        "10.10.1.200",
        407,
    )
    assert cfg.dhcp.upstream_dns == ("1.1.1.1", "2606:4700:4700::1111")


@pytest.mark.parametrize(
    "lan, start, end",
    [
        ("10.10.0.1/22", "10.10.0.10", "10.10.3.254"),
        ("192.168.5.1/24", "192.168.5.10", "192.168.5.254"),
        ("192.168.5.254/24", "192.168.5.1", "192.168.5.253"),  # gateway at the top
        ("10.0.0.1/30", "10.0.0.2", "10.0.0.2"),  # tiny: whatever is left
        ("10.0.0.1/27", "10.0.0.10", "10.0.0.30"),
        ("10.0.0.1/28", "10.0.0.2", "10.0.0.14"),  # small: no hosts held back
    ],
)
def test_automatic_range_leaves_out_the_gateway(lan, start, end):
    cfg = config_mod.load(overrides={"network": {"lan_address": lan}})
    assert (cfg.dhcp.range_start, cfg.dhcp.range_end) == (start, end)


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"wifi": {"ssid": ""}}, "wifi.ssid"),
        ({"wifi": {"ssid": "x" * 33}}, "wifi.ssid"),
        ({"wifi": {"ssid": "é" * 17}}, "wifi.ssid"),  # 17 characters, 34 bytes
        ({"wifi": {"ssid": "line\nbreak"}}, "wifi.ssid"),
        ({"wifi": {"channel": 14}}, "wifi.channel"),
        ({"wifi": {"channel": 0}}, "wifi.channel"),
        ({"wifi": {"channel": 52}}, "wifi.channel"),  # radar detection (DFS): not on a Pi
        ({"wifi": {"channel": "6"}}, "wifi.channel"),
        ({"wifi": {"country": "IDN"}}, "wifi.country"),
        ({"wifi": {"enabled": "yes"}}, "wifi.enabled"),
        ({"wifi": {"interface": "eth0"}}, "wifi.interface"),  # the default uplink
        ({"wifi": {"interface": "br-lan"}}, "wifi.interface"),
        ({"wifi": {"interface": "a very bad name"}}, "wifi.interface"),
        ({"wifi": {"passphrase": "secret"}}, "wifi.passphrase"),
        ({"wifi": "wlan0"}, "wifi"),
        ({"dhcp": {"range_start": "10.10.0.1"}}, "dhcp.range_start"),  # contains the gateway
        ({"dhcp": {"range_start": "10.10.4.10"}}, "dhcp.range_start"),  # outside the LAN
        ({"dhcp": {"range_start": "10.10.0.0"}}, "dhcp.range_start"),  # network address
        ({"dhcp": {"range_end": "10.10.3.255"}}, "dhcp.range_end"),  # broadcast
        ({"dhcp": {"range_end": "banana"}}, "dhcp.range_end"),
        ({"dhcp": {"range_start": "10.10.2.0", "range_end": "10.10.1.0"}}, "dhcp.range_end"),
        ({"dhcp": {"lease_minutes": 1}}, "dhcp.lease_minutes"),
        ({"dhcp": {"lease_minutes": 100000}}, "dhcp.lease_minutes"),
        ({"dhcp": {"upstream_dns": "1.1.1.1"}}, "dhcp.upstream_dns"),
        ({"dhcp": {"upstream_dns": ["1.1.1.1", "dns.google"]}}, "dhcp.upstream_dns[1]"),
        ({"dhcp": {"captive_api_url": "ftp://x/api"}}, "dhcp.captive_api_url"),
        ({"dhcp": {"captive_api_url": 'http://x/"quoted"'}}, "dhcp.captive_api_url"),
        ({"dhcp": {"captive_api_url": "https://x/" + "a" * 250}}, "dhcp.captive_api_url"),
        ({"dhcp": {"lease_time": 60}}, "dhcp.lease_time"),
        ({"network": {"walled_garden_domains": "belajar.id"}}, "network.walled_garden_domains"),
        (
            {"network": {"walled_garden_domains": ["belajar.id", "not a domain"]}},
            "network.walled_garden_domains[1]",
        ),
        ({"network": {"walled_garden_domains": ["localhost"]}}, "network.walled_garden_domains[0]"),
        (
            {"network": {"walled_garden_domains": ["203.0.113.7"]}},
            "network.walled_garden_domains[0]",
        ),
        (
            {"network": {"walled_garden_domains": ["a.id", "A.id"]}},
            "network.walled_garden_domains[1]",
        ),
        ({"network": {"lan_ports": ["eth0"]}}, "network.lan_ports[0]"),  # the default uplink
        ({"network": {"lan_ports": ["eth1", "eth1"]}}, "network.lan_ports[1]"),
        ({"network": {"lan_ports": ["br-lan"]}}, "network.lan_ports[0]"),
        ({"network": {"lan_ports": "eth1"}}, "network.lan_ports"),
    ],
)
def test_bad_values_name_their_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        config_mod.load(overrides=overrides)
    assert err.value.key == key, err.value.message


def test_wifi_disabled_is_still_validated():
    cfg = config_mod.load(overrides={"wifi": {"enabled": False}})
    assert not cfg.wifi.enabled
    with pytest.raises(ConfigError):
        config_mod.load(overrides={"wifi": {"enabled": False, "channel": 99}})


def test_an_explicit_api_url_is_kept():
    url = "https://portal.desa-sungaiduren.id/api/captive"
    assert config_mod.load(overrides={"dhcp": {"captive_api_url": url}}).dhcp.captive_api_url == url
