"""The outbox: what changed is queued once, batches are bounded and stored before sending,
an acknowledgement covers exactly the revision sent."""

from __future__ import annotations

import datetime as dt
import gzip
import json

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hotspot import wire
from hotspot.model import HourlyUsage
from hotspot.model_sync import SyncBatch, SyncOutbox
from sync.outbox import Outbox
from tests.unit.sync.conftest import START, macs, seed_usage

NOW = START + dt.timedelta(days=7)


def outbox(cfg, db, now=NOW):
    return Outbox(cfg, db, clock=lambda: now)


def rows(db, kind=None):
    with Session(db) as s:
        q = select(SyncOutbox)
        if kind:
            q = q.where(SyncOutbox.kind == kind)
        return list(s.scalars(q.order_by(SyncOutbox.id)))


def test_usage_is_queued_once_under_pseudonyms(gwcfg, gwdb):
    n = seed_usage(gwdb, devices=5, hours=48)
    ob = outbox(gwcfg, gwdb)
    counts = ob.collect(full=True)
    assert counts["usage"] == n and counts["gateway"] == 1
    usage = rows(gwdb, "usage")
    assert len(usage) == n
    everything = " ".join(r.payload + r.key for r in rows(gwdb))
    for mac in macs(5):
        assert mac not in everything and mac.replace(":", "") not in everything
    assert "http" not in everything  # no URL of any kind
    rec = json.loads(usage[0].payload)
    assert set(rec) == wire.FIELDS["usage"] | wire.OPTIONAL["usage"]  # with key_period
    assert ob.collect(full=True) == {k: 0 for k in wire.KINDS}  # nothing changed
    assert ob.pending() == n + 1


def test_a_grown_hour_is_queued_again_with_a_higher_revision(gwcfg, gwdb):
    seed_usage(gwdb, devices=1, hours=1, start=NOW.replace(minute=0), density=1.0)
    ob = outbox(gwcfg, gwdb)
    ob.collect()
    before = rows(gwdb, "usage")[0]
    with Session(gwdb) as s, s.begin():
        s.execute(update(HourlyUsage).values(bytes_down=HourlyUsage.bytes_down + 5))
    assert ob.collect()["usage"] == 1
    after = rows(gwdb, "usage")[0]
    assert after.id == before.id and after.rev > before.rev
    assert json.loads(after.payload)["bytes_down"] == json.loads(before.payload)["bytes_down"] + 5


def test_old_hours_are_not_rescanned_unless_full(gwcfg, gwdb):
    seed_usage(gwdb, devices=1, hours=1, start=NOW - dt.timedelta(hours=10), density=1.0)
    ob = outbox(gwcfg, gwdb)
    assert ob.collect()["usage"] == 1  # first collect: everything
    with Session(gwdb) as s, s.begin():
        s.execute(update(HourlyUsage).values(seconds=HourlyUsage.seconds + 1))
    assert ob.collect()["usage"] == 0  # 10 h ago is past the watermark
    assert ob.collect(full=True)["usage"] == 1  # the daily full scan finds it


def test_batches_respect_max_size_and_are_stored_before_sending(gwcfg, gwdb):
    seed_usage(gwdb, devices=20, hours=48)
    ob = outbox(gwcfg, gwdb)
    ob.collect(full=True)
    limit = 2048
    seen, sizes = set(), []
    while True:
        batch = ob.current_batch() or ob.make_batch(limit)
        if batch is None:
            break
        assert len(batch.body) <= limit
        doc = json.loads(gzip.decompress(batch.body))
        assert doc["batch"] == batch.key and doc["gateway"] == gwcfg.sync.gateway_id
        assert len(doc["records"]) == batch.records
        assert ob.current_batch() == batch  # the same bytes until acknowledged
        ids = {(r["kind"], r.get("client"), r.get("period_start")) for r in doc["records"]}
        assert not ids & seen
        seen |= ids
        sizes.append(len(batch.body))
        ob.ack(batch)
    assert ob.pending() == 0
    assert len(sizes) > 3 and max(sizes) > limit * 0.7  # batches are reasonably full
    with Session(gwdb) as s:
        assert s.scalar(select(SyncBatch)) is None


def test_a_row_changed_in_flight_stays_pending(gwcfg, gwdb):
    seed_usage(gwdb, devices=1, hours=1, start=NOW.replace(minute=0), density=1.0)
    ob = outbox(gwcfg, gwdb)
    ob.collect()
    batch = ob.make_batch(65536)
    with Session(gwdb) as s, s.begin():
        s.execute(update(HourlyUsage).values(bytes_up=HourlyUsage.bytes_up + 1))
    ob.collect()
    ob.ack(batch)
    assert [r.kind for r in rows(gwdb) if r.rev > r.sent_rev] == ["usage"]
    nxt = ob.make_batch(65536)
    assert nxt is not None and nxt.key != batch.key and nxt.records == 1


def test_health_rows_are_dropped_once_delivered(gwcfg, gwdb):
    ob = outbox(gwcfg, gwdb)
    health = {
        "kind": "health",
        "sampled_at": NOW,
        "cpu_pct": 1.0,
        "load1": 0.1,
        "load5": 0.1,
        "load15": 0.1,
        "mem_pct": 10.0,
        "disk_pct": 10.0,
        "disk_free_mb": 100,
        "temp_c": None,
        "uptime_s": 5,
        "uplink_ok": False,
        "uplink_ms": None,
        "clients_online": 0,
        "backlog": 0,
    }
    assert ob.collect(health=health)["health"] == 1
    assert ob.collect(health=health)["health"] == 0  # same second: one sample
    batch = ob.make_batch(65536)
    ob.ack(batch)
    assert rows(gwdb, "health") == []
    assert ob.stats()["delivered_records"] == batch.records
    # delivered and dropped, the same second again is still the same sample (the collector
    # keeps one per second): not queued, not counted
    assert ob.collect(health=health)["health"] == 0
    assert rows(gwdb, "health") == []
    assert ob.get_state("queued_health") == "1"


def test_release_puts_rows_back(gwcfg, gwdb):
    seed_usage(gwdb, devices=2, hours=5, density=1.0)
    ob = outbox(gwcfg, gwdb)
    ob.collect(full=True)
    batch = ob.make_batch(65536)
    ob.release(batch)
    assert ob.current_batch() is None and ob.pending() == 11
