"""The DHCP pool's HTB classes exist from start-up (issue #12): a login on the pool's tier
changes no class, a session's end puts its class back to the pool's rates, and accounting
counts each session's own bytes although the class outlives it."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import shaping
from gateway.reconcile import Pool, Snapshot, Wanted, plan
from hotspot.errors import ErrorCode, Refused
from hotspot.model import ClientSession

MAC1, IP1 = "02:00:00:00:00:01", "10.10.0.11"
MAC2 = "02:00:00:00:00:02"
STATIC_IP = "10.10.0.5"  # below the DHCP range (host 10 and up): no pool class


def test_every_pool_address_has_its_class_after_start(engine, datapath, cfg):
    pool = engine.pool
    first = shaping.client_minor(cfg.dhcp.range_start, cfg.network.lan_network)
    last = shaping.client_minor(cfg.dhcp.range_end, cfg.network.lan_network)
    assert (pool.first, pool.last) == (first, last)
    assert set(datapath.state.down_ceil) == set(range(first, last + 1))
    assert set(datapath.state.down_ceil.values()) == {cfg.tiers["free"].down_kbps}
    assert set(datapath.state.up_ceil.values()) == {cfg.tiers["free"].up_kbps}
    assert engine.reconcile() == ""  # the pool is part of the desired state


def test_a_login_on_the_pool_tier_changes_no_class(engine, datapath):
    engine.authorize(ip=IP1, mac=MAC1, tier="free")
    login = datapath.applied[-1]
    assert login.down_set == [] and login.up_set == [] and login.down_del == []
    assert [c.ip for c in login.add_clients] == [IP1]


def test_kick_and_expiry_put_the_class_back_to_the_pool_rates(engine, datapath, clock):
    engine.authorize(ip=IP1, mac=MAC1, tier="premium")
    assert datapath.state.down_ceil[0xB] == 5120
    engine.deauthorize(ip=IP1, mac=MAC1)
    assert datapath.state.down_ceil[0xB] == 1024 and datapath.state.up_ceil[0xB] == 512
    assert datapath.applied[-1].down_del == []  # changed, not removed
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", minutes=1)
    clock.advance(minutes=1)
    assert engine.tick().ended
    assert datapath.state.down_ceil[0xB] == 1024 and IP1 not in datapath.state.down_map
    assert engine.reconcile() == ""


def test_an_address_outside_the_pool_still_gets_and_loses_its_class(engine, datapath):
    minor = shaping.client_minor(STATIC_IP, datapath.network)
    assert minor not in datapath.state.down_ceil
    engine.authorize(ip=STATIC_IP, mac=MAC1, tier="free")
    assert datapath.state.down_ceil[minor] == 1024
    engine.deauthorize(ip=STATIC_IP, mac=MAC1)
    assert minor not in datapath.state.down_ceil


def test_the_next_session_at_an_address_counts_only_its_own_bytes(engine, datapath, db):
    """The class keeps its counters across sessions: the next one counts on from the last
    one's final reading, not from zero (it would be charged its predecessor's bytes)."""
    engine.authorize(ip=IP1, mac=MAC1)
    datapath.traffic(IP1, down=50_000, up=5_000)
    engine.tick()
    datapath.traffic(IP1, down=7_000)  # after the last tick, before the kick
    engine.deauthorize(ip=IP1, mac=MAC1)
    engine.authorize(ip=IP1, mac=MAC2)
    datapath.traffic(IP1, down=1_000, up=100)
    engine.tick(force_flush=True)
    with Session(db) as s:
        rows = list(s.scalars(select(ClientSession).order_by(ClientSession.id)))
    assert [(r.bytes_down, r.bytes_up) for r in rows] == [(57_000, 5_000), (1_000, 100)]


def test_a_damaged_pool_is_repaired_by_the_plan():
    """A pool class deleted by hand is made again, a stray one removed, a changed one put
    back; twice is the same as once."""
    import ipaddress

    net = ipaddress.IPv4Network("10.10.0.0/24")
    pool = Pool(10, 20, 1024, 512)
    have = dict.fromkeys(range(10, 21), 1024)
    del have[12]
    have[15] = 9999
    have[40] = 1024  # nobody's, not the pool's
    snap = Snapshot(down_ceil=have, up_ceil=dict.fromkeys(range(10, 21), 512))
    p = plan([Wanted("10.10.0.11", MAC1, 5120, 2048)], set(), snap, net, pool)
    assert {(c.minor, c.kbps, c.new) for c in p.down_set} == {
        (11, 5120, False),
        (12, 1024, True),
        (15, 1024, False),
    }
    assert p.down_del == [40] and p.up_del == []
    assert [(c.minor, c.kbps) for c in p.up_set] == [(11, 2048)]


def test_a_kick_and_login_during_the_ticks_kernel_read_are_not_counted_twice(engine, datapath, db):
    """The tick reads the kernel before taking the engine lock and does not read it again
    under the lock: the classes an operation touched meanwhile wait for the next tick."""
    engine.authorize(ip=IP1, mac=MAC1)
    datapath.traffic(IP1, down=10_000)
    engine.tick()
    datapath.traffic(IP1, down=3_000)
    real = datapath.counters

    def counters_then_kick_and_login(minors=None):
        out = real(minors)  # the tick's read: 13,000 bytes in the class
        datapath.counters = real
        engine.deauthorize(ip=IP1, mac=MAC1)  # reads its final counters itself
        engine.authorize(ip=IP1, mac=MAC2)  # the same pool class, the next session
        return out

    datapath.counters = counters_then_kick_and_login
    engine.tick()
    datapath.traffic(IP1, down=500)
    engine.tick(force_flush=True)
    with Session(db) as s:
        rows = list(s.scalars(select(ClientSession).order_by(ClientSession.id)))
    assert [r.bytes_down for r in rows] == [13_000, 500]


def _bytes_down(db) -> list[int]:
    with Session(db) as s:
        return [r.bytes_down for r in s.scalars(select(ClientSession).order_by(ClientSession.id))]


def test_what_a_class_passes_after_its_session_ended_is_that_sessions(engine, datapath, db):
    """HTB counts a packet when it leaves the class: what was queued at a kick's final reading
    leaves afterwards, to the phone, while the class waits for its next session. The ticks
    count it to the session that ended until the class passes nothing; then the next
    session counts from the class's value at its start (issue #12: the churn test lost
    up to 2% of the kicked phone's download this way)."""
    engine.authorize(ip=IP1, mac=MAC1)
    datapath.traffic(IP1, down=10_000, up=1_000)
    engine.tick()
    engine.deauthorize(ip=IP1, mac=MAC1)
    datapath.traffic(IP1, down=3_000, up=100)  # the queue drains after the kick
    engine.tick()
    datapath.traffic(IP1, down=2_000)  # still draining at the next tick
    engine.tick()
    engine.tick()  # nothing passed: drained
    assert not engine._draining
    engine.authorize(ip=IP1, mac=MAC2)
    datapath.traffic(IP1, down=1_000)
    engine.tick(force_flush=True)
    assert _bytes_down(db) == [15_000, 1_000]
    with Session(db) as s:
        assert s.get(ClientSession, 1).bytes_up == 1_100


