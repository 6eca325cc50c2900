"""Pseudonyms that expire, counted on a real PostgreSQL (issue #14, item 4).

A village (WIB) with three devices in the last hours of November and the same three plus a new
one in the first hours of December: the gateway names them with November's key, then
December's. December's records reach the collector first, November's (a backlog from before
the rotation) after them. The collector counts 3 devices in November and 4 in December, per
day and per month; the same device under two periods' names is two names, never one merged
count; and after November's key is destroyed, a full rescan of the gateway sends nothing that
would count anyone twice."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import config as collector_config
from collector import queries
from collector.app import create_app
from hotspot import config as config_mod
from hotspot import wire
from hotspot.db import open_database
from hotspot.model_sync import SyncOutbox
from sync.agent import Agent
from sync.outbox import Outbox
from tests.unit.collector.helpers import FlaskTransport, post, register
from tests.unit.sync.conftest import gateway_overrides
from testsupport.usage_rows import add_device_hours

pytestmark = pytest.mark.postgres

WIB = zoneinfo.ZoneInfo("Asia/Jakarta")
ROTATION = dt.datetime(2026, 11, 30, 17, 0)  # 1 December 00:00 WIB, in UTC
OLD = [f"02:00:00:00:00:0{i}" for i in range(1, 4)]
NEW = "02:00:00:00:00:09"


@pytest.fixture
def app(pg_url):
    cfg = collector_config.load(
        overrides={
            "collector": {
                "database_url": pg_url,
                "dashboard_public": True,
                "timezone": "Asia/Jakarta",
            }
        }
    )
    a = create_app(cfg)
    register(a)
    yield a
    a.extensions["collector_db"].dispose()


def add_hours(db, macs: list[str], hours: list[dt.datetime]) -> None:
    add_device_hours(db, macs, hours, seconds=900, bytes_down=5_000_000, bytes_up=500_000)


def usage_payloads(db) -> list[dict]:
    with Session(db) as s:
        return [
            json.loads(p)
            for p in s.scalars(
                select(SyncOutbox.payload).where(SyncOutbox.kind == "usage").order_by(SyncOutbox.id)
            )
        ]


def counts(app) -> tuple[dict, dict]:
    with Session(app.extensions["collector_db"]) as s:
        series = queries.day_series(s, dt.date(2026, 11, 30), dt.date(2026, 12, 1), "desa-uji")
        months = dict(
            queries.devices_per_month(s, "desa-uji", dt.date(2026, 11, 1), dt.date(2026, 12, 31))
        )
    return dict(zip(series.days, series.users)), months


def test_devices_per_period_across_a_rotation_with_a_late_backlog(tmp_path, app):
    cfg = config_mod.load(overrides=gateway_overrides(tmp_path))
    assert cfg.privacy.pseudonym_period == "month" and cfg.village.timezone == "Asia/Jakarta"
    gwdb = open_database(cfg.database.url)
    try:
        nov_hours = [ROTATION - dt.timedelta(hours=h) for h in (3, 2, 1)]
        dec_hours = [ROTATION, ROTATION + dt.timedelta(hours=1)]
        add_hours(gwdb, OLD, nov_hours)
        add_hours(gwdb, OLD + [NEW], dec_hours)
        now = [ROTATION + dt.timedelta(hours=2, minutes=10)]
        ob = Outbox(cfg, gwdb, clock=lambda: now[0], synced=lambda: True)
        ob.collect(full=True)
        recs = usage_payloads(gwdb)
        by_period: dict[str, list[dict]] = {}
        for r in recs:
            by_period.setdefault(r["key_period"], []).append(r)
        assert {p: len({r["client"] for r in rs}) for p, rs in by_period.items()} == {
            "2026-11": 3,
            "2026-12": 4,
        }
        assert not {r["client"] for r in by_period["2026-11"]} & {
            r["client"] for r in by_period["2026-12"]
        }
        # December's records first, November's backlog after them (signed, as the agent does)
        client = app.test_client()
        assert post(client, by_period["2026-12"]).status_code == 200
        assert counts(app) == ({dt.date(2026, 11, 30): 0, dt.date(2026, 12, 1): 4}, {"2026-12": 4})
        assert post(client, by_period["2026-11"]).status_code == 200
        days, months = counts(app)
        assert days == {dt.date(2026, 11, 30): 3, dt.date(2026, 12, 1): 4}
        assert months == {"2026-11": 3, "2026-12": 4}

        # The agent delivers its outbox (the same records again: nothing changes), the rescan
        # window passes, November's key is destroyed; a full rescan afterwards names no
        # November hour again, under any key.
        agent = Agent(
            cfg, gwdb, transport=FlaskTransport(app), clock=lambda: now[0], synced=lambda: True
        )
        assert agent.drain(max_failures=1, sleep=lambda _s: None).ok
        now[0] = ROTATION + dt.timedelta(hours=3, minutes=30)
        agent.collect(with_health=False)
        assert agent.outbox.keys.key("2026-11", create=False) is None
        agent2 = Agent(
            cfg, gwdb, transport=FlaskTransport(app), clock=lambda: now[0], synced=lambda: True
        )
        agent2.collect(full=True, with_health=False)
        assert agent2.drain(max_failures=1, sleep=lambda _s: None).ok
        assert counts(app) == (days, months)
        assert len(usage_payloads(gwdb)) == len(recs)
        assert all(wire.validate_record(r)["key_period"] in ("2026-11", "2026-12") for r in recs)
    finally:
        gwdb.dispose()
