"""The session engine against a fake data path and a frozen clock."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.engine import SessionEngine
from hotspot.errors import ErrorCode, KernelError, NotFound, Refused, UsageError
from hotspot.model import ClientSession, DailyUsage, EndReason, HourlyUsage

MAC1, IP1 = "02:00:00:00:00:01", "10.10.0.11"
MAC2, IP2 = "02:00:00:00:00:02", "10.10.0.12"


def sessions(db):
    with Session(db) as s:
        return list(s.scalars(select(ClientSession).order_by(ClientSession.id)))


def test_authorize_puts_client_in_kernel(engine, datapath):
    out = engine.authorize(ip=IP1, mac=MAC1, tier="free")
    assert out["state"] == "active" and out["tier"] == "free"
    assert (IP1, MAC1) in datapath.state.authorized
    assert datapath.state.down_map[IP1] == "1:b" and datapath.state.up_map[IP1] == "1:b"
    assert datapath.state.down_ceil[0xB] == 1024 and datapath.state.up_ceil[0xB] == 512
    assert out["seconds_remaining"] == 3600


def test_authorize_is_idempotent(engine, datapath, db):
    a = engine.authorize(ip=IP1, mac=MAC1)
    applied = len(datapath.applied)
    b = engine.authorize(ip=IP1, mac=MAC1)
    assert a["id"] == b["id"] and len(sessions(db)) == 1
    assert len(datapath.applied) == applied  # nothing sent to the kernel


def test_mac_comes_from_the_kernel_not_the_request(engine, datapath):
    datapath.neighbours[IP1] = MAC1
    assert engine.authorize(ip=IP1)["mac"] == MAC1
    with pytest.raises(NotFound) as err:
        engine.authorize(ip=IP2)
    assert err.value.code is ErrorCode.UNKNOWN_DEVICE


def test_tier_change_replaces_session_and_changes_class(engine, datapath, db):
    engine.authorize(ip=IP1, mac=MAC1, tier="free")
    engine.authorize(ip=IP1, mac=MAC1, tier="premium")
    rows = sessions(db)
    assert [r.end_reason for r in rows] == ["replaced", None]
    assert datapath.state.down_ceil[0xB] == 5120
    assert (IP1, MAC1) in datapath.state.authorized


def test_new_address_moves_the_device(engine, datapath, db):
    engine.authorize(ip=IP1, mac=MAC1)
    engine.authorize(ip=IP2, mac=MAC1)
    assert datapath.state.authorized == {(IP2, MAC1)}
    assert datapath.state.down_map == {IP2: "1:c"}  # the pool's class 1:b stays, unused
    assert datapath.applied[-1].flush_ips == [IP1]


def test_address_taken_over_by_another_device(engine, datapath, db):
    engine.authorize(ip=IP1, mac=MAC1)
    engine.authorize(ip=IP1, mac=MAC2)
    assert datapath.state.authorized == {(IP1, MAC2)}
    assert [r.end_reason for r in sessions(db)] == ["replaced", None]


def test_bad_requests(engine):
    """What needs the configuration is the engine's to refuse; types, ranges and formats are
    refused before (tests/unit/test_protocol.py)."""
    for kwargs, field in (
        ({"ip": "10.10.0.1", "mac": MAC1}, "ip"),  # the gateway itself
        ({"ip": "192.168.1.5", "mac": MAC1}, "ip"),  # outside the LAN
        ({"ip": "10.10.3.255", "mac": MAC1}, "ip"),  # broadcast
        ({"ip": IP1, "mac": MAC1, "tier": "gold"}, "tier"),
    ):
        with pytest.raises(UsageError, match=f"^{field}: "):
            engine.authorize(**kwargs)


def test_kernel_failure_leaves_nothing_behind(engine, datapath, db):
    datapath.fail_next_apply = KernelError("boom", code=ErrorCode.NFTABLES)
    with pytest.raises(KernelError):
        engine.authorize(ip=IP1, mac=MAC1)
    assert sessions(db) == [] and datapath.state.authorized == set()


def test_session_timeout(engine, datapath, clock, db):
    engine.authorize(ip=IP1, mac=MAC1, tier="free", minutes=5)
    clock.advance(minutes=4, seconds=59)
    datapath.traffic(IP1, down=1000, up=100)
    assert engine.tick().ended == []
    clock.advance(seconds=1)
    assert engine.tick().ended[0][1] == "session-timeout"
    assert datapath.state.authorized == set() and datapath.state.down_map == {}


def test_idle_timeout_counts_from_last_traffic(engine, datapath, clock):
    engine.authorize(ip=IP1, mac=MAC1, tier="free")
    for _ in range(3):
        clock.advance(minutes=4)
        datapath.traffic(IP1, up=60)
        assert engine.tick().ended == []
    clock.advance(minutes=9, seconds=59)
    assert engine.tick().ended == []
    clock.advance(seconds=1)
    assert engine.tick().ended[0][1] == "idle-timeout"


def test_logout_and_kick_record_their_reason(engine, db):
    engine.authorize(ip=IP1, mac=MAC1)
    engine.deauthorize(ip=IP1, reason=EndReason.LOGOUT)
    engine.authorize(ip=IP1, mac=MAC1)
    engine.deauthorize(mac=MAC1)
    assert [r.end_reason for r in sessions(db)] == ["logout", "admin-kick"]
    with pytest.raises(NotFound):
        engine.deauthorize(mac=MAC1)


def test_daily_data_allowance(engine, datapath, clock, db):
    engine.authorize(ip=IP1, mac=MAC1, tier="free")
    clock.advance(seconds=2)
    datapath.traffic(IP1, down=299_000_000, up=500_000, packets=1000)
    assert engine.tick().ended == []
    clock.advance(seconds=2)
    datapath.traffic(IP1, down=600_000)
    assert engine.tick().ended[0][1] == "quota"
    with pytest.raises(Refused) as err:
        engine.authorize(ip=IP1, mac=MAC1, tier="free")
    assert err.value.code is ErrorCode.QUOTA_EXHAUSTED
    # Another tier is not affected by the free tier's allowance.
    assert engine.authorize(ip=IP1, mac=MAC1, tier="premium")["state"] == "active"


def test_daily_minutes_across_sessions_and_midnight_reset(engine, datapath, clock, cfg):
    # 03:00 UTC = 10:00 in Jakarta. Use 119 minutes across two sessions.
    engine.authorize(ip=IP1, mac=MAC1, tier="free")
    for _ in range(59):
        clock.advance(minutes=1)
        datapath.traffic(IP1, up=10)
        engine.tick()
    engine.deauthorize(mac=MAC1, reason=EndReason.LOGOUT)
    out = engine.authorize(ip=IP1, mac=MAC1, tier="free", minutes=90)
    assert out["seconds_remaining"] == 61 * 60  # the allowance ends before the session would
    for _ in range(61):
        clock.advance(minutes=1)
        datapath.traffic(IP1, up=10)
        report = engine.tick()
    assert report.ended and report.ended[0][1] == "quota"
    info = engine.client(mac=MAC1)
    assert info["allowance"]["free"]["exhausted"]
    assert info["allowance"]["free"]["resets_at"] == "2026-11-28T17:00:00Z"  # Jakarta midnight
    clock.now = dt.datetime(2026, 11, 28, 17, 0, 1)
    assert engine.authorize(ip=IP1, mac=MAC1, tier="free")["seconds_remaining"] == 3600


def test_session_data_cap(engine, datapath, clock):
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", bytes_limit=1_000_000, voucher_id=7)
    clock.advance(seconds=2)
    datapath.traffic(IP1, down=999_000)
    engine.tick()
    assert engine.client(mac=MAC1)["session"]["bytes_remaining"] == 1000
    clock.advance(seconds=2)
    datapath.traffic(IP1, up=1000)
    assert engine.tick().ended[0][1] == "quota"


def test_absolute_expiry(engine, clock):
    out = engine.authorize(
        ip=IP1, mac=MAC1, tier="premium", expires_at=dt.datetime(2026, 11, 28, 5)
    )
    assert out["expires_at"] == "2026-11-28T05:00:00Z" and out["seconds_remaining"] == 7200
    with pytest.raises(Refused) as err:
        engine.authorize(ip=IP2, mac=MAC2, tier="premium", expires_at=dt.datetime(2026, 11, 28, 2))
    assert err.value.code is ErrorCode.EXPIRED


def test_accounting_counts_ip_bytes_and_flushes_in_batches(engine, datapath, clock, db):
    engine.authorize(ip=IP1, mac=MAC1, tier="premium")
    clock.advance(seconds=2)
    datapath.traffic(IP1, down=150_000, up=20_000, packets=100)
    report = engine.tick()
    assert not report.flushed  # a minute has not passed: nothing written yet
    listed = engine.list()[0]
    assert (listed["bytes_down"], listed["bytes_up"]) == (150_000, 20_000)
    assert (listed["rate_down_bps"], listed["rate_up_bps"]) == (600_000, 80_000)  # over 2 s
    assert sessions(db)[0].bytes_down == 0
    assert engine.tick(force_flush=True).flushed
    row = sessions(db)[0]
    assert (row.bytes_down, row.bytes_up) == (150_000, 20_000)
    with Session(db) as s:
        usage = s.scalars(select(DailyUsage)).one()
        hourly = s.scalars(select(HourlyUsage)).one()
    assert usage.bytes_down == 150_000 and usage.tier == "premium"
    assert (hourly.hour, hourly.bytes_down, hourly.bytes_up) == (
        dt.datetime(2026, 11, 28, 3),
        150_000,
        20_000,
    )


def test_packet_counter_wrap(engine, datapath, clock):
    engine.authorize(ip=IP1, mac=MAC1, tier="premium")
    datapath.frames[("down", 0xB)] = (1000 + 14 * (2**32 - 1), 2**32 - 1)
    engine._last_raw.set("down", 0xB, *datapath.frames[("down", 0xB)])
    datapath.traffic(IP1, down=5000, packets=3)  # packets wraps to 2
    engine.tick()
    assert engine.list()[0]["bytes_down"] == 5000


def test_block_kicks_and_refuses(engine, datapath, db):
    engine.authorize(ip=IP1, mac=MAC1)
    engine.block(mac=MAC1, reason="abuse")
    assert datapath.state.blocked == {MAC1} and datapath.state.authorized == set()
    assert sessions(db)[0].end_reason == "blocked"
    with pytest.raises(Refused) as err:
        engine.authorize(ip=IP1, mac=MAC1)
    assert err.value.code is ErrorCode.BLOCKED
    assert engine.blocked()[0]["reason"] == "abuse"
    engine.unblock(mac=MAC1)
    assert datapath.state.blocked == set()
    assert engine.authorize(ip=IP1, mac=MAC1)["state"] == "active"
    with pytest.raises(NotFound):
        engine.unblock(mac=MAC1)


def test_restart_restores_sessions_and_drops_expired(cfg, db, datapath, clock, engine):
    engine.authorize(ip=IP1, mac=MAC1, tier="premium")
    engine.authorize(ip=IP2, mac=MAC2, tier="free", minutes=5)
    engine.block(mac="02:00:00:00:00:09")
    clock.advance(minutes=6)
    fresh = FakeDataPathAfterReboot()
    again = SessionEngine(cfg, db, fresh, clock=clock, monotonic=clock.monotonic)
    again.start()
    assert fresh.state.authorized == {(IP1, MAC1)}
    assert fresh.state.blocked == {"02:00:00:00:00:09"}
    assert [r.end_reason for r in sessions(db)] == [None, "session-timeout"]


def test_reconcile_repairs_the_kernel(engine, datapath):
    engine.authorize(ip=IP1, mac=MAC1)
    engine.authorize(ip=IP2, mac=MAC2)
    datapath.state.authorized.discard((IP1, MAC1))  # someone deleted an element
    datapath.state.authorized.add(("10.10.0.99", "02:00:00:00:00:99"))  # and added a stranger
    datapath.state.down_ceil.pop(0xC)  # and a class
    assert engine.reconcile()
    assert datapath.state.authorized == {(IP1, MAC1), (IP2, MAC2)}
    assert datapath.state.down_ceil[0xC] == 1024
    assert engine.reconcile() == ""  # idempotent


def test_restart_keeps_idle_clock_fair(cfg, db, datapath, clock, engine):
    """A power cut is not the villager's idleness: idle time counts from the restart."""
    engine.authorize(ip=IP1, mac=MAC1, tier="free")
    clock.advance(minutes=30)
    again = SessionEngine(
        cfg, db, FakeDataPathAfterReboot(), clock=clock, monotonic=clock.monotonic
    )
    again.start()
    clock.advance(minutes=1)
    assert again.tick().ended == []


