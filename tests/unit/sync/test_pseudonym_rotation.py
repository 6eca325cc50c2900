"""Pseudonyms that expire (issue #14, item 4): a new key every local calendar period, records
carrying their period, the old key destroyed once nothing needs it — also across a clock jump
over the boundary and a power cut mid-rotation."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotspot import config as config_mod
from hotspot.model_sync import SyncOutbox, SyncState
from hotspot.pseudonym import (
    DESTROYED_THROUGH,
    PERIOD_KEY,
    STATE_KEY,
    KeyRing,
    period_bounds,
    period_of,
    pseudonym,
)
from sync.outbox import Outbox
from tests.unit.sync.conftest import gateway_overrides
from testsupport.usage_rows import add_device_hours

WIB = zoneinfo.ZoneInfo("Asia/Jakarta")
# Local midnight of 1 December in the village (WIB, UTC+7) is 17:00 UTC on 30 November.
ROTATION = dt.datetime(2026, 11, 30, 17, 0)
MACS = ["02:00:00:00:00:01", "02:00:00:00:00:02"]


@pytest.mark.parametrize(
    ("period", "moment", "label", "start", "end"),
    [
        ("month", ROTATION - dt.timedelta(seconds=1), "2026-11", "2026-10-31T17:00", ROTATION),
        ("month", ROTATION, "2026-12", ROTATION, "2026-12-31T17:00"),
        ("week", ROTATION, "2026-W49", "2026-11-29T17:00", "2026-12-06T17:00"),
        ("day", ROTATION - dt.timedelta(hours=1), "2026-11-30", "2026-11-29T17:00", ROTATION),
        ("month", dt.datetime(2026, 12, 31, 17), "2027-01", "2026-12-31T17:00", "2027-01-31T17:00"),
    ],
)
def test_periods_are_the_villages_calendar(period, moment, label, start, end):
    assert period_of(moment, WIB, period) == label
    as_dt = [dt.datetime.fromisoformat(x) if isinstance(x, str) else x for x in (start, end)]
    assert period_bounds(label, WIB) == tuple(as_dt)


def cfg_for(tmp_path, **privacy):
    overrides = gateway_overrides(tmp_path)
    overrides["privacy"] = privacy
    return config_mod.load(overrides=overrides)


def add_hours(db, hours: list[dt.datetime], macs=MACS) -> None:
    add_device_hours(db, list(macs), hours, seconds=600, bytes_down=1000, bytes_up=100)


def queued(db) -> dict[tuple[str, str], dict]:
    with Session(db) as s:
        return {
            (r["client"], r["period_start"]): r
            for r in (
                json.loads(p)
                for p in s.scalars(select(SyncOutbox.payload).where(SyncOutbox.kind == "usage"))
            )
        }


def period_keys(db) -> dict[str, str]:
    with Session(db) as s:
        return {
            r.name[len(PERIOD_KEY) :]: r.value
            for r in s.scalars(select(SyncState).where(SyncState.name.startswith(PERIOD_KEY)))
        }


def db_files(cfg) -> bytes:
    path = Path(cfg.database.url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())


def test_a_device_has_one_name_per_period_and_the_old_key_is_destroyed(tmp_path, gwdb):
    cfg = cfg_for(tmp_path)
    nov = [ROTATION - dt.timedelta(hours=2), ROTATION - dt.timedelta(hours=1)]
    dec = [ROTATION, ROTATION + dt.timedelta(hours=1)]
    add_hours(gwdb, nov + dec)
    now = [ROTATION + dt.timedelta(hours=2)]
    ob = Outbox(cfg, gwdb, clock=lambda: now[0], synced=lambda: True)
    ob.collect(full=True)
    recs = queued(gwdb)
    assert len(recs) == 8
    periods = {r["key_period"] for r in recs.values()}
    assert periods == {"2026-11", "2026-12"}
    by_period: dict[str, set[str]] = {}
    for r in recs.values():
        by_period.setdefault(r["key_period"], set()).add(r["client"])
    # two devices, two names each month, and no name shared across the months
    assert len(by_period["2026-11"]) == len(by_period["2026-12"]) == 2
    assert not by_period["2026-11"] & by_period["2026-12"]
    keys = period_keys(gwdb)
    assert set(keys) == {"2026-11", "2026-12"}
    nov_key = keys["2026-11"]
    assert {pseudonym(bytes.fromhex(nov_key), m) for m in MACS} == by_period["2026-11"]
    # Still within the rescan window after the rotation: November's last hours may still
    # grow, its key is kept.
    assert "2026-11" in period_keys(gwdb)
    assert nov_key.encode() in db_files(cfg)  # (the check below can see a key)
    # Three hours on, the collect reads November's last hours for the last time: gone.
    now[0] = ROTATION + dt.timedelta(hours=3, minutes=5)
    ob.collect()
    assert set(period_keys(gwdb)) == {"2026-12"}
    with Session(gwdb) as s:
        assert s.get(SyncState, DESTROYED_THROUGH).value == ROTATION.isoformat()
    # ... in no file of the database (the table, freed pages, the WAL)
    assert nov_key.encode() not in db_files(cfg)
    assert keys["2026-12"].encode() in db_files(cfg)
    # A full scan later does not name November's hours again (nor anew): already sent.
    before = queued(gwdb)
    ob2 = Outbox(cfg, gwdb, clock=lambda: now[0], synced=lambda: True)
    ob2.collect(full=True)
    assert queued(gwdb) == before
    assert ob2.unnamed == 4


def test_a_backlog_from_before_the_rotation_keeps_its_period(tmp_path, gwdb):
    """November's last hour flushed late (after midnight): still named with November's key,
    and December's key never names a November hour."""
    cfg = cfg_for(tmp_path)
    now = [ROTATION + dt.timedelta(minutes=30)]
    ob = Outbox(cfg, gwdb, clock=lambda: now[0], synced=lambda: True)
    add_hours(gwdb, [ROTATION])
    ob.collect()
    add_hours(gwdb, [ROTATION - dt.timedelta(hours=1)], macs=MACS[:1])  # the late flush
    now[0] = ROTATION + dt.timedelta(hours=1)
    ob.collect()
    recs = queued(gwdb)
    late = [r for r in recs.values() if r["period_start"] == "2026-11-30T16:00:00Z"]
    assert [r["key_period"] for r in late] == ["2026-11"]
    nov = bytes.fromhex(period_keys(gwdb)["2026-11"])
    assert late[0]["client"] == pseudonym(nov, MACS[0])


