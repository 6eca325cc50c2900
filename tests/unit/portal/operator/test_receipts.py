"""Issue #13.3: receipts (58/80 mm) and the quick sale from the kasir's home screen.

The rules checked here: a quick sale sells exactly one voucher per form (a double tap or a
resent POST shows the same voucher); empty stock is a friendly message; a kasir prints the
receipt of a voucher they have just sold and nothing else (docs/security.md: a kasir never
gets a sold code back); the ESC/POS printer's failures are a message, not a traceback.
"""

from __future__ import annotations

import dataclasses
import html
import re

import pytest
from escpos.printer import Dummy
from sqlalchemy import func, select

from hotspot.audit import Actor
from hotspot.model import Voucher
from hotspot.model_operator import VoucherSale
from hotspot.vouchers.lookup import find_voucher
from hotspot.vouchers.packages import all_packages
from hotspot.vouchers.sales import mark_sold
from portal.operator import receipt_printer
from portal.operator.receipts import RECEIPT_MINUTES
from portal.state import state
from tests.unit.portal.operator.conftest import text


def _package_id(db, name):
    return next(p.id for p in all_packages(db) if p.name == name)


def _quick_form(console, package_id):
    """The home screen's quick-sale form of one package: its CSRF and one-time token."""
    body = console.get("/operator/").get_data(as_text=True)
    forms = re.findall(
        r'<form method="post" action="/operator/quick-sale">(.*?)</form>', body, re.S
    )
    for f in forms:
        if f'name="package" value="{package_id}"' in f:
            fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', f))
            return {k: html.unescape(v) for k, v in fields.items()}
    raise AssertionError(body[:3000])


def _sold_count(db):
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(VoucherSale)).scalar()


def test_two_taps_sell_the_next_voucher_and_open_its_receipt(db, key, kasir, batch, accounts):
    codes = batch("harian", 3)
    pid = _package_id(db, "harian")
    r = kasir.post("/operator/quick-sale", data=_quick_form(kasir, pid))
    assert r.status_code == 303
    assert "/operator/receipt/" in r.location and "print=1" in r.location
    page = kasir.get(r.location)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert codes[0] in body  # the oldest unsold card first
    assert 'id="print-again"' in body and 'data-autoprint="1"' in body
    assert "receipt-58.css" in body and "<svg" in body
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    words = text(page)
    assert "Desa Sungai Duren" in words and "Harian" in words and "Rp" in words
    vid = find_voucher(db, key, codes[0])
    with db.connect() as conn:
        sale = conn.execute(select(VoucherSale).where(VoucherSale.voucher_id == vid)).one()
    assert sale.operator == "siti" and sale.price == 5000
    # 80 mm paper on request
    assert "receipt-80.css" in kasir.get(f"/operator/receipt/{vid}?w=80").get_data(as_text=True)


def test_a_double_submit_sells_one_voucher(db, key, kasir, batch):
    batch("harian", 3)
    form = _quick_form(kasir, _package_id(db, "harian"))
    first = kasir.post("/operator/quick-sale", data=form)
    again = kasir.post("/operator/quick-sale", data=form)
    assert first.status_code == again.status_code == 303
    assert first.location == again.location
    assert _sold_count(db) == 1


def test_a_new_form_sells_the_next_one(db, kasir, batch):
    batch("harian", 3)
    pid = _package_id(db, "harian")
    a = kasir.post("/operator/quick-sale", data=_quick_form(kasir, pid))
    b = kasir.post("/operator/quick-sale", data=_quick_form(kasir, pid))
    assert a.location != b.location
    assert _sold_count(db) == 2


def test_empty_stock_is_a_friendly_message(db, kasir, batch):
    batch("harian", 1)
    pid = _package_id(db, "mingguan")  # no batch of this package
    r = kasir.post("/operator/quick-sale", data=_quick_form(kasir, pid))
    assert r.status_code == 409
    assert 'id="quick-error"' in r.get_data(as_text=True)
    assert "Traceback" not in r.get_data(as_text=True)
    assert _sold_count(db) == 0


def test_empty_stock_in_english(db, kasir, batch):
    kasir.get("/operator/?lang=en")
    pid = _package_id(db, "mingguan")
    r = kasir.post("/operator/quick-sale", data=_quick_form(kasir, pid))
    assert r.status_code == 409
    assert "No voucher of this package is left" in text(r)


