"""Speed schedules (issue #13, item 6) in the session engine, against the fake data path: the
classes of a scheduled tier change at the window edges, as part of the desired state."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from gateway import engine as engine_mod
from gateway import shaping
from gateway.engine import SessionEngine
from hotspot import config as config_mod
from hotspot.model import ClientSession
from tests.unit.conftest import device_overrides
from tests.unit.fakes import FakeDataPath

# The fake clock starts at 03:00 UTC = 10:00 WIB on 28 November 2026.
NIGHT = {"from": "22:00", "to": "05:00", "down_kbps": 8000, "up_kbps": 3000}
A, A_IP = "02:00:00:00:0b:01", "10.10.0.31"
B, B_IP = "02:00:00:00:0b:02", "10.10.0.32"
C, C_IP = "02:00:00:00:0b:03", "10.10.0.33"
NET = config_mod.load().network.lan_network


@pytest.fixture
def cfg(tmp_path):
    overrides = device_overrides(tmp_path)
    overrides["tiers"]["premium"]["schedule"] = [NIGHT]
    # A free session that lasts the whole test: the tier that has no schedule.
    overrides["tiers"]["free"] = {"idle_minutes": 0, "daily_minutes": 0}
    return config_mod.load(overrides=overrides)


def ceil(datapath, ip):
    minor = shaping.client_minor(ip, NET)
    return datapath.state.down_ceil.get(minor), datapath.state.up_ceil.get(minor)


def at_wib(clock, hour, minute=0, day=28):
    local = dt.datetime(2026, 11, day, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    clock.now = local.astimezone(dt.UTC).replace(tzinfo=None)


def test_classes_change_at_both_edges_in_one_plan(engine, datapath, clock):
    engine.authorize(ip=A_IP, mac=A, tier="premium")
    engine.authorize(ip=B_IP, mac=B, tier="premium")
    engine.authorize(ip=C_IP, mac=C, tier="free", minutes=24 * 60)
    assert ceil(datapath, A_IP) == (5120, 2048)
    at_wib(clock, 21, 59)
    engine.tick()
    assert ceil(datapath, A_IP) == (5120, 2048)
    applied = len(datapath.applied)
    at_wib(clock, 22, 0)
    report = engine.tick()
    assert ceil(datapath, A_IP) == ceil(datapath, B_IP) == (8000, 3000)
    assert ceil(datapath, C_IP) == (1024, 512)  # another tier: untouched
    # Every class of the tier changed in one plan (one batch for the kernel), nothing else.
    assert len(datapath.applied) == applied + 1
    plan = datapath.applied[-1]
    assert sorted(c.minor for c in plan.down_set) == sorted(
        shaping.client_minor(ip, NET) for ip in (A_IP, B_IP)
    )
    assert not plan.add_clients and not plan.del_clients and "4 classes set" in report.plan
    assert not any(c.new for c in plan.down_set + plan.up_set)  # changed, not recreated
    engine.tick()
    assert len(datapath.applied) == applied + 1  # nothing more to do inside the window
    at_wib(clock, 5, 0, day=29)
    engine.tick()
    assert ceil(datapath, A_IP) == (5120, 2048)


def test_the_session_shows_the_rates_in_force_and_until_when(engine, clock):
    engine.authorize(ip=A_IP, mac=A, tier="premium")
    (s,) = engine.list()
    assert (s["down_kbps"], s["up_kbps"], s["speed_window"], s["speed_until"]) == (
        5120,
        2048,
        None,
        None,
    )
    at_wib(clock, 23, 30)
    s = engine.client(ip=A_IP)["session"]
    assert (s["down_kbps"], s["up_kbps"]) == (8000, 3000)
    assert s["speed_window"] == "faster"
    assert s["speed_until"] == "2026-11-28T22:00:00Z"  # 05:00 WIB on the 29th


def test_a_slower_window_says_so(tmp_path, db, datapath, clock):
    overrides = device_overrides(tmp_path)
    school = {"from": "07:00", "to": "13:00", "down_kbps": 256, "up_kbps": 128}
    overrides["tiers"]["premium"]["schedule"] = [school]
    eng = SessionEngine(
        config_mod.load(overrides=overrides), db, datapath, clock=clock, monotonic=clock.monotonic
    )
    eng.start()
    out = eng.authorize(ip=A_IP, mac=A, tier="premium")  # 10:00 WIB: inside the window
    assert (out["down_kbps"], out["speed_window"]) == (256, "slower")
    assert ceil(datapath, A_IP) == (256, 128)  # created at the window's rates


def test_a_login_inside_the_window_gets_its_rates_and_loses_them_at_its_end(
    engine, datapath, clock, db
):
    at_wib(clock, 2, 0, day=29)
    engine.tick()
    out = engine.authorize(ip=A_IP, mac=A, tier="premium")
    assert ceil(datapath, A_IP) == (8000, 3000)
    # What is stored is the tier's own rates, never the window's: a villager who logged in
    # during the boost (or logs in again just before its end) does not keep it afterwards.
    assert (out["down_kbps"], out["speed_window"]) == (8000, "faster")
    with Session(db) as s:
        assert (s.get(ClientSession, out["id"]).down_kbps) == 5120
    at_wib(clock, 4, 59, day=29)
    again = engine.authorize(ip=A_IP, mac=A, tier="premium")  # the same session again
    assert again["id"] == out["id"]
    at_wib(clock, 5, 0, day=29)
    engine.tick()
    assert ceil(datapath, A_IP) == (5120, 2048)
    assert engine.client(ip=A_IP)["session"]["speed_window"] is None


def test_a_restart_inside_the_window_installs_its_rates(cfg, db, engine, clock):
    engine.authorize(ip=A_IP, mac=A, tier="premium")
    at_wib(clock, 23, 0)  # the gateway was down at the edge (a power cut at 21:50, say)
    fresh = FakeDataPath()  # the kernel after the reboot: empty
    again = SessionEngine(cfg, db, fresh, clock=clock, monotonic=clock.monotonic)
    again.start()
    assert ceil(fresh, A_IP) == (8000, 3000)
    at_wib(clock, 5, 1, day=29)
    again.tick()
    assert ceil(fresh, A_IP) == (5120, 2048)


def test_a_class_changed_behind_our_back_is_put_back_to_the_windows_rates(engine, datapath, clock):
    engine.authorize(ip=A_IP, mac=A, tier="premium")
    at_wib(clock, 22, 0)
    engine.tick()
    minor = shaping.client_minor(A_IP, NET)
    datapath.state.down_ceil[minor] = 5120  # a missed edge, a `tc class change` by hand
    assert "1 classes set" in engine.reconcile()
    assert ceil(datapath, A_IP) == (8000, 3000)


def test_a_clock_that_jumps_back_re_evaluates_the_window(engine, datapath, clock):
    engine.authorize(ip=A_IP, mac=A, tier="premium")
    at_wib(clock, 23, 0)
    engine.tick()
    assert ceil(datapath, A_IP) == (8000, 3000)
    at_wib(clock, 20, 0)  # NTP corrects a clock that ran three hours fast
    engine.tick()
    assert ceil(datapath, A_IP) == (5120, 2048)
    at_wib(clock, 4, 0, day=30)  # and a jump forward by more than a day
    engine.tick()
    assert ceil(datapath, A_IP) == (8000, 3000)


def test_rates_set_for_one_session_are_not_overridden(engine, datapath, clock):
    out = engine.authorize(ip=A_IP, mac=A, tier="premium")
    engine.change_limits(session_id=out["id"], down_kbps=3000, up_kbps=1000)
    engine.authorize(ip=B_IP, mac=B, tier="premium", down_kbps=700, up_kbps=300)  # RADIUS
    at_wib(clock, 22, 30)
    engine.tick()
    assert ceil(datapath, A_IP) == (3000, 1000)
    assert ceil(datapath, B_IP) == (700, 300)
    assert engine.client(ip=A_IP)["session"]["speed_window"] is None


def test_the_window_is_worked_out_once_per_edge(engine, clock, monkeypatch):
    engine.authorize(ip=A_IP, mac=A, tier="premium")
    calls = []
    real = engine_mod.speed_at
    monkeypatch.setattr(engine_mod, "speed_at", lambda *a: calls.append(a) or real(*a))
    at_wib(clock, 12, 0)
    for _ in range(30):
        clock.advance(seconds=2)
        engine.tick()
    # Worked out at the login (10:00 WIB) up to the next edge, 22:00: nothing to do till then.
    assert calls == []
    at_wib(clock, 22, 0)
    engine.tick()
    engine.tick()
    assert len(calls) == 1
