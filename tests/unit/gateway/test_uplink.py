"""The uplink monitor (issue #11, item 3) on fakes: the WAN link's state and a probe that
answers or not, with hysteresis — one lost probe is no outage, an outage is a window (start
= the first failed round, end = the first answered one, cause), a restart takes up the open
window, a clock stepped back never makes a negative window, a full disk loses nothing. And
the real TCP probe against real sockets on the loopback."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.uplink import UplinkMonitor, tcp_probe
from hotspot import config as config_mod
from hotspot.errors import ConfigError
from hotspot.model_uplink import OutageCause, UplinkOutage
from hotspot.uplink import open_outage
from tests.unit.conftest import device_overrides
from tests.unit.fakes import Clock
from tests.unit.storage_full import FullStorage


class Uplink:
    """The fake world: the WAN's operstate and whether the probe target answers."""

    def __init__(self) -> None:
        self.link = "up"
        self.answers = True
        self.probes = 0

    def state(self, _ifname: str) -> str | None:
        return self.link

    def probe(self, targets, timeout) -> bool:
        assert targets and timeout > 0
        self.probes += 1
        return self.answers


@pytest.fixture
def cfg(tmp_path):
    overrides = device_overrides(tmp_path)
    (tmp_path / "walled-hosts").mkdir()
    overrides["uplink"] = {
        "probe_targets": ["192.0.2.1:443"],
        "down_after": 3,
        "up_after": 2,
        "walled_hosts_dir": str(tmp_path / "walled-hosts"),
    }
    return config_mod.load(overrides=overrides)


@pytest.fixture
def world():
    return Uplink()


def monitor(cfg, db, clock, world) -> UplinkMonitor:
    return UplinkMonitor(cfg, db, clock=clock, link_state=world.state, probe=world.probe)


def rounds(mon: UplinkMonitor, clock: Clock, n: int, seconds: float = 20) -> None:
    for _ in range(n):
        mon.check()
        clock.advance(seconds=seconds)


def windows(db) -> list[tuple]:
    with Session(db) as s:
        return [
            (r.started_at, r.ended_at, r.cause)
            for r in s.scalars(select(UplinkOutage).order_by(UplinkOutage.id))
        ]


def test_a_lost_probe_or_two_is_not_an_outage(cfg, db, clock, world):
    mon = monitor(cfg, db, clock, world)
    for _ in range(5):
        world.answers = False
        rounds(mon, clock, 2)  # down_after is 3
        world.answers = True
        rounds(mon, clock, 1)
    assert windows(db) == [] and not mon.down and open_outage(db) is None


def test_black_holing_is_a_window_from_the_first_failed_round(cfg, db, clock, world):
    mon = monitor(cfg, db, clock, world)
    rounds(mon, clock, 2)
    world.answers = False
    start = clock.now
    rounds(mon, clock, 3)
    assert mon.down and open_outage(db) == (start, OutageCause.UNREACHABLE)
    assert mon.status()["state"] == "down" and mon.status()["cause"] == "unreachable"
    rounds(mon, clock, 3 * 24 * 180)  # three days of 20 s rounds: still the one window
    world.answers = True
    back = clock.now
    rounds(mon, clock, 1)  # one answer is not the end either (up_after is 2)
    assert mon.down
    rounds(mon, clock, 1)
    assert not mon.down and open_outage(db) is None
    assert windows(db) == [(start, back, OutageCause.UNREACHABLE)]


def test_a_link_down_is_told_apart_and_needs_no_probe(cfg, db, clock, world):
    mon = monitor(cfg, db, clock, world)
    world.link = "lowerlayerdown"  # a veth or bridge whose other end is gone
    start = clock.now
    rounds(mon, clock, 3)
    assert world.probes == 0
    assert windows(db) == [(start, None, OutageCause.LINK)]
    world.link = "unknown"  # drivers without carrier reporting: the probe decides
    rounds(mon, clock, 2)
    assert not mon.down and world.probes == 2


def test_a_missing_wan_interface_is_a_link_outage(cfg, db, clock, world):
    world.link = None
    mon = monitor(cfg, db, clock, world)
    rounds(mon, clock, 3)
    assert open_outage(db)[1] is OutageCause.LINK


def test_a_restart_during_the_outage_takes_up_the_open_window(cfg, db, clock, world):
    mon = monitor(cfg, db, clock, world)
    world.answers = False
    start = clock.now
    rounds(mon, clock, 3)
    again = monitor(cfg, db, clock, world)  # the gateway restarted, still no internet
    assert again.down and again.outage_since == start
    rounds(again, clock, 10)
    world.answers = True
    rounds(again, clock, 2)
    assert len(windows(db)) == 1 and windows(db)[0][1] is not None


