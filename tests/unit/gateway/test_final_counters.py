"""A session that ends between two ticks keeps the bytes its classes passed since the last
one (issue #12, item 5): its final counters are read before its class is deleted or taken
over; with a fake data path and a frozen clock."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotspot.errors import ErrorCode, KernelError
from hotspot.model import ClientSession, DailyUsage, EndReason, HourlyUsage

MAC1, IP1 = "02:00:00:00:00:01", "10.10.0.11"
MAC2, IP2 = "02:00:00:00:00:02", "10.10.0.12"


def rows(db):
    with Session(db) as s:
        return [
            (r.end_reason, r.bytes_down, r.bytes_up)
            for r in s.scalars(select(ClientSession).order_by(ClientSession.id))
        ]


def usage(db):
    with Session(db) as s:
        daily = sum(r.bytes_down for r in s.scalars(select(DailyUsage)))
        hourly = sum(r.bytes_down for r in s.scalars(select(HourlyUsage)))
    return daily, hourly


def started(engine, datapath, clock, ip=IP1, mac=MAC1, tier="premium"):
    """A session that was counted at a tick (1000 down, 100 up), then passed 500 and 50
    more that no tick has read yet."""
    engine.authorize(ip=ip, mac=mac, tier=tier)
    clock.advance(seconds=2)
    datapath.traffic(ip, down=1000, up=100, packets=2)
    engine.tick()
    datapath.traffic(ip, down=500, up=50, packets=1)


@pytest.mark.parametrize(
    "end",
    [
        lambda e: e.deauthorize(ip=IP1, mac=MAC1, reason=EndReason.KICK),
        lambda e: e.deauthorize(ip=IP1, mac=MAC1, reason=EndReason.LOGOUT),
        lambda e: e.block(mac=MAC1, reason="abuse"),
    ],
    ids=["kick", "logout", "block"],
)
def test_an_ended_session_keeps_its_last_bytes(engine, datapath, clock, db, end):
    started(engine, datapath, clock)
    end(engine)
    assert rows(db)[0][1:] == (1500, 150)
    engine.tick(force_flush=True)
    assert usage(db) == (1500, 1500)  # the day's and the hour's too (the collector's)


# The session rows after a change: the old one ended with all it passed until the change
# (1000 counted, 500 not yet read), the new one with only what passed after (200 and 20).
SPLIT = [(EndReason.REPLACED, 1500, 150), (None, 200, 20)]


def rows_after_a_new_session(engine, datapath, clock, db, *, ip: str, mac: str) -> list:
    """A premium session for ``mac`` at ``ip`` after :func:`started`'s, 200/20 bytes through
    it, a flush: the session rows (the first one ended by the change)."""
    engine.authorize(ip=ip, mac=mac, tier="premium")
    datapath.traffic(ip, down=200, up=20, packets=1)
    clock.advance(seconds=2)
    engine.tick(force_flush=True)
    return rows(db)


def test_the_session_after_a_tier_change_counts_from_the_final_reading(engine, datapath, clock, db):
    """Same device, same address: the class stays (its counters run on); the old session
    gets what passed until the change, the new one only what passed after."""
    started(engine, datapath, clock, tier="free")
    assert rows_after_a_new_session(engine, datapath, clock, db, ip=IP1, mac=MAC1) == SPLIT
    assert usage(db) == (1700, 1700)


def test_an_address_taken_over_splits_the_bytes_at_the_change(engine, datapath, clock, db):
    started(engine, datapath, clock)
    assert rows_after_a_new_session(engine, datapath, clock, db, ip=IP1, mac=MAC2) == SPLIT


def test_a_move_keeps_the_old_address_bytes_and_starts_anew(engine, datapath, clock, db):
    started(engine, datapath, clock)
    assert rows_after_a_new_session(engine, datapath, clock, db, ip=IP2, mac=MAC1) == SPLIT


def test_the_end_hooks_see_the_final_bytes(engine, datapath, clock):
    seen = []
    engine.end_hooks.append(lambda db, sess, reason, now: seen.append(sess.bytes_down))
    started(engine, datapath, clock)
    engine.deauthorize(ip=IP1, mac=MAC1)
    assert seen == [1500]  # RADIUS's Accounting-Stop carries them


def test_what_passes_until_the_class_goes_is_written_by_the_next_tick(engine, datapath, clock, db):
    """The read as the session ends fails (or comes a little early: the class passes
    packets until the kernel change has forgotten its connections); the change reads the
    class once more just before removing it, and the next tick writes the rest."""
    started(engine, datapath, clock)

    def broken(minor):
        raise KernelError("tc get-class: gone", code=ErrorCode.TC)

    datapath.class_counters = broken  # the kick is not stopped by it
    engine.deauthorize(ip=IP1, mac=MAC1)
    assert rows(db)[0] == (EndReason.KICK, 1000, 100)  # the last tick's, for now
    assert engine.tick().flushed
    assert rows(db)[0] == (EndReason.KICK, 1500, 150)
    assert usage(db) == (1500, 1500)
