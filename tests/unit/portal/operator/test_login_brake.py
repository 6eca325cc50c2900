"""Issue #10.13: wrong passwords from the open WiFi cannot lock the console's accounts.

The attack: a teenager on the open SSID sends wrong passwords for ``admin`` (``budi``) from
ever new addresses; before, five of them locked the account for 15 minutes. Now each
(account, address) waits longer and longer, the gateway caps guessing from untrusted places
as a whole, and the kiosk — a device that logged in before, or the management network —
still gets in with the right password.
"""

from __future__ import annotations

import datetime as dt

import pytest

from hotspot import devicecookie, operators
from tests.unit.portal.operator.conftest import ADMIN_PW, KIOSK_IP, Console, text

MANAGEMENT = "192.168.88.0/24"


@pytest.fixture
def managed(cfg):
    object.__setattr__(cfg.operator, "management_networks", (MANAGEMENT,))
    return cfg


def flood(app, n=50, name="budi"):
    """n wrong passwords for ``name``, each from another LAN address."""
    statuses = []
    for i in range(n):
        c = Console(app, ip=f"10.10.1.{10 + i}")
        r = c.form("/operator/login", {"name": name, "password": f"tebak-{i}-salah"})
        statuses.append(r.status_code)
    return statuses


def test_fifty_wrong_passwords_do_not_lock_out_the_kiosk(app, accounts, managed):
    kiosk = Console(app, ip=KIOSK_IP)
    kiosk.login("budi", ADMIN_PW)  # the kiosk logged in before: it has the device cookie
    kiosk.post("/operator/logout", data={"csrf_token": kiosk.token("/operator/")})
    object.__setattr__(managed.operator, "login_ceiling", 30)
    statuses = flood(app)
    # The 30th wrong password reaches the ceiling: it and every later guess are refused.
    assert statuses.count(401) == 29 and set(statuses[29:]) == {429}
    # A stranger with the right password now waits (the ceiling holds for the window)...
    r = Console(app, ip="10.10.2.1").form("/operator/login", {"name": "budi", "password": ADMIN_PW})
    assert r.status_code == 429 and "Terlalu banyak" in text(r)
    # ...the kiosk with its device cookie is in...
    r = kiosk.form("/operator/login", {"name": "budi", "password": ADMIN_PW})
    assert r.status_code == 303 and r.headers["Location"].endswith("/operator/")
    assert kiosk.get("/operator/").status_code == 200
    # ...and so is a browser on the management network that never logged in before.
    Console(app, ip="192.168.88.20").login("budi", ADMIN_PW)


def test_the_flood_without_a_ceiling_hit_leaves_everyone_in(app, accounts):
    statuses = flood(app)
    assert set(statuses) == {401}  # one guess per address: no address is held back
    Console(app, ip="10.10.2.2").login("budi", ADMIN_PW)


def test_waits_grow_per_account_and_address(app, accounts, cfg, clock):
    c = Console(app, ip="10.10.0.70")
    waits = []
    for i in range(cfg.operator.login_attempts + 3):
        r = c.form("/operator/login", {"name": "budi", "password": f"salah-{i}-lagi"})
        if r.status_code == 429:
            waits.append(int(r.headers["Retry-After"]))
            clock.advance(seconds=waits[-1])
    assert waits == [15, 30, 60, 120]
    c.login("budi", ADMIN_PW)  # once the wait is over the right password works


def test_a_forged_or_foreign_device_cookie_is_not_trusted(app, accounts, managed):
    object.__setattr__(managed.operator, "login_ceiling", 3)
    flood(app, n=3)
    c = Console(app, ip="10.10.2.3")
    now = dt.datetime(2026, 11, 29, 12, 0)
    forged = devicecookie.issue(b"not-the-secret" * 3, "operator-login", "budi", now)
    c.client.set_cookie("hs_opdev", forged, domain="10.10.0.1", path="/operator")
    r = c.form("/operator/login", {"name": "budi", "password": ADMIN_PW})
    assert r.status_code == 429


def test_device_cookie_round_trip_and_expiry():
    now = dt.datetime(2026, 11, 29, 12, 0)
    token = devicecookie.issue(b"s" * 32, "operator-login", "budi,siti", now)
    day = dt.timedelta(days=1)
    assert devicecookie.check(b"s" * 32, "operator-login", token, day, now) == "budi,siti"
    assert devicecookie.check(b"s" * 32, "other-purpose", token, day, now) is None
    assert devicecookie.check(b"s" * 32, "operator-login", token, day, now + 2 * day) is None
    assert devicecookie.check(b"s" * 32, "operator-login", token + "x", day, now) is None
    assert devicecookie.check(b"s" * 32, "operator-login", "a.b", day, now) is None


def test_unlock_lifts_the_ceiling(db, accounts, cfg, clock):
    brake = operators.Brake(ceiling=2)
    for i in range(2):
        with pytest.raises(operators.LoginRefused):
            operators.authenticate(db, "budi", "x" * 9, f"10.10.3.{i}", brake=brake, clock=clock)
    with pytest.raises(operators.LoginRefused) as exc:
        operators.authenticate(db, "budi", ADMIN_PW, "10.10.3.9", brake=brake, clock=clock)
    assert exc.value.code.value == "locked"
    operators.unlock(db, "budi")
    operators.authenticate(db, "budi", ADMIN_PW, "10.10.3.9", brake=brake, clock=clock)
