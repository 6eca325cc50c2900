"""The console's pages end to end in Flask's test client: packages, batches, sheets, selling,
vouchers, the ledger, live sessions, the audit log — and bad input everywhere."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text as sql
from sqlalchemy.exc import DBAPIError

from hotspot import audit
from hotspot.vouchers.batches import batch_codes, list_batches
from hotspot.vouchers.lookup import find_voucher
from hotspot.vouchers.packages import all_packages, get_package, sync_packages
from portal.state import state
from tests.unit.portal.operator.conftest import OTHER_IP, OTHER_MAC, PHONE_IP, PHONE_MAC, text

GOOD_PACKAGE = {
    "name": "malam",
    "title": "Paket Malam",
    "price": "3000",
    "tier": "premium",
    "duration": "12",
    "unit": "hours",
    "data_mb": "",
    "devices": "1",
    "shelf_days": "30",
    "active": "1",
}


def codes_on(resp) -> list[str]:
    return re.findall(r'class="vcode">([^<]+)<', resp.get_data(as_text=True))


def test_admin_makes_a_package_from_the_console(admin, db, app, phone):
    r = admin.form("/operator/packages/new", GOOD_PACKAGE)
    assert r.status_code == 303
    [pkg] = [p for p in all_packages(db) if p.name == "malam"]
    assert (pkg.price, pkg.hours, pkg.data_mb, pkg.shelf_days, pkg.source) == (
        3000,
        12,
        None,
        30,
        "console",
    )
    assert "Paket Malam" in text(phone.get("/"))  # on the villagers' price list at once
    r = admin.form(
        f"/operator/packages/{pkg.id}", dict(GOOD_PACKAGE, duration="2", unit="days", price="4.000")
    )
    assert r.status_code == 303
    pkg = get_package(db, pkg.id)
    assert (pkg.hours, pkg.price) == (48, 4000)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("price", "-5000", "Tidak boleh negatif."),
        ("price", "lima ribu", "Isi bilangan bulat"),
        ("price", "999999999999", "Tidak boleh lebih dari 100.000.000."),
        ("price", "", "Harap diisi."),
        ("duration", "0", "Tidak boleh kurang dari 1."),
        ("duration", "400", "Tidak boleh lebih dari 366."),
        ("devices", "99", "Tidak boleh lebih dari 16."),
        ("data_mb", "-1", "Tidak boleh negatif."),
        ("name", "Paket Malam!", "huruf kecil"),
        ("name", "harian", "Sudah ada paket dengan nama ini."),
        ("tier", "turbo", "Pilih kecepatan."),
        ("title", "x" * 41, "Paling banyak 40 karakter."),
    ],
)
def test_bad_package_input_is_named_and_nothing_is_lost(admin, db, field, value, message):
    form = dict(GOOD_PACKAGE, **{field: value})
    if field == "duration" and value == "400":
        form["unit"] = "days"
    before = len(all_packages(db))
    r = admin.form("/operator/packages/new", form)
    assert r.status_code == 422
    body = text(r)
    assert message in body, body
    assert "Perbaiki isian yang ditandai" in body
    page = r.get_data(as_text=True)
    assert 'value="Paket Malam"' in page or field == "title"  # what was typed comes back
    assert 'aria-invalid="true"' in page
    assert len(all_packages(db)) == before


def test_config_packages_are_read_only_in_the_console(admin, db):
    harian = next(p for p in all_packages(db) if p.name == "harian")
    r = admin.get(f"/operator/packages/{harian.id}")
    assert "dari file konfigurasi" in text(r)
    r = admin.form(f"/operator/packages/{harian.id}", dict(GOOD_PACKAGE, name="harian", price="1"))
    assert r.status_code == 409
    assert get_package(db, harian.id).price == 5000


def test_console_packages_survive_the_config_sync(admin, db, cfg):
    admin.form("/operator/packages/new", GOOD_PACKAGE)
    sync_packages(db, cfg.packages.values())
    assert {p.name: p.source for p in all_packages(db)}["malam"] == "console"


def test_batch_sheet_and_csv(admin, db, key):
    r = admin.form(
        "/operator/batches", {"package": "1", "count": "30", "note": "=cmd|' /C calc'!A0"}
    )
    assert r.status_code == 303 and "/operator/batches/1" in r.headers["Location"]
    assert "Cetak lembarnya sekarang" in text(admin.get(r.headers["Location"]))
    sheet = admin.get("/operator/batches/1/sheet")
    assert sheet.status_code == 200
    codes = codes_on(sheet)
    assert len(codes) == 30 and codes == [c for _, c in batch_codes(db, key, 1)]
    body = sheet.get_data(as_text=True)
    assert body.count('<svg class="qr"') == 30
    assert "Rp 5.000" in body and "Desa Sungai Duren" in body
    assert "style=" not in body and "<script" not in body
    csv_body = admin.get("/operator/batches/1/codes.csv").get_data(as_text=True)
    assert csv_body.splitlines()[0].startswith("batch,serial,code,package,price_rupiah")
    assert len(csv_body.splitlines()) == 31 and codes[0] in csv_body
    # the note is shown escaped and exported defused
    r = admin.get("/operator/batches")
    assert "=cmd|&#39; /C calc&#39;!A0" in r.get_data(as_text=True)


def test_qr_codes_open_the_portal_with_the_code_filled_in(admin, phone, db, key):
    import segno  # noqa: F401 - only to say what the sheet depends on

    admin.form("/operator/batches", {"package": "1", "count": "1"})
    code = codes_on(admin.get("/operator/batches/1/sheet"))[0]
    r = phone.get(f"/?code={code}")
    assert f'value="{code}"' in r.get_data(as_text=True)
    r = phone.get("/?code=<script>")
    assert 'value=""' in r.get_data(as_text=True) and "<script>" not in r.get_data(as_text=True)


@pytest.mark.parametrize(
    "count,status,message",
    [
        ("1001", 422, "Paling banyak 1000 voucher dalam satu kelompok"),
        ("99999999999999999999", 422, "Paling banyak 1000 voucher"),
        ("0", 422, "dari 1 sampai 1000"),
        ("-3", 422, "dari 1 sampai 1000"),
        ("banyak", 422, "dari 1 sampai 1000"),
    ],
)
def test_absurd_counts_are_capped_and_said_so(admin, db, count, status, message):
    r = admin.form("/operator/batches", {"package": "1", "count": count})
    assert r.status_code == status
    assert message in text(r)
    assert list_batches(db) == []
    assert f'value="{count}"' in r.get_data(as_text=True)


def test_kasir_sells_and_the_ledger_follows(admin, kasir, db, key, phone):
    admin.form("/operator/batches", {"package": "2", "count": "3"})  # mingguan, Rp 25.000
    codes = codes_on(kasir.get("/operator/batches/1/sheet"))
    assert len(codes) == 3
    r = kasir.form("/operator/sell", {"code": codes[0].lower().replace("-", " ")})
    assert r.status_code == 303
    assert "Terjual: Mingguan, Rp 25.000. Terima uangnya." in text(kasir.get(r.headers["Location"]))
    r = kasir.form("/operator/sell", {"code": codes[0]})
    assert r.status_code == 409 and "sudah terjual, oleh siti" in text(r)
    r = kasir.form("/operator/sell", {"code": "ABCD-EFGH-JK"})
    assert r.status_code == 404 and "Tidak ada voucher dengan kode ini" in text(r)
    assert 'value="ABCD-EFGH-JK"' in r.get_data(as_text=True)
    # the sheet now leaves the sold card out
    assert codes_on(kasir.get("/operator/batches/1/sheet")) == codes[1:]
    # a villager uses a card nobody marked
    assert phone.form("/voucher", {"code": codes[1]}).status_code == 303
    sales = text(admin.get("/operator/sales"))
    assert "Rp 50.000 · 2 voucher" in sales
    r = admin.get("/operator/sales?view=kasir")
    assert "siti" in text(r) and "(tidak dicatat)" in text(r)
    cash = text(admin.get("/operator/sales?view=cash"))
    assert "siti 1 Rp 25.000" in cash
    days = admin.get("/operator/sales?view=days").get_data(as_text=True)
    assert days.count('<svg class="chart"') == 2
    csv_all = admin.get("/operator/sales.csv?view=all").get_data(as_text=True).splitlines()
    assert len(csv_all) == 3 and csv_all[0].startswith("voucher_id,batch,serial,package")
    for view in ("today", "days", "months", "packages", "kasir", "cash"):
        r = admin.get(f"/operator/sales.csv?view={view}")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert "Rp 25.000" in text(kasir.get("/operator/sell"))  # what siti hands over


def test_voucher_lookup_void_and_undo(admin, kasir, db, key, batch, phone, gw):
    codes = batch("harian", 2)
    r = kasir.get(f"/operator/voucher?code={codes[0]}")
    assert "di stok" in text(r)
    vid = find_voucher(db, key, codes[0])
    assert (
        kasir.form(f"/operator/voucher/{vid}/sell", page=f"/operator/voucher?id={vid}").status_code
        == 303
    )
    assert "terjual, belum dipakai" in text(kasir.get(f"/operator/voucher?id={vid}"))
    r = admin.form(
        f"/operator/voucher/{vid}/unsell", {"reason": "typo"}, page=f"/operator/voucher?id={vid}"
    )
    assert r.status_code == 303 and "di stok" in text(admin.get(f"/operator/voucher?id={vid}"))
    # void a running voucher: its phone is disconnected at once
    assert phone.form("/voucher", {"code": codes[1]}).status_code == 303
    vid2 = find_voucher(db, key, codes[1])
    r = admin.form(
        f"/operator/voucher/{vid2}/void", {"reason": ""}, page=f"/operator/voucher?id={vid2}"
    )
    assert r.status_code == 422 and "Tuliskan alasannya." in text(r)
    r = admin.form(
        f"/operator/voucher/{vid2}/void", {"reason": "dicuri"}, page=f"/operator/voucher?id={vid2}"
    )
    assert r.status_code == 303
    assert gw.call("client", ip=PHONE_IP)["session"] is None
    assert "dibatalkan" in text(admin.get(f"/operator/voucher?id={vid2}"))
    r = phone.form("/voucher", {"code": codes[1]})
    assert r.status_code == 410


def test_batch_void_from_the_console(admin, db, batch):
    batch("harian", 5)
    r = admin.form("/operator/batches/1/void", {"reason": ""}, page="/operator/batches/1")
    assert r.status_code == 422
    r = admin.form(
        "/operator/batches/1/void", {"reason": "lembar hilang"}, page="/operator/batches/1"
    )
    assert r.status_code == 303
    assert "5 voucher dibatalkan." in text(admin.get(r.headers["Location"]))


def test_kasir_marks_a_range(kasir, db, batch):
    batch("harian", 10)
    r = kasir.form(
        "/operator/batches/1/sell", {"first": "2", "last": "4"}, page="/operator/batches/1"
    )
    assert r.status_code == 303
    assert "3 voucher ditandai terjual." in text(kasir.get(r.headers["Location"]))
    r = kasir.form(
        "/operator/batches/1/sell", {"first": "2", "last": "11"}, page="/operator/batches/1"
    )
    assert r.status_code == 422 and "Tidak boleh lebih dari 10." in text(r)


def test_live_sessions_kick_extend_block(
    admin, kasir, phone, other_phone, gw, batch, tmp_path, cfg
):
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(
        f"1764300000 {PHONE_MAC} {PHONE_IP} Redmi-9A 01:{PHONE_MAC}\n"
        f"1764300000 {OTHER_MAC} {OTHER_IP} * *\n"
    )
    object.__setattr__(cfg.operator, "leases_file", str(leases))
    code = batch("harian", 1)[0]
    phone.form("/voucher", {"code": code})
    other_phone.form("/accept")
    r = kasir.get("/operator/sessions")
    body = text(r)
    assert r.status_code == 200
    assert "Redmi-9A" in body and "alamat acak" in body and "voucher harian" in body
    assert "Perpanjang" not in body  # a kasir cannot extend
    r = kasir.form("/operator/sessions/kick", {"mac": PHONE_MAC}, page="/operator/sessions")
    assert r.status_code == 303
    assert gw.call("client", ip=PHONE_IP)["session"] is None
    r = kasir.form("/operator/sessions/kick", {"mac": PHONE_MAC}, page="/operator/sessions")
    assert "tidak ada yang diubah" in text(kasir.get(r.headers["Location"]))
    r = kasir.form("/operator/sessions/kick", {"mac": "not-a-mac"}, page="/operator/sessions")
    assert r.status_code == 400
    before = gw.call("client", ip=OTHER_IP)["session"]["seconds_remaining"]
    r = admin.form(
        "/operator/sessions/extend", {"mac": OTHER_MAC, "minutes": "30"}, page="/operator/sessions"
    )
    assert r.status_code == 303
    assert gw.call("client", ip=OTHER_IP)["session"]["seconds_remaining"] > before
    r = admin.form(
        "/operator/sessions/extend", {"mac": OTHER_MAC, "minutes": "-5"}, page="/operator/sessions"
    )
    assert r.status_code == 400
    assert (
        admin.form(
            "/operator/sessions/block", {"mac": OTHER_MAC}, page="/operator/sessions"
        ).status_code
        == 303
    )
    assert gw.call("client", ip=OTHER_IP)["blocked"]
    assert OTHER_MAC in text(admin.get("/operator/sessions"))
    assert (
        admin.form(
            "/operator/sessions/unblock", {"mac": OTHER_MAC}, page="/operator/sessions"
        ).status_code
        == 303
    )
    assert not gw.call("client", ip=OTHER_IP)["blocked"]
    actions = [r.action for r in audit.entries(state(admin.client.application).db)]
    for a in ("session.kick", "session.extend", "device.block", "device.unblock"):
        assert a in actions


def test_dashboard(admin, kasir, phone):
    phone.form("/accept")
    body = text(admin.get("/operator/"))
    assert "1 perangkat online sekarang" in body and "Layanan WiFi berjalan" in body
    assert "penjualan hari ini" in body and "penjualan hari ini" not in text(
        kasir.get("/operator/")
    )


def test_gateway_down_is_a_friendly_page(admin, gw):
    gw.down = True
    r = admin.get("/operator/sessions")
    assert r.status_code == 503 and "tidak menjawab" in text(r)
    r = admin.form("/operator/sessions/kick", {"mac": PHONE_MAC}, page="/operator/sell")
    assert r.status_code == 503 and "Traceback" not in r.get_data(as_text=True)
    assert admin.get("/operator/").status_code == 200  # the overview still shows
    assert admin.get("/operator/sell").status_code == 200


def test_unknown_pages_and_garbage(admin):
    for path in (
        "/operator/nope",
        "/operator/batches/999",
        "/operator/packages/999",
        "/operator/voucher?id=999",
        "/operator/voucher?id=abc",
        "/operator/operators/999",
        "/operator/batches/999/sheet",
    ):
        r = admin.get(path)
        assert r.status_code == 404, path
        assert "Traceback" not in r.get_data(as_text=True)
    r = admin.get("/operator/sales?view=x&from=garbage&to=2026-99-99")
    assert r.status_code == 200
    r = admin.post(
        "/operator/sell", data="x" * 100_000, content_type="application/x-www-form-urlencoded"
    )
    assert r.status_code == 413


def test_every_action_is_audited_and_the_log_is_append_only(admin, kasir, db, batch):
    admin.form("/operator/packages/new", GOOD_PACKAGE)
    admin.form("/operator/batches", {"package": "1", "count": "2"})
    code = codes_on(kasir.get("/operator/batches/1/sheet"))[0]
    kasir.form("/operator/sell", {"code": code})
    actions = [r.action for r in audit.entries(db)]
    for a in (
        "operator.create",
        "operator.login",
        "package.create",
        "batch.create",
        "batch.print",
        "voucher.sell",
    ):
        assert a in actions, actions
    sale = next(r for r in audit.entries(db) if r.action == "voucher.sell")
    assert sale.actor == "siti" and sale.role == "kasir" and sale.ip == "10.10.0.51"
    assert '"price":5000' in sale.after
    assert audit.verify(db) is None
    r = admin.get("/operator/audit")
    assert "rantainya utuh" in text(r)
    with db.connect() as conn:
        for stmt in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError):
                conn.execute(sql(stmt))
            conn.rollback()
    # a doctored copy (triggers dropped by someone with the file) shows
    with db.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        conn.exec_driver_sql(
            "UPDATE audit_log SET after = '{\"price\":1}' WHERE action = 'voucher.sell'"
        )
    assert audit.verify(db) == sale.id
    assert "Catatan diubah orang pada entri" in text(admin.get("/operator/audit"))
    assert admin.get("/operator/audit.csv").get_data(as_text=True).startswith("id,at_utc,actor")


def test_pages_fit_the_rules(admin, batch):
    """Small, no inline script or style, every form with its token."""
    batch("harian", 3)
    for path in (
        "/operator/",
        "/operator/sell",
        "/operator/batches",
        "/operator/batches/1",
        "/operator/sessions",
        "/operator/sales",
        "/operator/packages",
        "/operator/packages/new",
        "/operator/operators",
        "/operator/account",
        "/operator/audit",
    ):
        r = admin.get(path)
        body = r.get_data(as_text=True)
        assert r.status_code == 200, path
        assert "<script" not in body and "style=" not in body and "<style" not in body, path
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert r.headers["Cache-Control"] == "no-store"
        forms = re.findall(r"<form[^>]*method=\"post\".*?</form>", body, flags=re.S)
        for f in forms:
            assert 'name="csrf_token"' in f, (path, f[:200])
        assert len(r.data) < 30_000, (path, len(r.data))


def test_a_big_batch_is_shown_a_page_at_a_time(admin, batch):
    batch("harian", 250)
    r = admin.get("/operator/batches/1")
    assert len(r.data) < 30_000, len(r.data)
    assert 'href="/operator/batches/1?page=3"' in r.get_data(as_text=True)
    body = text(admin.get("/operator/batches/1?page=3"))
    assert " 250 " in body and " 200 " not in body
    assert admin.get("/operator/batches/1?page=99").status_code == 200


def test_a_package_removed_from_the_file_goes_off_sale(admin, db, cfg, phone):
    admin.form("/operator/packages/new", GOOD_PACKAGE)
    remaining = [p for p in cfg.packages.values() if p.name != "mingguan"]
    sync_packages(db, remaining, retire_missing=True)
    on_sale = {p.name for p in all_packages(db) if p.active}
    assert "mingguan" not in on_sale and {"harian", "malam"} <= on_sale
    sync_packages(db, cfg.packages.values(), retire_missing=True)  # back in the file
    assert "mingguan" in {p.name for p in all_packages(db) if p.active}
