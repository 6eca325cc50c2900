from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from hotspot import config as config_mod
from hotspot.db import open_database
from hotspot.model import Device, HourlyUsage
from tests.unit.collector.fixtures import app, auth, ccfg, cdb, client, token  # noqa: F401
from tests.unit.collector.helpers import GATEWAY_ID, SECRET

START = dt.datetime(2026, 11, 21, 0, 0)


def gateway_overrides(tmp_path, **sync):
    return {
        "database": {"url": f"sqlite:///{tmp_path}/gw.db"},
        "control": {"socket": str(tmp_path / "control.sock")},
        "sync": {
            "upstream_url": "http://127.0.0.1:9",
            "gateway_id": GATEWAY_ID,
            "secret": SECRET,
            "max_batch_kb": 8,
            "backoff_max_seconds": 1,
            "interval_seconds": 1,
            "health_seconds": 1,
            "timeout_seconds": 5,
            **sync,
        },
    }


@pytest.fixture
def gwcfg(tmp_path):
    return config_mod.load(overrides=gateway_overrides(tmp_path))


@pytest.fixture
def gwdb(gwcfg):
    engine = open_database(gwcfg.database.url)
    yield engine
    engine.dispose()


def macs(n: int) -> list[str]:
    return [f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}" for i in range(1, n + 1)]


def seed_usage(
    db, devices: int, hours: int, start: dt.datetime = START, seed: int = 1, density: float = 0.5
) -> int:
    """A week (or so) of hourly usage for ``devices`` devices; returns the row count."""
    rng = random.Random(seed)
    rows = []
    for mac in macs(devices):
        for h in range(hours):
            if rng.random() < density:
                rows.append(
                    {
                        "mac": mac,
                        "hour": start + dt.timedelta(hours=h),
                        "seconds": rng.randint(1, 3600),
                        "bytes_down": rng.randint(0, 300_000_000),
                        "bytes_up": rng.randint(0, 30_000_000),
                    }
                )
    with Session(db) as s, s.begin():
        s.execute(
            insert(Device),
            [
                {"mac": m, "first_seen": start, "last_seen": start, "blocked": False}
                for m in macs(devices)
            ],
        )
        if rows:
            s.execute(insert(HourlyUsage), rows)
    return len(rows)


def gateway_totals(db, pseudonym) -> dict:
    with Session(db) as s:
        return {
            (pseudonym(r.mac, r.hour)[0], r.hour): (r.seconds, r.bytes_down, r.bytes_up)
            for r in s.query(HourlyUsage)
        }
