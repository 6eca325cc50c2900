"""The sync agent on a full disk (issue #11, item 4): nothing can be queued, so the outbox
stops growing and the agent keeps running; the health sample still reaches the (real,
in-process) collector, sent without being stored, at most once per ``health_seconds``;
once there is room everything is queued and delivered as usual."""

from __future__ import annotations

import threading
from collections import namedtuple

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from collector.models import HealthSample
from hotspot.memory import MemoryCeiling
from sync import health as health_mod
from sync.agent import Agent
from tests.unit.collector.helpers import FlaskTransport
from tests.unit.fakes import Clock
from tests.unit.storage_full import FullStorage
from tests.unit.sync.conftest import seed_usage

Usage = namedtuple("Usage", "total used free percent")


@pytest.fixture
def full_disk(monkeypatch, gwdb):
    monkeypatch.setattr(health_mod.psutil, "disk_usage", lambda _p: Usage(100, 100, 0, 100.0))
    return FullStorage(gwdb)  # full once the test sets ``full``


def samples(cdb) -> list[float]:
    with Session(cdb) as s:
        return list(s.scalars(select(HealthSample.disk_pct)))


def test_a_full_disk_queues_nothing_but_the_province_hears_of_it(
    gwcfg, gwdb, app, cdb, full_disk, caplog
):
    seed_usage(gwdb, devices=2, hours=2)
    clock = Clock()
    a = Agent(gwcfg, gwdb, transport=FlaskTransport(app), clock=clock)
    full_disk.full = True
    with pytest.raises(OperationalError):
        a.collect(full=True, with_health=True, cpu_interval=0)
    assert a.outbox.pending() == 0  # nothing queued: the outbox did not grow
    assert samples(cdb) == [100.0] and a.transport.statuses == [200]
    assert "storage 100.0 % full (the warning is at 90 %)" in caplog.text
    with pytest.raises(OperationalError):  # again at once: no second unstored sample
        a.collect(with_health=True, cpu_interval=0)
    assert samples(cdb) == [100.0]

    full_disk.full = False
    clock.advance(minutes=5)
    a.collect(full=True, with_health=True, cpu_interval=0)
    assert a.outbox.pending() > 0
    assert a.drain(max_failures=1).ok and a.outbox.pending() == 0
    with Session(cdb) as s:
        assert s.scalar(select(func.count()).select_from(HealthSample)) == 2


def test_the_running_agent_survives_a_full_disk(gwcfg, gwdb, app, cdb, full_disk, caplog):
    # In pytest's process: its size (hundreds of MB after a thousand tests) is not the
    # agent's, and [sync] restart_above_mb would stop the loop.
    a = Agent(gwcfg, gwdb, transport=FlaskTransport(app), memory_ceiling=MemoryCeiling(0))
    full_disk.full = True
    stop = threading.Event()
    runner = threading.Thread(target=a.run, args=(stop,))
    runner.start()
    try:
        runner.join(2.5)  # interval_seconds = 1: a couple of rounds against the full disk
        assert runner.is_alive()
        assert "collect: storage full: nothing new queued" in caplog.text
        full_disk.full = False
        deadline = threading.Event()
        for _ in range(50):
            if a.outbox.stats()["delivered_records"]:
                break
            deadline.wait(0.1)
        assert a.outbox.stats()["delivered_records"] > 0
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
