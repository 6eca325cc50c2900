"""A redemption or a top-up in flight while the wall clock is stepped (issue #11, the soak's
finding (c), and the redemptions refused as expired after a step).

The portal claims the new code (the running voucher is merged into it, both stamped on the
old clock), then asks the gateway to authorize; a clock step lands between the two. The
gateway follows the step: every running session's end moves, capped by its voucher's end.
The running session's voucher is *merged* at that moment, and the step moved only the
vouchers still *active*: the cap stayed on the old clock and the running session ended by
``session-timeout`` at that tick, hours early; the top-up's own authorize (its end worked out
on the old clock) was then refused, and its undo put the old voucher back with its end
unmoved: the villager's remaining time was gone too. Both are fixed: the step moves merged
vouchers too, and the gateway takes a voucher session's end from the voucher as the step
left it, so the authorize in flight is no longer refused.
"""

from __future__ import annotations

import datetime as dt

from hotspot.vouchers.lookup import voucher_state
from tests.unit.portal.conftest import OTHER_IP, PHONE_IP, PHONE_MAC

OTHER_MAC = "02:00:00:00:00:02"


def test_a_topup_in_flight_across_a_step_does_not_end_the_running_session(
    vouchers, batch, gw, engine, clock, monkeypatch
):
    first, second = batch("harian", 2)
    one = vouchers.redeem(first, ip=PHONE_IP, mac=PHONE_MAC)
    clock.advance(hours=1)
    engine.tick()
    call = gw.call

    def step_before_the_authorize(op, **args):
        if op == "authorize":  # the claim is committed; NTP steps the clock now
            clock.advance(seconds=1)
            clock.jump(days=3)
            engine.tick()
        return call(op, **args)

    monkeypatch.setattr(gw, "call", step_before_the_authorize)
    # The top-up goes through at once: the gateway takes the new voucher's end as the step
    # left it, not the portal's figure from the old clock (refused as expired before).
    two = vouchers.redeem(second, ip=PHONE_IP, mac=PHONE_MAC)
    monkeypatch.setattr(gw, "call", call)
    assert two.topped_up == one.voucher_id
    # 24 hours bought plus the 23 left, counted from the claim, one real second ago.
    assert two.expires_at == clock.now + dt.timedelta(hours=23 + 24, seconds=-1)
    assert engine.tick().ended == []
    sess = gw.call("client", ip=PHONE_IP)["session"]
    assert sess["state"] == "active" and sess["voucher_id"] == two.voucher_id
    assert 47 * 3600 - 5 <= sess["seconds_remaining"] <= 47 * 3600
    assert voucher_state(vouchers.engine, one.voucher_id)["state"] == "merged"
    new = voucher_state(vouchers.engine, two.voucher_id)
    assert new["state"] == "active" and new["expires_at"] == two.expires_at


def test_a_first_redemption_in_flight_across_a_step_is_not_refused(
    vouchers, batch, gw, engine, clock, datapath, monkeypatch
):
    """The portal claims a new code (its end: now + the package's hours, on the old clock),
    NTP steps the clock three days forward, then the authorize arrives. The gateway moved
    the voucher's end with the step; the portal's ``expires_at`` in the request is three
    days in the past. It was refused once (*that access has already expired*), the soak's
    redemptions refused right after a step; now the session gets the voucher's whole day."""
    (code,) = batch("harian", 1)
    engine.tick()
    call = gw.call

    def step_before_the_authorize(op, **args):
        if op == "authorize":
            clock.advance(seconds=1)
            clock.jump(days=3)
            engine.tick()
        return call(op, **args)

    monkeypatch.setattr(gw, "call", step_before_the_authorize)
    done = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    monkeypatch.setattr(gw, "call", call)
    assert done.first_use
    assert done.expires_at == clock.now + dt.timedelta(hours=24, seconds=-1)
    assert engine.tick().ended == []
    sess = gw.call("client", ip=PHONE_IP)["session"]
    assert sess["state"] == "active" and sess["voucher_id"] == done.voucher_id
    assert 24 * 3600 - 5 <= sess["seconds_remaining"] <= 24 * 3600
    held = voucher_state(vouchers.engine, done.voucher_id)
    assert held["state"] == "active" and held["expires_at"] == done.expires_at
    # A step back of an hour while another redemption is in flight: no extra hour either.
    (other,) = batch("harian", 1)
    clock.advance(minutes=1)

    def step_back_before_the_authorize(op, **args):
        if op == "authorize":
            clock.advance(seconds=1)
            clock.jump(hours=-1)
            engine.tick()
        return call(op, **args)

    monkeypatch.setattr(gw, "call", step_back_before_the_authorize)
    datapath.neighbours[OTHER_IP] = OTHER_MAC
    again = vouchers.redeem(other, ip=OTHER_IP, mac=OTHER_MAC)
    monkeypatch.setattr(gw, "call", call)
    assert again.expires_at == clock.now + dt.timedelta(hours=24, seconds=-1)
