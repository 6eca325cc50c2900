"""The gateway's commits leave the WAL's checkpoint to its tick (hotspot/db.py, issue #12).

SQLite copies the WAL back into the database inside whichever commit takes the WAL past
1,000 pages: writes and fsyncs of 2 to 16 ms in that commit on the development machine's
disk, a login's tail. The gateway's engine turns that off and checkpoints after its tick,
outside the engine's lock, from the same 1,000 pages (docs/architecture.md, "The database's
checkpoints").
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from hotspot import config as config_mod
from hotspot.db import (
    CHECKPOINT_PAGES,
    checkpoint,
    checkpoint_if_due,
    make_engine,
    open_database,
    wal_pages_waiting,
)

PAGE = 4096


def fill(engine: Engine, commits: int) -> None:
    """``commits`` commits of one page-sized row each: more WAL pages than that."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS blob (id INTEGER PRIMARY KEY, b BLOB)"))
    for _ in range(commits):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO blob (b) VALUES (zeroblob(:n))"), {"n": PAGE})


def size(path: Path) -> int:
    return path.stat().st_size


def test_an_engine_without_autocheckpoint_leaves_the_wal_to_its_owner(tmp_path):
    db = tmp_path / "hotspot.db"
    engine = make_engine(f"sqlite:///{db}", autocheckpoint=False)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    fill(engine, 1500)
    # 3,000 WAL pages and not one copied back by a commit.
    assert size(db) < 100 * PAGE
    log_pages, copied = checkpoint(engine)  # type: ignore[misc]
    assert log_pages > 3000 and copied == log_pages
    assert size(db) > 1500 * PAGE
    assert checkpoint(engine) == (log_pages, log_pages)  # nothing new: nothing more to do
    engine.dispose()


def test_a_checkpoint_is_due_from_sqlites_own_1000_pages(tmp_path):
    """As often as SQLite's automatic checkpoint (so the WAL's space is reused as rarely as
    before: a full disk is still met by the next write), read from the wal-index."""
    db = tmp_path / "hotspot.db"
    engine = make_engine(f"sqlite:///{db}", autocheckpoint=False)
    fill(engine, 300)  # about 600 pages
    waiting = wal_pages_waiting(engine)
    assert waiting is not None and 500 < waiting < CHECKPOINT_PAGES
    assert checkpoint_if_due(engine) is None
    assert wal_pages_waiting(engine) == waiting  # nothing copied
    fill(engine, 300)
    log_pages, copied = checkpoint_if_due(engine)  # type: ignore[misc]
    assert log_pages >= CHECKPOINT_PAGES and copied == log_pages
    assert wal_pages_waiting(engine) == 0
    fill(engine, 1)  # the WAL starts over from its beginning
    assert 0 < wal_pages_waiting(engine) < 10  # type: ignore[operator]
    engine.dispose()


def test_what_cannot_be_told_is_checkpointed(tmp_path):
    db = tmp_path / "hotspot.db"
    engine = make_engine(f"sqlite:///{db}", autocheckpoint=False)
    fill(engine, 5)
    shm = Path(f"{db}-shm")
    good = shm.read_bytes()
    for broken in (b"", good[:50], b"\xff" * 4 + good[4:]):
        shm.write_bytes(broken)  # what no SQLite would leave: a foreign file, cut short
        assert wal_pages_waiting(engine) is None
        shm.write_bytes(good)
    assert wal_pages_waiting(make_engine("sqlite://")) is None  # in memory: no file
    engine.dispose()


def test_the_default_engine_still_checkpoints_by_itself(tmp_path):
    """The other processes (portal, sync agent, the CLI) keep SQLite's automatic
    checkpoint: a backstop if the gateway is not running."""
    db = tmp_path / "hotspot.db"
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    fill(engine, 1500)
    assert size(db) > 500 * PAGE
    engine.dispose()


def test_open_database_passes_it_on(tmp_path):
    url = f"sqlite:///{tmp_path}/hotspot.db"
    for apart in (False, True):
        engine = open_database(url, apart=apart, autocheckpoint=False)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        engine.dispose()


