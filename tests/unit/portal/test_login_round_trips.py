"""What a login asks of the gateway (issue #12, item 2): the form's POST asks for the brief
view of the device (no allowances of every tier), the success page asks nothing; a page that
shows the device's situation again (a refusal) asks for the whole view. The defences stay:
a blocked device, another device at the address, a malformed ``brief``."""

from __future__ import annotations

import json

from hotspot.protocol import encode
from hotspot.units import MB
from tests.unit.portal.conftest import PHONE_IP, PHONE_MAC


def text(resp) -> str:
    return resp.get_data(as_text=True)


def client_ops(gw) -> list[bool]:
    """Each ``client`` op sent, as whether it was the brief one."""
    return [bool(args.get("brief")) for args in gw.ops("client")]


def test_a_free_login_is_one_brief_client_op_and_one_authorize(phone, gw):
    hidden = phone.hidden()  # the splash: the whole view (allowances shown)
    assert client_ops(gw) == [False]
    gw.calls.clear()
    resp = phone.post("/accept", data=hidden)
    assert resp.status_code == 303
    assert [op for op, _ in gw.calls] == ["client", "authorize"]
    assert client_ops(gw) == [True]
    gw.calls.clear()
    assert phone.get(resp.headers["Location"]).status_code == 200  # /ok
    assert gw.calls == []


def test_a_voucher_login_is_one_brief_client_op_and_one_authorize(phone, gw, batch):
    (code,) = batch("harian", 1)
    hidden = phone.hidden()
    gw.calls.clear()
    resp = phone.post("/voucher", data={**hidden, "code": code})
    assert resp.status_code == 303
    assert [op for op, _ in gw.calls] == ["client", "authorize"]
    assert client_ops(gw) == [True]


def test_the_brief_view_has_the_session_but_no_allowances(phone, gw):
    phone.form("/accept")
    brief = gw.call("client", ip=PHONE_IP, brief=True)
    whole = gw.call("client", ip=PHONE_IP)
    assert brief["mac"] == whole["mac"] == PHONE_MAC
    assert brief["allowance"] == {} and brief["last_session"] is None
    assert whole["allowance"]
    # the session as the whole view describes it (a top-up reads its live counters)
    assert brief["session"] == whole["session"]


def test_a_refused_voucher_shows_the_whole_view_again(phone, gw, engine, datapath):
    """The villager whose free day is used up and who types a wrong code sees the
    used-up page with the error (the brief view has no allowance to say so)."""
    phone.form("/accept")
    datapath.traffic(PHONE_IP, down=301 * MB, packets=1000)
    engine.tick(force_flush=True)
    phone.post("/logout", data=phone.hidden("/status"))
    gw.calls.clear()
    resp = phone.form("/voucher", {"code": "2345-6789-AB"})
    assert resp.status_code == 400
    assert resp.headers["X-Hotspot-Error"] == "voucher-unknown"
    assert "habis" in text(resp)  # the used-up page, with the voucher form's error
    assert client_ops(gw)[-2:] == [True, False]


def test_a_blocked_device_is_refused_on_the_brief_view_too(phone, engine):
    hidden = phone.hidden()
    engine.block(mac=PHONE_MAC, reason="test")
    for path, data in (("/accept", hidden), ("/voucher", {**hidden, "code": "2345-6789-AB"})):
        resp = phone.post(path, data=data)
        assert resp.status_code == 403 and "diblokir" in text(resp)
        assert resp.headers["X-Hotspot-Error"] == "blocked"


def test_brief_must_be_true_or_false_on_the_wire(gw):
    for bad in ("yes", 1, [], {"a": 1}):
        line = encode({"op": "client", "ip": PHONE_IP, "brief": bad})
        reply = json.loads(gw.dispatcher.answer(line))
        assert reply["ok"] is False and reply["error"]["code"] == "bad-request"
        assert "brief" in reply["error"]["message"]
    ok = json.loads(gw.dispatcher.answer(encode({"op": "client", "ip": PHONE_IP, "brief": False})))
    assert ok["ok"] is True and "free" in ok["result"]["allowance"]
