"""Issue #13 item 2, no retyping: a device that comes back while its voucher (or today's free
allowance) still runs is let out again — the same MAC by the gateway when it sees it on the
LAN, without the portal; a new random MAC with one tap on the splash (its device cookie).
The real engine on the fake data path, a frozen clock.

The gateway resumes a device on a sign of use, not of presence: its frames reaching the
portal (the kernel's ``portal_peers`` set: a walled phone's plain HTTP — the OS's connectivity
probe, a page opened — is redirected there), its neighbour entry agreeing. The fake data path
keeps both until a test removes them. So "the phone left" removes them, "it is back" puts
both back (the phone opens something), and "it is on the WiFi, unused" is the neighbour
entry alone."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from gateway.engine import SessionEngine
from hotspot import config as config_mod
from hotspot.config import ConfigError
from hotspot.identity import DeviceIdentities
from hotspot.model import ClientSession, EndReason, Source
from hotspot.units import MB
from hotspot.vouchers.errors import VoucherError
from hotspot.vouchers.packages import check_package
from hotspot.vouchers.redemption import RESUME_QUIET_SECONDS, held_voucher
from hotspot.vouchers.withdrawal import void_voucher
from tests.unit.conftest import device_overrides
from tests.unit.fakes import FakeDataPath
from tests.unit.portal.conftest import (
    OTHER_IP,
    OTHER_MAC,
    PACKAGES,
    PHONE_IP,
    PHONE_MAC,
    portal_overrides,
)

NEW_MAC, NEW_IP = "02:00:00:00:0b:01", "10.10.0.60"  # the phone after MAC randomisation
DAY = dt.date(2026, 11, 28)


def retyping_overrides(tmp_path, **portal):
    """The portal tests' overrides, with premium idling out after 10 minutes and a package
    that does not resume."""
    return {
        **portal_overrides(tmp_path, **portal),
        "tiers": {"premium": {"idle_minutes": 10}},
        "packages": {
            **PACKAGES,
            "sekali": {"title": "Sekali", "price": 3000, "tier": "premium", "hours": 24,
                       "auto_resume": False},
        },
    }  # fmt: skip


@pytest.fixture
def cfg(tmp_path):
    """The portal tests' configuration, with an idle timeout on premium and a package that
    does not resume."""
    return config_mod.load(overrides=retyping_overrides(tmp_path))


def text(resp):
    return resp.get_data(as_text=True)


def session_of(gw, ip):
    return gw.call("client", ip=ip)["session"]


def leave(datapath, ip=PHONE_IP):
    datapath.neighbours.pop(ip, None)
    datapath.portal_peers_at.pop(ip, None)


def on_the_wifi(datapath, ip=PHONE_IP, mac=PHONE_MAC):
    """Associated (it answers ARP) but nobody uses it: a neighbour entry, no request."""
    datapath.neighbours[ip] = mac


def come_back(datapath, ip=PHONE_IP, mac=PHONE_MAC):
    """Back and used: its first request (a captive probe, a page) reached the portal."""
    datapath.neighbours[ip] = mac
    datapath.portal_peers_at[ip] = {mac}


def redeem_then_idle(vouchers, engine, datapath, clock, code, ip=PHONE_IP, mac=PHONE_MAC):
    """Redeem on the phone, which then leaves: its session idles out (10 minutes)."""
    vouchers.redeem(code, ip=ip, mac=mac)
    leave(datapath, ip)
    clock.advance(minutes=11)
    report = engine.tick()
    assert any(reason == EndReason.IDLE.value for _, reason in report.ended)


# -- the same MAC: the gateway, no portal ------------------------------------------------------


def test_returning_mac_with_a_running_voucher_is_let_out_when_seen(
    vouchers, batch, engine, datapath, clock, gw
):
    code = batch()[0]
    redeem_then_idle(vouchers, engine, datapath, clock, code)
    assert PHONE_MAC in engine.resumable
    engine.tick()
    assert session_of(gw, PHONE_IP) is None  # not back yet
    come_back(datapath)
    engine.tick()
    sess = session_of(gw, PHONE_IP)
    assert sess["source"] == "voucher" and sess["tier"] == "premium"
    assert sess["expires_at"] == "2026-11-29T03:00:00Z"  # the voucher's end, not a new day
    assert (PHONE_IP, PHONE_MAC) in datapath.state.authorized
    assert PHONE_MAC not in engine.resumable  # running again: nothing to resume


def test_returning_at_a_new_address_is_let_out_there(vouchers, batch, engine, datapath, clock, gw):
    redeem_then_idle(vouchers, engine, datapath, clock, batch()[0])
    come_back(datapath, ip="10.10.0.77")
    engine.tick()
    assert session_of(gw, "10.10.0.77")["mac"] == PHONE_MAC


@pytest.mark.parametrize("how", ["time over", "data used up", "cancelled", "moved", "blocked"])
def test_no_resume_when_the_voucher_no_longer_allows_it(
    how, vouchers, batch, engine, datapath, clock, gw, db
):
    code = batch()[0]
    redeem_then_idle(vouchers, engine, datapath, clock, code)
    voucher_id = engine.resumable[PHONE_MAC].voucher_id
    if how == "time over":
        clock.advance(hours=24)
    elif how == "data used up":  # harian: 1000 MB
        with db.begin() as conn:
            conn.execute(
                update(ClientSession)
                .where(ClientSession.voucher_id == voucher_id)
                .values(bytes_down=1000 * MB)
            )
    elif how == "cancelled":
        assert void_voucher(db, voucher_id, "lost", clock=clock)
    elif how == "moved":  # the owner gone for the takeover time, another phone took it
        clock.advance(hours=13)
        vouchers.redeem(code, ip=OTHER_IP, mac=OTHER_MAC)
    elif how == "blocked":
        engine.block(mac=PHONE_MAC, reason="abuse")
    come_back(datapath)
    engine.tick()
    assert session_of(gw, PHONE_IP) is None
    assert (PHONE_IP, PHONE_MAC) not in datapath.state.authorized
    assert PHONE_MAC not in engine.resumable  # forgotten: no database question next tick


@pytest.mark.parametrize("reason", [EndReason.KICK, EndReason.LOGOUT])
def test_a_kick_or_logout_ends_the_auto_resume_until_the_next_login(
    reason, vouchers, batch, engine, datapath, clock, gw
):
    code = batch()[0]
    redeem_then_idle(vouchers, engine, datapath, clock, code)
    come_back(datapath)
    engine.tick()
    engine.deauthorize(mac=PHONE_MAC, reason=reason)  # the operator (or the villager)
    assert PHONE_MAC not in engine.resumable
    for _ in range(3):
        clock.advance(minutes=5)
        engine.tick()
        assert session_of(gw, PHONE_IP) is None  # still on the LAN: not let out again
    # The villager logs in again (the code): from then on, auto-resume again.
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    leave(datapath)
    clock.advance(minutes=11)
    engine.tick()
    come_back(datapath)
    engine.tick()
    assert session_of(gw, PHONE_IP)["source"] == "voucher"


def test_package_without_auto_resume_goes_through_the_portal(
    vouchers, batch, engine, datapath, clock, gw, db, phone
):
    code = batch("sekali", 1)[0]
    redeem_then_idle(vouchers, engine, datapath, clock, code)
    come_back(datapath)
    engine.tick()
    assert session_of(gw, PHONE_IP) is None
    page = text(phone.get("/"))
    assert "Lanjutkan paket" not in page and 'id="code"' in page  # type the code again
    assert phone.form("/voucher", {"code": code}).status_code == 303


def test_resumable_devices_survive_a_restart(vouchers, batch, engine, datapath, clock, gw, cfg, db):
    redeem_then_idle(vouchers, engine, datapath, clock, batch()[0])
    kicked = batch()[0]
    vouchers.redeem(kicked, ip=OTHER_IP, mac=OTHER_MAC)
    engine.deauthorize(mac=OTHER_MAC, reason=EndReason.KICK)
    fresh = FakeDataPath()  # after a reboot; both phones open something
    come_back(fresh)
    come_back(fresh, OTHER_IP, OTHER_MAC)
    again = SessionEngine(cfg, db, fresh, clock=clock)
    again.start()
    assert set(again.resumable) == {PHONE_MAC}  # the kicked one stays kicked
    again.tick()
    assert (PHONE_IP, PHONE_MAC) in fresh.state.authorized
    assert (OTHER_IP, OTHER_MAC) not in fresh.state.authorized


def test_a_tick_asks_nothing_when_nobody_may_resume(engine, datapath, monkeypatch):
    calls = []
    monkeypatch.setattr(datapath, "neighbour_table", lambda: calls.append("dump") or {})
    monkeypatch.setattr(datapath, "portal_peers", lambda: calls.append("peers") or {})
    engine.tick()
    assert calls == []  # no trusted devices, nobody resumable: no listing, no neighbour dump


def test_one_neighbour_dump_per_tick_for_trusted_and_returning_devices(
    vouchers, batch, engine, datapath, clock, gw, monkeypatch
):
    redeem_then_idle(vouchers, engine, datapath, clock, batch()[0])
    engine.trust(mac=OTHER_MAC, label="kantor desa", tier="premium")  # not on the LAN yet
    come_back(datapath)
    dumps = []
    table = datapath.neighbour_table
    monkeypatch.setattr(datapath, "neighbour_table", lambda: dumps.append(1) or table())
    engine.tick()
    assert len(dumps) == 1  # both looked, one dump
    assert session_of(gw, PHONE_IP)["source"] == "voucher"


def test_resumable_but_unused_costs_no_neighbour_dump(
    vouchers, batch, engine, datapath, clock, monkeypatch
):
    redeem_then_idle(vouchers, engine, datapath, clock, batch()[0])
    on_the_wifi(datapath)
    dumps = []
    monkeypatch.setattr(datapath, "neighbour_table", lambda: dumps.append(1) or {})
    for _ in range(3):
        engine.tick()
    assert dumps == [] and PHONE_MAC in engine.resumable  # a small listing only; still waiting


@pytest.mark.parametrize("where", ["another MAC at the address", "the neighbour disagrees"])
def test_attack_a_spoofed_request_does_not_resume_a_contested_address(
    where, vouchers, batch, engine, datapath, clock, gw
):
    """A hostile villager sends a request with the returning phone's MAC from an address the
    neighbour table gives to another device, or shares the address with it: nothing resumes
    there until the address has one owner again."""
    redeem_then_idle(vouchers, engine, datapath, clock, batch()[0])
    come_back(datapath)
    if where == "another MAC at the address":
        datapath.portal_peers_at[PHONE_IP].add(OTHER_MAC)
    else:
        datapath.neighbours[PHONE_IP] = OTHER_MAC
    engine.tick()
    assert session_of(gw, PHONE_IP) is None and PHONE_MAC in engine.resumable
    come_back(datapath)  # the address is the phone's alone again
    engine.tick()
    assert session_of(gw, PHONE_IP)["mac"] == PHONE_MAC


# -- the free tier: the terms once a day -------------------------------------------------------


def accept_then_idle(engine, datapath, clock, ip=PHONE_IP, mac=PHONE_MAC):
    engine.authorize(ip=ip, mac=mac, tier="free", source=Source.FREE)
    leave(datapath, ip)
    clock.advance(minutes=11)  # free: 10 minutes idle
    engine.tick()


def test_free_tier_accepted_today_resumes_the_same_day_only(engine, datapath, clock, gw):
    accept_then_idle(engine, datapath, clock)  # 10.00 WIB
    come_back(datapath)
    engine.tick()
    sess = session_of(gw, PHONE_IP)
    assert sess["source"] == "free" and sess["tier"] == "free"
    # It leaves again, and comes back after midnight (WIB): the terms again.
    leave(datapath)
    clock.advance(minutes=11)
    engine.tick()
    clock.advance(hours=14)  # 00.22 WIB the next day
    come_back(datapath)
    engine.tick()
    assert session_of(gw, PHONE_IP) is None
    assert PHONE_MAC not in engine.resumable


def test_free_tier_used_up_is_not_resumed(engine, datapath, clock, gw):
    accept_then_idle(engine, datapath, clock)
    come_back(datapath)
    engine.tick()
    datapath.traffic(PHONE_IP, down=301 * MB, packets=1000)  # more than the day's 300 MB
    engine.tick(force_flush=True)
    assert session_of(gw, PHONE_IP) is None  # ended: quota
    engine.tick()
    assert session_of(gw, PHONE_IP) is None and PHONE_MAC not in engine.resumable


def test_free_remember_never_asks_the_terms_every_time(tmp_path, db, clock, phone):
    cfg = config_mod.load(overrides=retyping_overrides(tmp_path, free_remember_acceptance="never"))
    datapath = FakeDataPath()
    eng = SessionEngine(cfg, db, datapath, clock=clock)
    eng.start()
    accept_then_idle(eng, datapath, clock)
    come_back(datapath)
    eng.tick()
    assert not eng.resumable and (PHONE_IP, PHONE_MAC) not in datapath.state.authorized


def test_splash_after_accepting_today_is_one_tap_without_the_terms(
    app, phone, engine, datapath, clock, gw
):
    first = text(phone.get("/"))
    assert 'id="agree"' in first and 'id="free-again"' not in first
    assert phone.form("/accept").status_code == 303
    engine.deauthorize(ip=PHONE_IP, reason=EndReason.SESSION)  # the hour is over
    # The same phone under a new random MAC, its device cookie along: one tap, no terms.
    come_back(datapath, PHONE_IP, NEW_MAC)
    page = text(phone.get("/"))
    assert 'id="free-again"' in page and "Anda sudah menyetujui aturan" in page
    assert "Lanjutkan internet gratis" in page and 'id="agree"' not in page
    assert phone.form("/accept").status_code == 303
    assert session_of(gw, PHONE_IP)["mac"] == NEW_MAC
    # Tomorrow: the terms again.
    engine.deauthorize(ip=PHONE_IP, reason=EndReason.SESSION)
    clock.advance(days=1)
    page = text(phone.get("/"))
    assert 'id="free-again"' not in page and 'id="agree"' in page


def test_another_phone_is_not_told_it_accepted(app, phone, other_phone):
    assert phone.form("/accept").status_code == 303
    assert 'id="free-again"' not in text(other_phone.get("/"))


# -- a new random MAC: one tap, and the copied cookie -------------------------------------------


def test_new_mac_one_tap_shows_what_is_left(phone, batch, datapath, gw, clock):
    code = batch()[0]
    assert phone.form("/voucher", {"code": code}).status_code == 303
    clock.advance(hours=2)
    come_back(datapath, PHONE_IP, NEW_MAC)
    page = text(phone.get("/"))
    assert "Lanjutkan paket Anda (sisa 22 jam)" in page
    assert "Continue my package (22 hours left)" in text(phone.get("/?lang=en"))
    assert phone.form("/voucher/resume").status_code == 303
    assert session_of(gw, PHONE_IP)["mac"] == NEW_MAC


def test_attack_copied_cookie_while_the_owner_is_online(
    vouchers, batch, db, clock, gw, datapath, engine
):
    """A second phone with a copy of the owner's device cookie (read off the open WiFi):
    while the owner's phone still uses the voucher, one tap is refused; the owner's session
    is untouched. Once the owner's MAC has been quiet, it is the owner's own new MAC."""
    ids = DeviceIdentities(db)
    owner = ids.identify(PHONE_MAC, PHONE_IP, None, now=clock(), day=DAY).device_id
    vouchers.redeem(batch()[0], ip=PHONE_IP, mac=PHONE_MAC, device_id=owner)
    datapath.traffic(PHONE_IP, down=2 * MB)  # the owner is browsing
    clock.advance(seconds=5)
    engine.tick()
    come_back(datapath, NEW_IP, NEW_MAC)  # the copier
    ids.identify(NEW_MAC, NEW_IP, owner, now=clock(), day=DAY)
    with pytest.raises(VoucherError) as err:
        vouchers.resume(ip=NEW_IP, mac=NEW_MAC, device_id=owner)
    assert err.value.code == "voucher-used"
    assert session_of(gw, PHONE_IP)["mac"] == PHONE_MAC
    assert session_of(gw, NEW_IP) is None
    clock.advance(seconds=RESUME_QUIET_SECONDS + 1)  # the old MAC quiet: the phone moved
    engine.tick()
    assert vouchers.resume(ip=NEW_IP, mac=NEW_MAC, device_id=owner).moved_from == PHONE_MAC


def test_attack_forged_cookie_gets_the_normal_splash(phone, other_phone, batch, datapath, gw):
    assert phone.form("/voucher", {"code": batch()[0]}).status_code == 303
    other_phone.client.set_cookie("hotspot_device", "Zm9y.1764298800.forged", domain="10.10.0.1")
    page = text(other_phone.get("/"))
    assert "Lanjutkan paket" not in page
    assert other_phone.form("/voucher/resume").status_code in (400, 409)
    assert session_of(gw, OTHER_IP) is None


def test_run_out_voucher_shows_the_normal_splash(phone, batch, datapath, clock, db):
    assert phone.form("/voucher", {"code": batch()[0]}).status_code == 303
    clock.advance(hours=25)
    come_back(datapath, PHONE_IP, NEW_MAC)
    assert "Lanjutkan paket" not in text(phone.get("/"))


def test_held_voucher_skips_packages_without_auto_resume(vouchers, batch, db, clock):
    ids = DeviceIdentities(db)
    owner = ids.identify(PHONE_MAC, PHONE_IP, None, now=clock(), day=DAY).device_id
    vouchers.redeem(batch("sekali", 1)[0], ip=PHONE_IP, mac=PHONE_MAC, device_id=owner)
    assert held_voucher(db, owner, clock()) is None
    with pytest.raises(VoucherError):
        vouchers.resume(ip=NEW_IP, mac=NEW_MAC, device_id=owner)


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"packages": {"x": {"price": 1, "tier": "free", "hours": 1, "auto_resume": "yes"}}},
         "packages.x.auto_resume: must be true or false"),
        ({"portal": {"free_remember_acceptance": "week"}},
         "portal.free_remember_acceptance: 'week' is not a valid day or never"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        config_mod.load(overrides={**device_overrides(tmp_path), **overrides})
    assert str(err.value) == message


def test_defaults(tmp_path):
    cfg = config_mod.load(
        overrides={
            **device_overrides(tmp_path),
            "packages": {"x": {"price": 1, "tier": "free", "hours": 1}},
        }
    )
    assert cfg.portal.free_remember_acceptance == "day"
    assert cfg.packages["x"].auto_resume is True
    assert check_package({"name": "y", "price": 1, "tier": "free", "hours": 1}, ["free"])[
        "auto_resume"
    ]


def test_a_free_phone_that_stays_on_the_wifi_unused_keeps_its_day(engine, datapath, clock, gw):
    """Issue #13 item 2's defect: the phone stays associated (its neighbour entry, no
    request) for six hours: not let out again, so the day's free minutes stay; then the
    villager opens something → let out at once, no terms."""
    accept_then_idle(engine, datapath, clock)
    on_the_wifi(datapath)  # on the WiFi again, but nobody uses the phone
    for _ in range(6 * 36):  # six hours of ticks, no traffic at all
        clock.advance(minutes=1, seconds=40)
        engine.tick()
    assert session_of(gw, PHONE_IP) is None and PHONE_MAC in engine.resumable
    free = gw.call("client", ip=PHONE_IP, mac=PHONE_MAC)["allowance"]["free"]
    assert not free["exhausted"] and free["seconds_used"] <= 30 * 60
    come_back(datapath)  # picked up: the browser opens a page
    engine.tick()
    assert session_of(gw, PHONE_IP)["source"] == "free"


def test_a_request_from_before_the_idle_out_is_not_a_return(
    vouchers, batch, engine, datapath, clock, gw
):
    """The portal still remembers the phone's last request (its status page, 20 s before
    the session ended): that is not a sign it is used again; a request since is."""
    redeem_then_idle(vouchers, engine, datapath, clock, batch()[0])
    come_back(datapath)
    datapath.portal_peer_ages[(PHONE_IP, PHONE_MAC)] = 20.0
    engine.tick()
    assert session_of(gw, PHONE_IP) is None and PHONE_MAC in engine.resumable
    datapath.portal_peer_ages.clear()  # it opens a page now
    engine.tick()
    assert session_of(gw, PHONE_IP)["source"] == "voucher"


def test_an_unused_voucher_phone_is_not_let_out_either(
    vouchers, batch, engine, datapath, clock, gw
):
    redeem_then_idle(vouchers, engine, datapath, clock, batch()[0])
    on_the_wifi(datapath)
    for _ in range(5):
        clock.advance(minutes=11)
        engine.tick()
    assert session_of(gw, PHONE_IP) is None and PHONE_MAC in engine.resumable
    datapath.portal_peers_at[PHONE_IP] = {PHONE_MAC}  # its captive probe
    engine.tick()
    assert session_of(gw, PHONE_IP)["source"] == "voucher"
