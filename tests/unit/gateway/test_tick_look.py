"""What a tick reads of the kernel's classes (issue #12, item 1): its sessions' (and those
still draining) — not the DHCP pool's idle ones, which on a /18 are 2 × 16,381 classes a
login beside the tick waited for — and every class at the first tick, once
``[gateway] full_look_seconds`` have passed, and right after a tick found the kernel wrong.
A class nobody looked at is left alone by the reconcile, never taken for missing. A partial
look reads neither the login sets nor the pins (only the gateway's own operations move them,
or a hand): a hand's change waits for the whole look, and an operation that changed the
kernel and then could not write its row (a full disk) makes the next look whole."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gateway import shaping
from gateway.engine import SessionEngine
from gateway.reconcile import Pool, Snapshot, Wanted, plan
from hotspot import config as config_mod
from hotspot.config import ConfigError
from hotspot.model import ClientSession, Device, Source
from tests.unit.conftest import device_overrides
from tests.unit.fakes import FakeDataPath
from tests.unit.storage_full import FullStorage

IP1, MAC1 = "10.10.0.11", "02:00:00:00:00:01"
IP2, MAC2 = "10.10.0.12", "02:00:00:00:00:02"


def minor(ip: str) -> int:
    return shaping.client_minor(ip, FakeDataPath().network)


def test_after_the_first_tick_a_tick_reads_its_sessions_classes_only(engine, datapath, clock):
    engine.tick()
    assert datapath.counter_reads[-1] is None, "the first tick looks at every class"
    engine.authorize(ip=IP1, mac=MAC1)
    engine.authorize(ip=IP2, mac=MAC2)
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.counter_reads[-1] == {minor(IP1), minor(IP2)}
    assert engine.tick_phases["classes_read"] == 4  # two sessions, two devices

    # A kicked session's class drains a while: read until it passed nothing.
    datapath.traffic(IP2, down=5_000)
    engine.deauthorize(ip=IP2, mac=MAC2)
    datapath.traffic(IP2, down=700)  # what was queued at its final reading
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.counter_reads[-1] == {minor(IP1), minor(IP2)}

    # No session, nothing draining: nothing read, nothing asked of the kernel.
    engine.deauthorize(ip=IP1, mac=MAC1)
    for _ in range(3):
        clock.advance(seconds=2)
        engine.tick()
    assert datapath.counter_reads[-1] == set()
    assert engine.tick_phases["classes_read"] == 0


def test_every_class_is_read_once_the_whole_look_is_due(engine, datapath, clock, cfg):
    engine.tick()
    engine.authorize(ip=IP1, mac=MAC1)
    every = cfg.gateway.full_look_seconds
    assert every == 60.0  # the default
    clock.advance(seconds=every - 2)
    engine.tick()
    assert datapath.counter_reads[-1] == {minor(IP1)}
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.counter_reads[-1] is None
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.counter_reads[-1] == {minor(IP1)}


def test_an_idle_pool_class_changed_by_hand_waits_for_the_whole_look(engine, datapath, clock):
    engine.authorize(ip=IP1, mac=MAC1)
    engine.tick()  # the first: every class
    idle = minor("10.10.0.40")
    assert idle in engine.pool
    pool_kbps = datapath.state.down_ceil[idle]
    datapath.state.down_ceil[idle] = 50_000  # someone lends a pool address more
    del datapath.state.up_ceil[minor("10.10.0.41")]  # and deletes another's class
    applied = len(datapath.applied)
    clock.advance(seconds=2)
    engine.tick()
    assert len(datapath.applied) == applied, "a class nobody looked at is not taken for missing"
    assert datapath.state.down_ceil[idle] == 50_000
    clock.advance(seconds=60)
    engine.tick()  # the whole look
    assert datapath.state.down_ceil[idle] == pool_kbps
    assert minor("10.10.0.41") in datapath.state.up_ceil
    assert engine.reconcile() == ""


def test_a_sessions_class_is_put_right_at_the_next_tick_and_then_everything_looked_at(
    engine, datapath, clock
):
    engine.authorize(ip=IP1, mac=MAC1, tier="premium")
    engine.tick()
    premium = datapath.state.down_ceil[minor(IP1)]
    datapath.state.down_ceil[minor(IP1)] = 50_000
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.counter_reads[-1] == {minor(IP1)}
    assert datapath.state.down_ceil[minor(IP1)] == premium
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.counter_reads[-1] is None, "after a repair the next tick looks at all"


def test_a_partial_look_reads_neither_the_login_sets_nor_the_pins(engine, datapath, clock):
    engine.authorize(ip=IP1, mac=MAC1)
    engine.block(mac=MAC2)
    engine.tick()
    assert datapath.snapshots[-1] is True, "the first look is whole"
    sizes = dict(engine.kernel_sizes)
    assert sizes["authorized"] == 1 and sizes["blocked"] == 1
    # By hand: the session's address let out, the block lifted, a stranger let in.
    datapath.state.authorized.discard((IP1, MAC1))
    datapath.state.blocked.discard(MAC2)
    datapath.state.authorized.add(("10.10.0.30", "02:00:00:00:00:30"))
    applied = len(datapath.applied)
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.snapshots[-1] is False
    assert len(datapath.applied) == applied, "nothing looked at, nothing changed"
    assert engine.kernel_sizes == sizes, "a partial look leaves the whole look's sizes"
    clock.advance(seconds=60)
    engine.tick()  # the whole look puts the kernel back to what the database holds
    assert datapath.snapshots[-1] is True
    assert datapath.state.authorized == {(IP1, MAC1)}
    assert datapath.state.blocked == {MAC2}
    assert engine.reconcile() == ""


def test_a_login_whose_row_could_not_be_written_is_undone_at_the_next_tick(
    engine, datapath, clock, db
):
    engine.authorize(ip=IP1, mac=MAC1)
    engine.tick()
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.snapshots[-1] is False
    full = FullStorage(db)
    full.full = True
    with pytest.raises(OperationalError):
        engine.authorize(ip=IP2, mac=MAC2)  # the kernel first, then the commit fails
    assert (IP2, MAC2) in datapath.state.authorized
    full.full = False  # the disk has room again before the tick
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.snapshots[-1] is True, "the kernel moved without its row: a whole look"
    assert datapath.state.authorized == {(IP1, MAC1)}
    assert [s["ip"] for s in engine.list()] == [IP1]


def test_an_unblock_that_could_not_be_written_is_undone_at_the_next_tick(
    engine, datapath, clock, db
):
    engine.block(mac=MAC2)
    engine.tick()
    full = FullStorage(db)
    full.full = True
    with pytest.raises(OperationalError):
        engine.unblock(mac=MAC2)
    assert MAC2 not in datapath.state.blocked
    full.full = False
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.state.blocked == {MAC2}, "the database still blocks it"


def test_a_kick_that_could_not_be_written_is_undone_at_the_next_tick(engine, datapath, clock, db):
    engine.authorize(ip=IP1, mac=MAC1)
    engine.tick()
    full = FullStorage(db)
    full.full = True
    with pytest.raises(OperationalError):
        engine.deauthorize(ip=IP1, mac=MAC1)
    assert datapath.state.authorized == set()
    full.full = False
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.state.authorized == {(IP1, MAC1)}, "its row still runs: back in"
    assert [s["ip"] for s in engine.list()] == [IP1]


def looking_every(tmp_path, seconds) -> dict:
    overrides = device_overrides(tmp_path)
    overrides["gateway"] = {**overrides["gateway"], "full_look_seconds": seconds}
    return overrides


def test_full_look_seconds_zero_reads_every_class_every_tick(tmp_path, db, clock):
    cfg = config_mod.load(overrides=looking_every(tmp_path, 0))
    datapath = FakeDataPath()
    engine = SessionEngine(cfg, db, datapath, clock=clock, monotonic=clock.monotonic)
    engine.start()
    engine.authorize(ip=IP1, mac=MAC1)
    for _ in range(3):
        engine.tick()
        assert datapath.counter_reads[-1] is None


@pytest.mark.parametrize("bad", [-1, 3601, "often"])
def test_a_bad_full_look_seconds_is_refused_at_load(tmp_path, bad):
    with pytest.raises(ConfigError) as err:
        config_mod.load(overrides=looking_every(tmp_path, bad))
    assert "gateway.full_look_seconds" in str(err.value)


def test_a_plan_on_a_partial_look_touches_only_the_classes_looked_at():
    net = FakeDataPath().network
    pool = Pool(first=10, last=20, down_kbps=1024, up_kbps=512)
    session = Wanted(ip="10.10.0.11", mac=MAC1, down_kbps=4096, up_kbps=1024)
    m = shaping.client_minor(session.ip, net)
    # The kernel as read: the session's class only (at the wrong rate), nothing else.
    snap = Snapshot(
        authorized={(session.ip, session.mac)},
        down_map={session.ip: shaping.classid_str(m)},
        up_map={session.ip: shaping.classid_str(m)},
        down_ceil={m: 1024},
        up_ceil={m: 1024},
    )
    p = plan([session], set(), snap, net, pool.only({m}), looked={m})
    assert [(c.minor, c.kbps, c.new) for c in p.down_set] == [(m, 4096, False)]
    assert p.up_set == [] and p.down_del == [] and p.up_del == []
    # The same read taken for a whole one would make every other pool class anew.
    whole = plan([session], set(), snap, net, pool)
    assert len(whole.down_set) == 11 and sum(c.new for c in whole.down_set) == 10


def test_a_plan_without_the_login_sets_leaves_them_alone():
    net = FakeDataPath().network
    session = Wanted(ip="10.10.0.11", mac=MAC1, down_kbps=1024, up_kbps=512)
    m = shaping.client_minor(session.ip, net)
    snap = Snapshot(down_ceil={m: 1024}, up_ceil={m: 512}, login_sets_looked=False)
    p = plan([session], {MAC2}, snap, net, {m: (1024, 512)}, looked={m})
    assert p.empty, "sets not read are not sets found empty"
    read = Snapshot(down_ceil={m: 1024}, up_ceil={m: 512})  # read, and empty
    p = plan([session], {MAC2}, read, net, {m: (1024, 512)}, looked={m})
    assert [c.ip for c in p.add_clients] == [session.ip] and p.add_blocked == [MAC2]


def test_a_running_row_the_engine_did_not_follow_makes_the_next_look_whole(
    engine, datapath, clock, db
):
    engine.tick()
    clock.advance(seconds=2)
    engine.tick()
    assert datapath.snapshots[-1] is False
    now = clock()
    with Session(db) as s, s.begin():  # a row put there by another process
        s.add(Device(mac=MAC2, first_seen=now, last_seen=now))
        s.add(
            ClientSession(
                mac=MAC2,
                ip=IP2,
                tier="free",
                source=Source.FREE,
                down_kbps=1024,
                up_kbps=512,
                started_at=now,
                last_activity_at=now,
                expires_at=now + dt.timedelta(hours=1),
            )
        )
    clock.advance(seconds=2)
    engine.tick()  # follows it from here ...
    assert datapath.snapshots[-1] is False and (IP2, MAC2) not in datapath.state.authorized
    clock.advance(seconds=2)
    engine.tick()  # ... and the next look is whole: its addresses go in
    assert datapath.snapshots[-1] is True
    assert (IP2, MAC2) in datapath.state.authorized
