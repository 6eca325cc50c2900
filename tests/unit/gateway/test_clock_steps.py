"""Time without a real-time clock (issue #11, item 2): the session engine under a wall clock
that is stepped while sessions run — NTP synchronising days after a Pi booted on its last
saved time, a clock corrected back by an hour, a clock a year wrong. ``clock.jump`` moves
the wall clock alone; ``clock.advance`` is time passing (both clocks move)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.engine import SessionEngine
from hotspot.errors import ErrorCode, Refused
from hotspot.model import ClientSession, DailyUsage
from tests.unit.fakes import FakeDataPath

MAC1, IP1 = "02:00:00:00:00:01", "10.10.0.11"
MAC2, IP2 = "02:00:00:00:00:02", "10.10.0.12"


def busy_minutes(engine, datapath, clock, minutes, seconds=60):
    """``minutes`` ticks, ``seconds`` apart, the phone browsing; the sessions that ended."""
    ended = []
    for _ in range(minutes):
        clock.advance(seconds=seconds)
        datapath.traffic(IP1, down=1000, up=100)
        ended += engine.tick().ended
    return ended


def running(db) -> list[ClientSession]:
    with Session(db) as s:
        return list(s.scalars(select(ClientSession).where(ClientSession.ended_at.is_(None))))


def test_a_step_forward_of_three_days_does_not_end_a_60_minute_session(engine, datapath, clock, db):
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", minutes=60)
    assert busy_minutes(engine, datapath, clock, 10) == []
    clock.jump(days=3)  # NTP at last: the boot clock was three days behind
    assert busy_minutes(engine, datapath, clock, 1) == []
    info = engine.client(mac=MAC1)["session"]
    assert info["state"] == "active"
    assert 48 * 60 <= info["seconds_remaining"] <= 50 * 60  # 49 minutes left, as before
    assert engine.last_step is not None and engine.last_step[1] == 3 * 86400
    assert busy_minutes(engine, datapath, clock, 48) == []
    ended = busy_minutes(engine, datapath, clock, 2)
    assert [r for _, r in ended] == ["session-timeout"]


def test_a_step_back_of_an_hour_does_not_extend_a_2_minute_session(engine, datapath, clock, db):
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", minutes=2)
    clock.advance(seconds=30)
    engine.tick()
    clock.jump(hours=-1)
    ended = busy_minutes(engine, datapath, clock, 6, seconds=15)  # 90 s after the jump
    assert [r for _, r in ended] == ["session-timeout"]
    assert running(db) == []


def test_a_step_is_not_idle_time(engine, datapath, clock):
    """The free tier ends after 10 idle minutes: a step of hours between two busy ticks
    is not idleness."""
    engine.authorize(ip=IP1, mac=MAC1, tier="free")
    busy_minutes(engine, datapath, clock, 2)
    clock.jump(hours=5)
    assert busy_minutes(engine, datapath, clock, 1) == []
    assert engine.client(mac=MAC1)["session"]["state"] == "active"


def test_free_minutes_are_counted_from_the_monotonic_clock(engine, datapath, clock, db):
    """A step within the day charges nothing to the day's free minutes (120 a day)."""
    engine.authorize(ip=IP1, mac=MAC1, tier="free")
    busy_minutes(engine, datapath, clock, 3)
    clock.jump(minutes=50)
    busy_minutes(engine, datapath, clock, 2)
    clock.jump(minutes=-30)
    busy_minutes(engine, datapath, clock, 1)
    used = engine.client(mac=MAC1)["allowance"]["free"]["seconds_used"]
    assert 6 * 60 - 5 <= used <= 6 * 60 + 5


