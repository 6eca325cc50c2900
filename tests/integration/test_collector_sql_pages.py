"""The pull API's pages written by PostgreSQL (collector.sqlpages) answer the same bytes as
the general row-by-row path, page after page; and the abuse cases: a huge limit, a malformed
date or cursor, hostile text in CSV cells, a query past its time, a slow reader."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from sqlalchemy import text

from collector import config as collector_config
from collector import maintenance, sqlpages
from collector.app import create_app
from collector.store import create_token
from tests.unit.collector.helpers import register

pytestmark = pytest.mark.postgres

TODAY = dt.date.today()
MONTH0 = (TODAY.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
# Text a gateway could report: formulas, separators, quotes, line breaks (CSV injection and
# quoting), a backslash; and one name that is not ASCII (answered by the general path).
HOSTILE = ['=HYPERLINK("x")', "a,b", 'paket "hemat"', "two\nlines", "-5", "@sum", "back\\slash"]


@pytest.fixture(scope="module")
def pg_url_module(postgres):
    name = postgres.create_db()
    yield postgres.url(name)
    postgres.drop_db(name)


@pytest.fixture(scope="module")
def app(pg_url_module):
    pg_url = pg_url_module
    cfg = collector_config.load(
        overrides={"collector": {"database_url": pg_url, "dashboard_public": True, "page_size": 10}}
    )
    a = create_app(cfg)
    engine = a.extensions["collector_db"]
    for month in (MONTH0, TODAY.replace(day=1)):
        maintenance.ensure_partitions(engine, dt.datetime.combine(month, dt.time()))
    for g in ("desa-a", "desa-b", "desa-c"):
        register(a, g)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO usage_hourly (gateway_id, client, period_start, seconds, bytes_down,"
                " bytes_up, updated_at) SELECT g, lpad(to_hex(c), 16, '0'),"
                " CAST(:m AS timestamp) + h * interval '1 hour' + interval '123 milliseconds',"
                " 60 * c, 1000 * h + c, 7 * c, now()"
                " FROM unnest(ARRAY['desa-a','desa-b','desa-c']) g, generate_series(0, 3) c,"
                " generate_series(0, 5) h"
            ),
            {"m": MONTH0},
        )
        conn.execute(
            text(
                "INSERT INTO village_daily (gateway_id, day, devices, seconds, bytes_down,"
                " bytes_up) SELECT g, CAST(:m AS date) + d, d, 10 * d, 100 * d, 5 * d"
                " FROM unnest(ARRAY['desa-a','desa-b','desa-c']) g, generate_series(0, 20) d"
            ),
            {"m": MONTH0},
        )
        conn.execute(
            text(
                "INSERT INTO sales_monthly (gateway_id, month, package, count, rupiah, rev,"
                " updated_at) VALUES ('desa-a', '2001-01', 'paket hébat', 1, 5000, 1, now())"
            )
        )
        for i, package in enumerate(["harian", *HOSTILE]):
            conn.execute(
                text(
                    "INSERT INTO sales_monthly (gateway_id, month, package, count, rupiah, rev,"
                    " updated_at) VALUES ('desa-b', :m, :p, :c, :r, 1, now())"
                ),
                {"m": f"{MONTH0:%Y-%m}", "p": package, "c": i, "r": 5000 * i},
            )
    from sqlalchemy.orm import Session

    with Session(engine) as s, s.begin():
        a.config["TOKEN"] = create_token(s, "t")["token"]
    yield a
    engine.dispose()


def _get(app, url: str):
    return app.test_client().get(url, headers={"Authorization": f"Bearer {app.config['TOKEN']}"})


def _walk(app, url: str) -> list[tuple[int, bytes, str | None]]:
    """Every page from ``url`` on, following next (JSON) or X-Next-Page (CSV)."""
    out = []
    while url:
        r = _get(app, url)
        nxt = r.headers.get("X-Next-Page")
        if r.mimetype == "application/json" and r.status_code == 200:
            nxt = r.get_json()["next"]
        out.append((r.status_code, r.data, nxt))
        url = nxt.replace("http://localhost", "") if nxt else ""
        assert len(out) < 100
    return out


QUERIES = [
    f"/api/v1/usage?from={MONTH0}&to={TODAY + dt.timedelta(days=1)}",
    f"/api/v1/usage?from={MONTH0}&gateway=desa-b&limit=7",
    f"/api/v1/usage?from={MONTH0}&limit=100",
    f"/api/v1/daily?from={MONTH0}&limit=13",
    "/api/v1/daily?gateway=desa-c",
    f"/api/v1/sales?from={MONTH0:%Y-%m}",
    f"/api/v1/sales?from={MONTH0:%Y-%m}&limit=3",
    "/api/v1/usage?from=2001-01-01&to=2001-02-01",  # nothing: an empty page
]


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("url", QUERIES)
def test_pages_by_postgresql_are_byte_identical_to_the_general_path(app, monkeypatch, url, fmt):
    url = f"{url}&format={fmt}"
    fast = _walk(app, url)
    monkeypatch.setattr(sqlpages, "supported", lambda s: False)
    general = _walk(app, url)
    assert [p[0] for p in fast] == [200] * len(fast)
    assert fast == general


def test_csv_cells_are_neutralised_and_quoted(app):
    body = _get(app, "/api/v1/sales?format=csv&gateway=desa-b").data.decode()
    assert '\'=HYPERLINK(""x"")' in body and "\"'=HYPERLINK" in body
    assert '"a,b"' in body and '"paket ""hemat"""' in body and '"two\nlines"' in body
    assert ",'-5," in body and ",'@sum," in body


