"""What a login asks of the gateway (issue #12, item 2). A free login after the splash is
one ``authorize`` naming the MAC the splash was told (``expect_mac``; the portal linked it to
the device's identity already); without that (no splash in this session, too old, another
address, another device there now) the form asks for the brief view of the device first (no
allowances of every tier). A voucher's form asks for the brief view; the success page asks
nothing; a page that shows the device's situation again (a refusal) asks for the whole view.
The defences stay: a blocked device, another device at the address, a copied cookie, a clock
step, malformed wire fields."""

from __future__ import annotations

import json

from hotspot.identity import identity_of
from hotspot.protocol import encode
from hotspot.units import MB
from tests.unit.portal.conftest import BASE, OTHER_IP, OTHER_MAC, PHONE_IP, PHONE_MAC, Phone


def text(resp) -> str:
    return resp.get_data(as_text=True)


def client_ops(gw) -> list[bool]:
    """Each ``client`` op sent, as whether it was the brief one."""
    return [bool(args.get("brief")) for args in gw.ops("client")]


def ops(gw) -> list[str]:
    return [op for op, _ in gw.calls]


def test_a_free_login_after_the_splash_is_one_authorize(phone, gw, db):
    hidden = phone.hidden()  # the splash: the whole view (allowances shown)
    assert client_ops(gw) == [False]
    gw.calls.clear()
    resp = phone.post("/accept", data=hidden)
    assert resp.status_code == 303
    assert ops(gw) == ["authorize"]
    assert gw.ops("authorize")[0]["expect_mac"] == PHONE_MAC
    gw.calls.clear()
    assert phone.get(resp.headers["Location"]).status_code == 200  # /ok
    assert gw.calls == []
    # linked to its identity before the authorize, as when the form asked
    with db.connect() as conn:
        assert identity_of(conn, PHONE_MAC) is not None
    assert gw.call("client", ip=PHONE_IP)["session"]["mac"] == PHONE_MAC


def test_without_a_splash_the_form_asks_the_brief_view(app, gw):
    phone = Phone(app)
    hidden = phone.hidden()
    with phone.client.session_transaction(base_url=BASE) as kept:
        kept.pop("gw_mac")  # as a session from before this change, or a sheet without cookies
    gw.calls.clear()
    assert phone.post("/accept", data=hidden).status_code == 303
    assert ops(gw) == ["client", "authorize"]
    assert client_ops(gw) == [True]
    assert "expect_mac" not in gw.ops("authorize")[0]


def test_another_device_at_the_address_since_the_splash(phone, gw, datapath, db):
    """The address changed hands between the splash and the tap: the authorize naming the
    splash's MAC is refused and does nothing; the form asks and logs in who is there now
    (as it did before), linked to the identity first."""
    hidden = phone.hidden()
    datapath.neighbours[PHONE_IP] = OTHER_MAC
    datapath.neighbours.pop(OTHER_IP)
    gw.calls.clear()
    resp = phone.post("/accept", data=hidden)
    assert resp.status_code == 303
    assert ops(gw) == ["authorize", "client", "authorize"]
    assert gw.ops("authorize")[0]["expect_mac"] == PHONE_MAC
    assert "expect_mac" not in gw.ops("authorize")[1]
    session = gw.call("client", ip=PHONE_IP)["session"]
    assert session["mac"] == OTHER_MAC
    with db.connect() as conn:
        assert identity_of(conn, OTHER_MAC) is not None
    assert gw.call("client", mac=PHONE_MAC)["session"] is None


def test_a_copied_cookie_from_another_address_is_not_used(phone, app, gw):
    """A teenager copies a phone's cookies (open WiFi, plain HTTP) onto a laptop at another
    address: the kept MAC is the phone's address's, so the laptop's form asks the gateway."""
    hidden = phone.hidden()
    laptop = Phone(app, ip=OTHER_IP)
    for cookie in phone.client._cookies.values():
        laptop.client.set_cookie(cookie.key, cookie.value, domain=cookie.domain)
    gw.calls.clear()
    assert laptop.post("/accept", data=hidden).status_code == 303
    assert ops(gw) == ["client", "authorize"]
    assert gw.call("client", ip=OTHER_IP)["session"]["mac"] == OTHER_MAC
    assert gw.call("client", ip=PHONE_IP)["session"] is None


