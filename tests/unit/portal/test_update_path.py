"""The update path (issue #15 item 5), from the previous release's database: a device's
database at revision 0008 full of a village's weeks (tests/unit/hotspot/old_device.py) is
copied and migrated forward, as the first process of the new release does at start:

* ``test_the_old_database_migrates_with_its_data_and_the_app_works_on_it``: a backup is
  made first; every row is still there (the audit chain verifies); the portal's pages
  render, a sold voucher redeems, the console's admin logs in with the old password and sees
  the old batch.
* ``test_a_power_cut_mid_migration_leaves_the_old_revision_or_the_new``: the migrating
  process is killed (SIGKILL) at points spread over the migration's statements; each time
  the database is whole and at the old revision with the old data, or at the new one; the
  next start finishes the job.
* ``test_backup_and_restore_from_the_cli``: ``hotspot db backup`` of a database that is
  being written (a consistent copy), ``hotspot db restore`` of it; a file that is not a
  backup is refused and changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sqlite3
import threading
from pathlib import Path

import pytest

from hotspot import audit, backup
from hotspot.config import database_path
from hotspot.db import current_revision, make_engine, open_database, script_head
from hotspot_cli.main import main as hotspot
from tests.unit.hotspot import old_device
from tests.unit.portal.conftest import Phone
from tests.unit.portal.operator.conftest import Console, text

HEAD = script_head()
# Tables the migrations after 0008 add: absent while the database is at the old revision.
NEW_TABLES = {"daily_summary", "uplink_event", "agent_batch", "uplink_outage", "announcement"}


@pytest.fixture(scope="module")
def old_db(tmp_path_factory) -> tuple[Path, dict]:
    """The previous release's database, built once (each test works on a copy)."""
    path = tmp_path_factory.mktemp("old") / "hotspot.db"
    info = old_device.build(path, b"k" * 32)  # the portal tests' voucher key
    return path, info


def copy_of(old: Path, target: Path) -> Path:
    """A copy of the device's database, as the update starts from it."""
    backup.make_backup(old, target)
    return target


@pytest.fixture
def db(cfg, old_db):
    """The portal tests' ``db``: here the old device's database, migrated by opening it."""
    path = database_path(cfg.database.url)
    assert path is not None
    copy_of(old_db[0], path)
    engine = open_database(cfg.database.url)
    yield engine
    engine.dispose()


def test_the_old_database_migrates_with_its_data_and_the_app_works_on_it(
    app, db, cfg, old_db, clock
):
    _, info = old_db
    path = database_path(cfg.database.url)
    assert current_revision(db) == HEAD
    (made,) = (path.parent / "backups").glob("hotspot-0008-before-migration-*.db")
    assert backup.revision_of(made) == "0008"
    after = old_device.counts(path)
    # (the portal's start-up added the configuration's other packages beside "harian")
    assert {k: after[k] for k in info["counts"] if k != "package"} == {
        k: n for k, n in info["counts"].items() if k != "package"
    }
    assert after["package"] >= info["counts"]["package"]
    assert {after[t] for t in NEW_TABLES} == {0}
    assert audit.verify(db) is None

    phone = Phone(app)
    assert phone.get("/").status_code == 200
    code = info["codes"][1]  # sold in October, never used
    r = phone.form("/voucher", {"code": code})
    assert r.status_code in (200, 303), text(r)[:2000]
    body = text(phone.get("/status"))
    assert "Tersambung" in body and "voucher" in body

    admin = Console(app)
    admin.login("budi", old_device.ADMIN_PW)
    assert "Oktober" in text(admin.get("/operator/batches"))
    assert admin.get("/operator/announcements").status_code == 200


