"""A full disk (issue #11, item 4): telling "the filesystem is full" from a broken database,
and the early warning at ``database.disk_warning_pct`` (90 % by default)."""

from __future__ import annotations

import errno
import sqlite3
from collections import namedtuple

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from hotspot import config as config_mod
from hotspot import health
from hotspot.db import is_storage_full, make_engine
from hotspot.errors import ConfigError, ErrorCode, HotspotError
from tests.unit.conftest import device_overrides
from tests.unit.storage_full import FullStorage, storage_full_error


def real_sqlite_full(tmp_path) -> OperationalError:
    """A real SQLITE_FULL through SQLAlchemy: the database may not grow past its size."""
    engine = create_engine(f"sqlite:///{tmp_path}/small.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x BLOB)"))
    try:
        with engine.connect() as conn:
            pages = conn.execute(text("PRAGMA page_count")).scalar()
            conn.execute(text(f"PRAGMA max_page_count = {pages}"))
            with pytest.raises(OperationalError) as err:
                for _ in range(100):
                    conn.execute(text("INSERT INTO t VALUES (zeroblob(5000))"))
                    conn.commit()
            return err.value
    finally:
        engine.dispose()


def test_a_full_sqlite_is_storage_full(tmp_path):
    exc = real_sqlite_full(tmp_path)
    assert "database or disk is full" in str(exc)
    assert is_storage_full(exc)
    assert is_storage_full(exc.orig)
    assert is_storage_full(storage_full_error())


def test_a_full_filesystem_seen_as_oserror_is_storage_full():
    assert is_storage_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_storage_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise HotspotError("could not write") from exc
    except HotspotError as wrapped:
        assert is_storage_full(wrapped)


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("SELECT", {}, sqlite3.OperationalError("database is locked")),
        IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        OSError(errno.EACCES, "Permission denied"),
        ValueError("database or disk is full"),  # the words alone say nothing
    ],
)
def test_other_errors_are_not_storage_full(exc):
    assert not is_storage_full(exc)


def test_storage_full_is_a_registered_code_that_works_again_by_itself():
    code = ErrorCode.STORAGE_FULL
    assert code == "storage-full" and code.family is HotspotError
    assert "full" in code.meaning and "nothing changed" in code.meaning


def cfg_with(tmp_path, **database):
    over = device_overrides(tmp_path)
    over["database"].update(database)
    return config_mod.load(overrides=over)


def test_the_warning_starts_at_90_percent_by_default(tmp_path):
    cfg = cfg_with(tmp_path)
    assert cfg.database.disk_warning_pct == 90
    assert not health.disk_warning(cfg, 89.9)
    assert health.disk_warning(cfg, 90.0)
    assert health.disk_warning(cfg, 100.0)
    assert not health.disk_warning(cfg, None)  # unreadable: no warning, no crash


def test_the_warning_threshold_is_configurable(tmp_path):
    cfg = cfg_with(tmp_path, disk_warning_pct=80)
    assert health.disk_warning(cfg, 80.0) and not health.disk_warning(cfg, 79.9)
    for bad in (0, 101, "90", 90.5):
        with pytest.raises(ConfigError) as err:
            cfg_with(tmp_path, disk_warning_pct=bad)
        assert err.value.key == "database.disk_warning_pct"


Usage = namedtuple("Usage", "total used free percent")


@pytest.mark.parametrize("percent, warned", [(89.9, False), (90.0, True), (100.0, True)])
def test_the_health_snapshot_says_how_full_the_state_filesystem_is(
    tmp_path, monkeypatch, percent, warned
):
    cfg = cfg_with(tmp_path)
    seen = []

    def disk_usage(path):
        seen.append(path)
        return Usage(1000, int(percent * 10), 1000 - int(percent * 10), percent)

    monkeypatch.setattr(health.psutil, "disk_usage", disk_usage)
    snap = health.snapshot(cfg, create_engine(f"sqlite:///{tmp_path}/none.db"))
    assert snap["disk"] == percent and snap["disk_warning"] is warned
    assert seen == [str(tmp_path)]  # the database's folder, not "/"


def test_a_failed_commit_leaves_nothing_for_the_next_caller(tmp_path):
    """A COMMIT that fails on a full disk may leave SQLite's transaction open: the pool
    rolls it back, or the next caller's commit would write what was refused (a sale the
    kasir was told did not happen)."""
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    full = FullStorage(engine)
    full.full = True
    with pytest.raises(OperationalError), engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.execute(text("INSERT INTO t VALUES (1)"))
        conn.commit()
    full.full = False
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE u (y INTEGER)"))  # another caller's commit
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
    engine.dispose()
