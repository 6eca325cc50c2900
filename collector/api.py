"""The pull API for Diskominfo's own tools: ``/api/v1/usage``, ``/gateways``, ``/sales``
(bearer tokens from ``hotspot collector tokens create``) and ``/api/v1/openapi.json``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy.orm import Session

from collector import queries
from collector.config import CollectorConfig
from collector.store import check_token
from hotspot.pull_api import query, reply
from hotspot.pull_api.openapi import GATEWAY_COLUMNS, SALES_COLUMNS, USAGE_COLUMNS, openapi_document
from hotspot.timeutil import local_time, utcnow

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _cfg() -> CollectorConfig:
    return current_app.config["COLLECTOR"]


def _db():
    return current_app.extensions["collector_db"]


def authorized(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with Session(_db()) as s, s.begin():
            tok = check_token(s, reply.bearer_token(), utcnow())
            if tok is None:
                return reply.error(401, "unauthorized", "a valid bearer token is required")
            g.token_name = tok.name
        try:
            return fn(*args, **kwargs)
        except query.BadRequest as exc:
            return reply.error(400, "bad-request", str(exc))

    wrapper.__name__ = fn.__name__
    return wrapper


@bp.get("/usage")
@authorized
def usage():
    cfg = _cfg()
    lo, hi = query.parse_range(request.args, cfg.tz)
    fmt = query.parse_format(request.args)
    limit = query.parse_limit(request.args, cfg.page_size)
    cursor = query.decode_cursor(request.args, 3)
    with Session(_db()) as s:
        items, nxt = queries.usage_page(
            s, lo=lo, hi=hi, gateway=request.args.get("gateway"), cursor=cursor, limit=limit
        )
    return reply.page(items, USAGE_COLUMNS, query.encode_cursor(nxt) if nxt else None, fmt, "usage")


@bp.get("/gateways")
@authorized
def gateways():
    cfg = _cfg()
    fmt = query.parse_format(request.args)
    limit = query.parse_limit(request.args, cfg.page_size)
    cursor = query.decode_cursor(request.args, 1)
    with Session(_db()) as s:
        items, nxt = queries.gateways_page(s, cfg, utcnow(), cursor=cursor, limit=limit)
    return reply.page(
        items, GATEWAY_COLUMNS, query.encode_cursor(nxt) if nxt else None, fmt, "gateways"
    )


def _month_bound(name: str) -> str | None:
    """A month is included when it starts within [from, to)."""
    value = request.args.get(name)
    if not value:
        return None
    ts = query.parse_when(value, name, _cfg().tz)
    local = local_time(ts, _cfg().tz)
    month = f"{local.year:04d}-{local.month:02d}"
    starts_month = (local.day, local.hour, local.minute, local.second) == (1, 0, 0, 0)
    if starts_month:
        return month
    # Not on a month's first instant: the bound moves to the next month's start.
    nxt = (local.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return f"{nxt.year:04d}-{nxt.month:02d}"


@bp.get("/sales")
@authorized
def sales():
    cfg = _cfg()
    lo, hi = _month_bound("from"), _month_bound("to")
    fmt = query.parse_format(request.args)
    limit = query.parse_limit(request.args, cfg.page_size)
    cursor = query.decode_cursor(request.args, 3)
    with Session(_db()) as s:
        items, nxt = queries.sales_page(
            s, lo=lo, hi=hi, gateway=request.args.get("gateway"), cursor=cursor, limit=limit
        )
    return reply.page(items, SALES_COLUMNS, query.encode_cursor(nxt) if nxt else None, fmt, "sales")


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