def _migrate_and_cut(url: str, kill_at: int, out: Path) -> None:
    """In a forked child: migrate ``url``, killed (SIGKILL: no cleanup, no atexit, no
    rollback, as a power cut) just before its ``kill_at``-th statement; 0 = never, and the
    count of statements is written to ``out``."""
    from sqlalchemy import event

    from hotspot.db import migrate

    engine = make_engine(url)
    seen = [0]

    @event.listens_for(engine, "before_cursor_execute")
    def _power_cut(*_: object) -> None:
        seen[0] += 1
        if seen[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    migrate(engine)
    out.write_text(str(seen[0]))


def _migrate_in_child(path: Path, kill_at: int) -> int:
    """The exit code of a forked process migrating ``path`` (fork: the modules are loaded
    already, so each attempt costs the migration, not Python's start)."""
    child = multiprocessing.get_context("fork").Process(
        target=_migrate_and_cut, args=(f"sqlite:///{path}", kill_at, path.with_suffix(".n"))
    )
    child.start()
    child.join(120)
    assert child.exitcode is not None
    return child.exitcode


def _tables(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {n for (n,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_power_cut_mid_migration_leaves_the_old_revision_or_the_new(tmp_path, old_db):
    old, info = old_db
    assert _migrate_in_child(copy_of(old, tmp_path / "whole.db"), 0) == 0
    statements = int((tmp_path / "whole.n").read_text())
    assert statements > 20
    # before the backup; among the schema changes; the last ones before the commit; the one
    # after it (foreign keys back on: the work is done)
    points = sorted({2, statements // 3, 2 * statements // 3, statements - 2, statements})
    # What a power cut in the middle of an earlier backup left: removed by the next one.
    (tmp_path / "backups").mkdir(exist_ok=True)
    half = tmp_path / "backups" / "cut-2-0008-before-migration-20261129T000000Z.db.part"
    half.write_bytes(b"half a copy")
    os.utime(half, (1_700_000_000, 1_700_000_000))
    landed = []
    for n in points:
        path = copy_of(old, tmp_path / f"cut-{n}.db")
        assert _migrate_in_child(path, n) == -signal.SIGKILL, n
        engine = make_engine(f"sqlite:///{path}")
        revision = current_revision(engine)
        tables = _tables(path)
        landed.append(revision)
        # the migration is one transaction: all of it or none of it
        assert revision in ("0008", HEAD), (n, revision)
        if revision == "0008":
            assert not tables & NEW_TABLES, (n, tables & NEW_TABLES)
            assert old_device.counts(path) == info["counts"]
        # The next start migrates: no table "already exists", nothing lost.
        open_database(f"sqlite:///{path}").dispose()
        assert current_revision(engine) == HEAD
        after = old_device.counts(path)
        assert {k: after[k] for k in info["counts"]} == info["counts"]
        engine.dispose()
    assert landed[:-1] == ["0008"] * (len(points) - 1) and landed[-1] == HEAD
    # The backups the interrupted attempts made are whole, and only the last three stay.
    kept = sorted((tmp_path / "backups").glob("cut-*-before-migration-*.db"))
    assert kept and all(backup.check_backup(p) == "0008" for p in kept)
    assert not list((tmp_path / "backups").glob("*.part"))
    assert len(list((tmp_path / "backups").glob("cut-2-*"))) == 1  # (the last three per file)


def _config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "hotspot.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    return path


def test_backup_and_restore_from_the_cli(tmp_path, old_db, capsys):
    old, info = old_db
    live = copy_of(old, tmp_path / "live.db")
    conf = str(_config(tmp_path, live))
    # A writer keeps committing while the backup is made (the gateway's flush, a sale).
    stop = threading.Event()

    def write() -> None:
        with contextlib.closing(sqlite3.connect(live, timeout=15)) as c:
            c.execute("PRAGMA journal_mode=WAL")
            i = 0
            while not stop.is_set():
                i += 1
                with c:
                    c.execute(
                        "INSERT INTO sync_state (name, value, updated_at) VALUES (?, '', '2026-11-30')",
                        (f"w{i}",),
                    )

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert hotspot(["--config", conf, "db", "backup", "--json"]) == 0
    finally:
        stop.set()
        writer.join()
    made = json.loads(capsys.readouterr().out)
    copy = Path(made["backup"])
    assert made["revision"] == "0008" and backup.check_backup(copy) == "0008"
    with contextlib.closing(sqlite3.connect(copy)) as c:
        names = [n for (n,) in c.execute("SELECT name FROM sync_state WHERE name LIKE 'w%'")]
    # a snapshot: the writer's rows up to some commit, none half-written, no gap
    assert sorted(int(n[1:]) for n in names) == list(range(1, len(names) + 1))

    # Migrated, then rolled back: the restore brings back revision 0008 and its rows.
    assert hotspot(["--config", conf, "db", "upgrade", "--json"]) == 0
    up = json.loads(capsys.readouterr().out)
    assert (up["from"], up["to"]) == ("0008", HEAD) and up["backup"]
    assert hotspot(["--config", conf, "db", "restore", up["backup"], "--json"]) == 0
    back = json.loads(capsys.readouterr().out)
    assert back["revision"] == "0008" and backup.revision_of(Path(back["previous"])) == HEAD
    assert backup.revision_of(live) == "0008"
    after = old_device.counts(live)
    assert {k: after[k] for k in info["counts"] if k != "sync_state"} == {
        k: v for k, v in info["counts"].items() if k != "sync_state"
    }

    # Not a backup: one line, exit 1 or 2, the database untouched.
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    before = live.read_bytes()
    assert hotspot(["--config", conf, "db", "restore", str(junk)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a SQLite database" in err
    assert hotspot(["--config", conf, "db", "restore", str(tmp_path / "none.db")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert live.read_bytes() == before
    assert os.path.exists(live)