class FakeDataPathAfterReboot:
    def __new__(cls):
        from tests.unit.fakes import FakeDataPath

        return FakeDataPath()


def test_voucher_quota_is_shared_by_its_devices(engine, datapath, clock):
    """A family voucher's data is one pot: two phones together use it up, not each."""
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", bytes_limit=1_000_000, voucher_id=3)
    engine.authorize(ip=IP2, mac=MAC2, tier="premium", bytes_limit=1_000_000, voucher_id=3)
    clock.advance(seconds=2)
    datapath.traffic(IP1, down=400_000)
    datapath.traffic(IP2, down=400_000)
    assert engine.tick().ended == []
    assert engine.client(mac=MAC2)["session"]["bytes_remaining"] == 200_000
    clock.advance(seconds=2)
    datapath.traffic(IP2, down=200_000)
    ended = engine.tick().ended
    assert sorted(reason for _, reason in ended) == ["quota", "quota"]


def test_voucher_quota_counts_ended_sessions(engine, datapath, clock):
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", bytes_limit=1_000_000, voucher_id=4)
    clock.advance(seconds=2)
    datapath.traffic(IP1, down=700_000)
    engine.tick()
    engine.deauthorize(mac=MAC1, reason=EndReason.LOGOUT)
    out = engine.authorize(ip=IP2, mac=MAC2, tier="premium", bytes_limit=1_000_000, voucher_id=4)
    assert out["bytes_remaining"] == 300_000


