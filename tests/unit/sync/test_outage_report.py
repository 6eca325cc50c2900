"""The uplink down for days, at the sync agent and the collector (issue #11, item 3): three
simulated days of hours, health samples and an outage window queued while nothing reaches
the collector; when the link returns the backlog drains once, in order, nothing lost or
doubled, and the outage arrives as a window (start, end, cause). Malformed or late outage
records change nothing they should not."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from collector.models import HealthSample, IngestBatch
from collector.models import UplinkOutage as CollectorOutage
from hotspot import wire
from hotspot.model import Device, HourlyUsage
from hotspot.model_uplink import OutageCause, UplinkOutage
from sync.agent import Agent
from sync.purge import purge
from tests.unit.collector.helpers import GATEWAY_ID, FlaskTransport, post, totals
from tests.unit.fakes import Clock
from tests.unit.sync.conftest import START, gateway_totals, macs


class Cut(FlaskTransport):
    """The collector behind an uplink that can be cut: no answer at all while ``cut``.
    Keeps every body that arrived, to check the order afterwards."""

    def __init__(self, app):
        super().__init__(app)
        self.cut = True
        self.refused = 0
        self.bodies: list[bytes] = []

    def post(self, path, body, headers):
        if self.cut:
            self.refused += 1
            raise OSError("collector unreachable: timed out")
        self.bodies.append(body)
        return super().post(path, body, headers)


def no_sleep(_s):
    return None


def an_hour_of_use(db, hour: dt.datetime, devices: int = 4) -> None:
    with Session(db) as s, s.begin():
        if hour == START:
            s.execute(
                insert(Device),
                [
                    {"mac": m, "first_seen": hour, "last_seen": hour, "blocked": False}
                    for m in macs(devices)
                ],
            )
        s.execute(
            insert(HourlyUsage),
            [
                {
                    "mac": m,
                    "hour": hour,
                    "seconds": 600 + i,
                    "bytes_down": 1000 * (i + 1),
                    "bytes_up": 100 * (i + 1),
                }
                for i, m in enumerate(macs(devices))
            ],
        )


def test_three_days_without_uplink_drain_once_in_order(gwcfg, gwdb, app, cdb):
    clock = Clock(START)
    transport = Cut(app)
    agent = Agent(gwcfg, gwdb, transport=transport, clock=clock)
    with Session(gwdb) as s, s.begin():  # what the gateway's monitor writes
        s.add(UplinkOutage(started_at=START, cause=OutageCause.UNREACHABLE))
    for _ in range(72):  # an hour of use, a health sample and a try every simulated hour
        an_hour_of_use(gwdb, clock.now)
        clock.advance(minutes=59)
        agent.collect(with_health=True, cpu_interval=0)
        assert not agent.drain(max_failures=1, sleep=no_sleep).ok
        clock.advance(minutes=1)
    assert transport.refused == 72
    pending = agent.outbox.pending()
    assert pending == 72 * 4 + 72 + 1 + 1  # usage, health, the open outage, the gateway
    end = clock.now
    with Session(gwdb) as s, s.begin():
        s.scalars(select(UplinkOutage)).one().ended_at = end
    transport.cut = False
    agent.collect(with_health=True, cpu_interval=0)
    assert agent.drain(max_failures=1, sleep=no_sleep).ok and agent.outbox.pending() == 0

    assert totals(cdb) == gateway_totals(gwdb, agent.outbox.pseudonym)
    with Session(cdb) as s:
        assert s.scalar(select(func.count()).select_from(HealthSample)) == 73
        assert s.scalar(select(func.sum(IngestBatch.duplicates))) == 0
        ((start, ended, cause),) = s.execute(
            select(CollectorOutage.started_at, CollectorOutage.ended_at, CollectorOutage.cause)
        ).all()
    assert (start, ended, cause) == (START, end, "unreachable")
    # In order, each once: the health samples as they were taken, every device-hour once
    # (the window is sent twice: open, then — at a higher revision — ended).
    records = [
        rec
        for body in transport.bodies
        for rec in json.loads(wire.inflate(body, 1 << 24))["records"]
    ]
    samples = [r["sampled_at"] for r in records if r["kind"] == "health"]
    assert samples == sorted(samples) and len(set(samples)) == 73
    hours = [(r["client"], r["period_start"]) for r in records if r["kind"] == "usage"]
    assert len(hours) == len(set(hours)) == 72 * 4
    assert [r["period_start"] for r in records if r["kind"] == "usage"] == sorted(
        r["period_start"] for r in records if r["kind"] == "usage"
    )
    outages = [(r["ended_at"], r["rev"]) for r in records if r["kind"] == "outage"]
    assert outages[-1][0] is not None and outages == sorted(outages, key=lambda o: o[1])


def test_a_late_open_window_never_reopens_an_ended_one(client, cdb):
    start = "2026-11-28T01:00:00Z"
    ended = {"kind": "outage", "started_at": start, "cause": "link"}
    assert (
        post(client, [{**ended, "ended_at": "2026-11-28T05:00:00Z", "rev": 2}]).status_code == 200
    )
    assert post(client, [{**ended, "ended_at": None, "rev": 1}]).status_code == 200
    with Session(cdb) as s:
        row = s.scalars(select(CollectorOutage)).one()
    assert row.gateway_id == GATEWAY_ID and row.ended_at == dt.datetime(2026, 11, 28, 5)


@pytest.mark.parametrize(
    "record",
    [
        {"started_at": "2026-11-28T05:00:00Z", "ended_at": "2026-11-28T01:00:00Z"},
        {"cause": "aliens"},
        {"started_at": "yesterday"},
        {"ended_at": 5},
        {"rev": 0},
        {"extra": 1},
    ],
)
def test_malformed_outage_records_are_refused(client, cdb, record):
    good = {
        "kind": "outage",
        "started_at": "2026-11-28T01:00:00Z",
        "ended_at": None,
        "cause": "unreachable",
        "rev": 1,
    }
    resp = post(client, [{**good, **record}])
    assert resp.status_code == 400 and resp.get_json()["error"] == "bad-body"
    with Session(cdb) as s:
        assert s.scalar(select(func.count()).select_from(CollectorOutage)) == 0


def test_old_ended_outages_are_forgotten_with_the_retention(gwcfg, gwdb):
    old = START - dt.timedelta(days=gwcfg.privacy.retention_days + 1)
    with Session(gwdb) as s, s.begin():
        s.add(UplinkOutage(started_at=old, ended_at=old, cause=OutageCause.LINK))
        s.add(UplinkOutage(started_at=old, cause=OutageCause.LINK))  # still going on: kept
        s.add(UplinkOutage(started_at=START, ended_at=START, cause=OutageCause.LINK))
    assert purge(gwcfg, gwdb, now=START)["uplink_outage"] == 1
    with Session(gwdb) as s:
        assert s.scalar(select(func.count()).select_from(UplinkOutage)) == 2
