"""A top-up in flight while the wall clock is stepped (issue #11, the soak's finding (c)).

The portal claims the new code (the running voucher is merged into it, both stamped on the
old clock), then asks the gateway to authorize; a clock step lands between the two. The
gateway follows the step: every running session's end moves, capped by its voucher's end.
The running session's voucher is *merged* at that moment, and the step moved only the
vouchers still *active*: the cap stayed on the old clock and the running session ended by
``session-timeout`` at that tick, hours early; the top-up's own authorize (its end worked out
on the old clock) was then refused, and its undo put the old voucher back with its end
unmoved: the villager's remaining time was gone too.
"""

from __future__ import annotations

import datetime as dt

import pytest

from hotspot.errors import ErrorCode, HotspotError
from hotspot.vouchers.lookup import voucher_state
from tests.unit.portal.conftest import PHONE_IP, PHONE_MAC


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
    with pytest.raises(HotspotError) as refused:  # its end was worked out on the old clock
        vouchers.redeem(second, ip=PHONE_IP, mac=PHONE_MAC)
    assert refused.value.code is ErrorCode.EXPIRED
    monkeypatch.setattr(gw, "call", call)
    # The running session goes on, with the 23 hours it had before the step.
    assert engine.tick().ended == []
    sess = gw.call("client", ip=PHONE_IP)["session"]
    assert sess["state"] == "active" and sess["voucher_id"] == one.voucher_id
    assert 23 * 3600 - 5 <= sess["seconds_remaining"] <= 23 * 3600
    # The old voucher is running again, its end moved with the step; the new code is unused.
    old = voucher_state(vouchers.engine, one.voucher_id)
    assert old["state"] == "active"
    assert old["expires_at"] == clock.now + dt.timedelta(hours=23, seconds=-1)
    # The villager's second try tops up as it would have without the step.
    clock.advance(minutes=1)
    two = vouchers.redeem(second, ip=PHONE_IP, mac=PHONE_MAC)
    assert two.topped_up == one.voucher_id
    assert two.expires_at == clock.now + dt.timedelta(hours=23 + 24, minutes=-1, seconds=-1)