def test_extend_adds_time(engine, clock):
    engine.authorize(ip=IP1, mac=MAC1, tier="free", minutes=10)
    clock.advance(minutes=5)
    out = engine.extend(mac=MAC1, minutes=30)
    assert out["expires_at"] == "2026-11-28T03:40:00Z"
    assert out["last_activity_at"] == "2026-11-28T03:00:00Z"
    with pytest.raises(NotFound):
        engine.extend(mac=MAC2, minutes=5)


def test_extending_past_the_last_date_is_a_bad_request(engine):
    """The protocol keeps expiries before 9000; extensions could still pile up to 9999."""
    engine.authorize(ip=IP1, mac=MAC1, tier="premium", expires_at=dt.datetime(9999, 6, 1))
    with pytest.raises(UsageError, match="^minutes: "):
        engine.extend(mac=MAC1, minutes=525_600)
    assert engine.list()[0]["expires_at"] == "9999-06-01T00:00:00Z"


# -- identity on the LAN (issue #10, items 6 and 7) --------------------------------------------


def test_a_session_pins_its_address_until_it_ends(engine, datapath):
    engine.authorize(ip=IP1, mac=MAC1)
    assert datapath.state.pinned == {IP1: MAC1}
    engine.authorize(ip=IP2, mac=MAC1)  # moved: the pin moves
    assert datapath.state.pinned == {IP2: MAC1}
    engine.authorize(ip=IP2, mac=MAC2)  # taken over by another device: its MAC
    assert datapath.state.pinned == {IP2: MAC2}
    engine.deauthorize(mac=MAC2, reason=EndReason.KICK)
    assert datapath.state.pinned == {}


