"""Health samples and the retention purge."""

from __future__ import annotations

import datetime as dt
import json
import socket

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from hotspot import config as config_mod
from hotspot import health as hotspot_health
from hotspot import wire
from hotspot.model import (
    ClientSession,
    DailyUsage,
    Device,
    DeviceIdentity,
    DeviceIdentityMac,
    HourlyUsage,
    Voucher,
    VoucherDevice,
)
from hotspot.model_sync import SyncOutbox
from sync import health
from sync.outbox import Outbox
from sync.purge import purge
from tests.unit.sync.conftest import START, gateway_overrides, seed_usage


def test_a_sample_is_a_valid_record(gwcfg, gwdb):
    rec = health.sample(gwcfg, gwdb, dt.datetime(2026, 11, 28, 3, 0, 0, 123), cpu_interval=0)
    checked = wire.validate_record(json.loads(wire.dump_record(rec)))
    assert checked["sampled_at"] == dt.datetime(2026, 11, 28, 3, 0, 0)
    assert 0 <= rec["disk_pct"] <= 100 and rec["uptime_s"] > 0 and rec["clients_online"] == 0
    assert rec["uplink_ok"] is False  # nothing listens on 127.0.0.1:9


def test_uplink_probe():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        ok, ms = health.probe_uplink(f"http://127.0.0.1:{srv.getsockname()[1]}/x")
    assert ok is True and ms is not None and ms >= 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert health.probe_uplink(f"http://127.0.0.1:{port}") == (False, None)
    assert health.probe_uplink("") == (None, None)


def test_temperature_is_optional():
    t = hotspot_health.temperature()
    assert t is None or -50 < t < 150


def test_the_consoles_snapshot_uses_the_same_probe(gwcfg, gwdb):
    """hotspot.health is the one probe: the console's overview and the agent's samples."""
    assert hotspot_health.last_uplink(gwdb) is None  # no sample yet
    rec = health.sample(gwcfg, gwdb, START, cpu_interval=0)
    with Session(gwdb) as s, s.begin():
        s.add(
            SyncOutbox(
                kind="health", key="h1", payload=wire.dump_record(rec), rev=1, created_at=START
            )
        )
    snap = hotspot_health.snapshot(gwcfg, gwdb)
    assert snap["uplink_ok"] is False  # what the sample said
    assert 0 <= snap["disk"] <= 100 and snap["uptime"] > 0 and "temp" in snap
    assert hotspot_health.wan_state("no-such-if0") is None


def test_purge_forgets_old_data_but_not_undelivered_reports(tmp_path, gwdb):
    over = gateway_overrides(tmp_path)
    over["privacy"] = {"retention_days": 3}
    cfg = config_mod.load(overrides=over)
    now = START + dt.timedelta(days=10)
    seed_usage(gwdb, devices=4, hours=24 * 10, density=1.0)  # 10 days, all 4 devices
    old = START + dt.timedelta(hours=1)
    with Session(gwdb) as s, s.begin():
        s.execute(
            insert(Device),
            [
                {"mac": "02:00:00:00:09:01", "first_seen": old, "last_seen": old, "blocked": False},
                {"mac": "02:00:00:00:09:02", "first_seen": old, "last_seen": old, "blocked": True},
            ],
        )
        s.add(
            ClientSession(
                mac="02:00:00:00:00:01",
                ip="10.10.0.11",
                tier="free",
                source="free",
                down_kbps=1,
                up_kbps=1,
                idle_minutes=0,
                started_at=old,
                last_activity_at=old,
                ended_at=old,
                end_reason="logout",
            )
        )
        s.add(
            DailyUsage(
                mac="02:00:00:00:00:01",
                day=old.date(),
                tier="free",
                seconds=1,
                bytes_down=1,
                bytes_up=1,
            )
        )
    ob = Outbox(cfg, gwdb, clock=lambda: now)
    ob.collect(full=True)
    delivered = ob.make_batch(4096)  # the oldest rows; acknowledge them
    ob.ack(delivered)
    result = purge(cfg, gwdb, now=now)
    cutoff = now - dt.timedelta(days=3)
    with Session(gwdb) as s:
        assert s.scalar(select(func.min(HourlyUsage.hour))) >= cutoff
        assert s.scalar(select(func.count()).select_from(ClientSession)) == 0
        assert s.scalar(select(func.count()).select_from(DailyUsage)) == 0
        assert s.get(Device, "02:00:00:00:09:01") is None  # not seen for 10 days, no data
        assert s.get(Device, "02:00:00:00:09:02") is not None  # blocked: the operator decides
        assert s.get(Device, "02:00:00:00:00:01") is not None  # still has recent usage
        old_rows = s.scalar(
            select(func.count()).select_from(SyncOutbox).where(SyncOutbox.period < cutoff)
        )
        undelivered_old = s.scalar(
            select(func.count())
            .select_from(SyncOutbox)
            .where(SyncOutbox.period < cutoff, SyncOutbox.rev > SyncOutbox.sent_rev)
        )
    assert old_rows == undelivered_old > 0  # only what the collector has not got yet stays
    assert result["hourly_usage"] == 4 * 24 * 7 and result["device"] == 1


