"""Reading a pull-API request: its time range, page size and format, and the keyset cursor
that says where the previous page stopped (see :mod:`hotspot.pull_api`).

A cursor is the sort key of the last row sent, as base64 of a JSON list: the next page is
every row after it in that order, however many rows arrive in between.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

from hotspot.timeutil import naive_utc, parse_utc


class BadRequest(ValueError):
    """A query parameter the API cannot use (answered 400, naming it)."""


def parse_when(value: str, name: str, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """A ``from``/``to`` value as naive UTC: a date is midnight in ``tz``, a month
    (``YYYY-MM``) its first midnight, a time without a zone is UTC."""
    value = value.strip()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            ts = dt.datetime.combine(day, dt.time(), tzinfo=tz)
        elif len(value) == 7:  # a month: YYYY-MM
            y, m = value.split("-")
            ts = dt.datetime(int(y), int(m), 1, tzinfo=tz)
        else:
            ts = parse_utc(value)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name}: not a date or ISO 8601 time: {value[:40]!r}") from None
    return naive_utc(ts)


def parse_range(
    args: Mapping[str, str], tz: zoneinfo.ZoneInfo
) -> tuple[dt.datetime | None, dt.datetime | None]:
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
    raw = json.dumps(
        [v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v for v in values],
        separators=(",", ":"),
    ).encode()
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
    """A time taken out of a cursor (naive UTC), or BadRequest."""
    try:
        return parse_utc(value)
    except ValueError:
        raise BadRequest("cursor: not one of ours") from None