def test_a_page_with_text_that_is_not_ascii_takes_the_general_path(app, monkeypatch):
    url = "/api/v1/sales?from=2001-01&to=2001-02"
    fast = _walk(app, url)
    assert b"paket h\\u00e9bat" in fast[0][1]  # jsonify's escape: the general path answered
    monkeypatch.setattr(sqlpages, "supported", lambda s: False)
    assert fast == _walk(app, url)


@pytest.mark.parametrize(
    "query, complaint",
    [
        ("/api/v1/usage?limit=1000000", "limit"),
        ("/api/v1/usage?limit=-1", "limit"),
        ("/api/v1/usage?from=2026-13-45", "from"),
        ("/api/v1/daily?to=yesterday", "to"),
        ("/api/v1/sales?from=2026-1", "from"),
        ("/api/v1/usage?cursor=" + base64.urlsafe_b64encode(b'["x","y","z"]').decode(), "cursor"),
        (
            "/api/v1/daily?cursor=" + base64.urlsafe_b64encode(b'["not a day","y"]').decode(),
            "cursor",
        ),
        ("/api/v1/usage?cursor=%%%", "cursor"),
        ("/api/v1/usage?format=xml", "format"),
    ],
)
def test_malformed_requests_are_refused_with_the_parameter_named(app, query, complaint):
    r = _get(app, query)
    assert r.status_code == 400
    assert r.get_json()["error"] == "bad-request" and complaint in r.get_json()["message"]


def test_a_query_past_its_time_is_cancelled_by_the_server_and_answered_503(app, monkeypatch):
    slow = sqlpages.Column("slow", "(SELECT '1' FROM pg_sleep(0.5))", "'1'")
    monkeypatch.setattr(
        sqlpages,
        "USAGE",
        sqlpages.SqlTable("usage_hourly", ("period_start", "gateway_id", "client"), (slow,)),
    )
    monkeypatch.setattr(sqlpages, "STATEMENT_TIMEOUT_MS", 100)
    r = _get(app, "/api/v1/usage?gateway=desa-a&limit=1")
    assert r.status_code == 503 and r.get_json()["error"] == "timeout"
    assert _get(app, "/api/v1/daily?limit=1").status_code == 200  # the pool is not poisoned


def test_a_slow_reader_of_a_csv_page_holds_no_database_connection(app):
    engine = app.extensions["collector_db"]
    r = app.test_client().get(
        f"/api/v1/usage?from={MONTH0}&format=csv&limit=100",
        headers={"Authorization": f"Bearer {app.config['TOKEN']}"},
        buffered=False,
    )
    body = r.response  # nothing read yet: the client is slow
    assert engine.pool.checkedout() == 0
    with engine.connect() as conn:
        active = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state <> 'idle' AND pid <> pg_backend_pid()"
            )
        ).scalar()
    assert active == 0
    data = b"".join(body)
    assert data.count(b"\r\n") == 73  # the header and the month's 72 device-hours
    r.close()
