"""The tick holds the engine lock only in short slices (issue #12, item 4): its reads (the
kernel's counters, the running sessions' rows) are made without it, and what it decided is
applied a slice at a time, the lock free between slices. What runs between two slices — a
kick, a login at the address a kick freed, an operator's extension, a full disk — must
find the tick's work consistent: no byte counted twice or lost, no session ended that was
given more time, no ended session brought back. Each test runs the operation at a chosen
point of a tick (the tick's own thread, with the lock free, as another thread would find
it); slices are made small through the module's limits."""

from __future__ import annotations

import contextlib
import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gateway import engine as engine_mod
from hotspot.model import ClientSession, DailyUsage, EndReason
from tests.unit.storage_full import FullStorage

PHONES = [(f"10.10.0.{20 + i}", f"02:00:00:00:01:{i:02x}") for i in range(6)]


@pytest.fixture
def small_slices(monkeypatch):
    # Every accounting/expiry slice stops after 32 sessions, a flush slice writes 2 rows.
    monkeypatch.setattr(engine_mod, "TICK_SLICE_SECONDS", 0.0)
    monkeypatch.setattr(engine_mod, "FLUSH_SLICE_ROWS", 2)


def crowd(engine, datapath, clock, n=len(PHONES)):
    for ip, mac in PHONES[:n]:
        engine.authorize(ip=ip, mac=mac, tier="premium")
    clock.advance(seconds=2)
    engine.tick(force_flush=True)


def session_bytes(db) -> dict[str, tuple[int, int]]:
    """mac → (bytes down, bytes up) over all its sessions."""
    with Session(db) as s:
        rows = s.execute(
            select(
                ClientSession.mac,
                func.sum(ClientSession.bytes_down),
                func.sum(ClientSession.bytes_up),
            ).group_by(ClientSession.mac)
        )
        return {mac: (int(down), int(up)) for mac, down, up in rows}


def day_bytes(db) -> int:
    with Session(db) as s:
        return int(s.scalar(select(func.sum(DailyUsage.bytes_down))) or 0)


def before(monkeypatch, engine, method: str, op) -> None:
    """Run ``op`` once, right before the tick's ``method`` (lock free)."""
    original = getattr(engine, method)
    done = []

    def wrapped(*a, **kw):
        if not done:
            done.append(True)
            op()
        return original(*a, **kw)

    monkeypatch.setattr(engine, method, wrapped)


def between_slices(monkeypatch, engine, after_method: str, nth: int, op) -> None:
    """Run ``op`` once, before the ``nth`` slice (1-based) taken inside ``after_method``."""
    original_slice = engine._slice
    original_method = getattr(engine, after_method)
    state = {"inside": False, "n": 0}

    @contextlib.contextmanager
    def sliced(held):
        if state["inside"]:
            state["n"] += 1
            if state["n"] == nth:
                op()
        with original_slice(held):
            yield

    def method(*a, **kw):
        state["inside"] = True
        try:
            return original_method(*a, **kw)
        finally:
            state["inside"] = False

    monkeypatch.setattr(engine, "_slice", sliced)
    monkeypatch.setattr(engine, after_method, method)


def test_another_thread_gets_the_lock_between_the_ticks_slices(
    engine, datapath, clock, monkeypatch, small_slices
):
    crowd(engine, datapath, clock)
    for ip, _ in PHONES:
        datapath.traffic(ip, down=1000)
    got: list[bool] = []

    def other_thread_takes_the_lock():
        def take():
            if engine.lock.acquire(timeout=2):
                got.append(True)
                engine.lock.release()
            else:
                got.append(False)

        t = threading.Thread(target=take)
        t.start()
        t.join()

    between_slices(monkeypatch, engine, "_flush_sliced", 2, other_thread_takes_the_lock)
    engine.tick(force_flush=True)
    assert got == [True]
    assert engine.tick_phases["lock_slices"] >= 5  # bookkeeping, account, expiry, flush × n
    assert engine.tick_phases["lock_held"] <= engine.tick_phases["lock_held_total"]


