"""Ingest: every refusal changes nothing; a retried batch is never counted twice."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.models import Gateway, HealthSample, SalesMonthly
from hotspot import wire
from tests.unit.collector.helpers import (
    GATEWAY_ID,
    SECRET,
    body_of,
    daily_sums,
    gateway_record,
    health_record,
    post,
    register,
    sales_record,
    signed_headers,
    snapshot,
    totals,
    usage,
)

H3 = dt.datetime(2026, 11, 28, 3)


def test_a_batch_is_applied_once(client, cdb):
    body, key = body_of([usage(down=1000), usage(client="fedcba9876543210", down=7)])
    headers = signed_headers(body, key)
    r = client.post(wire.INGEST_PATH, data=body, headers=headers)
    answer = r.get_json()
    # the collector's clock, signed over this request's nonce (hotspot/collector_time.py)
    time_ms = wire.verify_ack(SECRET, answer, GATEWAY_ID, headers[wire.H_NONCE], key)
    assert abs(time_ms / 1000 - time.time()) < 60
    assert r.status_code == 200 and answer == {
        "ok": True,
        "batch": key,
        "duplicate": False,
        "accepted": 2,
        "time_ms": time_ms,
        "time_sig": answer["time_sig"],
    }
    before = snapshot(cdb)
    # the same batch again, freshly signed (a retry after a lost answer)
    r = client.post(wire.INGEST_PATH, data=body, headers=signed_headers(body, key))
    assert r.status_code == 200 and r.get_json()["duplicate"] is True
    assert totals(cdb) == {
        ("0123456789abcdef", H3): (60, 1000, 100),
        ("fedcba9876543210", H3): (60, 7, 100),
    }
    after = snapshot(cdb)
    for table in ("usage_hourly", "usage_daily", "health_sample", "sales_monthly"):
        assert after[table] == before[table]
    with Session(cdb) as s:
        assert s.get(Gateway, GATEWAY_ID).last_seen_at is not None


def test_natural_keys_keep_the_largest_totals(client, cdb):
    assert post(client, [usage(seconds=60, down=1000, up=100)]).status_code == 200
    assert post(client, [usage(seconds=120, down=5000, up=100)]).status_code == 200  # grew
    assert post(client, [usage(seconds=60, down=1000, up=100)]).status_code == 200  # late, old
    assert post(client, [usage(seconds=90, down=4000, up=300)]).status_code == 200  # mixed
    assert totals(cdb) == {("0123456789abcdef", H3): (120, 5000, 300)}
    assert daily_sums(cdb) == (120, 5000, 300)
    # the same device-hour twice in one batch
    assert (
        post(
            client,
            [
                usage(hour="2026-11-28T04:00:00Z", down=1),
                usage(hour="2026-11-28T04:00:00Z", down=9),
            ],
        ).status_code
        == 200
    )
    assert totals(cdb)[("0123456789abcdef", H3 + dt.timedelta(hours=1))][1] == 9
    assert daily_sums(cdb) == (180, 5009, 400)


def test_daily_rollup_uses_local_days(client, cdb):
    # 16:00 UTC is 23:00 WIB, 17:00 UTC is midnight WIB: two local days
    post(
        client,
        [usage(hour="2026-11-28T16:00:00Z", down=1), usage(hour="2026-11-28T17:00:00Z", down=2)],
    )
    with Session(cdb) as s:
        from collector.models import UsageDaily

        days = {r.day: r.bytes_down for r in s.scalars(select(UsageDaily))}
    assert days == {dt.date(2026, 11, 28): 1, dt.date(2026, 11, 29): 2}


def test_health_sales_and_gateway_info(client, cdb):
    h = health_record()
    sale = sales_record()
    info = gateway_record(rev=5)
    assert post(client, [h, h, sale, info]).status_code == 200
    assert (
        post(
            client, [h, {**sale, "count": 2, "rev": 4}, {**info, "rev": 4, "village": "old name"}]
        ).status_code
        == 200
    )
    assert post(client, [{**sale, "count": 4, "rupiah": 20000, "rev": 6}]).status_code == 200
    with Session(cdb) as s:
        assert len(list(s.scalars(select(HealthSample)))) == 1
        sales = s.scalars(select(SalesMonthly)).one()
        assert (sales.count, sales.rupiah) == (4, 20000)
        gw = s.get(Gateway, GATEWAY_ID)
        assert gw.village == "Desa Sungai Duren" and gw.info_rev == 5


def _raw(client, body, headers):
    return client.post(wire.INGEST_PATH, data=body, headers=headers)


def refusals():
    good_records = [usage()]
    now = int(time.time())

    def signed(records=good_records, **kw):
        body, key = body_of(records)
        return body, signed_headers(body, key, **kw)

    def unsigned():
        body, key = body_of(good_records)
        h = signed_headers(body, key)
        del h[wire.H_SIGNATURE]
        return body, h

    def bad_sig():
        body, h = signed()
        return body + b"", {**h, wire.H_SIGNATURE: "v1=" + "0" * 64}

    def tampered():
        body, h = signed()
        other, _ = body_of([usage(down=10**12)], key=h[wire.H_IDEMPOTENCY])
        return other, h

    def unknown():
        body, key = body_of(good_records, gateway="desa-lain")
        return body, signed_headers(body, key, gateway="desa-lain")

    def stale():
        return signed(ts=now - 3600)

    def future():
        return signed(ts=now + 3600)

    def not_json():
        body, key = body_of([], raw=b"{this is not json")
        return body, signed_headers(body, key)

    def truncated():
        body, key = body_of(good_records)
        cut = body[: len(body) - 8]
        return cut, signed_headers(cut, key)

    def not_gzip():
        raw = json.dumps({"v": 1}).encode()
        return raw, signed_headers(raw, "ab" * 16)

    def wrong_record():
        return signed([usage(), {**usage(), "client": "02:00:00:00:00:01"}])

    def bomb():
        raw = (
            b'{"v":1,"gateway":"desa-uji","batch":"'
            + b"0" * 32
            + b'","records":['
            + b" " * 5_000_000
        )
        body = gzip.compress(raw, 9)
        return body, signed_headers(body, "0" * 32)

    def oversized():
        import os

        body = os.urandom(70 * 1024)  # over max_body_kb = 64
        return body, signed_headers(body, "ab" * 16)

    def not_encoded():
        body, h = signed()
        return body, {**h, "Content-Encoding": "identity"}

    return [
        ("unsigned", unsigned, 401, "unsigned"),
        ("bad signature", bad_sig, 401, "bad-signature"),
        ("tampered body", tampered, 401, "bad-signature"),
        ("unknown gateway", unknown, 401, "bad-signature"),
        ("stale", stale, 401, "stale"),
        ("future", future, 401, "stale"),
        ("not json", not_json, 400, "bad-body"),
        ("truncated gzip", truncated, 400, "bad-body"),
        ("not gzip", not_gzip, 400, "bad-body"),
        ("one bad record", wrong_record, 400, "bad-body"),
        ("gzip bomb", bomb, 413, "too-large"),
        ("oversized", oversized, 413, "too-large"),
        ("no content-encoding", not_encoded, 400, "bad-body"),
    ]


@pytest.mark.parametrize("name, make, status, code", refusals(), ids=[r[0] for r in refusals()])
def test_refusals_change_nothing(client, cdb, name, make, status, code):
    assert post(client, [usage(client="aaaaaaaaaaaaaaaa")]).status_code == 200
    before = snapshot(cdb)
    body, headers = make()
    r = _raw(client, body, headers)
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.get_json()["error"] == code
    assert snapshot(cdb) == before
    if code == "stale":
        assert abs(r.get_json()["server_time"] - time.time()) < 5


def test_replayed_request_is_refused(client, cdb):
    body, key = body_of([usage()])
    headers = signed_headers(body, key)
    assert _raw(client, body, headers).status_code == 200
    before = snapshot(cdb)
    r = _raw(client, body, headers)
    assert r.status_code == 409 and r.get_json()["error"] == "replay"
    assert snapshot(cdb) == before


def test_disabled_gateway(client, cdb, app):
    register(app, "desa-mati", SECRET, disabled=True)
    body, key = body_of([usage()], gateway="desa-mati")
    r = _raw(client, body, signed_headers(body, key, gateway="desa-mati"))
    assert r.status_code == 403


def test_get_is_not_allowed(client):
    assert client.get(wire.INGEST_PATH).status_code == 405


def test_a_batch_after_its_key_expired_changes_nothing(client, cdb):
    from sqlalchemy import delete

    from collector.models import IngestBatch

    sale = sales_record()
    h = health_record(cpu_pct=1.0, disk_pct=10.0, temp_c=None, uplink_ms=5.0)
    body, key = body_of([usage(down=7), usage(client="fedcba9876543210"), sale, h])
    assert _raw(client, body, signed_headers(body, key)).status_code == 200
    before = snapshot(cdb)
    with Session(cdb) as s, s.begin():
        s.execute(delete(IngestBatch))  # expired (BATCH_KEYS_DAYS)
    r = _raw(client, body, signed_headers(body, key))
    assert r.status_code == 200 and r.get_json()["duplicate"] is False
    after = snapshot(cdb)
    for table in ("usage_hourly", "usage_daily", "health_sample", "sales_monthly"):
        assert after[table] == before[table], table
    assert totals(cdb) == {
        ("0123456789abcdef", H3): (60, 7, 100),
        ("fedcba9876543210", H3): (60, 1000, 100),
    }
    assert daily_sums(cdb) == (120, 1007, 200)
