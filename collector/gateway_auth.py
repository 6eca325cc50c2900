"""Who is asking: the gateway behind a signed request to the collector's gateway-facing
endpoints other than ingest (the policy document, a blocklist, the certificate's CSR and
chain). The signature is the ingest's (hotspot/wire.py: HMAC over id, timestamp, nonce,
idempotency key and body); the answers are the ingest's too, so nobody can tell an
unknown id from a wrong signature. Ingest keeps its own check: it also remembers nonces,
which these idempotent requests do not need."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from flask import Response, current_app, jsonify, request
from sqlalchemy.orm import Session

from collector.config import CollectorConfig
from collector.models import Gateway
from hotspot import wire

log = logging.getLogger(__name__)

# An unknown gateway's request is still checked against a secret, so that it takes as long
# as a known one's (the answer's timing says nothing about which ids are registered).
_NO_SECRET = os.urandom(32).hex()


def refusal(status: int, code: str, message: str, **extra: Any) -> Response:
    """The JSON refusal every gateway-facing endpoint answers with."""
    resp = jsonify({"ok": False, "error": code, "message": message, **extra})
    resp.status_code = status
    return resp


def authenticate_gateway(body: bytes = b"") -> tuple[str, None] | tuple[None, Response]:
    """The id of the registered, enabled gateway that signed this request (over ``body``),
    or the refusal to answer: 401 ``unsigned`` / ``stale`` (with ``server_time``) /
    ``bad-signature``, 403 ``disabled``."""
    cfg: CollectorConfig = current_app.config["COLLECTOR"]
    try:
        gateway_id, ts, nonce, key, signature = wire.check_headers(dict(request.headers))
    except wire.WireError as exc:
        return None, refusal(401, "unsigned", str(exc))
    now_ts = time.time()
    if abs(now_ts - int(ts)) > cfg.replay_window_seconds:
        return None, refusal(
            401, "stale", "timestamp outside the replay window", server_time=int(now_ts)
        )
    with Session(current_app.extensions["collector_db"]) as s:
        gw = s.get(Gateway, gateway_id)
        secret = gw.secret if gw is not None else _NO_SECRET
        disabled = gw is not None and gw.disabled
    if not wire.verify(secret, signature, gateway_id, ts, nonce, key, body) or gw is None:
        log.info(
            "%s %s: unknown gateway or bad signature (%r)", request.method, request.path, gateway_id
        )
        return None, refusal(401, "bad-signature", "unknown gateway or bad signature")
    if disabled:
        return None, refusal(403, "disabled", f"gateway {gateway_id!r} is disabled")
    return gateway_id, None
