"""The collector on a real PostgreSQL: migrations, exactly-once ingest under concurrency,
refusals that change nothing, and the pull API's keyset pagination."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from collector import config as collector_config
from collector.app import create_app
from collector.models import IngestBatch
from collector.store import create_token
from hotspot import wire
from tests.unit.collector.helpers import (
    GATEWAY_ID,
    body_of,
    daily_sums,
    post,
    register,
    signed_headers,
    snapshot,
    totals,
    usage,
)
from tests.unit.collector.test_ingest import refusals

pytestmark = pytest.mark.postgres


@pytest.fixture
def app(pg_url):
    cfg = collector_config.load(
        overrides={
            "collector": {
                "database_url": pg_url,
                "dashboard_public": True,
                "max_body_kb": 64,
                "max_inflated_kb": 1024,
                "page_size": 50,
            }
        }
    )
    a = create_app(cfg)
    register(a)
    yield a
    a.extensions["collector_db"].dispose()


def test_schema_is_migrated_with_its_own_version_table(app):
    from alembic.script import ScriptDirectory

    from collector.db import MIGRATIONS

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    engine = app.extensions["collector_db"]
    assert engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT version_num FROM collector_alembic_version")).scalar() == head
        )


def test_the_collectors_connections_run_without_jit(app):
    """A year of monthly partitions puts the overview's join above jit_above_cost, and its
    compilation took longer than the query (docs/sync-and-collector.md)."""
    with app.extensions["collector_db"].connect() as conn:
        assert conn.execute(text("SHOW jit")).scalar() == "off"


def test_the_same_batch_from_many_threads_is_applied_once(app):
    engine = app.extensions["collector_db"]
    records = [usage(client=f"{i:016x}", down=1000 + i) for i in range(200)]
    body, key = body_of(records)
    results: list[int] = []

    def send() -> None:
        client = app.test_client()
        r = client.post(wire.INGEST_PATH, data=body, headers=signed_headers(body, key))
        results.append((r.status_code, r.get_json()["duplicate"]))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s for s, _ in results] == [200] * 8
    assert sum(1 for _, dup in results if not dup) == 1
    assert sum(v[1] for v in totals(engine).values()) == sum(1000 + i for i in range(200))
    assert daily_sums(engine)[1] == sum(1000 + i for i in range(200))
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(IngestBatch)) == 1


def test_concurrent_batches_of_one_gateway_keep_the_maximum(app):
    engine = app.extensions["collector_db"]

    def send(down: int) -> None:
        assert post(app.test_client(), [usage(down=down)]).status_code == 200

    threads = [threading.Thread(target=send, args=(d,)) for d in (5, 50, 500, 5000, 50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(totals(engine).values()) == [(60, 5000, 100)]
    assert daily_sums(engine) == (60, 5000, 100)


@pytest.mark.parametrize("name, make, status, code", refusals(), ids=[r[0] for r in refusals()])
def test_refusals_change_nothing(app, name, make, status, code):
    engine = app.extensions["collector_db"]
    client = app.test_client()
    assert post(client, [usage(client="aaaaaaaaaaaaaaaa")]).status_code == 200
    before = snapshot(engine)
    body, headers = make()
    r = client.post(wire.INGEST_PATH, data=body, headers=headers)
    assert (r.status_code, r.get_json()["error"]) == (status, code)
    assert snapshot(engine) == before


def test_replay_on_postgres(app):
    engine = app.extensions["collector_db"]
    client = app.test_client()
    body, key = body_of([usage()])
    headers = signed_headers(body, key)
    assert client.post(wire.INGEST_PATH, data=body, headers=headers).status_code == 200
    before = snapshot(engine)
    assert client.post(wire.INGEST_PATH, data=body, headers=headers).status_code == 409
    assert snapshot(engine) == before


def test_api_pages_on_postgres(app):
    client = app.test_client()
    recs = [
        usage(client=f"{c:016x}", hour=f"2026-11-28T{h:02d}:00:00Z")
        for c in range(4)
        for h in range(10)
    ]
    assert post(client, recs).status_code == 200
    with Session(app.extensions["collector_db"]) as s, s.begin():
        token = create_token(s, "diskominfo")["token"]
    auth = {"Authorization": f"Bearer {token}"}
    url, items = "/api/v1/usage?limit=7&from=2026-11-28T00:00:00Z", []
    while url:
        doc = client.get(url, headers=auth).get_json()
        items += doc["items"]
        url = doc["next"]
    assert len(items) == 40 and len({(i["period_start"], i["client"]) for i in items}) == 40
    register(app, "desa-dua")
    url, gateways = "/api/v1/gateways?limit=1", []
    while url:
        doc = client.get(url, headers=auth).get_json()
        gateways += [g["gateway_id"] for g in doc["items"]]
        url = doc["next"]
    assert gateways == ["desa-dua", GATEWAY_ID]
    assert client.get("/", headers=auth).status_code == 200
    assert client.get(f"/village/{GATEWAY_ID}", headers=auth).status_code == 200