def test_a_step_back_across_midnight_gives_no_second_free_day(engine, datapath, clock, db, cfg):
    """16:59 UTC is 23:59 in Jakarta. The phone uses its 120 free minutes of the new day
    up to 00:30, then the clock is stepped back an hour (to 23:30 of the day before,
    whose minutes were never used): the allowance stays on the new day, used up, and
    coming back to midnight on the wall clock does not reset it again."""
    clock.now = dt.datetime(2026, 11, 28, 16, 59, 0)
    engine.tick()
    clock.advance(minutes=1, seconds=30)
    engine.tick()  # 00:00:30 local: a new day
    engine.authorize(ip=IP1, mac=MAC1, tier="free", minutes=180)
    busy_minutes(engine, datapath, clock, 30)
    clock.jump(hours=-1)
    assert busy_minutes(engine, datapath, clock, 1) == []
    left = engine.client(mac=MAC1)["allowance"]["free"]
    assert left["resets_at"] == "2026-11-29T17:00:00Z"  # the next midnight, not tonight's again
    assert 31 * 60 - 5 <= left["seconds_used"] <= 31 * 60 + 5
    ended = busy_minutes(engine, datapath, clock, 89)  # through the wall clock's midnight
    assert [r for _, r in ended] == ["quota"]  # 120 minutes in all, one day's worth
    with Session(db) as s:
        days = {r.day for r in s.scalars(select(DailyUsage))}
    assert days == {dt.date(2026, 11, 29)}


def test_the_day_survives_a_restart_after_a_step_back(cfg, db, clock, engine, datapath):
    clock.now = dt.datetime(2026, 11, 28, 17, 5, 0)  # 00:05 local, the 29th
    engine.tick()
    engine.authorize(ip=IP1, mac=MAC1, tier="free", minutes=120)
    busy_minutes(engine, datapath, clock, 5)
    engine.flush()
    clock.jump(hours=-1)  # 23:10 of the 28th, then the gateway restarts
    again = SessionEngine(cfg, db, FakeDataPath(), clock=clock, monotonic=clock.monotonic)
    again.start()
    assert again.today(clock.now) == dt.date(2026, 11, 29)


def test_a_year_forward_and_back_around_midnight(engine, datapath, clock, db):
    clock.now = dt.datetime(2026, 12, 31, 16, 55, 0)  # 23:55 on New Year's Eve in Jakarta
    engine.tick()
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", minutes=30)
    busy_minutes(engine, datapath, clock, 2)
    clock.jump(days=365)  # a bad clock: a year ahead
    assert busy_minutes(engine, datapath, clock, 5) == []
    clock.jump(days=-365)  # corrected
    assert busy_minutes(engine, datapath, clock, 20) == []
    ended = busy_minutes(engine, datapath, clock, 4)
    assert [r for _, r in ended] == ["session-timeout"]  # 30 minutes in all
    assert engine.today(clock.now) == dt.date(2027, 1, 1)


def test_a_login_right_after_a_step_is_not_moved(engine, datapath, clock, db):
    """A session started after the step, before the next tick noticed it, is stamped on
    the new clock: the login itself follows the step first."""
    engine.tick()
    clock.jump(hours=-1)
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", minutes=5)
    ended = busy_minutes(engine, datapath, clock, 4)
    assert ended == []
    assert [r for _, r in busy_minutes(engine, datapath, clock, 2)] == ["session-timeout"]


def test_small_drift_is_not_a_step(engine, datapath, clock):
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", minutes=5)
    clock.jump(seconds=20)  # below gateway.clock_step_seconds (30)
    busy_minutes(engine, datapath, clock, 1)
    assert engine.last_step is None


def test_a_login_refused_right_after_a_step_does_not_undo_it(engine, datapath, clock, db):
    """The soak found it: the first request after a step of hours was a login the gateway
    refused (a voucher's end the portal had worked out on the old clock, a free day used
    up); the refusal rolled back the step's moves, which the clock watch had already taken,
    and every running session ended at the next tick."""
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", minutes=60)
    busy_minutes(engine, datapath, clock, 2)
    old_end = clock.now + dt.timedelta(minutes=5)  # what the portal wrote before the step
    clock.jump(hours=8)
    with pytest.raises(Refused) as refused:
        engine.authorize(ip=IP2, mac=MAC2, tier="premium", expires_at=old_end)
    assert refused.value.code is ErrorCode.EXPIRED
    assert busy_minutes(engine, datapath, clock, 1) == []
    info = engine.client(mac=MAC1)["session"]
    assert info["state"] == "active"
    assert 56 * 60 <= info["seconds_remaining"] <= 58 * 60
