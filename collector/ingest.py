"""``POST /ingest/v1/batch``: reports from the gateways (protocol: hotspot.wire).

Checks, in this order, each answered without changing anything:

=====  ====================  ==========================================================
 411   length-required       no Content-Length
 413   too-large             body over ``max_body_kb`` (before reading it), or inflating
                             past ``max_inflated_kb`` (a gzip bomb)
 401   unsigned              signature headers missing or malformed
 401   stale                 timestamp outside ±``replay_window_seconds`` (the answer
                             carries ``server_time`` so a gateway can correct its clock)
 401   bad-signature         not registered, or the HMAC does not match: one answer, byte
                             for byte, and the HMAC is computed for an unknown id too (with
                             a throw-away secret), so nobody can list the registered ids
 403   disabled              registered but switched off (told only to a valid signature)
 400   bad-body              not gzip, truncated, not JSON, not the protocol
 409   replay                this exact signed request was seen before
=====  ====================  ==========================================================

Then, in one transaction that first locks the gateway's row: a batch whose idempotency key
was applied already is acknowledged as a duplicate and changes no figure; otherwise its
records are applied (collector.store) and the key is remembered.

Every acknowledgement carries the collector's clock (``time_ms``) signed with the gateway's
secret over the request's nonce (``time_sig``, :func:`hotspot.wire.sign_ack`): a gateway
whose NTP cannot be reached may set its clock by it (docs/reliability.md), and only by an
answer to its own request.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from collector import metrics
from collector.config import CollectorConfig
from collector.models import Gateway, IngestBatch, IngestNonce
from collector.store import apply_records
from hotspot import wire

log = logging.getLogger(__name__)
bp = Blueprint("ingest", __name__)
BATCH_KEYS_DAYS = 90
# The secret an unknown gateway id is checked against: the same work as for a registered one
# (same length as collector.store.new_secret), and no signature can match it.
_NO_SECRET = secrets.token_urlsafe(32)


def _ack(secret: str, gateway_id: str, nonce: str, key: str, **answer: Any):
    """A 200 answer, with the collector's time signed for this request (module docstring)."""
    time_ms = int(time.time() * 1000)
    return jsonify(
        {
            "ok": True,
            "batch": key,
            **answer,
            "time_ms": time_ms,
            "time_sig": wire.sign_ack(secret, gateway_id, nonce, key, time_ms),
        }
    )


def _err(status: int, code: str, message: str, quiet: bool = False, **extra: Any):
    if not quiet:
        log.info("ingest refused %s %s: %s", status, code, message)
    metrics.refused(code, time.perf_counter() - g.get("ingest_started", time.perf_counter()))
    resp = jsonify({"ok": False, "error": code, "message": message, **extra})
    resp.status_code = status
    return resp


