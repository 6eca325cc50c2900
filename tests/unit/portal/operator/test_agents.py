"""Issue #13.4: agents (warung resellers).

The ledger's arithmetic (stock, sold, due at the agent's price, commission, paid, owed), the
rules of assigning and settling, and the console: what an agent sees and may do, and the
abuse cases — an agent opening another agent's batch, voucher or receipt by id, selling a
card not in their stock, a kasir recording a payment or printing an agent's sheet, negative
and huge amounts, a double submit of a payment, a batch given to two agents.
"""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import func, select

from hotspot import operators
from hotspot.audit import Actor, entries, verify
from hotspot.errors import ErrorCode, NotFound, UsageError
from hotspot.model import Voucher
from hotspot.model_operator import AgentSettlement, VoucherSale
from hotspot.vouchers import agents
from hotspot.vouchers.batches import create_batch
from hotspot.vouchers.lookup import find_voucher
from hotspot.vouchers.packages import all_packages
from hotspot.vouchers.sales import SaleError, mark_batch_sold, mark_sold, quick_sell
from tests.unit.portal.operator.conftest import ADMIN_PW, Console, text

WARUNG_PW = "warung-kopi-pagi-9"
TOKO_PW = "toko-sembako-77"
ROOT = Actor("cli:root", role="admin")
TOKEN = "t" * 32


@pytest.fixture
def warungs(db, accounts, packages):
    ina = operators.add(db, "ina", "agen", WARUNG_PW, actor=ROOT, full_name="Warung Bu Ina")
    ali = operators.add(db, "ali", "agen", TOKO_PW, actor=ROOT, full_name="Toko Pak Ali")
    return {"ina": ina, "ali": ali}


def _batch(db, key, clock, package="harian", count=5):
    b = create_batch(db, key, package, count, clock=clock)
    return b.id, b.codes


def _agent_actor(row):
    return Actor(row["name"], row["id"], "agen")


def _tok(n: int) -> str:
    return f"token-{n:026d}"


@pytest.fixture
def ina(app, warungs):
    c = Console(app, ip="10.10.0.60")
    c.login("ina", WARUNG_PW)
    return c


@pytest.fixture
def ali(app, warungs):
    c = Console(app, ip="10.10.0.61")
    c.login("ali", TOKO_PW)
    return c


# -- the ledger's arithmetic ------------------------------------------------------------------


def test_ledger_arithmetic(db, key, clock, warungs):
    ina = warungs["ina"]
    bid, codes = _batch(db, key, clock, "harian", 5)  # Rp 5.000 a card
    agents.assign(db, bid, "ina", 4000, actor=ROOT, clock=clock)
    me = _agent_actor(ina)
    agents.sell(db, bid, _tok(1), actor=me, clock=clock)
    agents.sell(db, bid, _tok(2), actor=me, serial=4, clock=clock)
    # a card the warung forgot to mark, used by a villager: sold all the same
    used = find_voucher(db, key, codes[2])
    with db.begin() as conn:
        conn.execute(
            Voucher.__table__.update()
            .where(Voucher.id == used)
            .values(state="active", first_used_at=clock())
        )
    agents.settle(db, "ina", 6000, _tok(3), actor=ROOT, note="Senin", clock=clock)
    row = next(r for r in agents.ledger(db) if r["agent"] == "ina")
    assert row == {
        "id": ina["id"],
        "agent": "ina",
        "full_name": "Warung Bu Ina",
        "active": True,
        "stock": 2,
        "sold": 3,
        "sold_rupiah": 15000,
        "due": 12000,
        "commission": 3000,
        "paid": 6000,
        "owed": 6000,
    }
    other = next(r for r in agents.ledger(db) if r["agent"] == "ali")
    assert (other["stock"], other["sold"], other["owed"]) == (0, 0, 0)
    # the kasirs' ledger sees the agent's marked sales at the retail price, named by agent
    with db.connect() as conn:
        sold = conn.execute(select(VoucherSale.operator, VoucherSale.price)).all()
    assert sorted(sold) == [("ina", 5000), ("ina", 5000)]


def test_a_withdrawn_card_is_not_owed(db, key, clock, warungs):
    from hotspot.vouchers.withdrawal import void_one

    bid, codes = _batch(db, key, clock, "harian", 2)
    agents.assign(db, bid, "ina", 4500, actor=ROOT, clock=clock)
    sale = agents.sell(db, bid, _tok(1), actor=_agent_actor(warungs["ina"]), clock=clock)
    void_one(db, sale["voucher_id"], actor=ROOT, reason="refund", clock=clock)
    row = next(r for r in agents.ledger(db) if r["agent"] == "ina")
    assert (row["sold"], row["due"], row["stock"]) == (0, 0, 1)


