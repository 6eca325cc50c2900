"""A full disk at the gateway (issue #11, item 4): a request that cannot be written is
answered ``storage-full`` (not ``internal``), and a tick that cannot be written keeps the
bytes it counted and still makes the kernel match the database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.exc import OperationalError

from gateway.control_server import Dispatcher
from hotspot.control import ControlClient
from hotspot.errors import ErrorCode, HotspotError
from tests.unit.storage_full import FullStorage, storage_full_error

IP, MAC = "10.10.0.11", "02:00:00:00:00:01"
OTHER_IP, OTHER_MAC = "10.10.0.12", "02:00:00:00:00:02"


class Raising:
    def __init__(self, exc):
        self.exc = exc

    def list(self):
        raise self.exc


@pytest.mark.parametrize(
    "exc, code",
    [
        (storage_full_error(), ErrorCode.STORAGE_FULL),
        (OperationalError("SELECT", {}, Exception("database is locked")), ErrorCode.DATABASE),
    ],
)
def test_a_full_disk_is_answered_storage_full_not_a_database_error(exc, code):
    reply = json.loads(Dispatcher(Raising(exc), dict).answer(b'{"op": "list"}\n'))
    assert reply == {
        "ok": False,
        "error": {"code": code.value, "message": reply["error"]["message"]},
    }
    assert "Traceback" not in reply["error"]["message"]


@pytest.fixture
def full(db):
    return FullStorage(db)


def test_a_login_on_a_full_disk_is_refused_and_lets_nobody_out(server, cfg, engine, datapath, full):
    datapath.neighbours[IP] = MAC
    full.full = True
    with ControlClient(cfg.control.socket) as ctl, pytest.raises(HotspotError) as err:
        ctl.call("authorize", ip=IP, tier="premium")
    assert err.value.code is ErrorCode.STORAGE_FULL and full.refused == 1
    # The kernel was changed before the commit failed: the next tick (which cannot write
    # either) puts the kernel back to what the database holds.
    assert (IP, MAC) in datapath.state.authorized
    with pytest.raises(OperationalError):
        engine.tick(force_flush=True)
    assert datapath.state.authorized == set() and engine.live == {}
    full.full = False
    with ControlClient(cfg.control.socket) as ctl:
        assert ctl.call("authorize", ip=IP, tier="premium")["ip"] == IP
    assert (IP, MAC) in datapath.state.authorized


def test_a_tick_that_cannot_be_written_keeps_its_bytes_for_the_next(
    engine, datapath, db, full, clock
):
    datapath.neighbours[IP] = MAC
    datapath.neighbours[OTHER_IP] = OTHER_MAC
    first = engine.authorize(ip=IP, tier="premium")
    engine.authorize(ip=OTHER_IP, tier="free", minutes=1)
    engine.tick(force_flush=True)
    datapath.traffic(IP, down=300_000, up=20_000)
    full.full = True
    clock.advance(seconds=90)  # the free session is over, but its end cannot be written
    for _ in range(3):
        with pytest.raises(OperationalError):
            engine.tick(force_flush=True)
        datapath.traffic(IP, down=100_000)
    # Both stay online meanwhile: the database still says they are.
    assert {ip for ip, _ in datapath.state.authorized} == {IP, OTHER_IP}
    full.full = False
    report = engine.tick(force_flush=True)
    assert report.flushed and [r for _, r in report.ended] == ["session-timeout"]
    now = engine.client(mac=MAC)["session"]
    assert now["id"] == first["id"]
    assert now["bytes_down"] == 600_000 and now["bytes_up"] == 20_000
    assert {ip for ip, _ in datapath.state.authorized} == {IP}