def test_a_checkpoint_does_not_wait_for_a_reader(tmp_path):
    """A portal worker reading (its snapshot pins the WAL's newer pages): the checkpoint
    copies what it can at once and the rest next time."""
    db = tmp_path / "hotspot.db"
    engine = make_engine(f"sqlite:///{db}", autocheckpoint=False)
    fill(engine, 200)
    reader = sqlite3.connect(db, isolation_level=None, timeout=0.1)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM blob").fetchone()  # its snapshot: 200 rows
    fill(engine, 200)
    log_pages, copied = checkpoint(engine)  # type: ignore[misc]
    assert 0 < copied < log_pages  # the pages written since the reader's snapshot wait
    reader.execute("COMMIT")
    reader.close()
    log_pages, copied = checkpoint(engine)  # type: ignore[misc]
    assert copied == log_pages
    engine.dispose()


def test_an_in_memory_database_has_nothing_to_checkpoint():
    engine = make_engine("sqlite://", autocheckpoint=False)
    assert checkpoint(engine) == (0, 0)  # not in WAL mode: SQLite answers -1s
    engine.dispose()


# -- the daemon -------------------------------------------------------------------------------


def gateway(tmp_path: Path):
    from gateway.daemon import Gateway

    overrides = {
        "database": {"url": f"sqlite:///{tmp_path}/hotspot.db"},
        "control": {"socket": str(tmp_path / "control.sock")},
    }
    gw = Gateway(config_mod.load(overrides=overrides))
    lock = threading.Lock()
    gw.engine = SimpleNamespace(  # type: ignore[assignment]
        tick=lambda: SimpleNamespace(ended=[]), tick_phases={}, lock=lock
    )
    return gw, lock


def test_the_daemons_tick_checkpoints_outside_the_engines_lock(tmp_path, monkeypatch):
    import gateway.daemon as daemon

    gw, lock = gateway(tmp_path)
    db = tmp_path / "hotspot.db"
    gw.db = make_engine(f"sqlite:///{db}", autocheckpoint=False)
    fill(gw.db, 1500)
    assert size(db) < 100 * PAGE
    held: list[bool] = []

    def watched(engine: Engine) -> tuple[int, int] | None:
        held.append(lock.locked())
        return checkpoint_if_due(engine)

    monkeypatch.setattr(daemon, "checkpoint_if_due", watched)
    gw._tick()
    assert held == [False]
    assert size(db) > 1500 * PAGE
    fill(gw.db, 10)  # a few pages: left for a later tick, as SQLite would
    gw._tick()
    assert 10 < wal_pages_waiting(gw.db) < CHECKPOINT_PAGES  # type: ignore[operator]
    gw.db.dispose()


@pytest.mark.parametrize(
    ("errcode", "said"),
    [
        (13, "checkpoint: storage full"),
        (10, "checkpoint: (sqlite3.OperationalError) disk I/O error"),
    ],
)
def test_a_failed_checkpoint_is_said_once_and_tried_at_every_tick(
    tmp_path, monkeypatch, caplog, errcode, said
):
    import gateway.daemon as daemon

    error = sqlite3.OperationalError(
        "database or disk is full" if errcode == 13 else "disk I/O error"
    )
    error.sqlite_errorcode = errcode  # type: ignore[attr-defined]
    gw, _ = gateway(tmp_path)
    gw.db = make_engine(f"sqlite:///{tmp_path}/hotspot.db", autocheckpoint=False)
    calls: list[Engine] = []
    failing = True

    def flaky(engine: Engine) -> tuple[int, int] | None:
        calls.append(engine)
        if failing:
            raise OperationalError("PRAGMA wal_checkpoint(PASSIVE)", {}, error)
        return checkpoint(engine)

    monkeypatch.setattr(daemon, "checkpoint_if_due", flaky)
    with caplog.at_level(logging.INFO, logger="gateway.daemon"):
        for _ in range(3):
            gw._tick()  # not raised: the tick goes on
        failing = False
        gw._tick()
        gw._tick()
    assert len(calls) == 5  # tried at every tick
    lines = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert lines == [
        f"{said}: the WAL keeps everything, tried again",
        "checkpoint: working again",
    ]
    gw.db.dispose()