def test_the_kept_mac_goes_stale_and_a_clock_step_back_too(phone, gw, clock):
    hidden = phone.hidden()
    clock.advance(minutes=11)
    gw.calls.clear()
    assert phone.post("/accept", data=hidden).status_code == 303
    assert ops(gw) == ["client", "authorize"]  # older than 10 minutes: asked
    phone.post("/logout", data=phone.hidden("/status"))
    hidden = phone.hidden()  # kept again
    clock.jump(hours=-2)  # the wall clock stepped back: the kept time is in its future
    gw.calls.clear()
    assert phone.post("/accept", data=hidden).status_code == 303
    assert ops(gw) == ["client", "authorize"]


def test_refusals_on_the_one_authorize_are_the_pages_they_were(phone, gw, engine, datapath):
    """A used-up day is the used-up page; the gateway down at the tap (power just back) is
    the friendly "busy" page."""
    phone.form("/accept")
    datapath.traffic(PHONE_IP, down=301 * MB, packets=1000)
    engine.tick(force_flush=True)
    phone.post("/logout", data=phone.hidden("/status"))
    hidden = phone.hidden()
    gw.calls.clear()
    resp = phone.post("/accept", data=hidden)
    assert resp.status_code == 403 and resp.headers["X-Hotspot-Error"] == "quota-exhausted"
    assert "habis" in text(resp)
    assert gw.ops("authorize")[0]["expect_mac"] == PHONE_MAC
    gw.down = True
    resp = phone.post("/accept", data=hidden)
    assert resp.status_code == 503 and resp.headers["X-Hotspot-Error"] == "gateway-unavailable"


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


def test_expect_mac_on_the_wire(gw):
    """Malformed or misplaced: refused before anything is done."""
    for bad in (
        {"ip": PHONE_IP, "expect_mac": "not-a-mac"},
        {"ip": PHONE_IP, "expect_mac": 5},
        {"mac": PHONE_MAC, "expect_mac": PHONE_MAC},
        {"ip": PHONE_IP, "mac": PHONE_MAC, "expect_mac": PHONE_MAC},
    ):
        reply = json.loads(gw.dispatcher.answer(encode({"op": "authorize", **bad})))
        assert reply["ok"] is False and reply["error"]["code"] == "bad-request", bad
        assert "expect_mac" in reply["error"]["message"]
    assert gw.call("client", ip=PHONE_IP)["session"] is None
    wrong = encode({"op": "authorize", "ip": PHONE_IP, "expect_mac": OTHER_MAC})
    reply = json.loads(gw.dispatcher.answer(wrong))
    assert reply["ok"] is False and reply["error"]["code"] == "conflict"
    assert gw.call("client", ip=PHONE_IP)["session"] is None  # nothing done
    right = encode({"op": "authorize", "ip": PHONE_IP, "expect_mac": PHONE_MAC.upper()})
    assert json.loads(gw.dispatcher.answer(right))["result"]["mac"] == PHONE_MAC


def test_brief_must_be_true_or_false_on_the_wire(gw):
    for bad in ("yes", 1, [], {"a": 1}):
        line = encode({"op": "client", "ip": PHONE_IP, "brief": bad})
        reply = json.loads(gw.dispatcher.answer(line))
        assert reply["ok"] is False and reply["error"]["code"] == "bad-request"
        assert "brief" in reply["error"]["message"]
    ok = json.loads(gw.dispatcher.answer(encode({"op": "client", "ip": PHONE_IP, "brief": False})))
    assert ok["ok"] is True and "free" in ok["result"]["allowance"]
