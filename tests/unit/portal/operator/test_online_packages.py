"""Online-time packages in the console (issue #13, item 1): the package form's choice, the
listings' terms, the voucher lookup and the live sessions with time left and the validity
end in WIB — and the abuse cases (a kasir, malformed input)."""

from __future__ import annotations

import pytest

from hotspot.vouchers.batches import create_batch, list_batches
from hotspot.vouchers.packages import all_packages
from tests.unit.portal.operator.conftest import PHONE_IP, PHONE_MAC, text

ONLINE_PACKAGE = {
    "name": "sejam",
    "title": "Sejam Online",
    "price": "2000",
    "tier": "premium",
    "kind": "online",
    "duration": "",
    "unit": "hours",
    "online_minutes": "60",
    "valid_days": "7",
    "data_mb": "500",
    "devices": "1",
    "shelf_days": "",
    "active": "1",
}


def test_admin_makes_an_online_time_package(admin, db, phone):
    r = admin.form("/operator/packages/new", ONLINE_PACKAGE)
    assert r.status_code == 303, text(r)
    [pkg] = [p for p in all_packages(db) if p.name == "sejam"]
    assert (pkg.online_minutes, pkg.valid_days, pkg.hours, pkg.data_mb) == (60, 7, 168, 500)
    listing = text(admin.get("/operator/packages"))
    assert "Sejam Online" in listing and "1 jam online, berlaku 7 hari" in listing
    edit = admin.get(f"/operator/packages/{pkg.id}").get_data(as_text=True)
    assert 'id="f-kind-online" name="kind" value="online" checked' in edit
    assert 'name="online_minutes"' in edit and 'value="60"' in edit
    assert "1 jam online, berlaku 7 hari" in text(phone.get("/"))  # the villagers' price list
    # Back to hours: the online terms go.
    r = admin.form(f"/operator/packages/{pkg.id}", dict(ONLINE_PACKAGE, kind="hours", duration="3"))
    assert r.status_code == 303
    [pkg] = [p for p in all_packages(db) if p.name == "sejam"]
    assert (pkg.online_minutes, pkg.valid_days, pkg.hours) == (None, None, 3)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("online_minutes", "", "Harap diisi."),
        ("online_minutes", "satu jam", "Isi bilangan bulat"),
        ("online_minutes", "0", "Tidak boleh kurang dari 1."),
        ("online_minutes", "9999999", "Tidak boleh lebih dari 527.040."),
        ("valid_days", "", "Harap diisi."),
        ("valid_days", "-3", "Tidak boleh kurang dari 1."),
        ("valid_days", "400", "Tidak boleh lebih dari 366."),
    ],
)
def test_bad_online_input_is_named_and_nothing_is_saved(admin, db, field, value, message):
    before = len(all_packages(db))
    r = admin.form("/operator/packages/new", dict(ONLINE_PACKAGE, **{field: value}))
    assert r.status_code == 422
    body = text(r)
    assert message in body, body
    page = r.get_data(as_text=True)
    assert 'value="Sejam Online"' in page and 'aria-invalid="true"' in page
    assert len(all_packages(db)) == before


def test_a_kind_that_is_neither_is_taken_as_hours(admin, db):
    r = admin.form("/operator/packages/new", dict(ONLINE_PACKAGE, kind="gratis", duration="5"))
    assert r.status_code == 303
    [pkg] = [p for p in all_packages(db) if p.name == "sejam"]
    assert (pkg.online_minutes, pkg.hours) == (None, 5)


def test_a_kasir_cannot_make_an_online_package(kasir, db):
    before = len(all_packages(db))
    r = kasir.post(
        "/operator/packages/new",
        data={"csrf_token": kasir.token("/operator/"), **ONLINE_PACKAGE},
    )
    assert r.status_code == 403
    assert len(all_packages(db)) == before


def test_voucher_lookup_and_sessions_show_time_left_and_validity_in_wib(
    admin, db, key, clock, vouchers, gw, engine
):
    admin.form("/operator/packages/new", ONLINE_PACKAGE)
    code = create_batch(db, key, "sejam", 1, clock=clock).codes[0]
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    page = text(admin.get("/operator/voucher", query_string={"code": code}))
    assert "1 jam online, berlaku 7 hari" in page
    assert "Sisa waktu online 1 jam / 1 jam" in page
    assert "Berlaku sampai 5 Des 2026 10.00 WIB" in page
    assert "Asia/Jakarta" not in page
    sessions = text(admin.get("/operator/sessions"))
    assert "Sisa waktu online 1 jam" in sessions and "5 Des 2026 10.00 WIB" in sessions
    [b] = [b for b in list_batches(db) if b["package"] == "sejam"]
    assert "Isi paket Premium · 1 jam online, berlaku 7 hari" in text(
        admin.get(f"/operator/batches/{b['id']}")
    )
