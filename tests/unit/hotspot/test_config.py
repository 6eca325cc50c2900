from __future__ import annotations

import pytest

from hotspot import config as config_mod
from hotspot.errors import ConfigError


def test_defaults_are_valid():
    cfg = config_mod.load()
    assert cfg.network.lan_interface == "br-lan"
    assert str(cfg.network.gateway_ip) == "10.10.0.1"
    assert cfg.tier("free").daily_mb == 300
    assert cfg.source == "defaults"


def test_layers_file_then_overrides(tmp_path, monkeypatch):
    path = tmp_path / "h.toml"
    path.write_text(
        '[village]\nname = "Desa Muara"\n[network]\nportal_port = 9000\n'
        "[tiers.gold]\ndown_kbps = 10000\nup_kbps = 4000\nsession_minutes = 0\n"
        "idle_minutes = 0\ndaily_minutes = 0\ndaily_mb = 0\n"
    )
    cfg = config_mod.load(path, overrides={"network": {"portal_port": 9100}})
    assert cfg.village.name == "Desa Muara"
    assert cfg.network.portal_port == 9100  # overrides win
    assert cfg.network.wan_interface == "eth0"  # defaults fill the rest
    assert set(cfg.tiers) == {"free", "premium", "gold"}
    monkeypatch.setenv("HOTSPOT_CONFIG", str(path))
    assert config_mod.load().village.name == "Desa Muara"


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"network": {"lan_address": "10.10.0.300/22"}}, "network.lan_address"),
        ({"network": {"lan_address": "10.0.0.1/8"}}, "network.lan_address"),
        ({"network": {"lan_address": "10.10.0.0/22"}}, "network.lan_address"),
        ({"network": {"portal_port": 70000}}, "network.portal_port"),
        ({"network": {"portal_port": "80"}}, "network.portal_port"),
        ({"network": {"uplink_down_kbps": -5}}, "network.uplink_down_kbps"),
        ({"network": {"lan_interface": "this-name-is-too-long"}}, "network.lan_interface"),
        ({"network": {"wan_interface": "br-lan"}}, "network.wan_interface"),
        ({"network": {"walled_garden": ["example.org"]}}, "network.walled_garden[0]"),
        ({"network": {"lan_tcp_ports": [22, 0]}}, "network.lan_tcp_ports[1]"),
        ({"network": {"colour": "blue"}}, "network.colour"),
        ({"village": {"timezone": "Mars/Base"}}, "village.timezone"),
        ({"village": {"name": ""}}, "village.name"),
        ({"database": {"url": "mysql://x"}}, "database.url"),
        ({"control": {"socket": "relative.sock"}}, "control.socket"),
        ({"gateway": {"leaf_qdisc": "cake"}}, "gateway.leaf_qdisc"),
        ({"gateway": {"tick_seconds": 0}}, "gateway.tick_seconds"),
        ({"tiers": {"free": {"down_kbps": 0}}}, "tiers.free.down_kbps"),
        ({"tiers": {"free": {"speed": 3}}}, "tiers.free.speed"),
        ({"tiers": {"Gold Tier": {}}}, "tiers.Gold Tier"),
        ({"tiers": {"gold": {"down_kbps": 100}}}, "tiers.gold.up_kbps"),
        ({"bogus": {}}, "bogus"),
    ],
)
def test_bad_values_name_their_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        config_mod.load(overrides=overrides)
    assert err.value.key == key
    assert str(err.value).startswith(key + ":")
    assert "\n" not in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        config_mod.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[network\nportal_port = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_mod.load(bad)


def test_printer_is_off_by_default_and_checked():
    """[printer] (#13.3): off, /dev/usb/lp0, 58 mm unless told; bad values named."""
    p = config_mod.load().printer
    assert (p.enabled, p.device, p.width_mm) == (False, "/dev/usb/lp0", 58)
    on = config_mod.load(overrides={"printer": {"enabled": True, "width_mm": 80}}).printer
    assert on.enabled and on.width_mm == 80
    for bad, key in (
        ({"width_mm": 72}, "printer.width_mm"),
        ({"enabled": "yes"}, "printer.enabled"),
        ({"device": "lp0"}, "printer.device"),
        ({"paper": 58}, "printer.paper"),
    ):
        with pytest.raises(ConfigError) as err:
            config_mod.load(overrides={"printer": bad})
        assert key in str(err.value), bad
