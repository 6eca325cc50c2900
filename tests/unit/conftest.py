from __future__ import annotations

import pytest

from gateway.engine import SessionEngine
from hotspot import config as config_mod
from hotspot.db import open_database
from tests.unit.fakes import Clock, FakeDataPath


def device_overrides(tmp_path) -> dict:
    """The configuration the unit tests' device runs on: its files in ``tmp_path``, the
    default tiers but premium without an idle timeout (a premium session here ends only
    when a test ends it)."""
    return {
        "database": {"url": f"sqlite:///{tmp_path}/hotspot.db"},
        "control": {"socket": str(tmp_path / "control.sock")},
        "tiers": {"premium": {"idle_minutes": 0}},
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
    eng = SessionEngine(cfg, db, datapath, clock=clock, monotonic=clock.monotonic)
    eng.start()
    return eng