def test_paying_ahead_is_a_negative_owed(db, clock, warungs):
    agents.settle(db, "ali", 10000, _tok(1), actor=ROOT, clock=clock)
    row = next(r for r in agents.ledger(db) if r["agent"] == "ali")
    assert (row["paid"], row["owed"]) == (10000, -10000)


def test_an_agent_made_kasir_still_owes_and_may_pay(db, key, clock, warungs):
    bid, _ = _batch(db, key, clock, "harian", 2)
    agents.assign(db, bid, "ina", 4000, actor=ROOT, clock=clock)
    agents.sell(db, bid, _tok(1), actor=_agent_actor(warungs["ina"]), clock=clock)
    operators.change(db, warungs["ina"]["id"], actor=ROOT, role="kasir", clock=clock)
    agents.settle(db, "ina", 1000, _tok(2), actor=ROOT, clock=clock)
    row = next(r for r in agents.ledger(db) if r["agent"] == "ina")
    assert (row["sold"], row["due"], row["paid"], row["owed"]) == (1, 4000, 1000, 3000)
    with pytest.raises(NotFound):  # a kasir that never was an agent is not one
        agents.settle(db, "siti", 1000, _tok(3), actor=ROOT, clock=clock)


# -- assigning --------------------------------------------------------------------------------


def test_a_batch_goes_to_one_agent_only(db, key, clock, warungs):
    bid, _ = _batch(db, key, clock)
    agents.assign(db, bid, "ina", 4000, actor=ROOT, clock=clock)
    with pytest.raises(UsageError, match="assigned to ina already"):
        agents.assign(db, bid, "ali", 3000, actor=ROOT, clock=clock)
    with pytest.raises(UsageError, match="assigned to ina already"):
        agents.assign(db, bid, "ina", 3000, actor=ROOT, clock=clock)
    assert agents.batch_agent(db, bid).name == "ina"


def test_a_batch_sold_from_cannot_be_assigned(db, key, clock, warungs):
    bid, codes = _batch(db, key, clock)
    mark_sold(db, find_voucher(db, key, codes[0]), actor=Actor("siti", 2, "kasir"), clock=clock)
    with pytest.raises(UsageError, match="sold or used already"):
        agents.assign(db, bid, "ina", 4000, actor=ROOT, clock=clock)


@pytest.mark.parametrize("price", [-1, 5001, 10**15, "abc", "4e3"])
def test_assign_refuses_a_bad_price(db, key, clock, warungs, price):
    bid, _ = _batch(db, key, clock)
    with pytest.raises(UsageError):
        agents.assign(db, bid, "ina", price, actor=ROOT, clock=clock)
    assert agents.batch_agent(db, bid) is None


def test_assign_only_to_an_agent(db, key, clock, warungs):
    bid, _ = _batch(db, key, clock)
    with pytest.raises(NotFound):
        agents.assign(db, bid, "siti", 4000, actor=ROOT, clock=clock)  # a kasir
    with pytest.raises(NotFound):
        agents.assign(db, 999, "ina", 4000, actor=ROOT, clock=clock)


def test_kasir_sales_leave_agent_stock_alone(db, key, clock, warungs):
    bid, codes = _batch(db, key, clock, "harian", 3)
    agents.assign(db, bid, "ina", 4000, actor=ROOT, clock=clock)
    kasir = Actor("siti", 2, "kasir")
    pid = next(p.id for p in all_packages(db) if p.name == "harian")
    with pytest.raises(SaleError) as exc:
        quick_sell(db, pid, _tok(9), actor=kasir, clock=clock)
    assert exc.value.code is ErrorCode.OUT_OF_STOCK
    with pytest.raises(SaleError) as exc:
        mark_sold(db, find_voucher(db, key, codes[0]), actor=kasir, clock=clock)
    assert exc.value.code is ErrorCode.VOUCHER_AGENT
    with pytest.raises(SaleError):
        mark_batch_sold(db, bid, 1, 3, actor=kasir, clock=clock)
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(VoucherSale)).scalar() == 0


# -- selling and settling ---------------------------------------------------------------------


