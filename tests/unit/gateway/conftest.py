"""Fixtures of the gateway's unit tests: the control socket served by the engine under test
(a module's own ``engine`` fixture is the one served), and a configuration file naming it."""

from __future__ import annotations

import pytest

from gateway.control_server import ControlServer, Dispatcher


@pytest.fixture
def server(cfg, engine):
    srv = ControlServer(cfg.control.socket, Dispatcher(engine, lambda: {"ok": True}), group=None)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def config_file(cfg, tmp_path):
    path = tmp_path / "hotspot.toml"
    path.write_text(
        f'[database]\nurl = "{cfg.database.url}"\n[control]\nsocket = "{cfg.control.socket}"\n'
    )
    return path
