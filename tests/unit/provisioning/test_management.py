"""The operator network ([management], #10.12): a WPA2 operator SSID as a second BSS, a wired
management port out of the LAN bridge, their own subnet with DHCP, declared to the console."""

from __future__ import annotations

import shutil

import pytest

from hotspot import config as config_mod
from hotspot.errors import ConfigError
from provisioning import render as R
from provisioning import validate as V

HOTSPOT = "/opt/hotspot/venv/bin/hotspot"
MANAGEMENT = {
    "address": "192.168.88.1/24",
    "ssid": "Operator BUMDes",
    "passphrase": "kios-aman-2026",
    "wired_port": "eth1",
}


def managed(**management):
    return config_mod.load(
        overrides={
            "network": {"lan_ports": ["eth1", "eth2"]},
            "management": {**MANAGEMENT, **management},
        }
    )


def files(cfg):
    return {f.path: f for f in R.render(cfg, b"# the village file\n", hotspot=HOTSPOT)}


def lines(f):
    return [x for x in f.content.decode().splitlines() if x and not x.startswith("#")]


def test_no_management_network_by_default():
    out = files(config_mod.load())
    assert not {R.MGMT_NETDEV, R.MGMT_NETWORK, R.MGMT_PORT_NETWORK, R.MGMT_DNSMASQ} & set(out)
    assert "bss=" not in out[R.HOSTAPD].content.decode()
    assert out[R.HOSTAPD].mode == 0o644


def test_the_operator_ssid_is_a_wpa2_bss_in_its_own_bridge():
    cfg = managed()
    f = files(cfg)[R.HOSTAPD]
    conf = lines(f)
    tail = conf[conf.index("bss=wlan0op") :]
    assert tail == [
        "bss=wlan0op",
        "bridge=br-mgmt",
        "ssid=Operator BUMDes",
        "wpa=2",
        "wpa_key_mgmt=WPA-PSK",
        "rsn_pairwise=CCMP",
        "wpa_passphrase=kios-aman-2026",
        "ignore_broadcast_ssid=0",
        "ap_isolate=1",
    ]
    head = conf[: conf.index("bss=wlan0op")]
    assert "bridge=br-lan" in head and not any(x.startswith("wpa") for x in head)
    assert f.mode == 0o600  # the passphrase is in it
    assert V.check_hostapd(f, cfg).ok


def test_the_hostapd_check_refuses_an_operator_bss_without_wpa2():
    cfg = managed()
    f = files(cfg)[R.HOSTAPD]
    bad = R.File(f.path, f.content.replace(b"wpa=2\n", b""), f.mode, f.kind)
    assert not V.check_hostapd(bad, cfg).ok
    open_lan = R.File(f.path, b"wpa=2\n" + f.content, f.mode, f.kind)
    assert not V.check_hostapd(open_lan, cfg).ok


def test_the_wired_port_leaves_the_lan_bridge_for_the_management_bridge():
    out = files(managed())
    assert "Name=eth2" in lines(out[R.PORTS_NETWORK])
    assert "Name=eth1 eth2" not in out[R.PORTS_NETWORK].content.decode()
    port = lines(out[R.MGMT_PORT_NETWORK])
    assert "Name=eth1" in port and "Bridge=br-mgmt" in port
    assert "Address=192.168.88.1/24" in lines(out[R.MGMT_NETWORK])
    assert "Kind=bridge" in lines(out[R.MGMT_NETDEV])
    for path in (R.MGMT_NETDEV, R.MGMT_NETWORK, R.MGMT_PORT_NETWORK):
        assert V.check_ini(out[path]).ok, path
    nm = out[R.NM_CONF].content.decode()
    assert "interface-name:br-mgmt" in nm and "interface-name:wlan0op" in nm


def test_dhcp_on_the_management_network_is_tagged(tmp_path):
    f = files(managed())[R.MGMT_DNSMASQ]
    assert lines(f) == [
        "interface=br-mgmt",
        "dhcp-range=set:management,192.168.88.128,192.168.88.254,255.255.255.0,12h",
        "dhcp-option=tag:management,option:router,192.168.88.1",
        "dhcp-option=tag:management,option:dns-server,192.168.88.1",
    ]
    if shutil.which("dnsmasq") or shutil.which("/usr/sbin/dnsmasq"):
        target = tmp_path / f.path.lstrip("/")
        target.parent.mkdir(parents=True)
        target.write_bytes(f.content)
        check = V.check_dnsmasq(f, tmp_path)
        assert check.ok, check.line()


def test_a_wired_port_alone_needs_no_ssid():
    out = files(managed(ssid="", passphrase=""))
    assert "bss=" not in out[R.HOSTAPD].content.decode() and R.MGMT_PORT_NETWORK in out


def test_the_management_network_is_the_consoles():
    from portal.operator.blueprint import on_management_network

    cfg = managed()
    assert on_management_network(cfg, "192.168.88.130")
    assert not on_management_network(cfg, "10.10.0.50")


@pytest.mark.parametrize(
    "management, key",
    [
        ({"address": "10.10.0.1/24"}, "management.address"),  # overlaps the LAN
        ({"address": "192.168.88.1"}, "management.address"),  # a /32
        ({"address": "bogus"}, "management.address"),
        ({"passphrase": "kurang"}, "management.passphrase"),
        ({"ssid": "WiFi Desa Gratis"}, "management.ssid"),  # the villagers' own
        ({"wifi_interface": "wlan0"}, "management.wifi_interface"),
        ({"wired_port": "eth0"}, "management.wired_port"),  # the uplink
        ({"address": ""}, "management.address"),  # an SSID without a network
    ],
)
def test_bad_management_values_name_their_key(management, key):
    with pytest.raises(ConfigError) as exc:
        managed(**management)
    assert exc.value.key == key
