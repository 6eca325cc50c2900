"""Helpers shared by the sync and collector unit tests: signed requests, an in-process
collector reached through a Flask test client, and a lossy transport."""

from __future__ import annotations

import datetime as dt
import json
import random
import secrets
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector.models import Base as CollectorBase
from collector.models import Gateway, UsageDaily, UsageHourly
from hotspot import wire

GATEWAY_ID = "desa-uji"
SECRET = "s3cret-" + "x" * 40


def register(app: Any, gateway_id: str = GATEWAY_ID, secret: str = SECRET, **kw: Any) -> None:
    with Session(app.extensions["collector_db"]) as s, s.begin():
        s.add(Gateway(id=gateway_id, secret=secret, **kw))


def body_of(
    records: list[dict[str, Any]],
    gateway: str = GATEWAY_ID,
    key: str | None = None,
    raw: bytes | None = None,
) -> tuple[bytes, str]:
    key = key or secrets.token_hex(16)
    if raw is None:
        raw = batch_document(records, gateway, key)
    return wire.compress(raw), key


def batch_document(records: list[dict[str, Any]], gateway: str, key: str) -> bytes:
    """A batch's JSON document, before compression."""
    return json.dumps(
        {
            "v": 1,
            "gateway": gateway,
            "batch": key,
            "created_at": "2026-11-28T03:00:00Z",
            "records": records,
        }
    ).encode()


def signed_headers(
    body: bytes,
    key: str,
    *,
    gateway: str = GATEWAY_ID,
    secret: str = SECRET,
    ts: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    ts_s = str(int(time.time()) if ts is None else ts)
    nonce = nonce or secrets.token_hex(16)
    return {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        wire.H_GATEWAY: gateway,
        wire.H_TIMESTAMP: ts_s,
        wire.H_NONCE: nonce,
        wire.H_IDEMPOTENCY: key,
        wire.H_SIGNATURE: wire.sign(secret, gateway, ts_s, nonce, key, body),
    }


def post(client: Any, records: list[dict[str, Any]], **kw: Any):
    body, key = body_of(records, gateway=kw.pop("gateway", GATEWAY_ID), key=kw.pop("key", None))
    return client.post(
        wire.INGEST_PATH,
        data=body,
        headers=signed_headers(body, key, gateway=kw.pop("hgateway", GATEWAY_ID), **kw),
    )


def usage(
    client: str = "0123456789abcdef",
    hour: str = "2026-11-28T03:00:00Z",
    seconds: int = 60,
    down: int = 1000,
    up: int = 100,
) -> dict[str, Any]:
    return {
        "kind": "usage",
        "client": client,
        "period_start": hour,
        "seconds": seconds,
        "bytes_down": down,
        "bytes_up": up,
    }


def health_record(**changes: Any) -> dict[str, Any]:
    return {
        "kind": "health",
        "sampled_at": "2026-11-28T03:00:05Z",
        "cpu_pct": 12.5,
        "load1": 0.5,
        "load5": 0.4,
        "load15": 0.3,
        "mem_pct": 40,
        "disk_pct": 91.0,
        "disk_free_mb": 900,
        "temp_c": 80.5,
        "uptime_s": 100,
        "uplink_ok": True,
        "uplink_ms": 640.0,
        "clients_online": 3,
        "backlog": 10,
        **changes,
    }


def sales_record(**changes: Any) -> dict[str, Any]:
    return {
        "kind": "sales",
        "month": "2026-11",
        "package": "harian",
        "count": 3,
        "rupiah": 15000,
        "rev": 5,
        **changes,
    }


def gateway_record(**changes: Any) -> dict[str, Any]:
    return {
        "kind": "gateway",
        "rev": 1,
        "village": "Desa Sungai Duren",
        "timezone": "Asia/Jakarta",
        "version": "0.1.0",
        **changes,
    }


def snapshot(engine: Any) -> dict[str, list[tuple]]:
    """Every row of every collector table (to prove a refused request changed nothing)."""
    out = {}
    with engine.connect() as conn:
        for table in CollectorBase.metadata.sorted_tables:
            out[table.name] = sorted(
                tuple(str(v) for v in row) for row in conn.execute(table.select())
            )
    return out


def totals(
    engine: Any, gateway_id: str = GATEWAY_ID
) -> dict[tuple[str, dt.datetime], tuple[int, int, int]]:
    with Session(engine) as s:
        return {
            (r.client, r.period_start): (r.seconds, r.bytes_down, r.bytes_up)
            for r in s.scalars(select(UsageHourly).where(UsageHourly.gateway_id == gateway_id))
        }


def daily_sums(engine: Any, gateway_id: str = GATEWAY_ID) -> tuple[int, int, int]:
    with Session(engine) as s:
        row = s.execute(
            select(
                func.sum(UsageDaily.seconds),
                func.sum(UsageDaily.bytes_down),
                func.sum(UsageDaily.bytes_up),
            ).where(UsageDaily.gateway_id == gateway_id)
        ).one()
    return tuple(int(v or 0) for v in row)  # type: ignore[return-value]


class FlaskTransport:
    """The agent's transport, straight into a collector app's test client."""

    def __init__(self, app: Any):
        self.client = app.test_client()
        self.calls = 0
        self.statuses: list[int] = []

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.calls += 1
        resp = self.client.post(path, data=body, headers=headers)
        self.statuses.append(resp.status_code)
        return resp.status_code, resp.get_json(silent=True) or {}


class LossyTransport(FlaskTransport):
    """Loses some requests before they arrive and some answers after the collector applied
    the batch (the case idempotency keys exist for)."""

    def __init__(self, app: Any, *, lose_request: float, lose_answer: float, seed: int = 7):
        super().__init__(app)
        self.rng = random.Random(seed)
        self.lose_request = lose_request
        self.lose_answer = lose_answer
        self.lost_answers = 0

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.rng.random() < self.lose_request:
            raise OSError("collector unreachable: timed out")
        status, answer = super().post(path, body, headers)
        if self.rng.random() < self.lose_answer:
            self.lost_answers += 1
            raise OSError("collector unreachable: connection reset")
        return status, answer
