"""Online-time packages (issue #13, item 1): minutes counted only while a device is online,
within a validity window — counted from the monotonic clock by the engine's tick, written at
each flush, ended as used up or expired; the redemption's rules (top-up, mixing, returning
devices); what the villager and the operator see."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.engine import SessionEngine
from hotspot import config as config_mod
from hotspot.audit import Actor
from hotspot.config import ConfigError
from hotspot.errors import ErrorCode
from hotspot.model import ClientSession, EndReason, Package, Voucher, VoucherBatch
from hotspot.timeutil import MonotonicStep, zone_name
from hotspot.units import MB
from hotspot.vouchers.errors import VoucherError
from hotspot.vouchers.packages import PackageError, check_package, save_package
from tests.unit.conftest import device_overrides
from tests.unit.portal.conftest import (
    OTHER_IP,
    OTHER_MAC,
    PACKAGES,
    PHONE_IP,
    PHONE_MAC,
    portal_overrides,
)

TICK = 30.0  # seconds per tick in these tests (gateway.tick_seconds): a step is capped at 90
ONLINE = {
    # 1 hour online within 7 days, 500 MB
    "jam": {
        "title": "1 Jam",
        "price": 2000,
        "tier": "premium",
        "online_minutes": 60,
        "valid_days": 7,
        "data_mb": 500,
    },
    "menit": {
        "title": "2 Menit",
        "price": 500,
        "tier": "premium",
        "online_minutes": 2,
        "valid_days": 1,
    },
    "keluarga-jam": {
        "title": "Keluarga 1 Jam",
        "price": 5000,
        "tier": "premium",
        "online_minutes": 60,
        "valid_days": 7,
        "devices": 2,
    },
}


class Mono:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def cfg(tmp_path):
    """The portal tests' configuration, plus online-time packages; premium idles out after
    5 minutes here (idle time is what must not be charged)."""
    return config_mod.load(
        overrides={
            **portal_overrides(tmp_path),
            "tiers": {"premium": {"idle_minutes": 5}},
            "gateway": {"flush_seconds": 60, "tick_seconds": TICK},
            "packages": {**PACKAGES, **ONLINE},
        }
    )


@pytest.fixture
def mono():
    return Mono()


@pytest.fixture
def engine(cfg, db, datapath, clock, mono):
    eng = SessionEngine(cfg, db, datapath, clock=clock, monotonic=mono)
    eng.start()
    return eng


def step(engine, clock, mono, seconds=TICK, traffic=True, ip=PHONE_IP, datapath=None):
    """One tick after ``seconds`` on both clocks, the device busy (or not)."""
    mono.t += seconds
    clock.advance(seconds=seconds)
    if traffic and datapath is not None:
        for one in ip if isinstance(ip, list | tuple) else [ip]:
            datapath.traffic(one, down=1000)
    return engine.tick()


def used(db, voucher_id) -> int:
    with Session(db) as s:
        return s.get(Voucher, voucher_id).online_seconds_used


def session_of(db, mac=PHONE_MAC) -> ClientSession:
    with Session(db) as s:
        return s.scalars(
            select(ClientSession).where(ClientSession.mac == mac).order_by(ClientSession.id.desc())
        ).first()


def expect(code: str, fn, *args, **kw):
    with pytest.raises(VoucherError) as err:
        fn(*args, **kw)
    assert err.value.code == code, err.value.message


# -- the clock -------------------------------------------------------------------------------


def test_monotonic_step_is_capped_and_starts_at_zero():
    m = Mono()
    s = MonotonicStep(6.0, m)
    assert s.step() == 0.0
    m.t += 2.5
    assert s.step() == 2.5
    m.t += 3600  # a stalled process: charged the cap, not the hour
    assert s.step() == 6.0
    m.t -= 10  # cannot happen with a monotonic clock; never negative anyway
    assert s.step() == 0.0


@pytest.mark.parametrize(
    "zone, name",
    [
        ("Asia/Jakarta", "WIB"),
        ("Asia/Pontianak", "WIB"),
        ("Asia/Makassar", "WITA"),
        ("Asia/Jayapura", "WIT"),
        ("Asia/Dili", "UTC+9"),  # tzdata says "+09": an offset, spelled readably
        ("Europe/Berlin", "CET"),
    ],
)
def test_zone_short_names(zone, name):
    at = dt.datetime(2026, 1, 15, 3, 0)
    assert zone_name(zoneinfo.ZoneInfo(zone), at) == name


# -- counting --------------------------------------------------------------------------------


def test_wall_clock_jumps_neither_burn_nor_extend_online_time(
    vouchers, batch, engine, datapath, clock, mono, db
):
    code = batch("jam", 1)[0]
    done = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    assert done.online_seconds_left == 3600
    assert done.expires_at == clock.now + dt.timedelta(days=7)
    for _ in range(4):
        step(engine, clock, mono, datapath=datapath)
    # Three days forward on the wall clock (a bad RTC after a power cut), one tick later.
    clock.advance(days=3)
    step(engine, clock, mono, datapath=datapath)
    # An hour back (NTP corrects it), one tick later.
    clock.advance(hours=-1)
    report = step(engine, clock, mono, datapath=datapath)
    assert report.ended == []
    engine.tick(force_flush=True)
    assert used(db, done.voucher_id) == 6 * TICK  # six ticks of 30 s, nothing else
    info = engine.client(ip=PHONE_IP)["session"]
    assert info["state"] == "active"
    assert info["online_seconds_remaining"] == 3600 - 6 * TICK
    assert info["seconds_remaining"] == 3600 - 6 * TICK  # the nearer end of the two


def test_a_stalled_gateway_is_not_charged_for_the_time_it_did_not_look(
    vouchers, batch, engine, datapath, clock, mono, db
):
    done = vouchers.redeem(batch("jam", 1)[0], ip=PHONE_IP, mac=PHONE_MAC)
    step(engine, clock, mono, datapath=datapath)
    step(engine, clock, mono, seconds=1800, datapath=datapath)  # half an hour without a tick
    engine.tick(force_flush=True)
    assert used(db, done.voucher_id) == TICK + 3 * TICK  # the cap: three tick intervals


def test_idle_time_before_an_idle_timeout_is_given_back(
    vouchers, batch, engine, datapath, clock, mono, db
):
    done = vouchers.redeem(batch("jam", 1)[0], ip=PHONE_IP, mac=PHONE_MAC)
    for _ in range(4):
        step(engine, clock, mono, datapath=datapath)  # 2 minutes busy
    ended = []
    for _ in range(12):  # then quiet: premium idles out after 5 minutes
        ended += step(engine, clock, mono, traffic=False).ended
    assert [r for _, r in ended] == [EndReason.IDLE.value]
    engine.tick(force_flush=True)
    assert used(db, done.voucher_id) == 4 * TICK  # only the busy two minutes
    # The clock stays stopped while the device is away.
    for _ in range(5):
        step(engine, clock, mono, traffic=False)
    engine.tick(force_flush=True)
    assert used(db, done.voucher_id) == 4 * TICK


def test_a_phone_let_out_again_while_it_sits_idle_is_not_charged(
    vouchers, batch, engine, datapath, clock, mono, db
):
    """No retyping (item 2) lets a phone that idled out but stays on the LAN out again
    without the portal at its next request (here: a background one after every idle-out);
    sitting there idle must not burn its online time (before: each resumed session ran its
    clock until the next idle timeout, and a voucher with little time left ran out as used
    up while nobody used it)."""
    done = vouchers.redeem(batch("menit", 1)[0], ip=PHONE_IP, mac=PHONE_MAC)  # 2 minutes
    for _ in range(3):
        step(engine, clock, mono, datapath=datapath)  # 90 s busy: 30 s left
    datapath.portal_peers_at[PHONE_IP] = {PHONE_MAC}  # a request reaches the portal each time
    ends = []
    for _ in range(40):  # 20 minutes on the LAN, idle: idle-outs and resumes
        ends += [r for _, r in step(engine, clock, mono, traffic=False).ended]
    assert ends and set(ends) == {EndReason.IDLE.value}  # never used up while idle
    engine.tick(force_flush=True)
    assert used(db, done.voucher_id) == 3 * TICK
    with Session(db) as s:  # let out again without the portal at least once
        runs = s.scalars(select(ClientSession).where(ClientSession.mac == PHONE_MAC)).all()
    assert len(runs) >= 2 and {r.voucher_id for r in runs} == {done.voucher_id}


def test_used_up_online_time_ends_the_session_and_refuses_the_code(
    vouchers, batch, engine, datapath, clock, mono, db, phone
):
    code = batch("menit", 1)[0]
    done = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    ended = []
    for _ in range(5):
        ended += step(engine, clock, mono, datapath=datapath).ended
    # Two minutes = four ticks: the fourth tick ends it, as used up (EndReason.QUOTA).
    assert [r for _, r in ended] == [EndReason.QUOTA.value]
    assert session_of(db).end_reason is EndReason.QUOTA
    assert (PHONE_IP, PHONE_MAC) not in datapath.state.authorized
    assert used(db, done.voucher_id) == 120
    expect(ErrorCode.VOUCHER_TIME_USED, vouchers.redeem, code, ip=PHONE_IP, mac=PHONE_MAC)
    page = phone.form("/voucher", {"code": code})
    assert page.status_code == 410
    assert "Waktu online voucher ini sudah habis" in page.get_data(as_text=True)


def test_the_validity_window_ends_the_session_as_expired(
    vouchers, batch, engine, datapath, clock, mono, db
):
    code = batch("menit", 1)[0]  # valid one day
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    step(engine, clock, mono, datapath=datapath)
    clock.advance(days=1)
    report = step(engine, clock, mono, datapath=datapath)
    assert [r for _, r in report.ended] == [EndReason.SESSION.value]
    expect(ErrorCode.VOUCHER_EXPIRED, vouchers.redeem, code, ip=PHONE_IP, mac=PHONE_MAC)


def test_a_device_coming_back_continues_with_the_time_left(
    vouchers, batch, engine, datapath, clock, mono, db, gw
):
    code = batch("jam", 1)[0]
    done = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    for _ in range(4):
        step(engine, clock, mono, datapath=datapath)
    gw.call("deauthorize", mac=PHONE_MAC, reason="logout")  # leaves
    for _ in range(10):  # away for five minutes: nothing counts
        step(engine, clock, mono, traffic=False)
    again = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    assert again.voucher_id == done.voucher_id and not again.first_use
    engine.tick(force_flush=True)
    assert gw.call("client", ip=PHONE_IP)["session"]["online_seconds_remaining"] == 3600 - 120


def test_devices_of_one_voucher_share_one_clock(vouchers, batch, engine, datapath, clock, mono, db):
    code = batch("keluarga-jam", 1)[0]
    done = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    vouchers.redeem(code, ip=OTHER_IP, mac=OTHER_MAC)
    for _ in range(4):
        step(engine, clock, mono, datapath=datapath, ip=[PHONE_IP, OTHER_IP])
    engine.tick(force_flush=True)
    assert used(db, done.voucher_id) == 4 * TICK  # once per voucher, not per device


def test_used_seconds_survive_a_restart_and_a_power_cut_loses_at_most_a_flush(
    vouchers, batch, cfg, engine, datapath, clock, mono, db
):
    done = vouchers.redeem(batch("jam", 1)[0], ip=PHONE_IP, mac=PHONE_MAC)
    for _ in range(3):
        step(engine, clock, mono, datapath=datapath)  # 90 s: flush_seconds (60) not yet due
    assert used(db, done.voucher_id) == 0  # still in memory
    engine.tick(force_flush=True)
    assert used(db, done.voucher_id) == 90
    step(engine, clock, mono, datapath=datapath)  # counted, not written: the power goes off
    # A new gateway process (a new monotonic clock too) picks the session up.
    mono2 = Mono()
    again = SessionEngine(cfg, db, datapath, clock=clock, monotonic=mono2)
    again.start()
    assert used(db, done.voucher_id) == 90  # the last 30 s were lost, in the villager's favour
    assert again.client(ip=PHONE_IP)["session"]["online_seconds_remaining"] == 3600 - 90
    for _ in range(2):
        step(again, clock, mono2, datapath=datapath)
    again.tick(force_flush=True)
    assert used(db, done.voucher_id) == 90 + 2 * TICK


# -- top-ups ---------------------------------------------------------------------------------


def test_online_time_tops_up_online_time(vouchers, batch, engine, datapath, clock, mono, db):
    first, second = batch("jam", 2)
    one = vouchers.redeem(first, ip=PHONE_IP, mac=PHONE_MAC)
    for _ in range(4):
        step(engine, clock, mono, datapath=datapath)
    engine.tick(force_flush=True)
    clock.advance(days=2)  # within the first one's 7 days
    two = vouchers.redeem(second, ip=PHONE_IP, mac=PHONE_MAC)
    assert two.topped_up == one.voucher_id
    assert two.online_seconds_left == 3600 + 3600 - 120  # the rest of the first comes along
    assert two.expires_at == clock.now + dt.timedelta(days=7)  # the later of the two ends
    assert two.bytes_limit == 500 * MB * 2 - used_bytes(db, one.voucher_id)


def used_bytes(db, voucher_id):
    with Session(db) as s:
        return sum(
            r.bytes_down + r.bytes_up
            for r in s.scalars(select(ClientSession).where(ClientSession.voucher_id == voucher_id))
        )


def test_hours_and_online_time_do_not_mix(vouchers, batch, engine, db, phone):
    hours_code = batch("harian", 1)[0]
    online_code = batch("jam", 1)[0]
    vouchers.redeem(hours_code, ip=PHONE_IP, mac=PHONE_MAC)
    expect(ErrorCode.VOUCHER_TOPUP_MIXED, vouchers.redeem, online_code, ip=PHONE_IP, mac=PHONE_MAC)
    with Session(db) as s:  # nothing lost: the code is still new, the running one runs
        states = dict(
            s.execute(select(Voucher.serial + Voucher.batch_id * 1000, Voucher.state)).all()
        )
    assert sorted(states.values()) == ["active", "new"]
    page = phone.form("/voucher", {"code": online_code})
    assert page.status_code == 409 and "Putuskan dulu" in page.get_data(as_text=True)
    # After a disconnect the online-time code is used on its own.
    phone.form("/logout", {})
    done = vouchers.redeem(online_code, ip=PHONE_IP, mac=PHONE_MAC)
    assert done.first_use and done.topped_up is None and done.online_seconds_left == 3600


# -- packages --------------------------------------------------------------------------------


def test_a_package_has_hours_or_online_time(cfg):
    tiers = list(cfg.tiers)
    base = {"name": "jam2", "title": "Jam", "price": 1000, "tier": "premium"}
    clean = check_package({**base, "online_minutes": 90, "valid_days": 3}, tiers)
    assert (clean["online_minutes"], clean["valid_days"], clean["hours"]) == (90, 3, 72)
    clean = check_package({**base, "hours": 5, "valid_days": 3}, tiers)
    assert clean["online_minutes"] is None and clean["valid_days"] is None
    for bad, field in (
        ({"online_minutes": 90}, "valid_days"),
        ({"online_minutes": 90, "valid_days": 0}, "valid_days"),
        ({"online_minutes": -5, "valid_days": 3}, "online_minutes"),
        ({"online_minutes": "60", "valid_days": 3}, "online_minutes"),
        ({"online_minutes": 600_000, "valid_days": 3}, "online_minutes"),
        ({}, "hours"),
    ):
        with pytest.raises(PackageError) as err:
            check_package({**base, **bad}, tiers)
        assert err.value.field == field


def test_config_file_online_packages(tmp_path):
    over = device_overrides(tmp_path)
    loaded = config_mod.load(overrides={**over, "packages": {"jam": ONLINE["jam"]}})
    pkg = loaded.packages["jam"]
    assert (pkg.online_minutes, pkg.valid_days, pkg.hours) == (60, 7, 168)
    for bad in (
        {**ONLINE["jam"], "hours": 5},
        {k: v for k, v in ONLINE["jam"].items() if k != "valid_days"},
        {**ONLINE["jam"], "online_minutes": 0},
    ):
        with pytest.raises(ConfigError):
            config_mod.load(overrides={**over, "packages": {"jam": bad}})


def test_batches_copy_the_online_terms(db, batch, packages):
    batch("jam", 1)
    with Session(db) as s:
        b = s.scalars(select(VoucherBatch).where(VoucherBatch.package_name == "jam")).one()
        assert (b.online_minutes, b.valid_days, b.hours) == (60, 7, 168)
        # A later change of the package does not alter the batch.
        pkg = s.scalars(select(Package).where(Package.name == "jam")).one()
        pkg.online_minutes = 30
        s.commit()
        assert s.get(VoucherBatch, b.id).online_minutes == 60


def test_console_package_saved_online(db, cfg):
    actor = Actor("admin", role="admin")
    pid = save_package(
        db,
        {
            "name": "sejam",
            "title": "Sejam",
            "price": 3000,
            "tier": "premium",
            "online_minutes": 60,
            "valid_days": 2,
        },
        tiers=list(cfg.tiers),
        actor=actor,
    )
    with Session(db) as s:
        p = s.get(Package, pid)
        assert (p.online_minutes, p.valid_days, p.hours) == (60, 2, 48)


# -- what the villager sees ------------------------------------------------------------------


def test_status_page_shows_online_time_data_and_validity_in_wib(
    vouchers, batch, engine, datapath, clock, mono, phone
):
    code = batch("jam", 1)[0]
    resp = phone.form("/voucher", {"code": code})
    assert resp.status_code == 303
    ok = phone.get(resp.headers["Location"]).get_data(as_text=True)
    assert "1 jam waktu online" in ok and "5 Des 2026 10.00 WIB" in ok
    for _ in range(4):
        step(engine, clock, mono, datapath=datapath)
    page = phone.get("/").get_data(as_text=True)
    assert "Sisa waktu online" in page and "58 menit" in page
    assert "Sisa kuota" in page and "500 MB" in page
    assert "Berlaku sampai" in page and "5 Des 2026 10.00 WIB" in page
    assert "Asia/Jakarta" not in page
    en = phone.get("/?lang=en").get_data(as_text=True)
    assert "Online time left" in en and "Valid until" in en and "5 Dec 2026 10:00 WIB" in en


def test_price_list_shows_online_terms(phone, packages):
    page = phone.get("/").get_data(as_text=True)
    assert "1 jam online, berlaku 7 hari" in page