def test_indonesian_by_default(db, kasir, batch):
    batch("harian", 1)
    body = text(kasir.get("/operator/"))
    assert "Jual cepat" in body


def test_a_quick_sale_without_its_token_sells_nothing(db, kasir, batch):
    batch("harian", 2)
    form = _quick_form(kasir, _package_id(db, "harian"))
    form.pop("token")
    r = kasir.post("/operator/quick-sale", data=form)
    assert r.status_code == 400
    assert _sold_count(db) == 0


def test_a_quick_sale_without_csrf_is_refused(db, kasir, batch):
    batch("harian", 2)
    form = _quick_form(kasir, _package_id(db, "harian"))
    form.pop("csrf_token")
    r = kasir.post("/operator/quick-sale", data=form)
    assert r.status_code in (400, 403)
    assert _sold_count(db) == 0


def test_a_kasir_cannot_print_an_earlier_sold_code(db, key, kasir, batch, clock, accounts):
    """The attack: the kasir asks for the receipt of a card sold earlier (by them, or by
    another kasir) to get its code back."""
    codes = batch("harian", 3)
    other = find_voucher(db, key, codes[0])
    mark_sold(db, other, actor=Actor("ani", 99, "kasir"), clock=clock)  # another kasir's
    r = kasir.get(f"/operator/receipt/{other}")
    assert r.status_code == 403 and codes[0] not in r.get_data(as_text=True)

    r = kasir.post("/operator/quick-sale", data=_quick_form(kasir, _package_id(db, "harian")))
    mine = int(re.search(r"/receipt/(\d+)", r.location).group(1))
    assert kasir.get(f"/operator/receipt/{mine}").status_code == 200  # now: may print again
    clock.advance(minutes=RECEIPT_MINUTES + 1)
    r = kasir.get(f"/operator/receipt/{mine}")
    assert r.status_code == 403
    assert codes[1] not in r.get_data(as_text=True)


def test_a_kasir_cannot_print_an_unsold_card_by_id(db, key, kasir, batch):
    codes = batch("harian", 2)
    vid = find_voucher(db, key, codes[1])
    r = kasir.get(f"/operator/receipt/{vid}")
    assert r.status_code == 403 and codes[1] not in r.get_data(as_text=True)


def test_the_admin_may_print_any_unused_card(db, key, admin, batch, clock):
    codes = batch("harian", 2)
    vid = find_voucher(db, key, codes[0])
    mark_sold(db, vid, actor=Actor("ani", 99, "kasir"), clock=clock)
    clock.advance(minutes=RECEIPT_MINUTES + 1)
    r = admin.get(f"/operator/receipt/{vid}?w=80")
    assert r.status_code == 200 and codes[0] in r.get_data(as_text=True)


def test_a_used_voucher_has_no_receipt(db, key, admin, batch):
    codes = batch("harian", 1)
    vid = find_voucher(db, key, codes[0])
    with db.begin() as conn:
        conn.execute(Voucher.__table__.update().where(Voucher.id == vid).values(state="active"))
    assert admin.get(f"/operator/receipt/{vid}").status_code == 403


def test_showing_a_receipt_is_audited(db, key, admin, batch):
    from hotspot.model_operator import AuditLog

    codes = batch("harian", 1)
    vid = find_voucher(db, key, codes[0])
    admin.get(f"/operator/receipt/{vid}")
    with db.connect() as conn:
        actions = conn.execute(select(AuditLog.action, AuditLog.target)).all()
    assert ("voucher.print", f"voucher:{vid}") in actions


# --- ESC/POS -------------------------------------------------------------------------


def _receipt(code="ABCD-EFGH-JK"):
    return receipt_printer.Receipt(
        village="WiFi Desa Sungai Duren",
        package="Harian (24 jam)",
        price="Rp5.000",
        code=code,
        qr_url=f"http://10.10.0.1/?code={code}",
        validity="Waktu mulai dihitung saat pertama dipakai.",
        instructions="1. Sambung ke WiFi desa.",
        footer="#1/1",
    )


