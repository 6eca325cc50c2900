"""Time without a real-time clock (issue #11, item 2): the clock's state from the kernel,
the step watch, the test-only shifted clock and the NTP settings."""

from __future__ import annotations

import datetime as dt

import pytest

from hotspot import config as config_mod
from hotspot.config import ConfigError
from hotspot.health import clock_synchronised
from hotspot.timeutil import ClockWatch, ShiftedClock, utcnow


def test_the_kernel_is_asked_without_privilege():
    assert clock_synchronised() in (True, False, None)


class Clocks:
    def __init__(self) -> None:
        self.wall = dt.datetime(2026, 11, 28, 3, 0)
        self.mono = 100.0

    def pass_(self, seconds: float) -> None:
        self.wall += dt.timedelta(seconds=seconds)
        self.mono += seconds


def test_the_watch_tells_a_step_from_time_passing():
    c = Clocks()
    watch = ClockWatch(30, lambda: c.wall, lambda: c.mono)
    assert watch.step() is None  # the first look only starts watching
    c.pass_(3600)
    assert watch.step() is None
    c.wall += dt.timedelta(seconds=29)  # drift below the tolerance
    assert watch.step() is None
    c.wall += dt.timedelta(days=3)
    c.pass_(2)
    assert watch.step() == dt.timedelta(days=3)
    c.wall -= dt.timedelta(hours=1)
    assert watch.step() == dt.timedelta(hours=-1)
    assert watch.step() is None


def test_the_shifted_clock_follows_its_file(tmp_path):
    path = tmp_path / "shift"
    clock = ShiftedClock(str(path))
    assert abs((clock() - utcnow()).total_seconds()) < 2  # no file: no shift
    path.write_text("86400")
    assert abs((clock() - utcnow()).total_seconds() - 86400) < 2
    path.write_text("garbage")  # half written: the last shift stands
    assert abs((clock() - utcnow()).total_seconds() - 86400) < 2


def test_ntp_servers_and_the_step_tolerance(tmp_path):
    cfg = config_mod.load(
        overrides={
            "database": {"url": f"sqlite:///{tmp_path}/h.db"},
            "gateway": {"ntp_servers": ["ntp.jambiprov.go.id", "10.1.2.3"]},
        }
    )
    assert cfg.gateway.ntp_servers == ("ntp.jambiprov.go.id", "10.1.2.3")
    assert cfg.gateway.fallback_ntp_servers[0].endswith("pool.ntp.org")
    assert cfg.gateway.clock_step_seconds == 30


@pytest.mark.parametrize(
    "key, value",
    [
        ("ntp_servers", "ntp.example"),  # not a list
        ("ntp_servers", ["ntp.example\nFallbackNTP=evil"]),  # a line of its own
        ("ntp_servers", [""]),
        ("fallback_ntp_servers", [3]),
        ("clock_step_seconds", 0),
    ],
)
def test_bad_clock_settings_name_the_key(tmp_path, key, value):
    with pytest.raises(ConfigError) as err:
        config_mod.load(
            overrides={"database": {"url": f"sqlite:///{tmp_path}/h.db"}, "gateway": {key: value}}
        )
    assert f"gateway.{key}" in str(err.value)
