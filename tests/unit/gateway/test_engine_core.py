"""The login's and the tick's database work by Core statements (issue #12, items 1 and 4):
what the ORM gave for free — exactly-once logins, a refusal that writes nothing, the hooks'
ORM objects — still holds, and the tick builds no ORM object of a running session."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from gateway import engine as engine_mod
from hotspot.errors import ErrorCode, Refused, UsageError
from hotspot.model import ClientSession, Device, EndReason, Source

MAC1, IP1 = "02:00:00:00:00:01", "10.10.0.11"
MAC2, IP2 = "02:00:00:00:00:02", "10.10.0.12"


@pytest.fixture
def orm_loads():
    """How many ClientSession objects the ORM builds from rows (the tick used to build one
    per running session every 2 s)."""
    loaded: list[int] = []

    def on_load(target, context):
        loaded.append(target.id)

    event.listen(ClientSession, "load", on_load)
    yield loaded
    event.remove(ClientSession, "load", on_load)


def device_row(db, mac):
    with Session(db) as s:
        return s.get(Device, mac)


def test_a_login_racing_another_of_the_same_phone_is_a_conflict_and_changes_nothing(
    engine, datapath, db, clock, monkeypatch
):
    """Two logins of one phone at once: this one's read saw no running session, the other
    committed before this one's insert. The partial unique index refuses the insert; the
    engine answers ``conflict`` and leaves no trace — no kernel change, no accounting, not
    even the device's ``last_seen``."""
    engine.authorize(ip=IP1, mac=MAC1)
    engine.deauthorize(mac=MAC1, reason=EndReason.LOGOUT)
    seen_before = device_row(db, MAC1).last_seen
    with db.begin() as conn:  # the other login, committed behind this one's read
        conn.execute(
            insert(ClientSession),
            [
                {
                    "mac": MAC1,
                    "ip": IP2,
                    "tier": "free",
                    "source": Source.FREE,
                    "down_kbps": 1024,
                    "up_kbps": 512,
                    "idle_minutes": 0,
                    "started_at": clock(),
                    "last_activity_at": clock(),
                    "bytes_down": 0,
                    "bytes_up": 0,
                }
            ],
        )
    monkeypatch.setattr(engine, "_rows", lambda db, mac=None, ip=None: [])
    clock.advance(seconds=5)
    applied, live = len(datapath.applied), dict(engine.live)
    with pytest.raises(Refused) as err:
        engine.authorize(ip=IP1, mac=MAC1, tier="premium")
    assert err.value.code is ErrorCode.CONFLICT
    assert len(datapath.applied) == applied and engine.live == live
    assert device_row(db, MAC1).last_seen == seen_before  # rolled back with the rest
    with Session(db) as s:
        running = s.scalars(select(ClientSession).where(ClientSession.ended_at.is_(None)))
        assert [(r.mac, r.ip) for r in running] == [(MAC1, IP2)]


def test_a_blocked_phone_is_refused_and_its_attempt_writes_nothing(engine, db, clock):
    """The device upsert says whether it is blocked; the refusal rolls the upsert back."""
    engine.block(mac=MAC1, reason="teenager with a laptop")
    seen = device_row(db, MAC1).last_seen
    clock.advance(minutes=3)
    with pytest.raises(Refused) as err:
        engine.authorize(ip=IP1, mac=MAC1)
    assert err.value.code is ErrorCode.BLOCKED
    assert device_row(db, MAC1).last_seen == seen
    # An unknown phone's first login makes its row, stamped now.
    out = engine.authorize(ip=IP2, mac=MAC2)
    row = device_row(db, MAC2)
    assert out["state"] == "active" and row.first_seen == row.last_seen == clock()
    assert row.blocked is False


def test_a_malformed_mac_or_address_never_reaches_the_statements(engine):
    """The prebuilt statements take their values as bound parameters: a hostile string is
    refused before them, and even if it reached them it would be a value, not SQL."""
    with pytest.raises(UsageError) as err:
        engine.authorize(ip="10.10.0.11' OR 1=1 --", mac=MAC1)
    assert "not an IPv4 address" in str(err.value)
    with pytest.raises(UsageError):
        engine.authorize(ip=IP1, mac="02:00:00:00:00:01'); DROP TABLE device; --")
    assert engine.authorize(ip=IP1, mac=MAC1)["state"] == "active"


