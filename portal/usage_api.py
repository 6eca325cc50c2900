"""The gateway's own pull API: ``GET /api/v1/usage`` for this village's data, in the same
shape as the provincial collector's (hotspot.pull_api), with devices as their pseudonyms.

Off unless ``[sync] api_token`` is set; then every request needs ``Authorization: Bearer
<that token>``. A blueprint of the portal like the others (``app.register_blueprint(bp)``);
its pseudonym key is made at start-up (:mod:`portal.startup`), so a request only reads.

Rows come from the gateway's ``hourly_usage`` (what the engine flushed: up to
``gateway.flush_seconds`` behind). ``gateway_id`` is ``[sync] gateway_id`` (or ``local``).
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any

from flask import Blueprint, jsonify, request

from hotspot.pseudonym import Pseudonymizer, stored_key
from hotspot.pull_api import query, reply
from hotspot.pull_api.openapi import USAGE_COLUMNS, openapi_document
from hotspot.usage import hourly_rows
from portal.state import state

PAGE_SIZE = 1000
MAX_DEVICES_PER_HOUR = 5000  # far above what a /22 sees in an hour

bp = Blueprint("usage_api", __name__, url_prefix="/api/v1")


def _gateway_id() -> str:
    return state().config.sync.gateway_id or "local"


def _pseudonyms() -> Pseudonymizer | None:
    """Made at start-up; if the database could not give a key then (not migrated yet), the
    key the sync agent has made since, if any. Never made here: a GET does not write."""
    st = state()
    if st.pseudonyms is None:
        key = stored_key(st.config, st.db)
        if key is not None:
            st.pseudonyms = Pseudonymizer(key)
    return st.pseudonyms


@bp.before_request
def _auth():
    token = state().config.sync.api_token
    if not token:
        return reply.error(
            404, "disabled", "this gateway's usage API is off ([sync] api_token is not set)"
        )
    given = reply.bearer_token()
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        return reply.error(401, "unauthorized", "a valid bearer token is required")
    return None


@bp.get("/usage")
def usage():
    try:
        lo, hi = query.parse_range(request.args, state().config.village.tz)
        fmt = query.parse_format(request.args)
        limit = query.parse_limit(request.args, PAGE_SIZE)
        cursor = query.decode_cursor(request.args, 2)
        start = query.cursor_time(cursor[0]) if cursor else None
    except query.BadRequest as exc:
        return reply.error(400, "bad-request", str(exc))
    after = str(cursor[1]) if cursor else None
    name = _pseudonyms()
    if name is None:
        return reply.error(
            503,
            "not-ready",
            "no pseudonym key yet: restart the portal once the database is migrated",
        )
    gateway_id = _gateway_id()
    fetch = limit + MAX_DEVICES_PER_HOUR
    rows = hourly_rows(state().db, lo, hi, start, fetch)
    complete = len(rows) < fetch
    # Order by (hour, pseudonym): the cursor never holds a MAC. Drop the last hour when
    # the fetch may have cut it.
    by_hour: dict[dt.datetime, list[tuple[str, Any]]] = {}
    for mac, hour, seconds, down, up in rows:
        by_hour.setdefault(hour, []).append((name(mac), (seconds, down, up)))
    hours = sorted(by_hour)
    if not complete and len(hours) > 1:
        hours = hours[:-1]
    items: list[dict[str, Any]] = []
    more = not complete
    for hour in hours:
        for client, (seconds, down, up) in sorted(by_hour[hour]):
            if start is not None and hour == start and after is not None and client <= after:
                continue
            if len(items) == limit:
                more = True
                break
            items.append(
                {
                    "gateway_id": gateway_id,
                    "client": client,
                    "period_start": hour,
                    "period_end": hour + dt.timedelta(hours=1),
                    "seconds": seconds,
                    "bytes_down": down,
                    "bytes_up": up,
                }
            )
        if len(items) == limit and more:
            break
    nxt = None
    if more and items:
        nxt = query.encode_cursor([items[-1]["period_start"], items[-1]["client"]])
    return reply.page(items, USAGE_COLUMNS, nxt, fmt, "usage")


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(usage_only=True, title=f"Hotspot Desa gateway {_gateway_id()}"))