@pytest.mark.parametrize("width", [58, 80])
def test_escpos_bytes_have_the_code_and_a_qr_command(width):
    printer = Dummy()
    receipt_printer.render(printer, _receipt(), width)
    out = printer.output
    assert b"ABCD-EFGH-JK" in out
    assert b"\x1d(k" in out  # GS ( k: the printer's own QR code
    assert b"http://10.10.0.1/?code=ABCD-EFGH-JK" in out
    assert b"-" * receipt_printer.COLUMNS[width] + b"\n" in out
    assert out.endswith(b"\x1dV\x00") or b"\x1dV" in out  # cut


def test_escpos_to_a_file_printer(tmp_path):
    dev = tmp_path / "lp0"
    dev.write_bytes(b"")
    receipt_printer.print_receipt(str(dev), _receipt(), 58)
    data = dev.read_bytes()
    assert b"ABCD-EFGH-JK" in data and b"\x1d(k" in data


def test_a_missing_printer_is_a_printer_error(tmp_path):
    with pytest.raises(receipt_printer.PrinterError):
        receipt_printer.print_receipt(str(tmp_path / "nope" / "lp0"), _receipt(), 58)


def _enable_printer(app, device):
    st = state(app)
    st.config = dataclasses.replace(
        st.config, printer=dataclasses.replace(st.config.printer, enabled=True, device=str(device))
    )


def test_the_kasir_printer_button_prints(db, app, kasir, batch, tmp_path):
    dev = tmp_path / "lp0"
    dev.write_bytes(b"")
    _enable_printer(app, dev)
    codes = batch("harian", 1)
    r = kasir.post("/operator/quick-sale", data=_quick_form(kasir, _package_id(db, "harian")))
    receipt = kasir.get(r.location)
    assert 'id="escpos"' in receipt.get_data(as_text=True)
    vid = int(re.search(r"/receipt/(\d+)", r.location).group(1))
    p = kasir.form(f"/operator/receipt/{vid}/escpos", page=r.location)
    assert p.status_code == 303
    assert codes[0].encode() in dev.read_bytes()


def test_paper_out_is_a_friendly_message(db, app, kasir, batch, tmp_path):
    _enable_printer(app, tmp_path / "missing" / "lp0")
    batch("harian", 1)
    r = kasir.post("/operator/quick-sale", data=_quick_form(kasir, _package_id(db, "harian")))
    vid = int(re.search(r"/receipt/(\d+)", r.location).group(1))
    p = kasir.form(f"/operator/receipt/{vid}/escpos", page=r.location)
    assert p.status_code == 503
    body = p.get_data(as_text=True)
    assert 'id="printer-error"' in body and "Traceback" not in body


def test_without_printer_config_there_is_no_button(db, kasir, batch):
    batch("harian", 1)
    r = kasir.post("/operator/quick-sale", data=_quick_form(kasir, _package_id(db, "harian")))
    assert 'id="escpos"' not in kasir.get(r.location).get_data(as_text=True)
    vid = int(re.search(r"/receipt/(\d+)", r.location).group(1))
    assert kasir.form(f"/operator/receipt/{vid}/escpos", page=r.location).status_code == 404


def test_a_typed_sale_offers_its_receipt(db, key, kasir, batch):
    codes = batch("harian", 1)
    r = kasir.form("/operator/sell", {"code": codes[0]})
    assert r.status_code == 303
    page = kasir.get(r.location)
    m = re.search(r'id="sold-receipt" href="([^"]+)"', page.get_data(as_text=True))
    assert m
    receipt = kasir.get(html.unescape(m.group(1)))
    assert receipt.status_code == 200 and codes[0] in receipt.get_data(as_text=True)


def test_the_same_token_from_two_threads_sells_one_voucher(db, batch, clock):
    """Two requests with one form's token at the same moment (two gunicorn workers): the
    token is written in the sale's own write transaction, so one sells and one repeats."""
    import threading

    from hotspot.vouchers.sales import quick_sell

    batch("harian", 5)
    pid = _package_id(db, "harian")
    kasir_actor = Actor("siti", 7, "kasir")
    results, start = [], threading.Barrier(4)

    def tap():
        start.wait()
        results.append(quick_sell(db, pid, "same-token", actor=kasir_actor, clock=clock))

    threads = [threading.Thread(target=tap) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 4
    assert len({r["voucher_id"] for r in results}) == 1
    assert sorted(r["repeat"] for r in results) == [False, True, True, True]
    assert _sold_count(db) == 1