@bp.post(wire.INGEST_PATH)
def ingest():
    g.ingest_started = time.perf_counter()
    cfg: CollectorConfig = current_app.config["COLLECTOR"]
    engine = current_app.extensions["collector_db"]
    length = request.content_length
    if length is None:
        return _err(411, "length-required", "send Content-Length")
    if length > cfg.max_body_bytes:
        return _err(413, "too-large", f"body over {cfg.max_body_kb} kB")
    try:
        gateway_id, ts, nonce, key, signature = wire.check_headers(request.headers)
    except wire.WireError as exc:
        return _err(401, "unsigned", str(exc))
    if request.headers.get("Content-Encoding", "").lower() != "gzip":
        return _err(400, "bad-body", "body must be Content-Encoding: gzip")
    body = request.get_data(cache=False)
    if len(body) != length:
        return _err(400, "bad-body", "body shorter than its Content-Length")
    now_ts = time.time()
    # Only the clock is judged before the signature: it says nothing about which ids exist.
    if abs(now_ts - int(ts)) > cfg.replay_window_seconds:
        return _err(
            401,
            "stale",
            f"timestamp more than {cfg.replay_window_seconds} s from the collector's clock",
            server_time=int(now_ts),
        )
    with Session(engine) as s:
        gw = s.get(Gateway, gateway_id)
        known = gw is not None
        secret = gw.secret if gw is not None else _NO_SECRET
        disabled = bool(gw is not None and gw.disabled)
    signed_ok = wire.verify(secret, signature, gateway_id, ts, nonce, key, body)
    if not (known and signed_ok):
        # One answer for an unknown id and a bad signature (no enumeration); the log,
        # which only the province reads, says which.
        log.info(
            "ingest refused: %s", "bad signature" if known else f"unknown gateway {gateway_id!r}"
        )
        return _err(401, "bad-signature", "unknown gateway or bad signature", quiet=True)
    if disabled:
        return _err(403, "disabled", f"gateway {gateway_id!r} is disabled")
    try:
        raw = wire.inflate(body, cfg.max_inflated_bytes)
        records = wire.decode_body(raw, gateway_id, key)
    except wire.TooLarge as exc:
        return _err(413, "too-large", str(exc))
    except wire.WireError as exc:
        return _err(400, "bad-body", str(exc)[:300])

    now = dt.datetime.fromtimestamp(now_ts, dt.UTC).replace(tzinfo=None)
    s = Session(engine)
    stage = "lock"
    try:
        s.begin()
        # Lock the gateway's row first: its batches are applied one at a time (and on SQLite
        # this takes the write lock before anything is read).
        s.execute(update(Gateway).where(Gateway.id == gateway_id).values(last_seen_at=now))
        stage = "nonce"
        s.execute(
            insert(IngestNonce).values(gateway_id=gateway_id, signature=signature, seen_at=now)
        )
        stage = "batch"
        s.execute(
            delete(IngestNonce).where(
                IngestNonce.gateway_id == gateway_id,
                IngestNonce.seen_at < now - dt.timedelta(seconds=2 * cfg.replay_window_seconds),
            )
        )
        # Idempotency keys are kept for BATCH_KEYS_DAYS; a batch arriving again after that
        # is applied again, which changes nothing: every record kind is idempotent by its
        # natural key (largest totals, insert-once samples, higher revisions only).
        s.execute(
            delete(IngestBatch).where(
                IngestBatch.gateway_id == gateway_id,
                IngestBatch.received_at < now - dt.timedelta(days=BATCH_KEYS_DAYS),
            )
        )
        seen = s.scalar(
            select(IngestBatch).where(IngestBatch.gateway_id == gateway_id, IngestBatch.key == key)
        )
        if seen is not None:
            seen.duplicates += 1
            accepted = seen.records
            s.commit()
            log.info("batch %s of %s again: acknowledged, not applied", key, gateway_id)
            metrics.batch_done("duplicate", None, time.perf_counter() - g.ingest_started)
            return _ack(secret, gateway_id, nonce, key, duplicate=True, accepted=accepted)
        s.add(
            IngestBatch(
                gateway_id=gateway_id, key=key, received_at=now, records=len(records), duplicates=0
            )
        )
        s.flush()
        counts = apply_records(s, gateway_id, records, cfg.tz, now)
        s.commit()
    except IntegrityError:
        s.rollback()
        if stage == "nonce":
            return _err(409, "replay", "this request was seen before")
        # The same batch raced in through another worker and won: it is applied once.
        metrics.batch_done("duplicate", None, time.perf_counter() - g.ingest_started)
        return _ack(secret, gateway_id, nonce, key, duplicate=True, accepted=len(records))
    except OperationalError as exc:
        s.rollback()
        log.warning(
            "ingest of %s from %s: database busy: %s", key, gateway_id, str(exc).splitlines()[0]
        )
        return _err(503, "busy", "database busy, try again")
    except BaseException:
        s.rollback()
        raise
    finally:
        s.close()
    log.info("batch %s of %s applied: %s", key, gateway_id, counts)
    metrics.batch_done("applied", counts, time.perf_counter() - g.ingest_started)
    return _ack(secret, gateway_id, nonce, key, duplicate=False, accepted=len(records))
