"""Issue #10.14: a kasir never gets the code of a sold, unused voucher back from the console.

The attack: a kasir sells a card, then prints the batch's sheet with ``?sold=1`` (or exports
the codes) and uses or resells the villager's paid code before the villager does. Every
route that hands out codes in clear is tried as a kasir (403), and every GET route of the
console is swept for the sold code.
"""

from __future__ import annotations

import pytest

from hotspot.audit import Actor
from hotspot.vouchers.lookup import find_voucher
from hotspot.vouchers.sales import mark_sold

CODE_ROUTES = [
    "/operator/batches/1/sheet?sold=1",
    "/operator/batches/1/codes.csv",
    "/operator/batches/1/codes.csv?sold=1",
]


@pytest.fixture
def sold_code(db, key, batch, clock):
    """A batch of three; the first card is sold and not used yet."""
    codes = batch("harian", 3)
    vid = find_voucher(db, key, codes[0])
    mark_sold(db, vid, actor=Actor("siti", role="kasir"), clock=clock)
    return codes[0], codes[1]


@pytest.mark.parametrize("path", CODE_ROUTES)
def test_a_kasir_gets_403_where_codes_of_sold_vouchers_come_out(kasir, sold_code, path):
    sold, _unsold = sold_code
    r = kasir.get(path)
    assert r.status_code == 403, path
    assert sold not in r.get_data(as_text=True)


@pytest.mark.parametrize("path", [p for p in CODE_ROUTES if "sold=1" in p])
def test_the_admin_may_print_them_again(admin, sold_code, path):
    sold, _unsold = sold_code
    r = admin.get(path)
    assert r.status_code == 200, path
    assert sold in r.get_data(as_text=True)


def test_the_kasirs_sheet_has_the_unsold_cards_only(kasir, sold_code):
    sold, unsold = sold_code
    body = kasir.get("/operator/batches/1/sheet").get_data(as_text=True)
    assert unsold in body and sold not in body


def test_no_console_page_shows_a_kasir_a_sold_code(app, kasir, sold_code):
    """The audit: every GET route of the console, as the kasir, with each id filled in."""
    sold, _unsold = sold_code
    fill = {"bid": 1, "vid": 1, "pid": 1, "oid": 1, "aid": 1}
    checked = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/operator") or "GET" not in (rule.methods or ()):
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<int:{name}>", str(fill[name]))
        for query in ("", "?sold=1", "?id=1", "?page=1"):
            r = kasir.get(path + query)
            assert sold not in r.get_data(as_text=True), (path + query, r.status_code)
            checked.append(path)
    assert len(set(checked)) >= 15
