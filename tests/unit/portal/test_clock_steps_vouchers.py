"""Time without a real-time clock (issue #11, item 2): vouchers under a stepped wall clock.
A voucher first used since the clock was last right was stamped on the wrong clock: its
validity moves with the step, so an hour's package still gives an hour. One first used
earlier keeps its end — a date in the calendar."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from gateway.engine import SessionEngine
from hotspot.errors import ErrorCode
from hotspot.model import Voucher
from hotspot.vouchers.errors import VoucherError
from tests.unit.fakes import FakeDataPath
from tests.unit.portal.conftest import PHONE_IP, PHONE_MAC


def busy_minutes(engine, datapath, clock, minutes):
    ended = []
    for _ in range(minutes):
        clock.advance(minutes=1)
        datapath.traffic(PHONE_IP, down=1000, up=100)
        ended += [reason for _, reason in engine.tick().ended]
    return ended


def voucher_end(db, voucher_id) -> dt.datetime:
    with Session(db) as s:
        return s.get(Voucher, voucher_id).expires_at


def test_an_hours_voucher_keeps_its_hour_across_a_step_of_three_days(
    vouchers, batch, engine, datapath, clock, db
):
    code = batch("basi", 1)[0]  # one hour from first use
    got = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    first_end = voucher_end(db, got.voucher_id)
    assert busy_minutes(engine, datapath, clock, 10) == []
    clock.jump(days=3)
    assert busy_minutes(engine, datapath, clock, 1) == []
    assert voucher_end(db, got.voucher_id) == first_end + dt.timedelta(days=3)
    assert busy_minutes(engine, datapath, clock, 48) == []
    assert busy_minutes(engine, datapath, clock, 2) == ["session-timeout"]
    try:
        vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    except VoucherError as exc:
        assert exc.code == ErrorCode.VOUCHER_EXPIRED
    else:
        raise AssertionError("an hour's voucher gave more than an hour")


def test_an_hours_voucher_is_not_extended_by_a_step_back(
    vouchers, batch, engine, datapath, clock, db
):
    code = batch("basi", 1)[0]
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    assert busy_minutes(engine, datapath, clock, 30) == []
    clock.jump(hours=-2)
    assert busy_minutes(engine, datapath, clock, 29) == []
    assert busy_minutes(engine, datapath, clock, 2) == ["session-timeout"]


def test_a_voucher_first_used_before_the_start_keeps_its_calendar_end(
    cfg, vouchers, batch, engine, datapath, clock, db
):
    """Redeemed, then the gateway restarts (a power cut): the new engine has no reason to
    doubt that older stamp, so a step forward past its end ends its session."""
    code = batch("basi", 1)[0]
    got = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    first_end = voucher_end(db, got.voucher_id)
    engine.flush()
    clock.advance(minutes=1)  # the power cut and the boot
    again = SessionEngine(cfg, db, FakeDataPath(), clock=clock, monotonic=clock.monotonic)
    again.start()
    clock.advance(minutes=5)
    again.tick()
    clock.jump(days=3)
    clock.advance(seconds=2)
    assert [r for _, r in again.tick().ended] == ["session-timeout"]
    assert voucher_end(db, got.voucher_id) == first_end


def test_a_step_moves_its_vouchers_a_chunk_at_a_time_without_orm_objects(
    vouchers, batch, engine, datapath, clock, db, monkeypatch
):
    """The vouchers first used since the start grow with the uptime (3,387 after 13 of the
    soak's midnights): a step moves them as rows, ``STEP_VOUCHER_CHUNK`` at a time, never
    all at once as ORM objects, whose peak grew with every step and left Python's allocator
    with ever more arenas (issue #11, docs/reliability.md "Flat memory?")."""
    from sqlalchemy import event, update

    from gateway import engine as engine_mod
    from hotspot.model import VoucherState

    monkeypatch.setattr(engine_mod, "STEP_VOUCHER_CHUNK", 2)
    batch("basi", 5)
    now = clock()
    with db.begin() as conn:  # five first uses since the start, as the portal stamps them
        conn.execute(
            update(Voucher).values(
                state=VoucherState.ACTIVE.value,
                sold_at=now,
                first_used_at=now,
                expires_at=now + dt.timedelta(hours=1),
            )
        )
    with Session(db) as s:
        ids = sorted(v.id for v in s.query(Voucher))
    assert len(ids) == 5
    chunks: list[int] = []
    real_move = engine_mod.SessionEngine._move_vouchers

    def counted(*args):
        for chunk in real_move(*args):
            chunks.append(len(chunk))
            yield chunk

    monkeypatch.setattr(engine_mod.SessionEngine, "_move_vouchers", staticmethod(counted))
    loaded: list[int] = []

    def on_load(target, _context):
        loaded.append(target.id)

    event.listen(Voucher, "load", on_load)
    try:
        clock.advance(minutes=1)
        clock.jump(days=1)
        engine.tick()
    finally:
        event.remove(Voucher, "load", on_load)
    assert chunks == [2, 2, 1]
    assert loaded == []
    for vid in ids:
        assert voucher_end(db, vid) == now + dt.timedelta(hours=1, days=1)
