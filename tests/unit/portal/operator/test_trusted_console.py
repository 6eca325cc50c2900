"""The console's trusted devices page (issue #13, item 5): admin only, Indonesian first."""

from __future__ import annotations

from hotspot import audit
from portal.state import state
from tests.unit.portal.operator.conftest import OTHER_IP, OTHER_MAC, PHONE_MAC, text

PC = "3c:5a:b4:12:34:56"


def test_admin_adds_lists_and_removes(admin, gw):
    r = admin.get("/operator/trusted")
    assert r.status_code == 200
    body = text(r)
    assert "Perangkat tepercaya" in body and "Belum ada perangkat tepercaya." in body
    r = admin.form(
        "/operator/trusted",
        {"label": "PC kantor desa", "mac": "3C-5A-B4-12-34-56", "tier": "unlimited"},
    )
    assert r.status_code == 303, text(r)[:2000]
    body = text(admin.get(r.headers["Location"]))
    assert "PC kantor desa" in body and PC in body and "tanpa batas" in body
    assert "offline" in body
    (row,) = gw.call("trusted")
    assert row["tier"] == "unlimited" and row["created_by"] == "budi"
    # A device that is on the LAN is let out at once.
    r = admin.form("/operator/trusted", {"label": "CCTV", "mac": OTHER_MAC, "tier": "free"})
    assert r.status_code == 303
    assert gw.call("client", ip=OTHER_IP)["session"]["source"] == "trusted"
    assert f"online di {OTHER_IP}" in text(admin.get("/operator/trusted"))
    r = admin.form("/operator/trusted/remove", {"mac": OTHER_MAC}, page="/operator/trusted")
    assert r.status_code == 303
    assert "melihat portal lagi" in text(admin.get(r.headers["Location"]))
    assert gw.call("client", ip=OTHER_IP)["session"] is None
    r = admin.form("/operator/trusted/remove", {"mac": OTHER_MAC}, page="/operator/trusted")
    assert "tidak ada yang diubah" in text(admin.get(r.headers["Location"]))
    actions = [e.action for e in audit.entries(state(admin.client.application).db)]
    assert actions.count("device.trust") == 2 and actions.count("device.untrust") == 1


def test_bad_input_is_a_friendly_page_that_keeps_what_was_typed(admin, gw):
    r = admin.form(
        "/operator/trusted",
        {"label": "Puskesmas", "mac": "bukan-mac", "tier": "gold"},
        page="/operator/trusted",
    )
    assert r.status_code == 422
    body = text(r)
    assert (
        "Bukan kode unik perangkat (alamat MAC)" in body and "Pilih kecepatan dari daftar." in body
    )
    assert 'value="Puskesmas"' in r.get_data(as_text=True)
    r = admin.form(
        "/operator/trusted", {"label": " ", "mac": PC, "tier": "free"}, page="/operator/trusted"
    )
    assert r.status_code == 422 and gw.call("trusted") == []
    r = admin.form("/operator/trusted/remove", {"mac": "x"}, page="/operator/trusted")
    assert r.status_code == 400


def test_blocked_device_is_refused(admin, gw):
    gw.call("block", mac=PHONE_MAC, reason="abuse")
    r = admin.form(
        "/operator/trusted",
        {"label": "HP", "mac": PHONE_MAC, "tier": "free"},
        page="/operator/trusted",
    )
    assert r.status_code == 409 and "diblokir" in text(r)
    assert gw.call("trusted") == []


def test_kasir_gets_403_and_no_menu_item(kasir, gw):
    assert kasir.get("/operator/trusted").status_code == 403
    assert "Perangkat tepercaya" not in text(kasir.get("/operator/sessions"))
    r = kasir.form(
        "/operator/trusted",
        {"label": "HP saya", "mac": PHONE_MAC, "tier": "unlimited"},
        page="/operator/sessions",
    )
    assert r.status_code == 403
    assert gw.call("trusted") == []


def test_a_villager_cannot_trust_himself(console, phone, gw):
    """Not logged in (a villager on the open SSID): no page, no form, nothing stored."""
    r = console.get("/operator/trusted")
    assert r.status_code in (302, 303) and "/operator/login" in r.headers["Location"]
    r = phone.post("/operator/trusted", data={"label": "HP", "mac": PHONE_MAC, "tier": "unlimited"})
    assert r.status_code in (302, 303, 400, 403)
    assert gw.call("trusted") == []


def test_english(admin):
    body = text(admin.get("/operator/trusted?lang=en"))
    assert "Trusted devices" in body and "Add a device" in body
    assert "Perangkat tepercaya" not in body