def test_a_clock_a_year_ahead_destroys_nothing(tmp_path, gwdb):
    """A clock nobody set (no NTP, a wrong saved time): this month's key is kept until the
    kernel says the clock is synchronised; then the step back finds it."""
    cfg = cfg_for(tmp_path)
    now = [ROTATION - dt.timedelta(hours=5)]
    synced = [True]
    ob = Outbox(cfg, gwdb, clock=lambda: now[0], synced=lambda: synced[0])
    add_hours(gwdb, [ROTATION - dt.timedelta(hours=6)])
    ob.collect()
    first = period_keys(gwdb)["2026-11"]
    synced[0] = False
    now[0] += dt.timedelta(days=365)  # the jump, across the boundary
    add_hours(gwdb, [dt.datetime(2027, 11, 30, 3)])  # hours stamped on the wrong clock
    ob.collect()
    assert period_keys(gwdb)["2026-11"] == first
    synced[0] = True
    now[0] -= dt.timedelta(days=365)  # NTP sets it back
    add_hours(gwdb, [ROTATION - dt.timedelta(hours=4)])
    ob.collect()
    assert period_keys(gwdb)["2026-11"] == first
    nov = {r["client"] for r in queued(gwdb).values() if r["key_period"] == "2026-11"}
    assert nov == {pseudonym(bytes.fromhex(first), m) for m in MACS}


def test_hours_stamped_in_a_destroyed_period_are_not_named_anew(tmp_path, gwdb, caplog):
    """A clock set back across the boundary after the old key is gone: those hours would need
    the old key (a new one would give a device two names in one month): not reported."""
    cfg = cfg_for(tmp_path)
    now = [ROTATION + dt.timedelta(hours=4)]
    ob = Outbox(cfg, gwdb, clock=lambda: now[0], synced=lambda: True)
    add_hours(gwdb, [ROTATION - dt.timedelta(hours=5), ROTATION + dt.timedelta(hours=3)])
    ob.collect(full=True)
    assert "2026-11" not in period_keys(gwdb)
    add_hours(gwdb, [ROTATION - dt.timedelta(hours=2)])  # stamped on a clock set back
    now[0] = ROTATION + dt.timedelta(hours=5)
    ob.collect()  # the watermark does not cover the stray hour either way
    ob.collect(full=True)
    assert "2026-11" not in period_keys(gwdb)
    assert all(r["period_start"] != "2026-11-30T15:00:00Z" for r in queued(gwdb).values())