def test_an_agent_cannot_sell_another_agents_card(db, key, clock, warungs):
    bid, _ = _batch(db, key, clock)
    agents.assign(db, bid, "ina", 4000, actor=ROOT, clock=clock)
    with pytest.raises(SaleError) as exc:
        agents.sell(db, bid, _tok(1), actor=_agent_actor(warungs["ali"]), serial=1, clock=clock)
    assert exc.value.code is ErrorCode.VOUCHER_UNKNOWN
    unassigned, _ = _batch(db, key, clock)
    with pytest.raises(SaleError):
        agents.sell(db, unassigned, _tok(2), actor=_agent_actor(warungs["ina"]), clock=clock)


def test_a_sale_token_sells_once(db, key, clock, warungs):
    bid, _ = _batch(db, key, clock)
    agents.assign(db, bid, "ina", 4000, actor=ROOT, clock=clock)
    me = _agent_actor(warungs["ina"])
    first = agents.sell(db, bid, _tok(1), actor=me, clock=clock)
    again = agents.sell(db, bid, _tok(1), actor=me, clock=clock)
    assert again == {"voucher_id": first["voucher_id"], "repeat": True}
    with pytest.raises(SaleError):  # another's token shows nothing
        agents.sell(db, bid, _tok(1), actor=_agent_actor(warungs["ali"]), clock=clock)


@pytest.mark.parametrize("amount", [0, -5000, agents.MAX_SETTLEMENT + 1, 10**18, "lima", ""])
def test_settle_refuses_bad_amounts(db, clock, warungs, amount):
    with pytest.raises(UsageError):
        agents.settle(db, "ina", amount, _tok(1), actor=ROOT, clock=clock)
    assert agents.settlements(db) == []


def test_settle_twice_with_one_token_records_once(db, clock, warungs):
    a = agents.settle(db, "ina", 20000, _tok(1), actor=ROOT, clock=clock)
    b = agents.settle(db, "ina", 20000, _tok(1), actor=ROOT, clock=clock)
    assert (a["repeat"], b["repeat"], a["id"]) == (False, True, b["id"])
    assert [s["amount"] for s in agents.settlements(db)] == [20000]
    audited = [e for e in entries(db) if e.action == "agent.settle"]
    assert len(audited) == 1 and json.loads(audited[0].after)["amount"] == 20000
    assert verify(db) is None


# -- the console: the agent's side ------------------------------------------------------------


def _assigned(db, key, clock, agent="ina", count=4, price=4000):
    bid, codes = _batch(db, key, clock, "harian", count)
    agents.assign(db, bid, agent, price, actor=ROOT, clock=clock)
    return bid, codes


def _sell_form(console, bid, which=0):
    """The ``which``-th sell form of batch ``bid`` on My stock (0: next card, 1: by number)."""
    body = console.get("/operator/agent").get_data(as_text=True)
    forms = re.findall(
        r'<form method="post" action="/operator/agent/sell"[^>]*>(.*?)</form>', body, re.S
    )
    mine = [f for f in forms if f'name="batch" value="{bid}"' in f]
    assert mine, body[:3000]
    fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', mine[which]))
    return {k: html.unescape(v) for k, v in fields.items()}


def test_agent_logs_in_to_their_stock(db, key, clock, ina, warungs):
    bid, _ = _assigned(db, key, clock)
    r = ina.get("/operator/")
    assert r.status_code == 303 and r.location.endswith("/operator/agent")
    page = ina.get("/operator/agent")
    words = text(page)
    assert page.status_code == 200
    assert "Stok saya" in words and f"kelompok #{bid}" in words
    assert "Ringkasan" not in words  # the kasir's menu is not shown


def test_agent_sells_next_card_and_prints_it(db, key, clock, ina, warungs):
    bid, codes = _assigned(db, key, clock)
    form = _sell_form(ina, bid)
    r = ina.post("/operator/agent/sell", data=form)
    assert r.status_code == 303 and "/operator/receipt/" in r.location and "print=1" in r.location
    receipt = ina.get(r.location)
    assert receipt.status_code == 200 and codes[0] in receipt.get_data(as_text=True)
    again = ina.post("/operator/agent/sell", data=form)  # a double tap
    assert again.location == r.location
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(VoucherSale)).scalar() == 1
    acts = [e.action for e in entries(db)]
    assert "agent.sale" in acts and "voucher.print" in acts


