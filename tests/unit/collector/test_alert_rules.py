"""The alert rules as pure functions: thresholds, hysteresis (a flapping condition raises once
or never), quiet hours with a clock, time zones around midnight, the [alerts] table."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from collector import alerts as al
from collector import config as cc
from collector.alert_config import AlertsConfig
from collector.alerts import AlertState, Verdict, VillageState
from collector.models import AlertKind, NotifyEvent
from hotspot.errors import ConfigError

NOW = dt.datetime(2026, 11, 30, 3, 0)
CFG = AlertsConfig(raise_after_minutes=10, clear_after_minutes=15)


def verdicts(**state) -> dict[AlertKind, Verdict]:
    v = VillageState(gateway_id="desa-uji", last_seen_at=NOW, **state)
    return {x.kind: x for x in al.judge(CFG, v, NOW)}


def test_thresholds_and_bands():
    assert verdicts(disk_pct=90.0)[AlertKind.DISK].firing is True
    assert verdicts(disk_pct=89.0)[AlertKind.DISK].firing is None  # inside the band
    assert verdicts(disk_pct=87.9)[AlertKind.DISK].firing is False
    assert verdicts(temp_c=80.0)[AlertKind.TEMPERATURE].firing is True
    assert verdicts(temp_c=77.0)[AlertKind.TEMPERATURE].firing is None
    assert verdicts(temp_c=74.0)[AlertKind.TEMPERATURE].firing is False
    assert AlertKind.TEMPERATURE not in verdicts()  # no sensor: nothing to say
    # get_throttled: bit 0 under-voltage now; bits 1-3 throttled now; 16+ only since boot
    v = verdicts(throttled=0x50005)
    assert v[AlertKind.UNDERVOLTAGE].firing is True and v[AlertKind.THROTTLED].firing is True
    assert "0x50005" in v[AlertKind.UNDERVOLTAGE].detail
    v = verdicts(throttled=0x50000)
    assert v[AlertKind.UNDERVOLTAGE].firing is False and v[AlertKind.THROTTLED].firing is False
    assert AlertKind.UNDERVOLTAGE not in verdicts(throttled=None)  # not a Pi
    # The uplink: an outage reported and not ended, or the probe failing
    assert verdicts(open_outage="link")[AlertKind.UPLINK_DOWN].firing is True
    assert verdicts(uplink_ok=False)[AlertKind.UPLINK_DOWN].firing is True
    assert verdicts(uplink_ok=True)[AlertKind.UPLINK_DOWN].firing is False
    # Clock: absent (older gateway) = unknown
    assert verdicts()[AlertKind.CLOCK].firing is None
    assert verdicts(clock_synced=False)[AlertKind.CLOCK].firing is True
    assert verdicts(clock_synced=True)[AlertKind.CLOCK].firing is False


def test_lossy_and_slow_uplink():
    ok = (True, 50.0)
    lost = (False, None)
    assert verdicts(probes=(ok, lost))[AlertKind.UPLINK_LOSSY].firing is None  # too few
    assert verdicts(probes=(ok, ok, ok, lost))[AlertKind.UPLINK_LOSSY].firing is True  # 25 %
    assert verdicts(probes=(ok,) * 9 + (lost,))[AlertKind.UPLINK_LOSSY].firing is None  # 10 %
    assert verdicts(probes=(ok,) * 20)[AlertKind.UPLINK_LOSSY].firing is False
    slow = verdicts(probes=((True, 3500.0),) * 5)[AlertKind.UPLINK_LOSSY]
    assert slow.firing is True and "median 3500 ms" in slow.detail


def test_not_reporting():
    old = VillageState("desa-uji", last_seen_at=NOW - dt.timedelta(minutes=31))
    fresh = VillageState("desa-uji", last_seen_at=NOW - dt.timedelta(minutes=29))
    never = VillageState("desa-uji", last_seen_at=None)

    def firing(v: VillageState) -> bool | None:
        return next(x for x in al.judge(CFG, v, NOW) if x.kind is AlertKind.NOT_REPORTING).firing

    assert firing(old) is True and firing(fresh) is False and firing(never) is None
    # Its own minutes are the wait: it raises at the first evaluation that sees it.
    state, event = al.advance(CFG, None, Verdict(AlertKind.NOT_REPORTING, True), NOW)
    assert event is NotifyEvent.RAISED and state is not None and state.raised_at == NOW


def run(steps: list[bool | None], minutes: int = 1) -> list[tuple[int, NotifyEvent]]:
    """Evaluate a disk condition once a minute; the events and when they came."""
    state: AlertState | None = None
    events = []
    for i, firing in enumerate(steps):
        now = NOW + dt.timedelta(minutes=i * minutes)
        state, event = al.advance(CFG, state, Verdict(AlertKind.DISK, firing), now)
        if event is not None:
            events.append((i, event))
        if state is not None and state.cleared_at is not None:
            state = None  # closed: the next condition is a new alert
    return events


def test_hysteresis_raise_after_and_clear_after():
    # Raised only once it has lasted raise_after_minutes (10), cleared once gone 15 minutes.
    assert run([True] * 12 + [False] * 16) == [(10, NotifyEvent.RAISED), (27, NotifyEvent.CLEARED)]
    # Shorter than raise_after: never raised, never told.
    assert run([True] * 9 + [False] * 30) == []
    # Flapping every few minutes, for two hours: raised once, never cleared while it flaps.
    flapping = ([True] * 3 + [False] * 3) * 20
    assert run(flapping) == []
    flapping = [True] * 11 + ([False] * 5 + [True]) * 20
    assert run(flapping) == [(10, NotifyEvent.RAISED)]
    # Unknown (None) changes nothing either way.
    assert run([True] * 11 + [None] * 60) == [(10, NotifyEvent.RAISED)]


JAKARTA = zoneinfo.ZoneInfo("Asia/Jakarta")  # UTC+7
JAYAPURA = zoneinfo.ZoneInfo("Asia/Jayapura")  # UTC+9


def utc(local: str, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return (
        dt.datetime.fromisoformat(local).replace(tzinfo=tz).astimezone(dt.UTC).replace(tzinfo=None)
    )


@pytest.mark.parametrize(
    "local, held_until",
    [
        ("2026-11-30 21:59", None),
        ("2026-11-30 22:00", "2026-12-01 06:00"),
        ("2026-11-30 23:59", "2026-12-01 06:00"),
        ("2026-12-01 00:00", "2026-12-01 06:00"),  # past midnight: the same night
        ("2026-12-01 05:59", "2026-12-01 06:00"),
        ("2026-12-01 06:00", None),
        ("2026-12-01 12:00", None),
    ],
)
def test_quiet_hours_across_midnight(local, held_until):
    cfg = AlertsConfig(quiet_start=dt.time(22), quiet_end=dt.time(6))
    for tz in (JAKARTA, JAYAPURA):
        got = al.quiet_until(cfg, tz, utc(local, tz))
        assert got == (utc(held_until, tz) if held_until else None), (tz, local)


def test_quiet_hours_within_a_day_and_off():
    cfg = AlertsConfig(quiet_start=dt.time(12), quiet_end=dt.time(13, 30))
    assert al.quiet_until(cfg, JAKARTA, utc("2026-11-30 12:10", JAKARTA)) == utc(
        "2026-11-30 13:30", JAKARTA
    )
    assert al.quiet_until(cfg, JAKARTA, utc("2026-11-30 13:30", JAKARTA)) is None
    # 23:00 UTC is 06:00 the next day in Jakarta: the local clock decides, not UTC's
    night = AlertsConfig(quiet_start=dt.time(22), quiet_end=dt.time(6))
    assert al.quiet_until(night, JAKARTA, dt.datetime(2026, 11, 30, 22, 59)) is not None
    assert al.quiet_until(night, JAKARTA, dt.datetime(2026, 11, 30, 23, 0)) is None
    assert al.quiet_until(AlertsConfig(), JAKARTA, NOW) is None


def test_alerts_table_is_validated():
    cfg = cc.load(
        overrides={
            "alerts": {
                "quiet_hours": "22:00-06:00",
                "critical": ["not_reporting", "disk"],
                "smtp_host": "127.0.0.1",
                "mail_to": ["noc@diskominfo.example"],
                "webhook_url": "https://hooks.example/hotspot",
                "webhook_secret": "x" * 32,
            }
        }
    )
    a = cfg.alerts
    assert (a.quiet_start, a.quiet_end) == (dt.time(22), dt.time(6))
    assert a.critical == {AlertKind.NOT_REPORTING, AlertKind.DISK} and a.email and a.webhook
    assert al.channels(a) == ["email", "webhook"]
    for bad, key in (
        ({"quiet_hours": "22-6"}, "alerts.quiet_hours"),
        ({"quiet_hours": "06:00-06:00"}, "alerts.quiet_hours"),
        ({"critical": ["meteor"]}, "alerts.critical"),
        ({"mail_to": ["not an address"]}, "alerts.mail_to"),
        ({"webhook_url": "ftp://x"}, "alerts.webhook_url"),
        ({"webhook_url": "https://x.example", "webhook_secret": "short"}, "alerts.webhook_secret"),
        ({"mail_from": "a@b\nBcc: x@y"}, "alerts.mail_from"),
        ({"smtp_port": 0}, "alerts.smtp_port"),
        ({"nonsense": 1}, "alerts.nonsense"),
    ):
        with pytest.raises(ConfigError) as exc:
            cc.load(overrides={"alerts": bad})
        assert exc.value.key == key, bad
    with pytest.raises(ConfigError):
        cc.load(overrides={"collector": {"title": ""}})
