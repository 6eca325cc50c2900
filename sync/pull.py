"""The shape of the pull APIs (``GET /api/v1/…``), shared by the collector and the gateway.

* ``from`` / ``to``: ISO 8601 times (``2026-11-28T10:00:00+07:00``) or dates (``2026-11-28``,
  midnight in the server's time zone); ``from`` inclusive, ``to`` exclusive.
* ``limit`` (default the server's page size) and ``cursor`` (opaque; take it from ``next``).
* ``format=json`` (default): ``{"items": [...], "next": "<URL of the next page>" | null}``;
  ``format=csv``: a header row and one row per item; the next page's URL is in the
  ``Link: <…>; rel="next"`` header (and ``X-Next-Page``).
* ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import zoneinfo
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlencode

from flask import Response, jsonify, request


class BadRequest(ValueError):
    """A query parameter the API cannot use (answered 400, naming it)."""


def parse_when(value: str, name: str, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    value = value.strip()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            ts = dt.datetime.combine(day, dt.time(), tzinfo=tz)
        elif len(value) == 7:  # a month: YYYY-MM
            y, m = value.split("-")
            ts = dt.datetime(int(y), int(m), 1, tzinfo=tz)
        else:
            ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=dt.timezone.utc)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name}: not a date or ISO 8601 time: {value[:40]!r}") from None
    return ts.astimezone(dt.timezone.utc).replace(tzinfo=None)


def parse_range(args: Mapping[str, str], tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime | None, dt.datetime | None]:
    lo = parse_when(args["from"], "from", tz) if args.get("from") else None
    hi = parse_when(args["to"], "to", tz) if args.get("to") else None
    if lo is not None and hi is not None and hi < lo:
        raise BadRequest("to: must not be before from")
    return lo, hi


def parse_limit(args: Mapping[str, str], default: int) -> int:
    raw = args.get("limit")
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        raise BadRequest("limit: not a whole number") from None
    maximum = default * 10
    if not 1 <= n <= maximum:
        raise BadRequest(f"limit: must be between 1 and {maximum}")
    return n


def parse_format(args: Mapping[str, str]) -> str:
    fmt = args.get("format", "json") or "json"
    if fmt not in ("json", "csv"):
        raise BadRequest("format: json or csv")
    return fmt


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v
                      for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(args: Mapping[str, str], n: int) -> list[Any] | None:
    raw = args.get("cursor")
    if not raw:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError):
        raise BadRequest("cursor: not one of ours") from None
    if not isinstance(values, list) or len(values) != n:
        raise BadRequest("cursor: not one of ours")
    return values


def cursor_time(value: Any) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise BadRequest("cursor: not one of ours") from None


def next_url(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    args = {k: v for k, v in request.args.items() if k != "cursor"}
    args["cursor"] = cursor
    return f"{request.base_url}?{urlencode(args)}"


def _cell(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.replace(microsecond=0).isoformat() + "Z"
    if isinstance(v, dt.date):
        return v.isoformat()
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return v


def jsonable(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_cell(v) if isinstance(v, (dt.datetime, dt.date)) else v) for k, v in item.items()}


def page(items: Iterable[Mapping[str, Any]], columns: Sequence[str], cursor: str | None,
         fmt: str, name: str) -> Response:
    url = next_url(cursor)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(columns)
        for item in items:
            w.writerow([_cell(item.get(c)) for c in columns])
        resp = Response(buf.getvalue(), mimetype="text/csv")
        resp.headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        if url:
            resp.headers["Link"] = f'<{url}>; rel="next"'
            resp.headers["X-Next-Page"] = url
        return resp
    return jsonify({"items": [jsonable(i) for i in items], "next": url})


def bearer_token() -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer":
        return token.strip()
    return ""


def error(status: int, code: str, message: str) -> Response:
    resp = jsonify({"error": code, "message": message})
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="hotspot-desa"'
    return resp