def test_agent_marks_a_card_by_its_number(db, key, clock, ina, warungs):
    bid, codes = _assigned(db, key, clock)
    form = {**_sell_form(ina, bid, 1), "serial": "3"}
    r = ina.post("/operator/agent/sell", data=form)
    assert r.status_code == 303 and "done=sold" in r.location
    with db.connect() as conn:
        sold = conn.execute(select(Voucher.serial).where(Voucher.sold_at.is_not(None))).all()
    assert sold == [(3,)]
    again = ina.post("/operator/agent/sell", data={**_sell_form(ina, bid, 1), "serial": "3"})
    assert again.status_code == 409 and "Traceback" not in again.get_data(as_text=True)


@pytest.mark.parametrize("serial", ["-1", "abc", "99999999999", "0"])
def test_agent_bad_card_number_is_a_form_error(db, key, clock, ina, warungs, serial):
    bid, _ = _assigned(db, key, clock)
    r = ina.post("/operator/agent/sell", data={**_sell_form(ina, bid, 1), "serial": serial})
    assert r.status_code in (409, 422)
    assert 'role="alert"' in r.get_data(as_text=True)
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(VoucherSale)).scalar() == 0


def test_agent_cannot_sell_from_another_agents_batch(db, key, clock, ina, ali, warungs):
    """The attack: Ali posts Ina's batch id (and a card number) to his own sell form."""
    theirs, _ = _assigned(db, key, clock, agent="ina")
    mine, _ = _assigned(db, key, clock, agent="ali")
    form = _sell_form(ali, mine)
    for data in ({**form, "batch": str(theirs)}, {**form, "batch": str(theirs), "serial": "1"}):
        r = ali.post("/operator/agent/sell", data=data)
        assert r.status_code == 409
        assert f"kelompok #{theirs}" not in text(r)
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(VoucherSale)).scalar() == 0


def test_agent_sees_only_their_own_stock(db, key, clock, ina, ali, warungs):
    theirs, codes = _assigned(db, key, clock, agent="ina")
    mine, _ = _assigned(db, key, clock, agent="ali")
    page = text(ali.get("/operator/agent"))
    assert f"kelompok #{mine}" in page and f"kelompok #{theirs}" not in page
    # Ina's sheet, Ina's card, its receipt, the batch page: nothing of them shows
    r = ali.get(f"/operator/agent/batches/{theirs}/sheet")
    assert r.status_code == 404 and codes[0] not in r.get_data(as_text=True)
    vid = find_voucher(db, key, codes[0])
    r = ali.get(f"/operator/receipt/{vid}")
    assert r.status_code == 403 and codes[0] not in r.get_data(as_text=True)
    for path in (
        f"/operator/batches/{theirs}",
        f"/operator/batches/{theirs}/sheet",
        f"/operator/voucher?id={vid}",
        "/operator/batches",
        "/operator/sell",
        "/operator/sessions",
        "/operator/sales",
        "/operator/agents",
        "/operator/operators",
        "/operator/audit",
    ):
        r = ali.get(path)
        assert r.status_code == 403, path
        assert codes[0] not in r.get_data(as_text=True)
        assert "Bukan untuk agen" in text(r), path
    # and the actions behind the kasir's and admin's forms
    for path, data in (
        ("/operator/sell", {"code": codes[0]}),
        (f"/operator/voucher/{vid}/sell", {}),
        (f"/operator/batches/{theirs}/sell", {"first": "1", "last": "4"}),
        ("/operator/quick-sale", {"package": "1", "token": TOKEN}),
        ("/operator/agents/settle", {"agent": "1", "amount": "1", "token": TOKEN}),
    ):
        r = ali.form(path, data, page="/operator/agent")
        assert r.status_code == 403, path
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(VoucherSale)).scalar() == 0


def test_agent_prints_the_sheet_of_their_unsold_cards(db, key, clock, ina, warungs):
    bid, codes = _assigned(db, key, clock)
    ina.post("/operator/agent/sell", data={**_sell_form(ina, bid, 1), "serial": "1"})
    r = ina.get(f"/operator/agent/batches/{bid}/sheet")
    body = r.get_data(as_text=True)
    assert r.status_code == 200
    assert codes[0] not in body and all(c in body for c in codes[1:])
    assert "/operator/agent" in body  # back to my stock, not the batch page
    assert any(e.action == "batch.print" for e in entries(db))


def test_agent_receipt_of_a_card_sold_long_ago_is_refused(db, key, clock, ina, warungs):
    from portal.operator.receipts import RECEIPT_MINUTES

    bid, codes = _assigned(db, key, clock)
    r = ina.post("/operator/agent/sell", data=_sell_form(ina, bid))
    clock.advance(minutes=RECEIPT_MINUTES + 1)
    assert ina.get(r.location).status_code == 403


