"""Fixtures of an in-process collector on SQLite (imported by the sync and collector
conftests)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from collector import config as collector_config
from collector.app import create_app
from collector.store import create_token
from tests.unit.collector.helpers import register


@pytest.fixture
def ccfg(tmp_path):
    return collector_config.load(
        overrides={
            "collector": {
                "database_url": f"sqlite:///{tmp_path}/collector.db",
                "dashboard_public": True,
                "max_body_kb": 64,
                "max_inflated_kb": 1024,
                "page_size": 50,
            }
        }
    )


@pytest.fixture
def app(ccfg):
    a = create_app(ccfg)
    register(a)
    yield a
    a.extensions["collector_db"].dispose()


@pytest.fixture
def cdb(app):
    return app.extensions["collector_db"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def token(app):
    with Session(app.extensions["collector_db"]) as s, s.begin():
        return create_token(s, "diskominfo")["token"]


@pytest.fixture
def auth(token):
    return {"Authorization": f"Bearer {token}"}
