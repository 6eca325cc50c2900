"""Looking is not changing: a GET of any page of the captive portal or the console leaves the
database as it was — every table, row by row. Unsold stock past its shelf life is withdrawn by
the gateway daemon's periodic job, not by whoever opens the overview.

Deliberate exceptions, checked exactly: showing a batch's codes (the printable sheet and
the codes CSV) or one voucher's receipt appends one audit entry, because whoever sees codes could sell them. (The
login session's idle clock, written at most once a minute, does not move here: the clock is
frozen.)
"""

from __future__ import annotations

import re

import pytest

from gateway.daemon import Gateway
from hotspot.model import VoucherState
from hotspot.vouchers.batches import batch_vouchers
from hotspot.vouchers.lookup import find_voucher
from hotspot.vouchers.packages import all_packages
from tests.unit.portal.conftest import OTHER_IP, Phone
from tests.unit.portal.operator.conftest import ADMIN_PW, KASIR_PW, Console

# Endpoints whose GET appends exactly one audit entry of this action (and changes nothing else).
AUDITED_READS = {
    "operator.batch_sheet": "batch.print",
    "operator.batch_csv": "batch.export",
    "operator.receipt": "voucher.print",  # one voucher's receipt (#13.3)
}
EXTRA_QUERIES = {
    "captive.index": ["?code=abcd-efgh-jk", "?lang=en"],
    "operator.voucher_lookup": ["?code={code}", "?id={vid}", "?code=NOPE-NOPE-NO"],
    "operator.sales": [
        f"?view={v}" for v in ("today", "days", "months", "packages", "kasir", "cash")
    ],
    "operator.sales_csv": [
        f"?view={v}" for v in ("all", "days", "months", "packages", "kasir", "cash")
    ],
    "operator.batch": ["?page=2"],
    "operator.batch_sheet": ["?sold=1"],
    "operator.audit_page": ["?before=3"],
    "operator.login": ["?next=/operator/sales"],
}


