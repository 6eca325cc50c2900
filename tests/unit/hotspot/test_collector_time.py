"""The collector's time when NTP cannot be reached (issue #11, item 2): when the gateway steps
its clock to it, and when it never does (synchronised, another boot, too old, a collector
clock that is wrong itself, a step too small or backwards)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from hotspot import collector_time as ct
from hotspot import config as config_mod
from hotspot.errors import ConfigError

REAL = dt.datetime(2026, 11, 30, 8, 0)  # the collector's time (naive UTC)
BOOT = "boot-1"


def ts(moment: dt.datetime) -> float:
    return moment.replace(tzinfo=dt.UTC).timestamp()


class FakeClock:
    """A wall clock the setter moves, a kernel that says what the test wants."""

    def __init__(self, wall: dt.datetime, synced: bool | None = False):
        self.wall_now = wall
        self.kernel_synced = synced
        self.steps: list[float] = []
        self.refuse = False

    def wall(self) -> dt.datetime:
        return self.wall_now

    def synchronised(self) -> bool | None:
        return self.kernel_synced

    def step(self, seconds: float) -> None:
        if self.refuse:
            raise PermissionError(1, "Operation not permitted")
        self.steps.append(seconds)
        self.wall_now += dt.timedelta(seconds=seconds)


@pytest.fixture
def cfg(tmp_path):
    return config_mod.load(overrides={"database": {"url": f"sqlite:///{tmp_path}/gw.db"}})


def watch(cfg, clock: FakeClock, mono: list[float], boot: str = BOOT) -> ct.CollectorClock:
    return ct.CollectorClock(
        cfg, wall=clock.wall, setter=clock, monotonic=lambda: mono[0], boot=boot
    )


def observe(cfg, collector: dt.datetime, mono: float, boot: str = BOOT) -> None:
    ct.write_observation(ct.observation_path(cfg), ct.Observation(ts(collector), mono, boot))


def test_a_clock_days_behind_is_stepped_to_the_collectors_once(cfg):
    clock = FakeClock(REAL - dt.timedelta(days=3))  # fake-hwclock after days switched off
    mono = [1000.0]
    observe(cfg, REAL, 990.0)  # learnt 10 s ago
    w = watch(cfg, clock, mono)
    step = w.check()
    assert step == pytest.approx(3 * 86400 + 10, abs=0.01)
    assert clock.wall_now == REAL + dt.timedelta(seconds=10)
    assert ct.clock_source(cfg, False, BOOT) == "collector"
    assert ct.clock_source(cfg, True, BOOT) == "ntp"
    assert ct.clock_source(cfg, False, "another boot") == "none"
    # the next look finds nothing to do (the kernel still says unsynchronised: a step by
    # clock_settime does not synchronise it)
    mono[0] += ct.CHECK_SECONDS
    assert w.check() is None and clock.steps == [step]


def test_no_step_while_ntp_has_the_clock(cfg):
    clock = FakeClock(REAL - dt.timedelta(days=3), synced=True)
    observe(cfg, REAL, 990.0)
    assert watch(cfg, clock, [1000.0]).check() is None
    clock.kernel_synced = None  # nobody can tell: leave it alone too
    assert watch(cfg, clock, [1000.0]).check() is None
    assert clock.steps == []


def test_small_differences_and_clocks_a_little_ahead_are_left_alone(cfg):
    mono = [1000.0]
    observe(cfg, REAL, 1000.0)
    for wall in (
        REAL - dt.timedelta(seconds=59),  # below collector_time_step_seconds (60)
        REAL + dt.timedelta(minutes=59),  # ahead, but not beyond MAX_AHEAD: never back
    ):
        clock = FakeClock(wall)
        assert watch(cfg, clock, mono).check(force=True) is None and clock.steps == []


def test_a_clock_far_ahead_is_set_back(cfg):
    clock = FakeClock(REAL + dt.timedelta(days=365))
    observe(cfg, REAL, 1000.0)
    step = watch(cfg, clock, [1000.0]).check()
    assert step == pytest.approx(-365 * 86400)


@pytest.mark.parametrize(
    "collector",
    [
        dt.datetime(1970, 1, 2),
        dt.datetime(2025, 12, 31),
        dt.datetime(2100, 1, 1),
        dt.datetime(2200, 6, 1),
    ],
)
def test_a_collector_clock_far_in_the_past_or_future_is_refused(cfg, collector, caplog):
    """Signed or not: a province server on 1970 (or 2200) must not take the villages along."""
    clock = FakeClock(REAL - dt.timedelta(days=3))
    observe(cfg, collector, 1000.0)
    caplog.set_level("INFO")
    assert watch(cfg, clock, [1000.0]).check() is None and clock.steps == []
    assert "wrong itself" in caplog.text


def test_an_observation_of_another_boot_or_too_old_or_from_the_future_is_not_used(cfg):
    clock = FakeClock(REAL - dt.timedelta(days=3))
    observe(cfg, REAL, 1000.0, boot="the boot before the power cut")
    assert watch(cfg, clock, [1000.0]).check() is None
    observe(cfg, REAL, 1000.0)
    assert watch(cfg, clock, [1000.0 + ct.MAX_AGE + 1]).check() is None
    assert watch(cfg, clock, [999.0]).check() is None  # monotonic time not reached yet
    assert clock.steps == []


def test_a_missing_or_broken_observation_and_a_refused_setter_change_nothing(cfg, caplog):
    clock = FakeClock(REAL - dt.timedelta(days=3))
    assert watch(cfg, clock, [1000.0]).check() is None  # no file yet
    ct.observation_path(cfg).write_text('{"collector_time": "soon"')
    assert watch(cfg, clock, [1000.0]).check() is None
    observe(cfg, REAL, 1000.0)
    clock.refuse = True  # no CAP_SYS_TIME (an old unit file)
    caplog.set_level("INFO")
    assert watch(cfg, clock, [1000.0]).check() is None
    assert "cannot be set" in caplog.text
    assert not ct.source_path(cfg).exists()


def test_off_when_the_threshold_is_zero(tmp_path):
    cfg = config_mod.load(
        overrides={
            "database": {"url": f"sqlite:///{tmp_path}/gw.db"},
            "gateway": {"collector_time_step_seconds": 0},
        }
    )
    clock = FakeClock(REAL - dt.timedelta(days=3))
    observe(cfg, REAL, 1000.0)
    assert watch(cfg, clock, [1000.0]).check() is None and clock.steps == []


def test_the_threshold_must_be_a_step_the_gateway_sees(tmp_path):
    with pytest.raises(ConfigError, match="collector_time_step_seconds"):
        config_mod.load(
            overrides={"gateway": {"clock_step_seconds": 30, "collector_time_step_seconds": 10}}
        )


def test_the_test_setter_moves_the_shift_file(tmp_path):
    shift = tmp_path / "shift"
    shift.write_text("-259200\n")
    setter = ct.ShiftFileClock(str(shift))
    setter.step(259190.5)
    assert float(shift.read_text()) == pytest.approx(-9.5)
    (tmp_path / "shift.synced").write_text("0")
    assert setter.synchronised() is False
    (tmp_path / "shift.synced").write_text("1")
    assert setter.synchronised() is True


def test_the_observation_file_is_replaced_whole(cfg):
    observe(cfg, REAL, 5.0)
    observe(cfg, REAL + dt.timedelta(seconds=1), 6.0)
    data = json.loads(ct.observation_path(cfg).read_text())
    assert data == {"collector_time": ts(REAL) + 1, "monotonic": 6.0, "boot": BOOT}
    leftovers = [p for p in ct.observation_path(cfg).parent.iterdir() if ".json." in p.name]
    assert leftovers == []
