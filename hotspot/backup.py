"""Backups of the device's database, for a field update and its rollback (issue #15, item 5;
docs/provisioning.md "Updating a gateway in the field").

A backup is made with SQLite's online backup API: a consistent copy of the database as one
transaction saw it, while the gateway, the portal and the sync agent keep running (WAL: their
readers and writers are not stopped). It is written to ``<name>.part``, checked
(``PRAGMA quick_check``), synced, then renamed: a power cut leaves either no backup or a
whole one under its name, never half of one.

Made by ``hotspot db backup`` and, automatically, by :func:`hotspot.db.migrate` before it
migrates a database that has data (the last :data:`KEEP_AUTOMATIC` are kept).
``hotspot db restore`` copies a backup back, with the same API, after checking it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import sqlite3
import time
from pathlib import Path

from hotspot.errors import HotspotError
from hotspot.timeutil import utcnow

log = logging.getLogger(__name__)

BACKUP_DIR = "backups"
AUTOMATIC_TAG = "before-migration"
KEEP_AUTOMATIC = 3


_STAMP = re.compile(r"-(\d{8}T\d{6}Z)(?:-\d+)?\.")


class BackupError(HotspotError):
    """A backup that could not be made or a file that is not a usable backup."""


def backup_dir(database: Path) -> Path:
    """Where the backups of ``database`` go: ``backups/`` next to it (the same filesystem,
    so the rename is atomic; the same permissions as the database's directory)."""
    return database.parent / BACKUP_DIR


def backup_name(database: Path, revision: str | None, tag: str, at: dt.datetime) -> str:
    """``hotspot-0008-before-migration-20261130T074700Z.db``: the database's name, the
    schema revision it was at, why, when (UTC)."""
    return (
        f"{database.stem}-{revision or 'none'}-{tag}-{at:%Y%m%dT%H%M%SZ}{database.suffix or '.db'}"
    )


def revision_of(path: Path) -> str | None:
    """The schema revision of the SQLite file ``path`` (None: never migrated)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=15)) as c:
        try:
            rows = c.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.DatabaseError:
            return None
    return str(rows[0][0]) if len(rows) == 1 else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source: Path, target: Path) -> None:
    """The whole database ``source`` into the new file ``target`` with the online backup
    API, checked and synced."""
    with (
        contextlib.closing(sqlite3.connect(source, timeout=15)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.execute("PRAGMA busy_timeout=15000")
        src.backup(dst)  # one step: the copy is one snapshot of the source
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        check = dst.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise BackupError(f"the copy of {source} fails its check: {check}")
    with open(target, "rb+") as fh:
        os.fsync(fh.fileno())


def _same_owner(database: Path, path: Path) -> None:
    """The backup is readable by exactly whom the database is (it holds password and code
    hashes): its mode, and its owner when root makes it for the service's user."""
    st = database.stat()
    os.chmod(path, st.st_mode & 0o660)
    if os.geteuid() == 0 and (path.stat().st_uid, path.stat().st_gid) != (st.st_uid, st.st_gid):
        try:
            os.chown(path, st.st_uid, st.st_gid)
        except PermissionError:
            # The gateway's root has no CAP_CHOWN (docs/provisioning.md): the copy stays
            # root's, mode 0660 at most, which is no wider than the database.
            log.info("backup %s left with its maker as owner", path)


def make_backup(database: Path, target: Path | None = None, *, tag: str = "manual") -> Path:
    """A consistent copy of the SQLite database ``database`` (while it is in use); its path.
    ``target`` None: a new file in :func:`backup_dir`. Raises :class:`BackupError` (with
    the cause) when it cannot be made; nothing half-made stays behind."""
    if not database.exists():
        raise BackupError(f"no database at {database}")
    if target is None:
        name = backup_name(database, revision_of(database), tag, utcnow())
        target = backup_dir(database) / name
        n = 1
        while target.exists():  # two in one second
            n += 1
            target = target.with_name(f"{Path(name).stem}-{n}{Path(name).suffix}")
    if target.exists():
        raise BackupError(f"{target} exists already: not overwritten")
    target.parent.mkdir(mode=0o770, parents=True, exist_ok=True)  # the group of the database
    part = target.with_name(target.name + ".part")
    part.unlink(missing_ok=True)
    try:
        _copy(database, part)
        _same_owner(database, part)
        os.replace(part, target)
        _fsync_dir(target.parent)
    except (OSError, sqlite3.Error) as exc:
        part.unlink(missing_ok=True)
        raise BackupError(f"backup of {database} to {target} failed: {exc}") from exc
    except BackupError:
        part.unlink(missing_ok=True)
        raise
    log.info("database %s backed up to %s", database, target)
    return target


# A ``.part`` this old is what a power cut in the middle of a backup left behind.
STALE_PART_SECONDS = 3600


def prune_automatic(database: Path, keep: int = KEEP_AUTOMATIC) -> list[Path]:
    """Delete all but the newest ``keep`` automatic backups of ``database`` (manual ones
    stay) and the half-made copies interrupted backups left; the deleted paths."""
    now = time.time()
    stale = [
        p
        for p in backup_dir(database).glob(f"{database.stem}-*.part")
        if now - p.stat().st_mtime > STALE_PART_SECONDS
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    pattern = f"{database.stem}-*-{AUTOMATIC_TAG}-*{database.suffix or '.db'}"
    found = sorted(
        backup_dir(database).glob(pattern),
        key=lambda p: (m.group(1) if (m := _STAMP.search(p.name)) else "", p.name),
    )
    gone = found[:-keep] if keep > 0 else found
    for path in gone:
        path.unlink(missing_ok=True)
    return stale + gone


def check_backup(path: Path) -> str | None:
    """That ``path`` is a whole SQLite database of this project (its check passes, it has a
    schema revision); the revision. Raises :class:`BackupError`."""
    if not path.is_file():
        raise BackupError(f"no file at {path}")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as c:
            check = c.execute("PRAGMA quick_check").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a SQLite database: {exc}") from exc
    if check is None or check[0] != "ok":
        raise BackupError(f"{path} fails its check: {check}")
    revision = revision_of(path)
    if revision is None:
        raise BackupError(f"{path} has no schema revision: not a Hotspot Desa database")
    return revision


def restore(backup: Path, database: Path) -> Path | None:
    """Copy the backup ``backup`` over ``database`` (stop the services first:
    docs/provisioning.md), after checking it and keeping the database as it was in a backup
    of its own (returned; None when there was no database)."""
    check_backup(backup)
    kept = make_backup(database, tag="before-restore") if database.exists() else None
    try:
        with (
            contextlib.closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as src,
            contextlib.closing(sqlite3.connect(database, timeout=15)) as dst,
        ):
            src.backup(dst)
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise BackupError(f"restoring {backup} to {database} failed: {exc}") from exc
    log.warning("database %s restored from %s (kept as it was in %s)", database, backup, kept)
    return kept