def test_a_clock_stepped_back_never_makes_a_negative_window(cfg, db, clock, world):
    mon = monitor(cfg, db, clock, world)
    world.answers = False
    rounds(mon, clock, 3)
    clock.advance(hours=-5)  # no RTC: NTP corrects a clock that ran ahead
    world.answers = True
    rounds(mon, clock, 2)
    ((start, end, _),) = windows(db)
    assert end == start


def test_an_outage_on_a_full_disk_is_written_when_there_is_room(cfg, db, clock, world):
    full = FullStorage(db)
    mon = monitor(cfg, db, clock, world)
    world.answers = False
    start = clock.now
    full.full = True
    rounds(mon, clock, 5)
    assert windows(db) == [] and not mon.down and mon.status()["last_error"]
    full.full = False
    rounds(mon, clock, 1)
    assert windows(db) == [(start, None, OutageCause.UNREACHABLE)]
    world.answers = True
    rounds(mon, clock, 1)
    full.full = True
    rounds(mon, clock, 3)
    assert mon.down  # the end could not be written: still down, tried again
    full.full = False
    rounds(mon, clock, 1)
    assert not mon.down and windows(db)[0][1] is not None


def test_without_probe_targets_only_the_link_counts(tmp_path, db, clock, world):
    cfg = config_mod.load(overrides=device_overrides(tmp_path))
    assert cfg.uplink.probe_targets == ()
    world.answers = False
    mon = monitor(cfg, db, clock, world)
    rounds(mon, clock, 5)
    assert not mon.down and world.probes == 0


def test_the_walled_resolvers_hosts_file_exists_exactly_during_an_outage(
    cfg, db, clock, world, tmp_path
):
    hosts = tmp_path / "walled-hosts" / "uplink-down"
    hosts.write_text("stale, from before a power cut\n")
    mon = monitor(cfg, db, clock, world)
    assert not hosts.exists()  # no outage open: a stale file goes at start
    world.answers = False
    rounds(mon, clock, 3)
    names = hosts.read_text().splitlines()[1].split()
    assert names[0] == "10.10.0.1"  # the gateway: walled port 80 goes to the portal anyway
    assert set(names[1:]) == set(cfg.network.captive_probe_hosts)
    assert oct(hosts.stat().st_mode & 0o777) == "0o644"  # dnsmasq runs as its own user
    hosts.unlink()
    monitor(cfg, db, clock, world)  # a restart during the outage writes it again
    assert hosts.exists()
    world.answers = True
    rounds(mon, clock, 2)
    assert not hosts.exists() and list(hosts.parent.iterdir()) == []


def test_a_missing_hosts_folder_changes_nothing_else(cfg, db, clock, world, tmp_path, caplog):
    (tmp_path / "walled-hosts").rmdir()
    mon = monitor(cfg, db, clock, world)
    world.answers = False
    rounds(mon, clock, 3)
    assert mon.down and "walled hosts file" in caplog.text


def test_the_collector_is_the_default_target(tmp_path):
    overrides = device_overrides(tmp_path)
    overrides["sync"] = {
        "upstream_url": "https://hotspot.jambiprov.go.id",
        "gateway_id": "desa-01",
        "secret": "s" * 40,
    }
    cfg = config_mod.load(overrides=overrides)
    assert cfg.uplink.probe_targets == (("hotspot.jambiprov.go.id", 443),)
    overrides["uplink"] = {"probe_targets": ["1.1.1.1:53", "[2606:4700::1111]:53"]}
    cfg = config_mod.load(overrides=overrides)
    assert cfg.uplink.probe_targets == (("1.1.1.1", 53), ("2606:4700::1111", 53))


@pytest.mark.parametrize(
    "uplink, key",
    [
        ({"probe_targets": ["1.1.1.1"]}, "uplink.probe_targets[0]"),
        ({"probe_targets": ["1.1.1.1:70000"]}, "uplink.probe_targets[0]"),
        ({"probe_targets": [53]}, "uplink.probe_targets[0]"),
        ({"probe_targets": "1.1.1.1:53"}, "uplink.probe_targets"),
        ({"down_after": 0}, "uplink.down_after"),
        ({"probe_seconds": -1}, "uplink.probe_seconds"),
        ({"probe_every": 5}, "uplink.probe_every"),
    ],
)
def test_bad_settings_name_the_key(tmp_path, uplink, key):
    overrides = device_overrides(tmp_path)
    overrides["uplink"] = uplink
    with pytest.raises(ConfigError) as err:
        config_mod.load(overrides=overrides)
    assert err.value.key == key


def test_the_tcp_probe_on_real_sockets():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert tcp_probe([("127.0.0.1", port)], 1.0)
    # Nothing listens there any more: the host refuses, which is an answer (it is there).
    assert tcp_probe([("127.0.0.1", port)], 1.0)
    # A name that does not resolve, then a target that answers: the second one counts.
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        good = ("127.0.0.1", listening.getsockname()[1])
        assert tcp_probe([("no-such-host.invalid", 80), good], 1.0)
    assert not tcp_probe([("no-such-host.invalid", 80)], 1.0)
