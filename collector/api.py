"""The pull API for Diskominfo's own tools: ``/api/v1/usage``, ``/gateways``, ``/sales``
(bearer tokens from ``hotspot collector tokens create``) and ``/api/v1/openapi.json``."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from flask import Blueprint, current_app, g, jsonify
from flask import request
from sqlalchemy.orm import Session

from collector import queries
from collector.config import CollectorConfig
from collector.store import check_token
from hotspot import __version__
from hotspot.timeutil import local_time, utcnow
from sync import pull

bp = Blueprint("api", __name__, url_prefix="/api/v1")

USAGE_COLUMNS = ["gateway_id", "client", "period_start", "period_end", "seconds", "bytes_down",
                 "bytes_up"]
GATEWAY_COLUMNS = ["gateway_id", "village", "timezone", "version", "registered_at", "last_seen",
                   "online", "disabled", "warnings", "health"]
SALES_COLUMNS = ["gateway_id", "month", "package", "count", "rupiah"]


def _cfg() -> CollectorConfig:
    return current_app.config["COLLECTOR"]


def _db():  # noqa: ANN202
    return current_app.extensions["collector_db"]


def authorized(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with Session(_db()) as s, s.begin():
            tok = check_token(s, pull.bearer_token(), utcnow())
            if tok is None:
                return pull.error(401, "unauthorized", "a valid bearer token is required")
            g.token_name = tok.name
        try:
            return fn(*args, **kwargs)
        except pull.BadRequest as exc:
            return pull.error(400, "bad-request", str(exc))

    wrapper.__name__ = fn.__name__
    return wrapper


@bp.get("/usage")
@authorized
def usage():  # noqa: ANN201
    cfg = _cfg()
    lo, hi = pull.parse_range(request.args, cfg.tz)
    fmt = pull.parse_format(request.args)
    limit = pull.parse_limit(request.args, cfg.page_size)
    cursor = pull.decode_cursor(request.args, 3)
    with Session(_db()) as s:
        items, nxt = queries.usage_page(s, lo=lo, hi=hi, gateway=request.args.get("gateway"),
                                        cursor=cursor, limit=limit)
    return pull.page(items, USAGE_COLUMNS, pull.encode_cursor(nxt) if nxt else None, fmt, "usage")


@bp.get("/gateways")
@authorized
def gateways():  # noqa: ANN201
    cfg = _cfg()
    fmt = pull.parse_format(request.args)
    limit = pull.parse_limit(request.args, cfg.page_size)
    cursor = pull.decode_cursor(request.args, 1)
    with Session(_db()) as s:
        items, nxt = queries.gateways_page(s, cfg, utcnow(), cursor=cursor, limit=limit)
    return pull.page(items, GATEWAY_COLUMNS, pull.encode_cursor(nxt) if nxt else None, fmt,
                     "gateways")


def _month_bound(name: str) -> str | None:
    """A month is included when it starts within [from, to)."""
    value = request.args.get(name)
    if not value:
        return None
    ts = pull.parse_when(value, name, _cfg().tz)
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
def sales():  # noqa: ANN201
    cfg = _cfg()
    lo, hi = _month_bound("from"), _month_bound("to")
    fmt = pull.parse_format(request.args)
    limit = pull.parse_limit(request.args, cfg.page_size)
    cursor = pull.decode_cursor(request.args, 3)
    with Session(_db()) as s:
        items, nxt = queries.sales_page(s, lo=lo, hi=hi, gateway=request.args.get("gateway"),
                                        cursor=cursor, limit=limit)
    return pull.page(items, SALES_COLUMNS, pull.encode_cursor(nxt) if nxt else None, fmt, "sales")


@bp.get("/openapi.json")
def openapi():  # noqa: ANN201
    return jsonify(openapi_document())


def _params(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    common = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1},
         "description": "rows per page (default: the server's page size; at most 10 times it)"},
        {"name": "cursor", "in": "query", "schema": {"type": "string"},
         "description": "opaque; take it from `next`"},
        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}},
    ]
    return list(extra) + common


_RANGE = [
    {"name": "from", "in": "query", "schema": {"type": "string"},
     "description": "inclusive: ISO 8601 time, or a date (midnight in the collector's time zone)"},
    {"name": "to", "in": "query", "schema": {"type": "string"}, "description": "exclusive"},
    {"name": "gateway", "in": "query", "schema": {"type": "string"}, "description": "one gateway id"},
]


def _page_schema(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "next"], "properties": {
        "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
        "next": {"type": ["string", "null"], "description": "URL of the next page, or null"}}}


def _op(summary: str, item: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {"get": {
        "summary": summary, "security": [{"bearer": []}], "parameters": params,
        "responses": {
            "200": {"description": "one page", "content": {
                "application/json": {"schema": _page_schema(item)},
                "text/csv": {"schema": {"type": "string"}}},
                "headers": {"Link": {"schema": {"type": "string"},
                                     "description": 'CSV only: <next page URL>; rel="next"'}}},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"}}}}


def openapi_document(usage_only: bool = False, title: str = "Hotspot Desa provincial collector") -> dict[str, Any]:
    stamp = {"type": "string", "format": "date-time"}
    usage_schema = {"type": "object", "required": USAGE_COLUMNS, "properties": {
        "gateway_id": {"type": "string"},
        "client": {"type": "string", "description": "pseudonym of a device (16 hex digits), "
                   "stable within one gateway, unlinkable across gateways"},
        "period_start": stamp, "period_end": stamp,
        "seconds": {"type": "integer", "description": "connected seconds in the hour"},
        "bytes_down": {"type": "integer", "description": "IP-layer bytes, headers included"},
        "bytes_up": {"type": "integer"}}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__,
                 "description": "Hourly usage per device (pseudonymous), gateways and monthly "
                                "voucher sales. Times are UTC."},
        "paths": {"/api/v1/usage": _op("Usage per device and hour", "Usage", _params(*_RANGE))},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "refused", "content": {"application/json": {
                "schema": {"type": "object", "properties": {
                    "error": {"type": "string"}, "message": {"type": "string"}}}}}}},
            "schemas": {"Usage": usage_schema}},
    }
    if usage_only:
        return doc
    doc["paths"]["/api/v1/gateways"] = _op("Gateways: last seen, online, health, warnings",
                                            "Gateway", _params())
    doc["paths"]["/api/v1/sales"] = _op(
        "Voucher sales per gateway, month and package", "Sales",
        _params(*[dict(p, description=p["description"] + " (a month is included when it starts "
                       "within [from, to))") if p["name"] in ("from", "to") else p for p in _RANGE]))
    doc["components"]["schemas"]["Gateway"] = {"type": "object", "properties": {
        "gateway_id": {"type": "string"}, "village": {"type": ["string", "null"]},
        "timezone": {"type": ["string", "null"]}, "version": {"type": ["string", "null"]},
        "registered_at": stamp, "last_seen": {"type": ["string", "null"], "format": "date-time"},
        "online": {"type": "boolean"}, "disabled": {"type": "boolean"},
        "warnings": {"type": "array", "items": {"type": "string", "enum": [
            "never", "offline", "disk", "temp", "mem", "uplink"]}},
        "health": {"type": ["object", "null"]}}}
    doc["components"]["schemas"]["Sales"] = {"type": "object", "properties": {
        "gateway_id": {"type": "string"}, "month": {"type": "string", "pattern": "^\\d{4}-\\d{2}$"},
        "package": {"type": "string"}, "count": {"type": "integer"},
        "rupiah": {"type": "integer"}}}
    return doc
