"""The refusal's error code on the portal's page (``X-Hotspot-Error``): several refusals share
an HTTP status, and the soak counted every 403 of ``/accept`` as "the free day is used up" —
one of them was another device sending from the phone's address (issue #11, the soak's
finding (b)). Programs tell them apart by the code, villagers by the words."""

from __future__ import annotations

from hotspot.units import MB
from portal.captive import ERROR_HEADER
from tests.unit.portal.conftest import OTHER_MAC, PHONE_IP, PHONE_MAC


def test_a_used_up_day_and_another_device_at_the_address_are_told_apart(
    phone, gw, engine, datapath
):
    datapath.portal_peers_at[PHONE_IP] = {PHONE_MAC, OTHER_MAC}  # a hostile neighbour's copy
    resp = phone.form("/accept")
    assert resp.status_code == 403 and resp.headers[ERROR_HEADER] == "not-your-session"
    datapath.portal_peers_at[PHONE_IP] = {PHONE_MAC}
    assert phone.form("/accept").status_code == 303
    assert ERROR_HEADER not in phone.get("/").headers
    datapath.traffic(PHONE_IP, down=301 * MB, packets=1000)
    engine.tick(force_flush=True)
    resp = phone.form("/accept")
    assert resp.status_code == 403 and resp.headers[ERROR_HEADER] == "quota-exhausted"


def test_a_busy_gateway_and_a_wrong_code_carry_their_codes(phone, gw):
    resp = phone.form("/voucher", {"code": "AAAA-BBBB-CC"})
    assert resp.status_code == 400 and resp.headers[ERROR_HEADER] == "voucher-unknown"
    hidden = phone.hidden()  # the splash, opened while the gateway answered
    gw.down = True
    resp = phone.post("/accept", data=hidden)
    assert resp.status_code == 503 and resp.headers[ERROR_HEADER] == "gateway-unavailable"
    assert resp.headers["Retry-After"] == "10"
