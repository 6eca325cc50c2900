"""Database engine and schema migrations.

SQLite on the device runs in WAL mode with ``synchronous=NORMAL``: a power cut can lose the
last commits but never corrupts the file. Callers whose commits are acknowledged to someone
(the portal's vouchers and the console's sales, the CLI's operator commands, the sync agent's
batches) ask for ``synchronous="FULL"``, which fsyncs every commit — and, the WAL being one
log, every commit before it (docs/reliability.md, power cuts).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sqlite3
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from hotspot.config import database_path
from hotspot.errors import ErrorCode, HotspotError

if TYPE_CHECKING:  # Alembic is imported only where migrations run: portal workers stay small
    from alembic.config import Config as AlembicConfig
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")

# SQLite's primary result code for "database or disk is full" (an extended code keeps it in
# its low byte).
SQLITE_FULL = 13
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def is_storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` (a SQLAlchemy error, a ``sqlite3`` error or an ``OSError``, or one
    caused by one) says that the filesystem is full: a write that will work again by itself
    once there is room, not a broken database."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, sqlite3.Error):
            code = getattr(cur, "sqlite_errorcode", None)
            if isinstance(code, int) and code & 0xFF == SQLITE_FULL:
                return True
        elif isinstance(cur, OSError) and cur.errno in _NO_SPACE:
            return True
        orig = getattr(cur, "orig", None)  # sqlalchemy.exc.DBAPIError → the driver's error
        cur = orig if isinstance(orig, BaseException) else (cur.__cause__ or cur.__context__)
    return False


def make_engine(url: str, *, synchronous: str = "NORMAL", autocheckpoint: bool = True) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys.

    ``autocheckpoint=False``: no commit on this engine's connections copies the WAL back into
    the database (SQLite's automatic checkpoint, run by whichever commit takes the WAL past
    1,000 pages: 2 to 16 ms of writes and fsyncs inside that commit on this machine's disk).
    The owner then calls :func:`checkpoint_if_due` itself, off its hot path: the gateway, whose
    logins must not pay for it (docs/architecture.md, "The database's checkpoints")."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    path = database_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 15, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=15000")
        if not autocheckpoint:
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    @event.listens_for(engine, "checkin")
    def _no_open_transaction(dbapi_conn: DBAPIConnection | None, _record: object) -> None:
        # A COMMIT that failed (a full disk) can leave SQLite's transaction open behind
        # SQLAlchemy's back: the next caller handed this connection would see, and its
        # commit would write, what the failed one was told had not happened.
        if dbapi_conn is not None and getattr(dbapi_conn, "in_transaction", False):
            log.warning("a connection came back with an open transaction: rolled back")
            dbapi_conn.rollback()

    return engine


# SQLite's own threshold (``wal_autocheckpoint``'s default): checkpoints as often as before,
# only no longer inside a commit.
CHECKPOINT_PAGES = 1000
# The wal-index header at the start of the ``-shm`` file (https://www.sqlite.org/walformat.html,
# native byte order): its version, mxFrame (frames in the WAL) and, in the checkpoint
# information after the header's two copies, nBackfill (frames copied back).
_WAL_INDEX_VERSION = 3007000
_WAL_INDEX = struct.Struct("=I12xI76xI")


def wal_pages_waiting(engine: Engine) -> int | None:
    """Pages in the WAL not yet copied back into the database, read from the wal-index in
    the ``-shm`` file without a lock (a torn read only moves one checkpoint by a tick);
    None when that cannot be told (not a SQLite file, no ``-shm`` yet, another layout)."""
    path = database_path(str(engine.url)) if engine.dialect.name == "sqlite" else None
    if path is None:
        return None
    try:
        with open(f"{path}-shm", "rb") as shm:
            head = shm.read(_WAL_INDEX.size)
    except OSError:
        return None
    if len(head) < _WAL_INDEX.size:
        return None
    version, frames, backfilled = (int(v) for v in _WAL_INDEX.unpack(head))
    if version != _WAL_INDEX_VERSION or backfilled > frames:
        return None
    return frames - backfilled


def checkpoint_if_due(engine: Engine, pages: int = CHECKPOINT_PAGES) -> tuple[int, int] | None:
    """:func:`checkpoint` once ``pages`` wait in the WAL (or when that cannot be told):
    what SQLite's automatic checkpoint did inside a commit, for an engine made with
    ``autocheckpoint=False`` (the gateway, after its tick). None when not run."""
    waiting = wal_pages_waiting(engine)
    if waiting is not None and waiting < pages:
        return None
    return checkpoint(engine)


def checkpoint(engine: Engine) -> tuple[int, int] | None:
    """Copy what the WAL holds back into the database file, without waiting for anyone
    (SQLite's ``PASSIVE`` checkpoint: a reader's snapshot or another checkpointer leaves the
    rest for next time; writers go on meanwhile). Returns (pages in the WAL, pages copied so
    far), or None for a database that is not SQLite. Errors are the caller's
    (``SQLAlchemyError``: a full disk, say — the WAL keeps everything)."""
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as conn:
        row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    # (busy, pages in the log, pages checkpointed): -1s when the database is not in WAL mode.
    return max(int(row[1]), 0), max(int(row[2]), 0)


def alembic_config(url: str, migrations: Path = MIGRATIONS) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


_REVISION = re.compile(r"""^revision(?:: *str)? *= *["']([^"']+)["'] *$""", re.M)
_DOWN = re.compile(r"""^down_revision(?:: *[^=]+)? *= *(?:["']([^"']+)["']|None) *$""", re.M)


def script_head(migrations: Path = MIGRATIONS) -> str | None:
    """The newest revision of ``migrations``, read from the files' ``revision`` and
    ``down_revision`` lines without Alembic; None when that is not one plain chain (a merge,
    two heads, a line written otherwise): Alembic decides then."""
    revisions, downs = set(), set()
    for path in (migrations / "versions").glob("[!_]*.py"):
        text = path.read_text()
        rev, down = _REVISION.findall(text), _DOWN.search(text)
        if len(rev) != 1 or down is None:
            return None
        revisions.add(rev[0])
        if down.group(1):
            downs.add(down.group(1))
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def current_revision(engine: Engine) -> str | None:
    """The database's revision (None: not migrated yet), without Alembic."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def migrate(engine: Engine, migrations: Path = MIGRATIONS) -> Path | None:
    """Bring the schema to the newest revision of ``migrations`` (idempotent). A database
    that is already there is left without importing Alembic (7 MB of every process that
    opens the database, the gateway daemon's included: bench/README.md).

    All of it is one transaction (issue #15 item 5): on SQLite an explicit ``BEGIN
    IMMEDIATE``, because Python's sqlite3 module opens a transaction only before INSERT,
    UPDATE and DELETE, so each CREATE or ALTER would otherwise commit on its own and a power
    cut mid-way would leave a schema between two revisions that no migration expects. The
    write lock also makes the gateway, the portal and the sync agent, started together
    after an update, migrate one after the other: the second finds the work done.

    A SQLite file that has a revision and is behind is first backed up
    (:func:`hotspot.backup.make_backup`, the last three kept); without a backup nothing is
    migrated. Returns the backup's path (None: none was needed)."""
    head = script_head(migrations)
    if head is not None and current_revision(engine) == head:
        return None
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False), migrations)
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return None
    with engine.connect() as conn:
        # SQLite's way to change a table that others refer to (sqlite.org/lang_altertable.html):
        # foreign keys off *before* the transaction (the pragma does nothing inside one), the
        # changes, a foreign_key_check, commit, foreign keys on again. With them on, Alembic's
        # batch mode (copy the table, drop the old one, rename) fails at DROP TABLE on any
        # table with rows that others point at: 0011 on a device with sold vouchers.
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                made = _backup_before_migrating(engine, conn, head)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"the migration breaks foreign keys: {broken[:5]}")
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        finally:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    return made