def test_the_agent_menu_in_english(db, key, clock, ina, warungs):
    _assigned(db, key, clock)
    words = text(ina.get("/operator/agent?lang=en"))
    assert "My stock" in words and "to pay the BUMDes" in words


# -- the console: the admin's side ------------------------------------------------------------


def _admin_form(admin, action):
    body = admin.get("/operator/agents").get_data(as_text=True)
    m = re.search(rf'<form method="post" action="{action}"[^>]*>(.*?)</form>', body, re.S)
    assert m, body[:3000]
    return {
        k: html.unescape(v) for k, v in re.findall(r'name="([a-z_]+)" value="([^"]*)"', m.group(1))
    }


def _assign_form(admin, agent_id: int, batch_id: int, price: str) -> dict[str, str]:
    """The admin's filled-in form that gives a batch to an agent at ``price``."""
    return {
        **_admin_form(admin, "/operator/agents/assign"),
        "agent": str(agent_id),
        "batch": str(batch_id),
        "price": price,
    }


def _settle_form(admin, agent_id: int, amount: str, **more: str) -> dict[str, str]:
    """The admin's filled-in form that records an agent's payment of ``amount``."""
    return {
        **_admin_form(admin, "/operator/agents/settle"),
        "agent": str(agent_id),
        "amount": amount,
        **more,
    }


def test_admin_assigns_and_records_a_payment(db, key, clock, admin, warungs):
    bid, _ = _batch(db, key, clock, "harian", 4)
    form = _assign_form(admin, warungs["ina"]["id"], bid, "4.000")
    r = admin.post("/operator/agents/assign", data=form)
    assert r.status_code == 303, text(r)[:500]
    assert agents.batch_agent(db, bid).price == 4000
    pay = _settle_form(admin, warungs["ina"]["id"], "8000", note='=HYPERLINK("x")')
    first = admin.post("/operator/agents/settle", data=pay)
    second = admin.post("/operator/agents/settle", data=pay)  # a double submit
    assert first.status_code == second.status_code == 303
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AgentSettlement)).scalar() == 1
    page = admin.get("/operator/agents")
    words = text(page)
    assert "Rp 8.000" in words and "ina" in words
    assert f"#{bid}" in words
    batch_page = text(admin.get(f"/operator/batches/{bid}"))
    assert "ina" in batch_page


@pytest.mark.parametrize("amount", ["-5000", "0", "999999999999", "lima ribu", ""])
def test_admin_bad_amount_is_a_form_error(db, clock, admin, warungs, amount):
    pay = _settle_form(admin, warungs["ina"]["id"], amount)
    r = admin.post("/operator/agents/settle", data=pay)
    assert r.status_code == 422 and 'aria-invalid="true"' in r.get_data(as_text=True)
    assert agents.settlements(db) == []


def test_admin_settle_without_token_records_nothing(db, admin, warungs):
    pay = _settle_form(admin, warungs["ina"]["id"], "5000")
    pay.pop("token")
    assert admin.post("/operator/agents/settle", data=pay).status_code == 400
    pay.pop("csrf_token")
    pay["token"] = TOKEN
    assert admin.post("/operator/agents/settle", data=pay).status_code in (400, 403)
    assert agents.settlements(db) == []


def test_admin_cannot_give_a_batch_twice(db, key, clock, admin, warungs):
    bid, _ = _assigned(db, key, clock, agent="ina")
    assert f"#{bid} ·" not in admin.get("/operator/agents").get_data(as_text=True)
    form = {"agent": str(warungs["ali"]["id"]), "batch": str(bid), "price": "3000"}
    r = admin.form("/operator/agents/assign", form, page="/operator/agents")
    assert r.status_code == 422
    assert agents.batch_agent(db, bid).name == "ina"


def test_admin_price_above_retail_is_refused(db, key, clock, admin, warungs):
    bid, _ = _batch(db, key, clock, "harian", 2)
    form = _assign_form(admin, warungs["ina"]["id"], bid, "6000")
    r = admin.post("/operator/agents/assign", data=form)
    assert r.status_code == 422 and agents.batch_agent(db, bid) is None


