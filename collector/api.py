"""The pull API for Diskominfo's own tools: ``/api/v1/usage``, ``/daily``, ``/gateways``, ``/sales``
(bearer tokens from ``hotspot collector tokens create``) and ``/api/v1/openapi.json``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy.orm import Session

from collector import queries, sqlpages
from collector.config import CollectorConfig
from collector.store import check_token
from hotspot.pull_api import query, reply
from hotspot.pull_api.openapi import (
    DAILY_COLUMNS,
    GATEWAY_COLUMNS,
    SALES_COLUMNS,
    USAGE_COLUMNS,
    openapi_document,
)
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
        except sqlpages.QueryTimeout as exc:
            return reply.error(503, "timeout", f"{exc}: ask for a smaller page or range")

    wrapper.__name__ = fn.__name__
    return wrapper


def _page(
    name: str,
    columns: list[str],
    cursor_length: int,
    read: Callable[[Session, list[Any] | None, int], tuple[list[dict], list | None]],
):
    """Answer a page: the request's format, page size and cursor (``cursor_length`` values),
    the rows ``read(session, cursor, limit)`` gives, and the next page's URL."""
    fmt = query.parse_format(request.args)
    limit = query.parse_limit(request.args, _cfg().page_size)
    cursor = query.decode_cursor(request.args, cursor_length)
    with Session(_db()) as s:
        items, nxt = read(s, cursor, limit)
    return reply.page(items, columns, query.encode_cursor(nxt) if nxt else None, fmt, name)


def _table_page(
    name: str,
    columns: list[str],
    table: queries.PagedTable,
    lo: Any,
    hi: Any,
    sql_table: sqlpages.SqlTable | None = None,
):
    """A page of one of the collector's tables, of the gateway the request names (or all):
    written by PostgreSQL (collector.sqlpages) where it can, else row by row here."""
    gateway = request.args.get("gateway")
    if sql_table is not None:
        fmt = query.parse_format(request.args)
        limit = query.parse_limit(request.args, _cfg().page_size)
        raw = query.decode_cursor(request.args, len(table.keys))
        cursor = None if raw is None else [c(v) for c, v in zip(table.cursor_types, raw)]
        with Session(_db()) as s, s.begin():
            if sqlpages.supported(s):
                lines, nxt = sqlpages.page_lines(
                    s, sql_table, fmt, lo=lo, hi=hi, gateway=gateway, cursor=cursor, limit=limit
                )
            else:
                lines = None
        # the session is closed: a slow reader of this answer holds no database connection
        if lines is not None and sqlpages.ascii_only(lines):
            url = reply.next_url(query.encode_cursor(nxt) if nxt else None)
            if fmt == "json":
                return Response(sqlpages.json_body(lines, url), mimetype="application/json")
            resp = Response(sqlpages.csv_body(columns, lines), mimetype="text/csv")
            resp.headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
            if url:
                resp.headers["Link"] = f'<{url}>; rel="next"'
                resp.headers["X-Next-Page"] = url
            return resp
    return _page(
        name,
        columns,
        len(table.keys),
        lambda s, cursor, limit: queries.table_page(
            s, table, lo=lo, hi=hi, gateway=gateway, cursor=cursor, limit=limit
        ),
    )


@bp.get("/usage")
@authorized
def usage():
    lo, hi = query.parse_range(request.args, _cfg().tz)
    return _table_page("usage", USAGE_COLUMNS, queries.USAGE, lo, hi, sqlpages.USAGE)


@bp.get("/gateways")
@authorized
def gateways():
    return _page(
        "gateways",
        GATEWAY_COLUMNS,
        1,
        lambda s, cursor, limit: queries.gateways_page(
            s, _cfg(), utcnow(), cursor=cursor, limit=limit
        ),
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
    return _table_page(
        "sales",
        SALES_COLUMNS,
        queries.SALES,
        _month_bound("from"),
        _month_bound("to"),
        sqlpages.SALES,
    )


def _day_bound(name: str) -> dt.date | None:
    """A day is included when it starts within [from, to)."""
    value = request.args.get(name)
    if not value:
        return None
    local = local_time(query.parse_when(value, name, _cfg().tz), _cfg().tz)
    if (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0):
        return local.date()
    return local.date() + dt.timedelta(days=1)


@bp.get("/daily")
@authorized
def daily():
    """Each village's day (the roll-ups the dashboard draws): they outlive the per-device
    rows (``rollup_retention_days``)."""
    return _table_page(
        "daily", DAILY_COLUMNS, queries.DAILY, _day_bound("from"), _day_bound("to"), sqlpages.DAILY
    )


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
