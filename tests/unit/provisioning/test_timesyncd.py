"""Time without a real-time clock (issue #11, item 2): provisioning sets up systemd-timesyncd
with the province's NTP servers, then the public pool; fake-hwclock keeps the last known
time; the gateway starts after the clock was set forward, never waiting for NTP."""

from __future__ import annotations

import configparser

from hotspot import config as config_mod
from provisioning import install as I
from provisioning import render as R
from provisioning.validate import check_ini


def files_of(village_file, **gateway):
    cfg = config_mod.load(village_file, overrides={"gateway": gateway} if gateway else None)
    return cfg, {f.path: f for f in R.render(cfg, b"# the village file\n", hotspot="/x/hotspot")}


def test_the_province_first_then_the_pool(village_file):
    cfg, files = files_of(village_file, ntp_servers=["ntp.jambiprov.go.id", "10.20.0.1"])
    f = files[R.TIMESYNCD]
    ini = configparser.ConfigParser()
    ini.read_string(f.content.decode())
    assert ini["Time"]["NTP"] == "ntp.jambiprov.go.id 10.20.0.1"
    assert ini["Time"]["FallbackNTP"].split()[0] == "0.id.pool.ntp.org"
    assert f.restarts == ("systemd-timesyncd",)
    assert check_ini(f).ok
    assert "systemd-timesyncd" in R.services(cfg)
    assert {"systemd-timesyncd", "fake-hwclock"} <= set(I.packages_for(cfg))


def test_no_province_servers_means_the_pool(village_file):
    _, files = files_of(village_file)
    assert "\nNTP=\n" in files[R.TIMESYNCD].content.decode()


def test_the_gateway_waits_for_the_saved_clock_not_for_ntp(village_file):
    _, files = files_of(village_file)
    unit = files[f"{R.UNIT_DIR}/hotspot-gateway.service"].content.decode()
    assert "After=time-set.target" in unit
    assert "time-sync.target" not in unit