def test_a_kasir_cannot_record_a_payment_or_assign(db, key, clock, kasir, admin, warungs):
    """The attack: a kasir posts the admin's forms (a payment would lower what an agent
    owes; an assignment would move stock)."""
    bid, codes = _batch(db, key, clock, "harian", 2)
    assert kasir.get("/operator/agents").status_code == 403
    pay = {"agent": str(warungs["ina"]["id"]), "amount": "5000", "token": TOKEN}
    r = kasir.form("/operator/agents/settle", pay, page="/operator/")
    assert r.status_code == 403
    r = kasir.form(
        "/operator/agents/assign",
        {"agent": str(warungs["ina"]["id"]), "batch": str(bid), "price": "1"},
        page="/operator/",
    )
    assert r.status_code == 403
    assert agents.settlements(db) == [] and agents.batch_agent(db, bid) is None


def test_a_kasir_cannot_print_or_sell_an_agents_batch(db, key, clock, kasir, warungs):
    bid, codes = _assigned(db, key, clock)
    r = kasir.get(f"/operator/batches/{bid}/sheet")
    assert r.status_code == 403 and codes[0] not in r.get_data(as_text=True)
    r = kasir.form(
        f"/operator/batches/{bid}/sell",
        {"first": "1", "last": "4"},
        page=f"/operator/batches/{bid}",
    )
    assert r.status_code == 409
    r = kasir.form("/operator/sell", {"code": codes[0]}, page="/operator/sell")
    assert r.status_code == 409 and "agen" in text(r)
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(VoucherSale)).scalar() == 0


def test_admin_makes_an_agent_account(db, admin):
    r = admin.form(
        "/operator/operators",
        {
            "name": "rini",
            "role": "agen",
            "password": WARUNG_PW,
            "password2": WARUNG_PW,
            "full_name": "Warung Rini",
        },
    )
    assert r.status_code == 303
    assert operators.get(db, name="rini").role == "agen"
    assert "agen" in text(admin.get("/operator/operators"))


def test_admin_password_is_not_an_agents(db, app, warungs):
    c = Console(app, ip="10.10.0.62")
    r = c.form("/operator/login", {"name": "ina", "password": ADMIN_PW})
    assert r.status_code == 401


# -- at the same moment, in separate processes (as gunicorn workers are) ----------------------


def _settle_in_child(url: str, token: str, i: int, start, out) -> None:
    from hotspot.db import make_engine

    engine = make_engine(url, synchronous="FULL")
    start.wait(10)
    try:
        got = agents.settle(engine, "ina", 5000, token, actor=Actor(f"admin{i}", None, "admin"))
        out.put(("repeat" if got["repeat"] else "ok", i))
    except Exception as exc:  # noqa: BLE001 - the parent reports what went wrong
        out.put((type(exc).__name__, i))
    finally:
        engine.dispose()


def _assign_in_child(url: str, bid: int, agent: str, start, out) -> None:
    from hotspot.db import make_engine
    from hotspot.errors import HotspotError

    engine = make_engine(url, synchronous="FULL")
    start.wait(10)
    try:
        agents.assign(engine, bid, agent, 4000, actor=Actor("cli:root", None, "admin"))
        out.put(("ok", agent))
    except HotspotError as exc:
        out.put((exc.code, agent))
    finally:
        engine.dispose()


def test_one_payment_form_sent_by_many_workers_at_once(db, cfg, warungs):
    from tests.unit.portal.operator.test_concurrency import N, _race

    db.dispose()
    results = _race(_settle_in_child, lambda i: (cfg.database.url, _tok(7), i))
    assert sorted(r for r, _ in results) == ["ok"] + ["repeat"] * (N - 1)
    assert [s["amount"] for s in agents.settlements(db)] == [5000]


def test_one_batch_given_to_two_agents_at_once(db, key, cfg, clock, warungs):
    from tests.unit.portal.operator.test_concurrency import N, _race

    bid, _ = _batch(db, key, clock)
    db.dispose()
    results = _race(_assign_in_child, lambda i: (cfg.database.url, bid, ("ina", "ali")[i % 2]))
    assert sorted(str(r) for r, _ in results) == ["bad-request"] * (N - 1) + ["ok"]
    winner = next(a for r, a in results if r == "ok")
    assert agents.batch_agent(db, bid).name == winner


def test_agent_changes_own_password(db, ina):
    r = ina.get("/operator/account")
    assert r.status_code == 200
    r = ina.form(
        "/operator/account",
        {"current": WARUNG_PW, "password": "kopi-susu-pagi-42", "password2": "kopi-susu-pagi-42"},
        page="/operator/account",
    )
    assert r.status_code == 303
    assert ina.get("/operator/agent").status_code == 200
