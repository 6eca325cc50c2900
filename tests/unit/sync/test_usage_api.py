"""The gateway's own /api/v1/usage (portal/usage_api.py) on a minimal Flask app: the portal's
state (as its start-up makes it) and this one blueprint."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from flask import Flask

from hotspot import config as config_mod
from hotspot.pseudonym import Pseudonymizer, load_key
from portal import usage_api
from portal.startup import prepare
from tests.unit.sync.conftest import START, gateway_overrides, macs, seed_usage

TOKEN = "local-token-0123456789"


def make_app(cfg, db):
    app = Flask("t")
    prepare(cfg, gateway=object(), db=db, voucher_key=b"k" * 32, secret_key=b"s" * 32).init_app(app)
    app.register_blueprint(usage_api.bp)
    return app.test_client()


@pytest.fixture
def cfg(tmp_path):
    return config_mod.load(overrides=gateway_overrides(tmp_path, api_token=TOKEN))


def test_off_without_a_token(gwcfg, gwdb):
    assert make_app(gwcfg, gwdb).get("/api/v1/usage").status_code == 404


def test_bearer_required(cfg, gwdb):
    c = make_app(cfg, gwdb)
    assert c.get("/api/v1/usage").status_code == 401
    assert c.get("/api/v1/usage", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_pages_cover_everything_once_and_show_no_mac(cfg, gwdb):
    n = seed_usage(gwdb, devices=7, hours=30)
    c = make_app(cfg, gwdb)
    h = {"Authorization": f"Bearer {TOKEN}"}
    url, got = "/api/v1/usage?limit=9", []
    pages = 0
    while url:
        r = c.get(url, headers=h)
        assert r.status_code == 200
        doc = r.get_json()
        assert set(doc) == {"items", "next"}
        got.extend(doc["items"])
        url = doc["next"]
        pages += 1
    assert len(got) == n and pages == -(-n // 9)
    keys = [(i["period_start"], i["client"]) for i in got]
    assert keys == sorted(keys) and len(set(keys)) == n
    body = str(got)
    assert not any(m in body for m in macs(7))
    p = Pseudonymizer(load_key(cfg, gwdb))
    assert {i["client"] for i in got} == {p(m) for m in macs(7)}
    assert got[0]["gateway_id"] == cfg.sync.gateway_id
    assert set(got[0]) >= {"gateway_id", "client", "period_start", "bytes_down", "bytes_up"}


def test_range_and_csv(cfg, gwdb):
    seed_usage(gwdb, devices=3, hours=48, density=1.0)
    c = make_app(cfg, gwdb)
    h = {"Authorization": f"Bearer {TOKEN}"}
    lo = (START + dt.timedelta(hours=5)).isoformat() + "Z"
    hi = (START + dt.timedelta(hours=7)).isoformat() + "Z"
    r = c.get(f"/api/v1/usage?from={lo}&to={hi}&format=csv&limit=4", headers=h)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert len(rows) == 4 and "Link" in r.headers
    rest = c.get(r.headers["X-Next-Page"], headers=h)
    assert len(list(csv.DictReader(io.StringIO(rest.get_data(as_text=True))))) == 2
    assert "Link" not in rest.headers
    assert c.get("/api/v1/usage?from=soon", headers=h).status_code == 400
    assert c.get("/api/v1/usage?format=xml", headers=h).status_code == 400
    assert c.get("/api/v1/usage?cursor=zzz", headers=h).status_code == 400
    # a local date is midnight in the village's time zone (WIB = UTC+7)
    r = c.get("/api/v1/usage?from=2026-11-22&to=2026-11-23", headers=h).get_json()
    assert r["items"][0]["period_start"] == "2026-11-21T17:00:00Z"
    assert len(r["items"]) == 3 * 24 or r["next"]
