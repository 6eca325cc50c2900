"""The pull API: bearer tokens, from/to, pagination, JSON and CSV, OpenAPI."""

from __future__ import annotations

import csv
import datetime as dt
import io

from sqlalchemy.orm import Session

from collector.models import ApiToken
from tests.unit.collector.helpers import SECRET, post, register, sales_record, usage


def seed(client, app, n_clients=3, hours=30):
    register(app, "desa-dua", SECRET)
    recs = []
    for c in range(n_clients):
        for h in range(hours):
            ts = (dt.datetime(2026, 11, 27, 0) + dt.timedelta(hours=h)).isoformat() + "Z"
            recs.append(usage(client=f"{c:016x}", hour=ts, down=h * 10 + c, up=c))
    assert post(client, recs).status_code == 200
    assert post(client, recs[:5], gateway="desa-dua", hgateway="desa-dua").status_code == 200
    return len(recs) + 5


def test_a_token_is_required(client, auth, app):
    for path in ("/api/v1/usage", "/api/v1/gateways", "/api/v1/sales"):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.get(path, headers={"Authorization": "Bearer hdc_wrong"}).status_code == 401
        assert client.get(path, headers=auth).status_code == 200
    with Session(app.extensions["collector_db"]) as s:
        assert s.query(ApiToken).one().last_used_at is not None


def test_usage_pages_cover_everything_once(client, auth, app):
    total = seed(client, app)
    url, items, pages = "/api/v1/usage?limit=7", [], 0
    while url:
        doc = client.get(url, headers=auth).get_json()
        assert set(doc) == {"items", "next"}
        items += doc["items"]
        url = doc["next"]
        pages += 1
    assert len(items) == total and pages == -(-total // 7)
    keys = [(i["period_start"], i["gateway_id"], i["client"]) for i in items]
    assert keys == sorted(keys) and len(set(keys)) == total
    first = items[0]
    assert {"gateway_id", "client", "period_start", "bytes_down", "bytes_up"} <= set(first)
    assert first["period_start"].endswith("Z")


def test_usage_filters_and_csv(client, auth, app):
    seed(client, app)
    r = client.get(
        "/api/v1/usage?from=2026-11-27T05:00:00Z&to=2026-11-27T07:00:00Z&gateway=desa-uji",
        headers=auth,
    ).get_json()
    assert len(r["items"]) == 6 and r["next"] is None
    # a date is midnight in the collector's zone (WIB): 2026-11-28 = 2026-11-27T17:00Z
    r = client.get("/api/v1/usage?from=2026-11-28&gateway=desa-uji", headers=auth).get_json()
    assert r["items"][0]["period_start"] == "2026-11-27T17:00:00Z"
    r = client.get("/api/v1/usage?format=csv&limit=4&gateway=desa-uji", headers=auth)
    assert r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert len(rows) == 4 and rows[0]["gateway_id"] == "desa-uji"
    assert r.headers["Link"].endswith('; rel="next"') and "cursor=" in r.headers["X-Next-Page"]
    for bad in (
        "from=tomorrow",
        "to=2026-13-01",
        "limit=0",
        "limit=x",
        "limit=100000",
        "format=xml",
        "cursor=!!",
        "from=2026-11-28&to=2026-11-01",
    ):
        r = client.get(f"/api/v1/usage?{bad}", headers=auth)
        assert r.status_code == 400 and r.get_json()["error"] == "bad-request", bad


def test_gateways_and_sales(client, auth, app):
    seed(client, app)
    sale = sales_record(month="2026-10", rev=1)
    post(
        client,
        [sale, {**sale, "month": "2026-11", "package": "mingguan", "count": 1, "rupiah": 25000}],
    )
    gws = client.get("/api/v1/gateways", headers=auth).get_json()["items"]
    assert [g["gateway_id"] for g in gws] == ["desa-dua", "desa-uji"]
    assert gws[1]["online"] is True and gws[1]["last_seen"]
    sales = client.get("/api/v1/sales", headers=auth).get_json()["items"]
    assert [(s["month"], s["package"], s["count"], s["rupiah"]) for s in sales] == [
        ("2026-10", "harian", 3, 15000),
        ("2026-11", "mingguan", 1, 25000),
    ]
    nov = client.get("/api/v1/sales?from=2026-11&to=2026-12", headers=auth).get_json()["items"]
    assert [s["month"] for s in nov] == ["2026-11"]
    mid = client.get("/api/v1/sales?from=2026-10-15", headers=auth).get_json()["items"]
    assert [s["month"] for s in mid] == ["2026-11"]
    csv_text = client.get("/api/v1/sales?format=csv", headers=auth).get_data(as_text=True)
    assert csv_text.splitlines()[0] == "gateway_id,month,package,count,rupiah"


def test_gateways_and_sales_pages_follow_their_cursors(client, auth, app):
    seed(client, app)
    register(app, "desa-tiga", SECRET)
    sale = sales_record(month="2026-10")
    assert post(client, [sale, {**sale, "package": "mingguan"}, sales_record()]).status_code == 200

    def every_page(url):
        items = []
        while url:
            doc = client.get(url, headers=auth).get_json()
            items += doc["items"]
            url = doc["next"]
        return items

    gateways = every_page("/api/v1/gateways?limit=1")
    assert [g["gateway_id"] for g in gateways] == ["desa-dua", "desa-tiga", "desa-uji"]
    sales = every_page("/api/v1/sales?limit=2")
    assert [(s["month"], s["package"]) for s in sales] == [
        ("2026-10", "harian"),
        ("2026-10", "mingguan"),
        ("2026-11", "harian"),
    ]


def test_openapi(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/v1/usage",
        "/api/v1/gateways",
        "/api/v1/sales",
        "/api/v1/daily",
    }
    usage_schema = doc["components"]["schemas"]["Usage"]
    assert {"gateway_id", "client", "period_start", "bytes_down", "bytes_up"} <= set(
        usage_schema["required"]
    )
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
