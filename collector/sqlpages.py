"""The pull API's big pages written by PostgreSQL (issue #14: p95 < 300 ms with the year loaded).

A page of 10,000 usage rows cost ~1 s on the province's machine when each row became a
Python object, then a dict, then JSON or CSV (bench.collector). Here PostgreSQL writes each
row's JSON object or CSV line as text (``to_char``, ``to_json``, the CSV quoting), the page
is one join of those lines, and Python only wraps it: the same bytes the general path
(:func:`collector.queries.table_page` and :func:`hotspot.pull_api.reply.page`) writes, for
any row whose text is ASCII. A page holding other text (a village's package named in
UTF-8) goes the general way, where JSON escapes it as ``\\uXXXX``: tested byte for byte in
tests/integration/collector/test_sql_pages.py.

The whole page is read before the answer starts (at most ``10 × page_size`` rows, ~1 MB):
the database connection is back in the pool before the first byte leaves, so a client that
reads slowly holds none; ``statement_timeout`` bounds the query itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

# The longest an API page's query may run (a server-side bound, whatever the client does).
STATEMENT_TIMEOUT_MS = 20_000


class QueryTimeout(RuntimeError):
    """The page's query ran past ``STATEMENT_TIMEOUT_MS`` (answered 503)."""


@dataclass(frozen=True)
class Column:
    """One answer column: its JSON value and its CSV cell, each as SQL text of ``t``'s row."""

    name: str
    json: str
    csv: str


def _int(col: str, name: str | None = None) -> Column:
    return Column(name or col, f"coalesce(t.{col}::text, 'null')", f"coalesce(t.{col}::text, '')")


def _text(col: str) -> Column:
    # CSV: the neutraliser of hotspot.csvcell (a leading ' before = + - @ tab CR), then
    # Python csv's minimal quoting (a cell holding , " CR or LF is quoted, " doubled).
    neutral = f"(CASE WHEN t.{col} ~ '^[=+@\\t\\r-]' THEN '''' || t.{col} ELSE t.{col} END)"
    csv = (
        f"coalesce(CASE WHEN {neutral} ~ '[,\"\\r\\n]' "
        f"THEN '\"' || replace({neutral}, '\"', '\"\"') || '\"' ELSE {neutral} END, '')"
    )
    return Column(col, f"coalesce(to_json(t.{col})::text, 'null')", csv)


def _stamp(expr: str, name: str) -> Column:
    """A naive-UTC timestamp as hotspot.timeutil.iso writes it (whole seconds, ``Z``)."""
    txt = f'to_char({expr}, \'YYYY-MM-DD"T"HH24:MI:SS"Z"\')'
    return Column(name, f"coalesce('\"' || {txt} || '\"', 'null')", f"coalesce({txt}, '')")


def _day(col: str) -> Column:
    txt = f"to_char(t.{col}, 'YYYY-MM-DD')"
    return Column(col, f"coalesce('\"' || {txt} || '\"', 'null')", f"coalesce({txt}, '')")


@dataclass(frozen=True)
class SqlTable:
    """A table the API pages: its name, key columns (the order and the cursor: the first is
    the period from/to bound) and the answer's columns in CSV order."""

    table: str
    keys: tuple[str, ...]
    columns: tuple[Column, ...]

    def json_row(self) -> str:
        # Flask's jsonify sorts the keys and writes no spaces: the same here.
        parts = [f"'\"{c.name}\":' || {c.json}" for c in sorted(self.columns, key=lambda c: c.name)]
        return "'{' || " + " || ',' || ".join(parts) + " || '}'"

    def csv_row(self) -> str:
        return " || ',' || ".join(c.csv for c in self.columns)


USAGE = SqlTable(
    "usage_hourly",
    ("period_start", "gateway_id", "client"),
    (
        _text("gateway_id"),
        _text("client"),
        _stamp("t.period_start", "period_start"),
        _stamp("t.period_start + interval '1 hour'", "period_end"),
        _int("seconds"),
        _int("bytes_down"),
        _int("bytes_up"),
    ),
)
SALES = SqlTable(
    "sales_monthly",
    ("month", "gateway_id", "package"),
    (_text("gateway_id"), _text("month"), _text("package"), _int("count"), _int("rupiah")),
)
DAILY = SqlTable(
    "village_daily",
    ("day", "gateway_id"),
    (
        _text("gateway_id"),
        _day("day"),
        _int("devices"),
        _int("seconds"),
        _int("bytes_down"),
        _int("bytes_up"),
    ),
)


def supported(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def page_lines(
    s: Session,
    table: SqlTable,
    fmt: str,
    *,
    lo: Any,
    hi: Any,
    gateway: str | None,
    cursor: Sequence[Any] | None,
    limit: int,
) -> tuple[list[str], list[Any] | None]:
    """Up to ``limit`` rows of ``table`` (period within [lo, hi), of one gateway or all,
    after ``cursor``) as JSON objects or CSV lines; and the next page's cursor (the last
    row's key values, as the general path gives them) if more rows follow."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit + 1}
    period = table.keys[0]
    if lo is not None:
        where.append(f"t.{period} >= :lo")
        params["lo"] = lo
    if hi is not None:
        where.append(f"t.{period} < :hi")
        params["hi"] = hi
    if gateway:
        where.append("t.gateway_id = :gateway")
        params["gateway"] = gateway
    keys = ", ".join(f"t.{k}" for k in table.keys)
    if cursor is not None:
        marks = ", ".join(f":c{i}" for i in range(len(cursor)))
        where.append(f"({keys}) > ({marks})")
        params.update({f"c{i}": v for i, v in enumerate(cursor)})
    line = table.json_row() if fmt == "json" else table.csv_row()
    sql = (
        f"SELECT {line}, {keys} FROM {table.table} t "
        + (f"WHERE {' AND '.join(where)} " if where else "")
        + f"ORDER BY {keys} LIMIT :limit"
    )
    s.execute(text(f"SET LOCAL statement_timeout = {int(STATEMENT_TIMEOUT_MS)}"))
    # A plan for these values, never a generic one: psycopg prepares a statement run 5 times,
    # and PostgreSQL's generic plan for "one village's month, in time order" walked the
    # month's time index past every other village (9.4 s p95 instead of ~0.3: bench.collector)
    s.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    try:
        rows = s.execute(text(sql), params).all()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "57014":  # query_canceled
            raise QueryTimeout(f"the query ran past {STATEMENT_TIMEOUT_MS} ms") from exc
        raise
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = list(rows[-1][1:])
    return [r[0] for r in rows], nxt


def json_body(lines: list[str], next_url: str | None) -> str:
    """The page as Flask's jsonify writes ``{"items": [...], "next": url}``."""
    return '{"items":[' + ",".join(lines) + '],"next":' + json.dumps(next_url) + "}\n"


def csv_body(columns: Sequence[str], lines: list[str]) -> str:
    return "\r\n".join([",".join(columns), *lines]) + "\r\n"


def ascii_only(lines: list[str]) -> bool:
    return all(x.isascii() for x in lines)