def test_reconcile_restores_and_removes_pins(engine, datapath):
    engine.authorize(ip=IP1, mac=MAC1)
    datapath.state.pinned = {IP2: MAC2}  # the session's pin lost, a stray one made by hand
    assert "pinned neighbours" in engine.reconcile()
    assert datapath.state.pinned == {IP1: MAC1}
    assert engine.reconcile() == ""


def test_requests_by_address_are_refused_while_another_mac_sends_from_it(engine, datapath):
    datapath.neighbours[IP1] = MAC1
    first = engine.authorize(ip=IP1)
    datapath.portal_peers_at[IP1] = {MAC1, MAC2}  # MAC2 talked to the portal from IP1 too
    for attempt in (
        lambda: engine.deauthorize(ip=IP1, reason=EndReason.LOGOUT),
        lambda: engine.authorize(ip=IP1, tier="premium"),
        lambda: engine.extend(ip=IP1, minutes=10),
    ):
        with pytest.raises(Refused) as err:
            attempt()
        assert err.value.code is ErrorCode.NOT_YOUR_SESSION
    still = engine.client(mac=MAC1)["session"]
    assert still["id"] == first["id"] and still["tier"] == "free"
    assert still["expires_at"] == first["expires_at"]
    # The operator names the MAC: not affected. The owner alone at its address: served.
    assert engine.extend(mac=MAC1, minutes=10)["id"] == first["id"]
    datapath.portal_peers_at[IP1] = {MAC1}
    assert engine.deauthorize(ip=IP1, reason=EndReason.LOGOUT)["end_reason"] == "logout"