def test_the_login_finds_its_sessions_by_index_not_by_scanning(db):
    """At 10,000 sessions an ``OR`` of MAC and address made SQLite scan every running
    session (26 ms a login); the login's lookup must search the partial unique indexes."""
    with db.connect() as conn:
        compiled = engine_mod._RUNNING_OF.compile(dialect=conn.dialect)
        values = tuple(
            compiled.construct_params({"mac": MAC1, "ip": IP1})[k]
            for k in compiled.positiontup or ()
        )
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", values).fetchall()
    details = [row[-1] for row in plan]
    assert any("uq_session_active_mac" in d for d in details), details
    assert any("uq_session_active_ip" in d for d in details), details
    assert not any(d.startswith("SCAN") for d in details), details


def test_the_tick_builds_no_orm_object_of_a_running_session(engine, datapath, clock, orm_loads):
    for i in range(20):
        engine.authorize(ip=f"10.10.0.{20 + i}", mac=f"02:00:00:00:01:{i:02x}", tier="premium")
    for i in range(20):
        datapath.traffic(f"10.10.0.{20 + i}", down=10_000, up=500)
    clock.advance(seconds=2)
    orm_loads.clear()
    report = engine.tick(force_flush=True)
    assert report.flushed and not report.ended
    assert orm_loads == []
    listed = {s["ip"]: s for s in engine.list()}
    assert listed["10.10.0.20"]["bytes_down"] == 10_000  # the flush wrote them
    # One that ends: only its own object is built (its end hooks get it).
    engine.authorize(ip=IP1, mac=MAC1, tier="free", minutes=1)
    clock.advance(minutes=2)
    orm_loads.clear()
    ended = engine.tick().ended
    assert [reason for _, reason in ended] == [EndReason.SESSION.value]
    assert orm_loads == [ended[0][0]]


def test_the_hooks_still_get_orm_objects_with_their_figures(engine, datapath, clock):
    """RADIUS's hooks (start, each tick, end) read ORM objects: they still get them, with
    the bytes counted so far."""
    got: dict[str, list] = {"start": [], "tick": [], "end": []}
    engine.tick_hooks.append(lambda db, running, now: got["tick"].append(list(running)))
    engine.end_hooks.append(
        lambda db, sess, reason, now: got["end"].append((sess.id, reason, sess.bytes_down))
    )

    def on_start(db, sess, now):
        assert isinstance(sess, ClientSession) and sess.id and sess.mac == MAC1
        got["start"].append(sess.id)

    sid = engine.authorize(ip=IP1, mac=MAC1, tier="premium", on_start=on_start)["id"]
    assert got["start"] == [sid]
    datapath.traffic(IP1, down=3_000)
    clock.advance(seconds=2)
    engine.tick()
    assert [type(s) for s in got["tick"][-1]] == [ClientSession]
    datapath.traffic(IP1, down=1_000)
    engine.deauthorize(mac=MAC1, reason=EndReason.LOGOUT)
    assert got["end"] == [(sid, EndReason.LOGOUT, 4_000)]


def test_the_tick_follows_a_clock_jump_with_rows_as_it_did_with_objects(engine, clock, db):
    """A wall-clock step forward by a day (a Pi without RTC getting NTP): the running
    session's end moves with it, so the tick that follows does not end it."""
    engine.authorize(ip=IP1, mac=MAC1, tier="free", minutes=30)
    clock.advance(seconds=2)
    engine.tick()
    clock.jump(days=1)
    clock.advance(seconds=2)
    assert engine.tick().ended == []
    (running,) = engine.list()
    assert running["seconds_remaining"] == pytest.approx(30 * 60 - 4, abs=2)
    assert dt.timedelta(seconds=running["seconds_remaining"]) < dt.timedelta(minutes=30)
