"""A redemption whose authorize the gateway carried out after the portal stopped waiting
(issue #11, the soak's busy pages, finding (d)): the portal waits 5 s, the gateway under load
answers later, and it does the authorize all the same. The portal used to undo its claim on
any error: the session then ran on a code still "new" — bound to no device, redeemable again
by anyone, an hour sold twice. A timeout now keeps the claim; a refusal still undoes it."""

from __future__ import annotations

import pytest

from hotspot.control import ControlTimeout
from hotspot.errors import ControlUnavailable
from hotspot.vouchers.lookup import voucher_state
from tests.unit.portal.conftest import OTHER_IP, OTHER_MAC, PHONE_IP, PHONE_MAC
from tests.unit.portal.test_vouchers import expect


def answered_late(gw, monkeypatch, error):
    call = gw.call

    def late(op, **args):
        out = call(op, **args)  # the gateway does it…
        if op == "authorize":
            raise error  # …after the portal stopped waiting
        return out

    monkeypatch.setattr(gw, "call", late)
    return call


def test_a_late_answer_keeps_the_claim_and_the_next_try_reconnects(
    vouchers, batch, gw, monkeypatch
):
    (code,) = batch("harian", 1)
    call = answered_late(gw, monkeypatch, ControlTimeout("gateway did not answer in time"))
    with pytest.raises(ControlTimeout):
        vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    monkeypatch.setattr(gw, "call", call)
    sess = gw.call("client", ip=PHONE_IP)["session"]
    assert sess["state"] == "active"
    held = voucher_state(vouchers.engine, sess["voucher_id"])
    assert held["state"] == "active" and held["devices"] == [PHONE_MAC]
    # Nobody else can take the code the phone is online on; the phone's own retry is free.
    expect("voucher-used", vouchers.redeem, code, ip=OTHER_IP, mac=OTHER_MAC)
    again = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    assert again.voucher_id == sess["voucher_id"] and not again.first_use


def test_an_unreachable_gateway_still_gives_the_code_back(vouchers, batch, gw, engine):
    (code,) = batch("harian", 1)
    gw.down = True  # refused at connect: the gateway never had the request
    with pytest.raises(ControlUnavailable) as err:
        vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    assert not isinstance(err.value, ControlTimeout)
    gw.down = False
    assert gw.call("client", ip=PHONE_IP)["session"] is None
    assert vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC).first_use
