"""Writing a pull-API answer (Flask): one page as JSON or CSV with the next page's URL, an
error, and the bearer token a request carries (see :mod:`hotspot.pull_api`)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, request

from hotspot.csvcell import neutralize
from hotspot.timeutil import iso


def next_url(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    args = {k: v for k, v in request.args.items() if k != "cursor"}
    args["cursor"] = cursor
    return f"{request.base_url}?{urlencode(args)}"


def _cell(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return iso(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return v


def _csv_cell(v: Any) -> Any:
    """A CSV cell: as :func:`_cell`, and no text a spreadsheet would run (CSV injection)."""
    return neutralize(_cell(v))


def jsonable(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_cell(v) if isinstance(v, (dt.datetime, dt.date)) else v) for k, v in item.items()}


def page(
    items: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    cursor: str | None,
    fmt: str,
    name: str,
) -> Response:
    url = next_url(cursor)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(columns)
        for item in items:
            w.writerow([_csv_cell(item.get(c)) for c in columns])
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
