"""The audit log: every money- or access-affecting action, append-only and chained.

Write it in the same transaction as the action (:func:`write` gives one that holds the
database's write lock from its first statement, so the chain cannot fork)::

    with audit.write(engine) as conn:
        conn.execute(update(...))
        audit.record(conn, actor, "voucher.void", "voucher:12", before={...}, after={...})

Each row's ``hash`` is SHA-256 over the previous row's hash and this row's content; the
database refuses UPDATE and DELETE on the table (triggers, migration 0004). :func:`verify`
re-computes the chain and names the first row that does not fit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.engine import Connection

from hotspot.model_operator import AuditLog
from hotspot.timeutil import iso, utcnow

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who did it: an operator of the console, the CLI (``cli:root``) or ``system``."""

    name: str
    id: int | None = None
    role: str | None = None
    ip: str | None = None


SYSTEM = Actor("system")


def cli_actor() -> Actor:
    import getpass
    import os

    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry
        user = str(os.getuid())
    return Actor(f"cli:{user}"[:32], role="admin")


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction that takes the write lock at once (SQLite ``BEGIN IMMEDIATE``;
    an advisory lock on PostgreSQL) and commits at the end, or rolls back on an error."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":  # pragma: no cover - CI has SQLite here
            conn.execute(text("SELECT pg_advisory_xact_lock(7340032)"))
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _dump(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(
        {k: _jsonable(v) for k, v in value.items()},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _digest(prev: str, row: dict[str, Any]) -> str:
    # The chain's own spelling of the time (no "Z"): rows already written were hashed with it.
    fields = [
        prev,
        row["at"].replace(microsecond=0).isoformat(),
        str(row["actor_id"] or ""),
        row["actor"],
        row["role"] or "",
        row["ip"] or "",
        row["action"],
        row["target"] or "",
        row["before"] or "",
        row["after"] or "",
    ]
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def record(
    conn: Connection,
    actor: Actor,
    action: str,
    target: str | None = None,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> None:
    prev = conn.execute(select(AuditLog.hash).order_by(AuditLog.id.desc()).limit(1)).scalar()
    row = {
        "at": (at or utcnow()).replace(microsecond=0),
        "actor_id": actor.id,
        "actor": actor.name[:32],
        "role": actor.role,
        "ip": actor.ip,
        "action": action[:40],
        "target": target[:80] if target else None,
        "before": _dump(before),
        "after": _dump(after),
    }
    prev = prev or GENESIS
    conn.execute(insert(AuditLog).values(**row, prev_hash=prev, hash=_digest(prev, row)))


def verify(engine: Engine) -> int | None:
    """The id of the first row whose chain link is broken (altered, removed or inserted
    out of order), or None when the log is intact."""
    prev = GENESIS
    with engine.connect() as conn:
        for r in conn.execute(select(AuditLog).order_by(AuditLog.id)):
            row = {
                "at": r.at,
                "actor_id": r.actor_id,
                "actor": r.actor,
                "role": r.role,
                "ip": r.ip,
                "action": r.action,
                "target": r.target,
                "before": r.before,
                "after": r.after,
            }
            if r.prev_hash != prev or r.hash != _digest(prev, row):
                return int(r.id)
            prev = r.hash
    return None


def entries(
    engine: Engine, *, limit: int = 200, before_id: int | None = None, action: str | None = None
) -> list[Any]:
    """Newest first (a page of the console's audit log)."""
    q = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if before_id is not None:
        q = q.where(AuditLog.id < before_id)
    if action:
        q = q.where(AuditLog.action.startswith(action))
    with engine.connect() as conn:
        return list(conn.execute(q))


def every_entry(engine: Engine) -> list[Any]:
    """The whole log, oldest first (the CSV export)."""
    with engine.connect() as conn:
        return list(conn.execute(select(AuditLog).order_by(AuditLog.id)))