def test_purge_forgets_which_mac_used_a_voucher_and_made_a_device(tmp_path, gwdb):
    """Past the retention, what still names a device goes too (UU 27/2022: kept no longer
    than needed; and the soak's database grew with them): the MACs bound to vouchers that
    are over, the MACs of identities whose device is forgotten, identities left empty. The
    vouchers stay (the sales ledger); a binding or an identity still in use stays."""
    from tests.unit.sync.test_sales import sell

    over = gateway_overrides(tmp_path)
    over["privacy"] = {"retention_days": 3}
    cfg = config_mod.load(overrides=over)
    now = START + dt.timedelta(days=10)
    old, recent = START + dt.timedelta(hours=1), now - dt.timedelta(hours=1)
    gone, here, still, fresh = (f"02:00:00:00:0a:0{i}" for i in range(1, 5))
    sell(
        gwdb,
        "harian",
        5000,
        [
            (old, old, "active"),  # 1: expired a week ago
            (old, old, "void"),  # 2: withdrawn
            (old, old, "active"),  # 3: still running (its end is ahead)
            (old, old, "merged"),  # 4: merged, but its phone was seen an hour ago
        ],
    )
    with Session(gwdb) as s, s.begin():
        ends = {1: old + dt.timedelta(days=1), 2: None, 3: now + dt.timedelta(days=30), 4: None}
        for voucher in s.scalars(select(Voucher)):
            voucher.expires_at = ends[voucher.serial]
        s.execute(
            insert(VoucherDevice),
            [
                {"voucher_id": 1, "mac": gone, "bound_at": old, "last_seen_at": old},
                {"voucher_id": 2, "mac": gone, "bound_at": old, "last_seen_at": old},
                {"voucher_id": 3, "mac": still, "bound_at": old, "last_seen_at": old},
                {"voucher_id": 4, "mac": fresh, "bound_at": old, "last_seen_at": recent},
            ],
        )
        s.execute(
            insert(DeviceIdentity),
            [
                {
                    "id": i * 32,
                    "created_at": old,
                    "created_ip": "10.10.0.9",
                    "created_day": old.date(),
                }
                for i in "abcd"
            ],
        )
        s.execute(
            insert(DeviceIdentityMac),
            [
                {"mac": gone, "identity_id": "a" * 32, "linked_at": old},
                {"mac": here, "identity_id": "b" * 32, "linked_at": old},  # its device stays
                {"mac": still, "identity_id": "c" * 32, "linked_at": old},  # a running voucher
            ],
        )
        s.execute(
            insert(Device),
            [{"mac": here, "first_seen": old, "last_seen": recent, "blocked": False}],
        )
    result = purge(cfg, gwdb, now=now)
    with Session(gwdb) as s:
        assert s.scalar(select(func.count()).select_from(Voucher)) == 4  # the ledger stays
        assert {(b.voucher_id, b.mac) for b in s.scalars(select(VoucherDevice))} == {
            (3, still),
            (4, fresh),
        }
        assert set(s.scalars(select(DeviceIdentityMac.mac))) == {here, still}
        # "d" never had a MAC: old and empty, it goes with "a".
        assert set(s.scalars(select(DeviceIdentity.id))) == {"b" * 32, "c" * 32}
    assert (result["voucher_device"], result["device_identity_mac"]) == (2, 1)
    assert result["device_identity"] == 2
    assert purge(cfg, gwdb, now=now)["voucher_device"] == 0  # nothing more: idempotent