def test_a_kick_between_the_read_and_the_accounting_counts_its_bytes_once(
    engine, datapath, clock, db, monkeypatch, small_slices
):
    crowd(engine, datapath, clock)
    kicked_ip, kicked_mac = PHONES[0]
    datapath.traffic(kicked_ip, down=1500, up=150)

    def kick_then_login_at_the_address():
        engine.deauthorize(ip=kicked_ip, mac=kicked_mac, reason=EndReason.KICK)
        # the class at that address is taken at once by a newcomer, who passes 70 bytes
        engine.authorize(ip=kicked_ip, mac="02:00:00:00:02:01", tier="premium")
        datapath.traffic(kicked_ip, down=70)

    # The rows and the kernel were read with the kicked session running: the tick's
    # accounting must neither follow it again nor charge the old reading to the newcomer.
    before(monkeypatch, engine, "_account_sliced", kick_then_login_at_the_address)
    clock.advance(seconds=2)
    engine.tick(force_flush=True)
    clock.advance(seconds=2)
    engine.tick(force_flush=True)
    got = session_bytes(db)
    assert got[kicked_mac] == (1500, 150)
    assert got["02:00:00:00:02:01"] == (70, 0)
    assert day_bytes(db) == 1570
    assert all(s.mac != kicked_mac for s in engine.live.values())


def test_a_session_given_more_time_after_the_decision_is_not_ended(
    engine, datapath, clock, db, monkeypatch
):
    ip, mac = PHONES[0]
    engine.authorize(ip=ip, mac=mac, tier="premium", minutes=1)
    clock.advance(seconds=90)  # over: the tick decides to end it ...
    before(monkeypatch, engine, "_end_sliced", lambda: engine.extend(mac=mac, minutes=30))
    report = engine.tick()  # ... and an operator extends it before the end is applied
    assert report.ended == []
    assert (ip, mac) in datapath.state.authorized
    assert engine.client(mac=mac)["session"] is not None


def test_a_session_kicked_after_the_decision_is_ended_once(
    engine, datapath, clock, db, monkeypatch
):
    ip, mac = PHONES[0]
    engine.authorize(ip=ip, mac=mac, tier="premium", minutes=1)
    clock.advance(seconds=90)
    kick = lambda: engine.deauthorize(mac=mac, reason=EndReason.KICK)  # noqa: E731
    before(monkeypatch, engine, "_end_sliced", kick)
    report = engine.tick()
    assert report.ended == []  # the kick ended it: the tick leaves it alone
    with Session(db) as s:
        reasons = list(s.scalars(select(ClientSession.end_reason)))
    assert reasons == [EndReason.KICK]
    assert (ip, mac) not in datapath.state.authorized


def test_a_kick_between_flush_slices_loses_and_doubles_nothing(
    engine, datapath, clock, db, monkeypatch, small_slices
):
    crowd(engine, datapath, clock)
    for ip, _ in PHONES:
        datapath.traffic(ip, down=1000, up=10)
    clock.advance(seconds=2)
    engine.tick()  # counted, not yet written
    for ip, _ in PHONES:
        datapath.traffic(ip, down=300)  # passed since, read by the kicks' final readings
    kicked = [PHONES[0], PHONES[-1]]  # one written before the kick, one after

    def kick():
        for ip, mac in kicked:
            engine.deauthorize(ip=ip, mac=mac, reason=EndReason.KICK)

    between_slices(monkeypatch, engine, "_flush_sliced", 3, kick)
    engine.tick(force_flush=True)
    clock.advance(seconds=2)
    engine.tick(force_flush=True)
    got = session_bytes(db)
    assert got == {mac: (1300, 10) for _, mac in PHONES}
    assert day_bytes(db) == 1300 * len(PHONES)


def test_a_full_disk_between_flush_slices_keeps_what_was_not_written(
    engine, datapath, clock, db, monkeypatch, small_slices
):
    crowd(engine, datapath, clock)
    for ip, _ in PHONES:
        datapath.traffic(ip, down=1000, up=10)
    full = FullStorage(db)

    def fill():
        full.full = True

    between_slices(monkeypatch, engine, "_flush_sliced", 3, fill)  # two slices written
    clock.advance(seconds=2)
    with pytest.raises(OperationalError):
        engine.tick(force_flush=True)
    full.full = False
    monkeypatch.undo()
    clock.advance(seconds=2)
    engine.tick(force_flush=True)
    assert session_bytes(db) == {mac: (1000, 10) for _, mac in PHONES}
    assert day_bytes(db) == 1000 * len(PHONES)
    assert {ip for ip, _ in datapath.state.authorized} == {ip for ip, _ in PHONES}


