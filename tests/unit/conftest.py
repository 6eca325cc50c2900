from __future__ import annotations

import pytest

from gateway.engine import SessionEngine
from hotspot import config as config_mod
from hotspot.db import open_database
from tests.unit.fakes import Clock, FakeDataPath

TIERS = {
    "free": {
        "down_kbps": 1024,
        "up_kbps": 512,
        "session_minutes": 60,
        "idle_minutes": 10,
        "daily_minutes": 120,
        "daily_mb": 300,
    },
    "premium": {
        "down_kbps": 5120,
        "up_kbps": 2048,
        "session_minutes": 0,
        "idle_minutes": 0,
        "daily_minutes": 0,
        "daily_mb": 0,
    },
}


def device_overrides(tmp_path) -> dict:
    """The configuration the unit tests' device runs on: its files in ``tmp_path``, TIERS."""
    return {
        "database": {"url": f"sqlite:///{tmp_path}/hotspot.db"},
        "control": {"socket": str(tmp_path / "control.sock")},
        "tiers": TIERS,
        "gateway": {"flush_seconds": 60},
    }


@pytest.fixture
def cfg(tmp_path):
    return config_mod.load(overrides=device_overrides(tmp_path))


@pytest.fixture
def db(cfg):
    engine = open_database(cfg.database.url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def datapath():
    return FakeDataPath()


@pytest.fixture
def engine(cfg, db, datapath, clock):
    eng = SessionEngine(cfg, db, datapath, clock=clock)
    eng.start()
    return eng
