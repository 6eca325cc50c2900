"""Speed schedules (issue #13, item 6): the configuration and which rates are in force."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import zoneinfo

import pytest

from hotspot import config as config_mod
from hotspot.errors import ConfigError
from hotspot.speed_schedule import next_edge, speed_at, window_at
from hotspot.timeutil import zone_name

WIB = zoneinfo.ZoneInfo("Asia/Jakarta")  # UTC+7
NIGHT = {"from": "22:00", "to": "05:00", "down_kbps": 8000, "up_kbps": 2000}
SCHOOL = {"from": "07:00", "to": "13:30", "down_kbps": 256, "up_kbps": 128}


def tier(*windows: dict) -> config_mod.Tier:
    cfg = config_mod.load(overrides={"tiers": {"free": {"schedule": list(windows)}}})
    return cfg.tiers["free"]


def utc_at_wib(hour: int, minute: int = 0, day: int = 28) -> dt.datetime:
    """Naive UTC of that wall-clock time in Jakarta on that day of November 2026."""
    local = dt.datetime(2026, 11, day, hour, minute, tzinfo=WIB)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def test_no_schedule_means_the_tiers_own_rates():
    free = config_mod.load().tiers["free"]
    assert free.schedule == ()
    sp = speed_at(free, utc_at_wib(23), WIB)
    assert (sp.down_kbps, sp.up_kbps, sp.window, sp.until) == (1024, 512, None, None)
    assert next_edge([free], utc_at_wib(23), WIB) is None


@pytest.mark.parametrize(
    ("hour", "minute", "in_window"),
    [
        (21, 59, False),
        (22, 0, True),  # the start is inside
        (23, 59, True),
        (0, 0, True),  # across midnight
        (4, 59, True),
        (5, 0, False),  # the end is not
        (12, 0, False),
    ],
)
def test_a_window_across_midnight(hour, minute, in_window):
    night = tier(NIGHT)
    assert (window_at(night, utc_at_wib(hour, minute), WIB) is not None) is in_window
    sp = speed_at(night, utc_at_wib(hour, minute), WIB)
    assert (sp.down_kbps, sp.up_kbps) == ((8000, 2000) if in_window else (1024, 512))


def test_until_is_the_windows_next_end_in_utc():
    night = tier(NIGHT)
    # 23:00 WIB on the 28th: the window ends at 05:00 WIB on the 29th = 22:00 UTC on the 28th.
    assert speed_at(night, utc_at_wib(23), WIB).until == dt.datetime(2026, 11, 28, 22, 0)
    # 01:00 WIB on the 29th: the same end.
    assert speed_at(night, utc_at_wib(1, day=29), WIB).until == dt.datetime(2026, 11, 28, 22, 0)


def test_next_edge_over_two_windows():
    both = tier(NIGHT, SCHOOL)
    assert next_edge([both], utc_at_wib(6), WIB) == utc_at_wib(7)
    assert next_edge([both], utc_at_wib(7), WIB) == utc_at_wib(13, 30)  # strictly after
    assert next_edge([both], utc_at_wib(14), WIB) == utc_at_wib(22)
    assert next_edge([both], utc_at_wib(23), WIB) == utc_at_wib(5, day=29)
    assert speed_at(both, utc_at_wib(9), WIB).down_kbps == 256


@pytest.mark.parametrize(
    "windows",
    [
        [NIGHT, {"from": "04:00", "to": "06:00", "down_kbps": 100, "up_kbps": 100}],
        [NIGHT, {"from": "23:00", "to": "23:30", "down_kbps": 100, "up_kbps": 100}],
        [NIGHT, {"from": "21:00", "to": "01:00", "down_kbps": 100, "up_kbps": 100}],
        [SCHOOL, {"from": "06:00", "to": "22:00", "down_kbps": 100, "up_kbps": 100}],
        [SCHOOL, SCHOOL],
    ],
)
def test_overlapping_windows_are_refused(windows):
    with pytest.raises(ConfigError, match=r"tiers\.free\.schedule\[1\]: .* overlaps schedule\[0\]"):
        tier(*windows)


def test_windows_that_touch_are_fine():
    morning = {"from": "05:00", "to": "07:00", "down_kbps": 2048, "up_kbps": 512}
    t = tier(NIGHT, morning, SCHOOL)
    assert [w.label for w in t.schedule] == ["22:00–05:00", "05:00–07:00", "07:00–13:30"]


@pytest.mark.parametrize(
    ("window", "key"),
    [
        ({**NIGHT, "from": "24:00"}, "schedule[0].from"),
        ({**NIGHT, "from": "7:00"}, "schedule[0].from"),
        ({**NIGHT, "to": "05:60"}, "schedule[0].to"),
        ({**NIGHT, "to": 5}, "schedule[0].to"),
        ({**NIGHT, "to": "22:00"}, "schedule[0].to"),  # empty window
        ({**NIGHT, "down_kbps": 0}, "schedule[0].down_kbps"),
        ({**NIGHT, "up_kbps": "fast"}, "schedule[0].up_kbps"),
        ({k: v for k, v in NIGHT.items() if k != "up_kbps"}, "schedule[0].up_kbps"),
        ({**NIGHT, "days": "mon"}, "schedule[0].days"),
        ("22:00-05:00", "schedule[0]"),
    ],
)
def test_bad_windows_name_their_key(window, key):
    with pytest.raises(ConfigError) as err:
        tier(window)
    assert err.value.key == f"tiers.free.{key}"
    assert "\n" not in str(err.value)


def test_schedule_must_be_a_list_of_at_most_24():
    with pytest.raises(ConfigError, match=r"tiers\.free\.schedule: must be a list"):
        config_mod.load(overrides={"tiers": {"free": {"schedule": NIGHT}}})
    hourly = [
        {"from": f"{h:02d}:00", "to": f"{h:02d}:30", "down_kbps": 100, "up_kbps": 100}
        for h in range(24)
    ]
    assert len(tier(*hourly).schedule) == 24
    too_many = hourly + [{"from": "00:40", "to": "00:50", "down_kbps": 100, "up_kbps": 100}]
    with pytest.raises(ConfigError, match="at most 24 windows"):
        tier(*too_many)


def test_config_check_exits_2_with_one_line(tmp_path, monkeypatch):
    path = tmp_path / "hotspot.toml"
    path.write_text(
        "[tiers.free]\n"
        'schedule = [{ from = "22:00", to = "05:00", down_kbps = 8000, up_kbps = 2000 },\n'
        '            { from = "04:00", to = "06:00", down_kbps = 100, up_kbps = 100 }]\n'
    )
    monkeypatch.delenv(config_mod.ENV_CONFIG, raising=False)
    proc = subprocess.run(
        [sys.executable, "-m", "hotspot_cli", "--config", str(path), "config", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "tiers.free.schedule[1]" in lines[0] and "overlaps" in lines[0]
    # A good schedule prints back as it was written.
    path.write_text(
        "[tiers.free]\n"
        'schedule = [{ from = "22:00", to = "05:00", down_kbps = 8000, up_kbps = 2000 }]\n'
    )
    ok = subprocess.run(
        [sys.executable, "-m", "hotspot_cli", "--config", str(path), "config", "check", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert '"from": "22:00"' in ok.stdout


@pytest.mark.parametrize(
    ("zone", "short"),
    [("Asia/Jakarta", "WIB"), ("Asia/Makassar", "WITA"), ("Asia/Jayapura", "WIT")],
)
def test_zone_short_names(zone, short):
    assert zone_name(zoneinfo.ZoneInfo(zone), dt.datetime(2026, 11, 28, 3, 0)) == short