def _backup_before_migrating(engine: Engine, conn: Connection, head: str | None) -> Path | None:
    """The backup of a SQLite file that is behind ``head``, taken under the migration's
    write lock (the copy is the last committed state: exactly what the migration starts
    from)."""
    path = database_path(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name != "sqlite" or path is None:
        return None
    try:
        (revision,) = conn.exec_driver_sql("SELECT version_num FROM alembic_version").one()
    except SQLAlchemyError:
        return None  # a new database (or not one revision): nothing to keep
    if revision == head:
        return None  # another process migrated while this one waited for the lock
    from hotspot import backup

    made = backup.make_backup(path, tag=backup.AUTOMATIC_TAG)
    log.warning("database at revision %s backed up to %s before migrating", revision, made)
    backup.prune_automatic(path)
    return made


def is_current(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == script.get_current_head()


def migrate_apart(url: str, migrations: Path = MIGRATIONS) -> None:
    """:func:`migrate`, in a child process when the schema is behind: what the gateway
    daemon runs at start-up, so that it never carries Alembic. A migration imports Alembic,
    Mako and Pygments (their modules and what they build: 10 MB of RSS, bench/README.md),
    and a process keeps what it has imported until it ends; the daemon runs for months.

    The child is a fork (the same code, configuration and logging; taken before the daemon
    starts a thread); it opens its own engine, migrates and exits. Its failure is logged
    there, with the traceback, and raised here as :class:`~hotspot.errors.HotspotError`
    (``database``): the migration is one transaction, so the database is as it was."""
    engine = make_engine(url)
    try:
        head = script_head(migrations)
        if head is not None and current_revision(engine) == head:
            return
    finally:
        engine.dispose()  # no connection of the parent's is shared with the child
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child's coverage is not collected)
        status = 1
        try:
            child = make_engine(url)
            migrate(child, migrations)
            child.dispose()
            status = 0
        except BaseException:
            log.exception("migrating the database failed")
        finally:
            logging.shutdown()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(wait_status) != 0:
        raise HotspotError(
            "migrating the database failed (the log above says why); it is as it was",
            code=ErrorCode.DATABASE,
        )


def open_database(
    url: str, *, synchronous: str = "NORMAL", apart: bool = False, autocheckpoint: bool = True
) -> Engine:
    """An engine on ``url`` with the schema brought up to date; ``apart``: migrated in a
    child process (:func:`migrate_apart`: the long-running gateway daemon, which also takes
    ``autocheckpoint=False``, see :func:`make_engine`)."""
    if apart:
        migrate_apart(url)
        return make_engine(url, synchronous=synchronous, autocheckpoint=autocheckpoint)
    engine = make_engine(url, synchronous=synchronous, autocheckpoint=autocheckpoint)
    migrate(engine)
    return engine