def tables(db) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order."""
    with db.connect() as conn:
        names = [
            n
            for (n,) in conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        return {
            n: [tuple(r) for r in conn.exec_driver_sql(f'SELECT * FROM "{n}" ORDER BY rowid')]
            for n in names
        }


def changes(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> dict[str, str]:
    return {
        n: f"{len(before.get(n, []))} → {len(after.get(n, []))} rows"
        for n in sorted(set(before) | set(after))
        if before.get(n) != after.get(n)
    }


def get_urls(app, prefix: str, ids: dict[str, int], fill: dict[str, str]) -> list[tuple[str, str]]:
    """(endpoint, URL) of every GET route under ``prefix``, with each query variant."""
    out = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        if not (rule.rule == prefix or rule.rule.startswith(prefix.rstrip("/") + "/")) or (
            prefix == "/" and rule.rule.startswith(("/operator", "/api/v1"))
        ):
            continue
        path = re.sub(r"<int:(\w+)>", lambda m: str(ids[m.group(1)]), rule.rule)
        out.append((rule.endpoint, path))
        out += [
            (rule.endpoint, path + q.format(**fill)) for q in EXTRA_QUERIES.get(rule.endpoint, [])
        ]
    return out


@pytest.fixture
def village(app, db, key, clock, batch, vouchers, accounts, phone):
    """A used day at the kiosk, two days after a batch with a one-day shelf life was made:
    sold, used, withdrawn and stale stock, a phone online, a phone on the splash."""
    stale = batch("basi", 4)  # shelf life: 1 day
    harian = batch("harian", 30)
    admin = Console(app)
    admin.login("budi", ADMIN_PW)
    admin.form("/operator/sell", {"code": stale[0]})  # sold: its sale stands, it never expires
    clock.advance(days=2)
    admin = Console(app)
    admin.login("budi", ADMIN_PW)
    admin.form("/operator/sell", {"code": harian[0]})
    phone.form("/voucher", {"code": harian[1]})
    vid = find_voucher(db, key, harian[2])
    admin.form(
        f"/operator/voucher/{vid}/void", {"reason": "hilang"}, page=f"/operator/voucher?id={vid}"
    )
    admin.form(  # a notice on the splash (issue #15 item 3)
        "/operator/announcements",
        {"text_id": "Vaksinasi", "starts": "2026-11-30T08:00", "ends": "2026-12-30T08:00"},
    )
    return {"code": harian[3], "vid": find_voucher(db, key, harian[0])}


def test_no_get_writes_to_the_database(app, db, clock, village):
    admin = Console(app)
    admin.login("budi", ADMIN_PW)
    kasir = Console(app, ip="10.10.0.51")
    kasir.login("siti", KASIR_PW)
    stranger = Console(app, ip="10.10.0.52")  # not logged in: the login page, redirects
    ids = {"bid": 2, "vid": village["vid"], "pid": all_packages(db)[0].id, "oid": 1, "aid": 1}
    fill = {"code": village["code"], "vid": village["vid"]}
    portal_urls = get_urls(app, "/", ids, fill)
    console_urls = get_urls(app, "/operator/", ids, fill)
    assert {e for e, _ in portal_urls} >= {
        "captive.index",
        "captive.status",
        "captive.ok",
        "captive.info",
        "captive.captive_api",
    }
    assert len({e for e, _ in console_urls}) >= 17
    phones = [Phone(app), Phone(app, ip=OTHER_IP)]  # one online (voucher), one on the splash

    start = tables(db)
    for browser, urls in [(p, portal_urls) for p in phones] + [
        (c, console_urls) for c in (admin, kasir, stranger)
    ]:
        for endpoint, url in urls:
            before = tables(db)
            resp = browser.get(url)
            assert resp.status_code < 500, (url, resp.status_code)
            after = tables(db)
            diff = changes(before, after)
            audited = AUDITED_READS.get(endpoint)
            if audited and resp.status_code == 200:
                assert list(diff) == ["audit_log"], (url, diff)
                [entry] = after["audit_log"][len(before["audit_log"]) :]
                assert audited in entry and after["audit_log"][:-1] == before["audit_log"]
            else:
                assert diff == {}, f"GET {url} as {getattr(browser, 'ip', '?')} wrote: {diff}"
    end = tables(db)
    assert {n for n in changes(start, end)} <= {"audit_log"}
    # Nothing expired on looking: the stale, unsold stock is still new.
    states = {v["serial"]: v["state"] for v in batch_vouchers(db, 1)}
    assert set(states.values()) == {VoucherState.NEW.value}


def test_the_gateway_daemon_withdraws_stale_stock_once_a_minute(cfg, db, clock, village):
    daemon = Gateway(cfg, clock=clock, clock_synced=lambda: True)
    daemon.db = db
    assert daemon.expire_stock(now=1000.0) == 3  # the sold one stays: its sale stands
    states = {v["serial"]: (v["state"], v["void_reason"]) for v in batch_vouchers(db, 1)}
    assert states == {
        1: ("new", None),
        2: ("void", "expired"),
        3: ("void", "expired"),
        4: ("void", "expired"),
    }
    assert daemon.expire_stock(now=1030.0) == 0  # not due yet: not even a read
    clock.advance(days=1)
    assert daemon.expire_stock(now=1060.0) == 0  # due, nothing left


def test_the_daemon_tick_runs_the_expiry(cfg, db, clock, village):
    class Engine:
        def tick(self):
            class Report:
                ended = []

            return Report()

    daemon = Gateway(cfg, clock=clock, clock_synced=lambda: True)
    daemon.db, daemon.engine = db, Engine()
    daemon._tick()
    assert {v["state"] for v in batch_vouchers(db, 1)} == {"new", "void"}


def test_the_usage_api_only_reads(cfg, gw, db, key, clock, packages):
    """Its pseudonym key is made at start-up; a GET reads (before, the first GET made it)."""
    from portal import create_app
    from portal.startup import prepare

    object.__setattr__(cfg.sync, "api_token", "t" * 24)
    kw = {
        "base_url": "http://10.10.0.1:8080",
        "environ_base": {"REMOTE_ADDR": "10.10.0.11"},
        "headers": {"Authorization": "Bearer " + "t" * 24},
    }
    bare = prepare(cfg, gateway=gw, db=db, voucher_key=key, secret_key=b"s" * 32, clock=clock)
    assert bare.pseudonyms is not None  # made at start-up
    client = create_app(state=bare).test_client()
    before = tables(db)
    for url in ("/api/v1/usage", "/api/v1/usage?format=csv", "/api/v1/openapi.json"):
        assert client.get(url, **kw).status_code == 200, url
    assert changes(before, tables(db)) == {}

    with db.begin() as conn:  # a gateway whose key could not be made at start-up
        # (the period's key, hotspot/pseudonym.py; or one from before rotation)
        conn.exec_driver_sql("DELETE FROM sync_state WHERE name LIKE 'pseudonym_key%'")
    bare.pseudonyms = None
    before = tables(db)
    resp = client.get("/api/v1/usage", **kw)
    assert resp.status_code == 503 and changes(before, tables(db)) == {}


def test_shelf_life_waits_for_a_synchronised_clock(cfg, db, clock, village):
    """A Pi without a real-time clock a year ahead must not withdraw all its stock: while the
    kernel says the clock is not synchronised, nothing is withdrawn; then it is."""
    synced = [False]
    daemon = Gateway(cfg, clock=clock, clock_synced=lambda: synced[0])
    daemon.db = db
    assert daemon.expire_stock(now=1000.0) == 0
    assert {v["state"] for v in batch_vouchers(db, 1)} == {"new"}
    synced[0] = True
    assert daemon.expire_stock(now=1060.0) == 3
