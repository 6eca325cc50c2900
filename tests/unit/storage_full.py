"""A full filesystem as SQLite reports it, for the unit tests (no root, so no small tmpfs):
the error of a commit on a full disk, and an engine whose commits fail that way while
``full`` is set."""

from __future__ import annotations

import sqlite3

from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError


def storage_full_error() -> OperationalError:
    """What SQLAlchemy raises when SQLite cannot write its WAL: SQLITE_FULL (13)."""
    orig = sqlite3.OperationalError("database or disk is full")
    orig.sqlite_errorcode = 13  # type: ignore[attr-defined]
    orig.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    return OperationalError("COMMIT", {}, orig)


class FullStorage:
    """While ``full``, every commit on ``engine`` fails as on a full disk (reads work, as
    they do on a full disk)."""

    def __init__(self, engine: Engine):
        self.full = False
        self.refused = 0
        event.listen(engine, "commit", self._commit)

    def _commit(self, _conn: object) -> None:
        if self.full:
            self.refused += 1
            raise storage_full_error()