def test_a_power_cut_mid_rotation(tmp_path, gwdb, monkeypatch):
    """(1) The collect that would destroy the key dies before its commit: nothing destroyed,
    the same names next time. (2) It dies after the commit, before the WAL is truncated:
    the next collect (after a restart) truncates it."""
    cfg = cfg_for(tmp_path)
    now = [ROTATION - dt.timedelta(hours=1)]
    ob = Outbox(cfg, gwdb, clock=lambda: now[0], synced=lambda: True)
    add_hours(gwdb, [ROTATION - dt.timedelta(hours=2)])
    ob.collect()
    names = set(queued(gwdb))
    nov_key = period_keys(gwdb)["2026-11"]

    now[0] = ROTATION + dt.timedelta(hours=3, minutes=1)
    add_hours(gwdb, [ROTATION + dt.timedelta(hours=1)])

    def cut(*_a, **_k):
        raise OSError("power cut")

    monkeypatch.setattr(Outbox, "bump_state", staticmethod(cut))
    with pytest.raises(OSError):
        ob.collect()
    monkeypatch.undo()
    assert period_keys(gwdb)["2026-11"] == nov_key  # rolled back: kept
    ob = Outbox(cfg, gwdb, clock=lambda: now[0], synced=lambda: True)  # after the restart
    monkeypatch.setattr(KeyRing, "scrub", lambda self: (_ for _ in ()).throw(OSError("cut")))
    with pytest.raises(OSError):
        ob.collect()  # committed (key destroyed), died before the WAL was truncated
    monkeypatch.undo()
    assert "2026-11" not in period_keys(gwdb)
    assert names <= set(queued(gwdb))  # November's names, as they were
    ob = Outbox(cfg, gwdb, clock=lambda: now[0], synced=lambda: True)
    ob.collect()
    assert nov_key.encode() not in db_files(cfg)
    assert ob.get_state("pseudonym_scrub_pending") == ""


def test_a_gateway_from_before_rotation_keeps_its_key_for_this_period(tmp_path, gwdb):
    cfg = cfg_for(tmp_path)
    old = "ab" * 32
    with Session(gwdb) as s, s.begin():
        s.add(SyncState(name=STATE_KEY, value=old, updated_at=ROTATION))
    ring = KeyRing(cfg, gwdb, clock=lambda: ROTATION + dt.timedelta(days=2))
    assert ring.current() == bytes.fromhex(old)
    assert ring.key("2026-11") is None  # before the upgrade: sent under the old key already
    with Session(gwdb) as s:
        assert s.get(SyncState, STATE_KEY) is None


def test_a_fixed_key_does_not_rotate(tmp_path, gwdb):
    cfg = cfg_for(tmp_path, pseudonym_key="k" * 40)
    now = [ROTATION + dt.timedelta(hours=5)]
    ob = Outbox(cfg, gwdb, clock=lambda: now[0], synced=lambda: True)
    add_hours(gwdb, [ROTATION - dt.timedelta(hours=1), ROTATION])
    ob.collect(full=True)
    recs = queued(gwdb)
    assert {r["client"] for r in recs.values()} == {pseudonym(b"k" * 40, m) for m in MACS}
    assert {r["key_period"] for r in recs.values()} == {"2026-11", "2026-12"}


def test_the_period_setting_is_checked(tmp_path):
    from hotspot.errors import ConfigError

    with pytest.raises(ConfigError, match="pseudonym_period"):
        cfg_for(tmp_path, pseudonym_period="year")
    assert cfg_for(tmp_path, pseudonym_period="week").privacy.pseudonym_period == "week"


def test_reading_the_current_key_writes_nothing(tmp_path, gwdb):
    """The usage API reads the key on a GET: no adoption, no key made."""
    from hotspot.pseudonym import stored_key

    cfg = cfg_for(tmp_path)
    assert stored_key(cfg, gwdb) is None and period_keys(gwdb) == {}
    with Session(gwdb) as s, s.begin():
        s.add(SyncState(name=STATE_KEY, value="cd" * 32, updated_at=ROTATION))
    assert stored_key(cfg, gwdb) == bytes.fromhex("cd" * 32)
    with Session(gwdb) as s:
        assert s.get(SyncState, STATE_KEY) is not None and period_keys(gwdb) == {}