def test_an_explicit_reconcile_leaves_a_login_made_while_it_planned(
    engine, datapath, clock, monkeypatch
):
    ip, mac = PHONES[0]
    original = datapath.snapshot
    calls = []

    def snapshot(*a, **kw):
        snap = original(*a, **kw)
        if not calls:  # the plan is worked out from this, without the lock: a login now
            engine.authorize(ip=ip, mac=mac, tier="premium")
        calls.append(True)
        return snap

    monkeypatch.setattr(datapath, "snapshot", snapshot)
    engine.reconcile()
    assert len(calls) == 2  # the first plan was dropped: the kernel changed meanwhile
    assert (ip, mac) in datapath.state.authorized
    assert engine.reconcile() == ""


def lock_free_from_another_thread(engine) -> bool:
    got: list[bool] = []

    def probe() -> None:
        ok = engine.lock.acquire(timeout=0)
        if ok:
            engine.lock.release()
        got.append(ok)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return got[0]


def test_the_ticks_kernel_dumps_for_returning_devices_run_with_the_lock_free(
    engine, datapath, clock, monkeypatch
):
    """A trusted device away from the LAN makes the tick dump the neighbours, a resumable
    device makes it dump the portal's peers, every tick: hundreds of elements after a power
    cut. A login must not wait for either (issue #12, item 4)."""
    engine.trust(mac="02:00:00:00:09:01", label="kantor desa", tier="premium")
    engine.resumable["02:00:00:00:09:02"] = engine_mod._Resumable(
        tier="free", voucher_id=None, day=engine.today(clock()), until=None
    )
    seen: dict[str, bool] = {}
    for name in ("neighbour_table", "portal_peers"):
        original = getattr(datapath, name)

        def dump(*a, _name=name, _original=original, **kw):
            seen[_name] = lock_free_from_another_thread(engine)
            return _original(*a, **kw)

        monkeypatch.setattr(datapath, name, dump)
    # Both devices there and heard by the portal: the tick lets them out, under the lock.
    datapath.neighbours.update(
        {"10.10.0.91": "02:00:00:00:09:01", "10.10.0.92": "02:00:00:00:09:02"}
    )
    datapath.portal_peers_at["10.10.0.92"] = {"02:00:00:00:09:02"}
    clock.advance(seconds=2)
    engine.tick()
    assert seen == {"neighbour_table": True, "portal_peers": True}
    with Session(engine.db) as s:
        macs = set(s.scalars(select(ClientSession.mac).where(ClientSession.ended_at.is_(None))))
    assert macs == {"02:00:00:00:09:01", "02:00:00:00:09:02"}, macs


def test_a_look_that_a_kick_overlapped_repairs_nothing(engine, datapath, clock, monkeypatch):
    """The tick's look at the kernel is one pass (gateway/nftnetlink.py ``login_sets``): a
    kick in the middle of it leaves the look with the kicked client still in. The engine's
    generation, moved by the kick, keeps the tick from "repairing" the kernel after that
    look (it would take out what is already out, or put back what a login just changed)."""
    crowd(engine, datapath, clock)
    kicked_ip, kicked_mac = PHONES[0]
    real_snapshot = datapath.snapshot

    def torn_look(*args, **kwargs):
        look = real_snapshot(*args, **kwargs)  # the kicked client is still in it
        engine.deauthorize(ip=kicked_ip, mac=kicked_mac, reason=EndReason.KICK)
        return look

    monkeypatch.setattr(datapath, "snapshot", torn_look)
    applied = len(datapath.applied)
    clock.advance(seconds=2)
    report = engine.tick()
    monkeypatch.setattr(datapath, "snapshot", real_snapshot)
    assert report.plan == ""
    assert len(datapath.applied) == applied + 1  # the kick's own change, and nothing else
    assert (kicked_ip, kicked_mac) not in datapath.state.authorized
    # The next tick looks again, and finds nothing to repair.
    clock.advance(seconds=2)
    assert not engine.tick().plan
    assert len(datapath.applied) == applied + 1