def test_the_next_login_at_the_address_settles_a_drain_first(engine, datapath, db):
    """A login before any tick saw the class drained: one reading of the class at the login
    splits its bytes between the session that ended and the new one."""
    engine.authorize(ip=IP1, mac=MAC1)
    datapath.traffic(IP1, down=10_000)
    engine.deauthorize(ip=IP1, mac=MAC1)
    datapath.traffic(IP1, down=4_000)  # after the kick, before the next login
    engine.authorize(ip=IP1, mac=MAC1)  # the same phone again, at once
    datapath.traffic(IP1, down=500)
    engine.tick(force_flush=True)
    assert _bytes_down(db) == [14_000, 500]


def test_a_login_at_a_drained_class_reads_no_counters(engine, datapath):
    """The drain costs the login path nothing once a tick saw the class idle."""
    engine.authorize(ip=IP1, mac=MAC1)
    engine.deauthorize(ip=IP1, mac=MAC1)
    engine.tick()
    reads = []
    real = datapath.class_counters
    datapath.class_counters = lambda minor: reads.append(minor) or real(minor)
    engine.authorize(ip=IP1, mac=MAC2)
    assert reads == []


def test_a_tick_starting_during_a_kick_waits_for_its_kernel_change(engine, datapath, db):
    """The tick notes the kernel's generation (and forgets the classes touched before) under
    the engine lock: a kick whose kernel change is under way when the tick starts is either
    wholly before the tick's read, or listed as touched. Noted outside the lock, mid-change,
    the kick's class was forgotten as touched, and its drain was counted from a reading
    older than the kick's final one: a class made anew, its whole counter again."""
    engine.authorize(ip=IP1, mac=MAC1)
    datapath.traffic(IP1, down=10_000)
    engine.tick()
    datapath.traffic(IP1, down=3_000)
    in_apply, go, read = threading.Event(), threading.Event(), threading.Event()
    real_apply, real_counters = datapath.apply, datapath.counters

    def slow_apply(plan):
        in_apply.set()
        go.wait(5)
        datapath.traffic(IP1, down=2_000)  # the last packets before the final reading
        return real_apply(plan)

    def counters(minors=None):
        read.set()
        return real_counters(minors)

    datapath.apply, datapath.counters = slow_apply, counters
    kick = threading.Thread(target=lambda: engine.deauthorize(ip=IP1, mac=MAC1))
    kick.start()
    assert in_apply.wait(5)
    tick = threading.Thread(target=engine.tick)
    tick.start()
    read.wait(0.2)  # an event that must not come before the kick's change is done
    go.set()
    kick.join(5)
    tick.join(5)
    datapath.apply, datapath.counters = real_apply, real_counters
    engine.tick(force_flush=True)
    assert _bytes_down(db) == [15_000]


def test_a_refused_login_keeps_the_running_sessions_bytes(engine, datapath, db):
    """An already-expired grant for a device with a running session is refused before that
    session is ended: ending it first counted its bytes into a transaction the refusal
    rolled back, and into nothing after."""
    engine.authorize(ip=IP1, mac=MAC1)
    datapath.traffic(IP1, down=6_000)
    with pytest.raises(Refused) as err:
        engine.authorize(ip=IP1, mac=MAC1, tier="premium", expires_at=dt.datetime(2026, 1, 1))
    assert err.value.code is ErrorCode.EXPIRED
    datapath.traffic(IP1, down=1_000)
    engine.tick(force_flush=True)
    assert _bytes_down(db) == [7_000]
