"""Announcements in the console and on the villagers' pages (issue #15 item 3): the admin
enters a notice in village time, it shows on the splash and status pages in the page's
language from its start to its end; hostile text shows as text; a bad form is a friendly page
that keeps what was typed; no CSRF token, no change; a kasir gets the 403 page."""

from __future__ import annotations

from hotspot import announcements as ann
from hotspot import audit
from portal.state import state
from tests.unit.portal.operator.conftest import ADMIN_PW, Phone, text

# The test clock starts at 2026-11-28 03:00 UTC = 10.00 WIB.
TODAY_9 = "2026-11-28T09:00"
TODAY_12 = "2026-11-28T12:00"
NOTICE = "Vaksinasi gratis di puskesmas, Sabtu pukul 08.00–12.00"


def _add(admin, **fields):
    data = {"text_id": NOTICE, "text_en": "", "starts": TODAY_9, "ends": TODAY_12, **fields}
    return admin.form("/operator/announcements", data)


def test_admin_enters_a_notice_and_the_splash_shows_it_until_its_end(admin, app, clock):
    r = admin.get("/operator/announcements")
    assert r.status_code == 200 and "Belum ada pengumuman." in text(r)
    r = _add(admin, text_en="Free vaccination at the puskesmas")
    assert r.status_code == 303, text(r)[:3000]
    listed = text(admin.get(r.headers["Location"]))
    assert "Pengumuman disimpan." in listed and NOTICE in listed
    assert "28 Nov 2026 09.00 WIB" in listed and "sedang tampil" in listed

    phone = Phone(app)
    assert NOTICE in text(phone.get("/"))
    assert "Free vaccination at the puskesmas" in text(phone.get("/?lang=en"))
    clock.advance(hours=1, minutes=59)  # 11.59 WIB
    assert NOTICE in text(phone.get("/?lang=id"))
    clock.advance(minutes=1)  # 12.00 WIB: its end
    assert NOTICE not in text(phone.get("/"))
    admin.login("budi", ADMIN_PW)  # two idle hours logged the admin out
    assert "selesai" in text(admin.get("/operator/announcements"))


def test_the_status_page_of_a_connected_phone_shows_it(admin, app, phone):
    _add(admin)
    r = phone.form("/accept")
    assert r.status_code in (200, 303)
    body = text(phone.get("/status"))
    assert "Tersambung" in body and NOTICE in body


def test_html_in_a_notice_shows_as_text(admin, app):
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)> & <b>tebal</b>"
    assert _add(admin, text_id=hostile, text_en=hostile).status_code == 303
    for page in (
        Phone(app).get("/").get_data(as_text=True),
        admin.get("/operator/announcements").get_data(as_text=True),
    ):
        assert (
            "<script>alert(1)" not in page and "<img src=x" not in page and "<b>tebal" not in page
        )
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" in text(Phone(app).get("/"))


def test_a_bad_form_is_a_friendly_page_that_keeps_what_was_typed(admin, app):
    db = state(app).db
    for fields, message in [
        ({"text_id": "  "}, "Harap diisi."),
        ({"text_id": "x" * 281}, "Paling banyak 280 karakter."),
        ({"text_en": "y" * 281}, "Paling banyak 280 karakter."),
        ({"starts": "besok pagi"}, "Bukan tanggal dan jam."),
        ({"ends": "2026-11-28T08:00"}, "Akhir harus sesudah mulai."),
        ({"ends": "2027-12-31T08:00"}, "paling lama satu tahun"),
        ({"starts": "31/02/2026 08.00"}, "Bukan tanggal dan jam."),
        ({"starts": "9999-01-01T00:00"}, "Bukan tanggal dan jam."),
    ]:
        r = _add(admin, **fields)
        assert r.status_code == 422, fields
        body = text(r)
        assert message in body, (fields, body[:3000])
        assert "Belum ada yang disimpan" in body
    r = _add(admin, starts="besok pagi")
    assert 'value="besok pagi"' in r.get_data(as_text=True) and NOTICE in text(r)
    assert ann.village_notices(db) == []
    # A date typed by hand, the Indonesian way, is fine.
    assert _add(admin, starts="28/11/2026 09.00", ends="28-11-2026 12.00").status_code == 303


def test_no_csrf_token_no_change_and_a_kasir_gets_the_403(admin, kasir, app):
    db = state(app).db
    r = admin.post(
        "/operator/announcements",
        data={"text_id": NOTICE, "starts": TODAY_9, "ends": TODAY_12},
    )
    assert r.status_code in (400, 403) and ann.village_notices(db) == []
    r = kasir.get("/operator/announcements")
    assert r.status_code == 403 and "Khusus admin" in text(r)
    r = kasir.form(
        "/operator/announcements",
        {"text_id": NOTICE, "starts": TODAY_9, "ends": TODAY_12},
        page="/operator/account",
    )
    assert r.status_code == 403 and ann.village_notices(db) == []
    assert "Pengumuman" not in text(kasir.get("/operator/"))


def test_change_and_delete(admin, app):
    db = state(app).db
    _add(admin)
    (n,) = ann.village_notices(db)
    page = f"/operator/announcements/{n.ref}"
    r = admin.get(page)
    assert r.status_code == 200 and 'value="2026-11-28T09:00"' in r.get_data(as_text=True)
    r = admin.form(page, {"text_id": "Ganti jadwal", "starts": TODAY_9, "ends": "2026-11-28T08:00"})
    assert r.status_code == 422 and "Akhir harus sesudah mulai." in text(r)
    r = admin.form(
        page, {"text_id": "Ganti jadwal", "text_en": "", "starts": TODAY_9, "ends": TODAY_12}
    )
    assert r.status_code == 303
    assert [x.text_id for x in ann.village_notices(db)] == ["Ganti jadwal"]
    r = admin.form(f"{page}/delete", page="/operator/announcements")
    assert r.status_code == 303 and "Pengumuman dihapus." in text(admin.get(r.headers["Location"]))
    r = admin.form(f"{page}/delete", page="/operator/announcements")
    assert "sudah dihapus" in text(admin.get(r.headers["Location"]))
    assert admin.get(page).status_code == 404
    actions = [e.action for e in audit.entries(db)]
    assert {"announcement.add", "announcement.edit", "announcement.delete"} <= set(actions)


def test_a_full_list_is_a_friendly_page(admin, app, monkeypatch):
    monkeypatch.setattr(ann, "MAX_ROWS", 1)
    assert _add(admin).status_code == 303
    r = _add(admin, text_id="Satu lagi")
    assert r.status_code == 422 and "Hapus yang lama dulu." in text(r)
    assert len(ann.village_notices(state(app).db)) == 1
