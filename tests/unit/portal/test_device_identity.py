"""Issue #10 items 9-11: the device cookie that the free allowance and voucher ownership
follow, the cap on new free identities per address, voucher takeover, the per-address and
gateway-wide brakes on guessing, and the purge of attempt rows. Frozen clock throughout."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, insert, select

from hotspot import devicecookie
from hotspot.attempts import ATTEMPT_RETENTION, purge_attempts
from hotspot.identity import DeviceIdentities, macs_of, macs_of_running
from hotspot.model import RedeemAttempt, RedeemFailure, Source, VoucherMove
from hotspot.model_operator import LoginAttempt
from hotspot.units import MB
from hotspot.vouchers.errors import VoucherError
from hotspot.vouchers.redemption import (
    BIND_LEASE_SECONDS,
    TAKEOVER_SECONDS,
    BrakeScope,
    RateLimited,
    moved_away,
)
from portal.device_cookie import COOKIE, PURPOSE, sign, verify
from tests.unit.portal.conftest import OTHER_IP, OTHER_MAC, PHONE_IP, PHONE_MAC, Phone

DAY = dt.date(2026, 11, 28)
NEW_MAC = "02:00:00:00:0a:01"  # the phone after MAC randomisation
WRONG = "2345-6789-AB"


def text(resp):
    return resp.get_data(as_text=True)


def use_up(engine, datapath, ip):
    """The device at ``ip`` uses up its free allowance (300 MB a day)."""
    datapath.traffic(ip, down=301 * MB, packets=1000)
    engine.tick(force_flush=True)


def device_cookie(phone):
    cookie = phone.client.get_cookie(COOKIE, domain="10.10.0.1")
    return cookie.value if cookie else None


# -- the cookie ---------------------------------------------------------------------------------


def test_device_cookie_is_signed_and_not_the_mac():
    secret = b"s" * 32
    now = dt.datetime(2026, 11, 28, 3)
    days = dt.timedelta(days=400)
    value = sign(secret, "ab" * 16, now)
    assert "ab" * 16 not in value  # the id is encoded, not a readable prefix to swap
    assert verify(secret, value, days, now) == "ab" * 16
    assert verify(b"t" * 32, value, days, now) is None  # another gateway's
    made_up = sign(secret, "cd" * 16, now).split(".")[0]
    copied = value.split(".", 1)[1]
    assert verify(secret, f"{made_up}.{copied}", days, now) is None  # a copied tag
    assert verify(secret, PHONE_MAC, days, now) is None and verify(secret, "", days, now) is None
    assert verify(secret, value + ".x", days, now) is None
    assert verify(secret, value, days, now + days + dt.timedelta(seconds=1)) is None  # too old
    # Signed by the portal, but not a device id, or for another purpose: not a device cookie.
    assert verify(secret, devicecookie.issue(secret, PURPOSE, "budi", now), days, now) is None
    console = devicecookie.issue(secret, "operator-login", "ab" * 16, now)
    assert verify(secret, console, days, now) is None


def test_first_visit_gets_a_device_cookie_and_keeps_it(phone):
    phone.get("/")
    first = device_cookie(phone)
    assert first and PHONE_MAC.replace(":", "") not in first.lower()
    resp = phone.get("/status")
    assert COOKIE not in (resp.headers.get("Set-Cookie") or "")  # not re-issued
    assert device_cookie(phone) == first


# -- identities (the logic) ---------------------------------------------------------------------


def test_identity_rules(db, clock):
    ids = DeviceIdentities(db, new_per_address=3)
    kw = dict(now=clock(), day=DAY)
    first = ids.identify(PHONE_MAC, PHONE_IP, None, **kw)
    assert first.created and first.device_id
    # The same MAC with no cookie (a reinstalled browser), or another identity's cookie:
    # it keeps its identity for good.
    assert ids.identify(PHONE_MAC, PHONE_IP, None, **kw).device_id == first.device_id
    other = ids.identify(OTHER_MAC, OTHER_IP, None, **kw)
    assert ids.identify(PHONE_MAC, PHONE_IP, other.device_id, **kw).device_id == first.device_id
    # A new MAC with the cookie joins it (MAC randomisation).
    moved = ids.identify(NEW_MAC, "10.10.0.50", first.device_id, **kw)
    assert moved.device_id == first.device_id and not moved.created
    with db.connect() as conn:
        assert macs_of(conn, [NEW_MAC])[NEW_MAC] == {PHONE_MAC, NEW_MAC}
        assert macs_of(conn, ["02:00:00:00:0f:0f"])["02:00:00:00:0f:0f"] == {"02:00:00:00:0f:0f"}
    # A well-formed id the portal never made is no identity: a new one is made.
    forged = ids.identify("02:00:00:00:0b:01", "10.10.0.60", "ab" * 16, **kw)
    assert forged.created


def test_new_identities_per_address_are_capped(db, clock):
    ids = DeviceIdentities(db, new_per_address=3)
    made = [
        ids.identify(f"02:00:00:00:0c:{i:02x}", PHONE_IP, None, now=clock(), day=DAY)
        for i in range(3)
    ]
    assert all(m.created for m in made)
    fourth = ids.identify("02:00:00:00:0c:10", PHONE_IP, None, now=clock(), day=DAY)
    # It shares one of the address's identities of today (the newest; the frozen clock
    # makes them all equally new here), never a fresh one.
    assert fourth.capped and not fourth.created
    assert fourth.device_id in {m.device_id for m in made}
    # Another address is not affected; the next day the address may make new ones again.
    assert ids.identify("02:00:00:00:0c:11", OTHER_IP, None, now=clock(), day=DAY).created
    nxt = DAY + dt.timedelta(days=1)
    assert ids.identify("02:00:00:00:0c:12", PHONE_IP, None, now=clock(), day=nxt).created


def test_engine_counts_the_allowance_over_the_identity(db, engine, datapath, clock, gw):
    ids = DeviceIdentities(db)
    who = ids.identify(PHONE_MAC, PHONE_IP, None, now=clock(), day=DAY)
    gw.call("authorize", ip=PHONE_IP, tier="free", source="free")
    use_up(engine, datapath, PHONE_IP)
    # The same phone, new MAC, same address (its old lease): linked by its cookie.
    datapath.neighbours[PHONE_IP] = NEW_MAC
    ids.identify(NEW_MAC, PHONE_IP, who.device_id, now=clock(), day=DAY)
    assert gw.call("client", ip=PHONE_IP)["allowance"]["free"]["exhausted"]
    with pytest.raises(Exception) as err:
        gw.call("authorize", ip=PHONE_IP, tier="free", source="free")
    assert getattr(err.value, "code", None) == "quota-exhausted"


# -- the journey through the portal -------------------------------------------------------------


def test_attack_new_mac_with_cookie_gets_no_fresh_allowance(app, phone, engine, datapath):
    assert phone.form("/accept").status_code == 303
    use_up(engine, datapath, PHONE_IP)
    datapath.neighbours[PHONE_IP] = NEW_MAC  # `ip link set address`
    # The gateway has never seen this MAC: the splash (its cookie accepted today: one tap).
    assert "Lanjutkan internet gratis" in text(phone.get("/"))
    resp = phone.form("/accept")
    assert resp.status_code == 403 and "sudah habis" in text(resp)
    assert "sudah habis" in text(phone.get("/"))


def test_attack_rotating_macs_without_cookies_is_capped(app, engine, datapath, cfg):
    cap = cfg.portal.free_devices_per_address
    assert cap == 3
    for i in range(cap):
        datapath.neighbours[PHONE_IP] = f"02:00:00:00:0d:{i:02x}"
        laptop = Phone(app)  # cookies dropped
        assert laptop.form("/accept").status_code == 303, i
        use_up(engine, datapath, PHONE_IP)
    datapath.neighbours[PHONE_IP] = "02:00:00:00:0d:ff"
    laptop = Phone(app)
    resp = laptop.form("/accept")
    assert resp.status_code == 403 and "sudah habis" in text(resp)
    # An honest neighbour at another address is not affected.
    assert Phone(app, ip=OTHER_IP).form("/accept").status_code == 303


# -- voucher takeover ---------------------------------------------------------------------------


def test_owner_with_a_new_mac_keeps_the_voucher_at_once(vouchers, batch, db, clock, gw, datapath):
    ids = DeviceIdentities(db)
    owner = ids.identify(PHONE_MAC, PHONE_IP, None, now=clock(), day=DAY).device_id
    code = batch()[0]
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC, device_id=owner)
    # Seconds later the phone is back under a new MAC at a new address, with its cookie.
    datapath.neighbours["10.10.0.50"] = NEW_MAC
    ids.identify(NEW_MAC, "10.10.0.50", owner, now=clock(), day=DAY)
    done = vouchers.redeem(code, ip="10.10.0.50", mac=NEW_MAC, device_id=owner)
    assert done.moved_from == PHONE_MAC
    assert gw.call("client", ip=PHONE_IP)["session"] is None
    # Its own move is no news for the owner.
    since = clock() - dt.timedelta(days=1)
    assert moved_away(db, mac=PHONE_MAC, device_id=owner, since=since) is None


def test_thief_who_saw_the_code_cannot_take_it(vouchers, batch, db, clock, engine):
    code = batch()[0]
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC, device_id="aa" * 16)
    engine.deauthorize(ip=PHONE_IP, reason="logout")  # the owner went home
    for wait in (BIND_LEASE_SECONDS + 1, 180, 3600, TAKEOVER_SECONDS - 3600 - 300):
        clock.advance(seconds=wait)
        with pytest.raises(VoucherError) as err:
            vouchers.redeem(code, ip=OTHER_IP, mac=OTHER_MAC, device_id="bb" * 16)
        assert err.value.code == "voucher-used"
    clock.advance(seconds=300)  # the owner has been gone for the whole takeover time
    done = vouchers.redeem(code, ip=OTHER_IP, mac=OTHER_MAC, device_id="bb" * 16)
    assert done.moved_from == PHONE_MAC
    since = clock() - dt.timedelta(days=1)
    assert moved_away(db, mac=None, device_id="aa" * 16, since=since) == clock()
    assert moved_away(db, mac=PHONE_MAC, device_id=None, since=since) == clock()


def test_portal_takeover_journey(app, phone, other_phone, batch, datapath, clock, db):
    code = batch()[0]
    assert phone.form("/voucher", {"code": code}).status_code == 303  # the owner
    resp = other_phone.form("/voucher", {"code": code})  # saw it over a shoulder
    assert resp.status_code == 409 and "Kode ini sedang dipakai perangkat lain" in text(resp)
    resp = other_phone.form("/voucher?lang=en", {"code": code}, page="/?lang=en")
    assert "This code is being used by another device" in text(resp)
    # The owner's phone changes its MAC: one tap with its cookie, and it works again.
    datapath.neighbours[PHONE_IP] = NEW_MAC
    assert phone.form("/voucher", {"code": code}).status_code == 303
    assert "Voucher Anda dipindahkan" not in text(phone.get("/"))
    # Twelve hours later (22.01 WIB), the owner gone, the other device may have it; the owner is told.
    clock.advance(seconds=TAKEOVER_SECONDS + 60)
    assert other_phone.form("/voucher", {"code": code}).status_code == 303
    datapath.neighbours[PHONE_IP] = NEW_MAC
    page = text(phone.get("/"))
    assert "Voucher Anda dipindahkan ke perangkat lain pada pukul 22.01 WIB" in page
    assert "Your voucher was moved to another device at 22:01 WIB" in text(phone.get("/?lang=en"))
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(VoucherMove)).scalar() == 2


# -- the brakes on guessing ---------------------------------------------------------------------


def test_address_brake_holds_across_rotating_macs(vouchers, clock):
    limit = vouchers.address_attempts
    for i in range(limit):
        with pytest.raises(VoucherError):
            vouchers.redeem(WRONG, ip=PHONE_IP, mac=f"02:00:00:00:e0:{i:02x}")
        clock.advance(seconds=1)
    with pytest.raises(RateLimited) as err:
        vouchers.redeem(WRONG, ip=PHONE_IP, mac="02:00:00:00:e1:01")
    assert err.value.scope is BrakeScope.ADDRESS
    assert err.value.retry_after == 600 - limit  # when the first of them leaves the window
    # Another address is not braked; the window slides: one more try when the oldest ages out.
    with pytest.raises(VoucherError) as other:
        vouchers.redeem(WRONG, ip=OTHER_IP, mac=OTHER_MAC)
    assert other.value.code == "voucher-unknown"
    clock.advance(seconds=600 - limit)
    with pytest.raises(VoucherError) as again:
        vouchers.redeem(WRONG, ip=PHONE_IP, mac="02:00:00:00:e1:02")
    assert again.value.code == "voucher-unknown"
    with pytest.raises(RateLimited):
        vouchers.redeem(WRONG, ip=PHONE_IP, mac="02:00:00:00:e1:03")


def test_gateway_wide_ceiling_is_short(vouchers, batch, clock, datapath):
    good = batch()[0]
    limit = vouchers.gateway_attempts
    for i in range(limit):
        with pytest.raises(VoucherError):
            vouchers.redeem(WRONG, ip=f"10.10.2.{i + 1}", mac=f"02:00:00:00:f0:{i:02x}")
    with pytest.raises(RateLimited) as err:  # an honest phone with a good code waits too …
        vouchers.redeem(good, ip=PHONE_IP, mac=PHONE_MAC)
    assert err.value.scope is BrakeScope.GATEWAY and err.value.retry_after <= 60
    clock.advance(seconds=err.value.retry_after)  # … but not for more than a minute
    assert vouchers.redeem(good, ip=PHONE_IP, mac=PHONE_MAC).first_use


def test_attack_200_guesses_rotating_macs_on_one_address(app, datapath, batch, cfg):
    """Process level: the portal app, its database and the gateway engine; the attacker
    changes its MAC before every guess (the old brake was per MAC: ~90 tries/s went
    through)."""
    batch()  # some real codes exist
    outcomes = []
    for i in range(200):
        datapath.neighbours[PHONE_IP] = f"02:00:00:01:{i // 256:02x}:{i % 256:02x}"
        attacker = Phone(app)
        outcomes.append(attacker.form("/voucher", {"code": f"2345-6789-{i % 900:03d}"[:12]}))
    statuses = [r.status_code for r in outcomes]
    limit = cfg.portal.voucher_address_attempts
    assert statuses[:limit] == [400] * limit
    assert set(statuses[limit:]) == {429}
    assert "Retry-After" in outcomes[-1].headers


def test_attack_guesses_from_many_addresses_hit_the_ceiling(app, datapath, batch, cfg, clock):
    good = batch()[0]
    statuses = []
    for i in range(100):
        ip = f"10.10.{2 + i // 200}.{i % 200 + 1}"
        datapath.neighbours[ip] = f"02:00:00:02:00:{i:02x}"
        statuses.append(Phone(app, ip=ip).form("/voucher", {"code": WRONG}).status_code)
    limit = cfg.portal.voucher_gateway_attempts
    assert statuses[:limit] == [400] * limit and set(statuses[limit:]) == {429}
    # What a villager with a card just bought sees meanwhile: a short, honest wait.
    resp = Phone(app).form("/voucher", {"code": good})
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) <= 60
    assert "terlalu banyak kode salah" in text(resp).lower()
    clock.advance(seconds=61)
    assert Phone(app).form("/voucher", {"code": good}).status_code == 303


# -- the purge ----------------------------------------------------------------------------------


def test_old_attempt_rows_are_purged(db, clock):
    now = clock()
    old = now - ATTEMPT_RETENTION - dt.timedelta(minutes=1)
    fresh = now - dt.timedelta(hours=1)
    with db.begin() as conn:
        conn.execute(insert(RedeemFailure), [{"at": old, "ip": PHONE_IP, "mac": PHONE_MAC}] * 3)
        conn.execute(insert(RedeemFailure).values(at=fresh, ip=PHONE_IP, mac=PHONE_MAC))
        conn.execute(
            insert(RedeemAttempt),
            [
                {"client": PHONE_MAC, "window_start": old, "failures": 1, "blocked_until": None},
                {"client": OTHER_MAC, "window_start": fresh, "failures": 2, "blocked_until": None},
                # still braked (a long cool-down): kept
                {
                    "client": "02:00:00:00:00:09",
                    "window_start": old,
                    "failures": 0,
                    "blocked_until": now + dt.timedelta(hours=1),
                },
            ],
        )
        conn.execute(
            insert(LoginAttempt),
            [
                {"key": "ip:10.10.0.11", "window_start": old, "failures": 3},
                {"key": "op:siti", "window_start": fresh, "failures": 1},
            ],
        )
    purged = purge_attempts(db, clock=clock)
    assert (purged.redeem_failures, purged.redeem_attempts, purged.login_attempts) == (3, 1, 1)
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RedeemFailure)).scalar() == 1
        assert set(conn.execute(select(RedeemAttempt.client)).scalars()) == {
            OTHER_MAC,
            "02:00:00:00:00:09",
        }
        assert list(conn.execute(select(LoginAttempt.key)).scalars()) == ["op:siti"]
    assert purge_attempts(db, clock=clock).total == 0


def test_daemon_purges_beside_the_stock_expiry(cfg, db, clock):
    from gateway.daemon import Gateway

    daemon = Gateway(cfg, clock=clock, clock_synced=lambda: True)
    daemon.db = db
    old = clock() - ATTEMPT_RETENTION - dt.timedelta(seconds=1)
    with db.begin() as conn:
        conn.execute(insert(RedeemFailure).values(at=old, ip=PHONE_IP, mac=PHONE_MAC))
    daemon.expire_stock(now=1000.0)
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RedeemFailure)).scalar() == 0


def test_owner_reconnects_with_one_tap_after_a_mac_change(phone, other_phone, batch, datapath, gw):
    code = batch()[0]
    assert phone.form("/voucher", {"code": code}).status_code == 303
    datapath.neighbours[PHONE_IP] = NEW_MAC  # the phone randomised its MAC
    page = text(phone.get("/"))
    assert "Lanjutkan paket Anda (sisa 1 hari)" in page and "Harian" in page
    assert phone.form("/voucher/resume").status_code == 303  # no code typed
    sess = gw.call("client", ip=PHONE_IP)["session"]
    assert sess["mac"] == NEW_MAC and sess["source"] == "voucher"
    # Someone else has nothing to resume: no button, and a direct POST does nothing.
    assert "Lanjutkan paket" not in text(other_phone.get("/"))
    resp = other_phone.form("/voucher/resume")
    assert resp.status_code in (400, 409)
    assert gw.call("client", ip=OTHER_IP)["session"] is None


def test_the_ticks_identity_groups_are_what_macs_of_gives(db, clock, engine):
    # The tick reads every running device's identity group in one statement (no IN of
    # 10,000 MACs): for every MAC with a running session, the same groups as macs_of.
    ids = DeviceIdentities(db, new_per_address=3)
    kw = dict(now=clock(), day=DAY)
    first = ids.identify(PHONE_MAC, PHONE_IP, None, **kw)
    ids.identify(NEW_MAC, "10.10.0.50", first.device_id, **kw)  # the same phone, new MAC
    ids.identify(OTHER_MAC, OTHER_IP, None, **kw)
    lone = "02:00:00:00:0f:0f"  # a MAC with no identity
    for mac, ip in ((NEW_MAC, "10.10.0.50"), (OTHER_MAC, OTHER_IP), (lone, "10.10.0.60")):
        engine.authorize(ip=ip, mac=mac, tier="free", source=Source.FREE)
    running = {NEW_MAC, OTHER_MAC, lone}
    with db.connect() as conn:
        groups = macs_of_running(conn, running)
        assert groups == macs_of(conn, running)
        assert groups[NEW_MAC] == {PHONE_MAC, NEW_MAC}  # PHONE_MAC not running: still its group
        assert groups[lone] == {lone} and set(groups) == running
