"""Accounts, login, the login brake, login sessions, roles, the LAN-only gate and CSRF."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hotspot import operators
from hotspot.audit import Actor
from hotspot.model_operator import Operator, OperatorSession
from tests.unit.portal.operator.conftest import ADMIN_PW, KASIR_PW, Console, text

ADMIN_PAGES = [
    "/operator/sales",
    "/operator/sales?view=cash",
    "/operator/sales.csv",
    "/operator/packages",
    "/operator/packages/new",
    "/operator/packages/1",
    "/operator/operators",
    "/operator/operators/1",
    "/operator/audit",
    "/operator/audit.csv",
    "/operator/batches/1/codes.csv",
]
ADMIN_POSTS = [
    "/operator/packages/new",
    "/operator/packages/1",
    "/operator/operators",
    "/operator/operators/1",
    "/operator/voucher/1/void",
    "/operator/voucher/1/unsell",
    "/operator/batches/1/void",
    "/operator/sessions/extend",
    "/operator/sessions/block",
    "/operator/sessions/unblock",
    "/operator/batches",
]


def test_passwords_are_argon2id_and_never_stored_in_clear(db, accounts):
    with db.connect() as conn:
        hashes = [h for (h,) in conn.execute(select(Operator.password_hash))]
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert not any(ADMIN_PW in h or KASIR_PW in h for h in hashes)


@pytest.mark.parametrize(
    "password", ["short", "12345678", "mikhmon1234", "password", "aaaaaaaaaa", "xx-budi-xx"]
)
def test_weak_passwords_are_refused(db, password):
    with pytest.raises(operators.PasswordError):
        operators.add(db, "budi", "admin", password, actor=Actor("t"))


def test_no_default_account_exists(console, db):
    assert operators.listing(db) == []
    for name, pw in (("admin", "admin"), ("mikhmon", "1234"), ("admin", "")):
        r = console.form("/operator/login", {"name": name, "password": pw})
        assert r.status_code == 401


def test_login_logout_and_cookie_flags(console, accounts):
    r = console.get("/operator/")
    assert r.status_code == 303 and "/operator/login?next=" in r.headers["Location"]
    r = console.form(
        "/operator/login", {"name": "BUDI ", "password": ADMIN_PW, "next": "/operator/sales"}
    )
    assert r.status_code == 303 and r.headers["Location"].endswith("/operator/sales")
    cookie = r.headers["Set-Cookie"]
    assert "hs_op=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/operator" in cookie
    assert console.get("/operator/").status_code == 200
    r = console.form("/operator/logout", page="/operator/")
    assert r.status_code == 303
    assert console.get("/operator/").status_code == 303


@pytest.mark.parametrize(
    "nxt",
    ["https://evil.example/", "//evil.example/x", "/\\evil", "javascript:alert(1)", "/status"],
)
def test_login_never_redirects_away(console, accounts, nxt):
    r = console.form("/operator/login", {"name": "budi", "password": ADMIN_PW, "next": nxt})
    assert r.status_code == 303
    assert r.headers["Location"].endswith("/operator/")


def test_wrong_password_says_the_same_as_a_wrong_name(console, accounts):
    a = console.form("/operator/login", {"name": "budi", "password": "wrong-password-1"})
    b = console.form("/operator/login", {"name": "nobody", "password": "wrong-password-1"})
    assert a.status_code == b.status_code == 401
    assert "Nama atau kata sandi salah." in text(a) and "Nama atau kata sandi salah." in text(b)


def test_login_brake_per_account_and_address(app, accounts, cfg, clock):
    c = Console(app, ip="10.10.0.60")
    for i in range(cfg.operator.login_attempts):
        r = c.form("/operator/login", {"name": "siti", "password": f"guess-{i}-xyz"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "Terlalu banyak percobaan salah" in text(r)
    # Braked: even the right password is not checked now, from this address...
    r = c.form("/operator/login", {"name": "siti", "password": KASIR_PW})
    assert r.status_code == 429
    # ...but the account is not locked: another address logs in, and the wait ends.
    Console(app, ip="10.10.0.99").login("siti", KASIR_PW)
    clock.advance(seconds=cfg.operator.login_lockout_seconds + 1)
    c.login("siti", KASIR_PW)


def test_login_brake_per_address(app, accounts, cfg):
    c = Console(app, ip="10.10.0.77")
    for i in range(cfg.operator.login_ip_attempts):
        r = c.form("/operator/login", {"name": f"user{i}", "password": "whatever-123"})
    assert r.status_code == 429
    r = c.form("/operator/login", {"name": "budi", "password": ADMIN_PW})
    assert r.status_code == 429
    Console(app, ip="10.10.0.78").login("budi", ADMIN_PW)  # another address may


def test_sessions_end_when_idle_when_old_and_on_password_change(app, accounts, cfg, clock, db):
    c = Console(app)
    c.login("siti", KASIR_PW)
    clock.advance(seconds=cfg.operator.idle_minutes * 60 - 30)
    assert c.get("/operator/").status_code == 200  # still fresh: it counts from here
    clock.advance(seconds=cfg.operator.idle_minutes * 60 + 5)
    assert c.get("/operator/").status_code == 303
    c.login("siti", KASIR_PW)
    for _ in range(cfg.operator.session_hours * 60 // 50 + 1):
        clock.advance(seconds=50 * 60)
        r = c.get("/operator/")
    assert r.status_code == 303  # at most session_hours, however busy
    c.login("siti", KASIR_PW)
    other = Console(app, ip="10.10.0.52")
    other.login("siti", KASIR_PW)
    operators.change(db, accounts["kasir"]["id"], actor=Actor("t"), password="new-kios-pw-99")
    assert c.get("/operator/").status_code == 303
    assert other.get("/operator/").status_code == 303
    with db.connect() as conn:
        assert conn.execute(select(OperatorSession)).all() == []


def test_a_stolen_database_opens_no_session(app, accounts, db):
    c = Console(app)
    c.login("budi", ADMIN_PW)
    with db.connect() as conn:
        stored = conn.execute(select(OperatorSession.token_hash)).scalar()
    c.client.set_cookie("hs_op", stored, domain="10.10.0.1", path="/operator")
    assert c.get("/operator/").status_code == 303


def test_kasir_gets_403_on_every_admin_page(kasir, admin, batch):
    batch("harian", 2)
    for path in ADMIN_PAGES:
        r = kasir.get(path)
        assert r.status_code == 403, path
        assert "Khusus admin" in text(r) and "Traceback" not in r.get_data(as_text=True)
    for path in ADMIN_POSTS:
        r = kasir.form(
            path,
            {
                "name": "x",
                "price": "1",
                "reason": "x",
                "mac": "02:00:00:00:00:01",
                "minutes": "5",
                "package": "1",
                "count": "1",
            },
            page="/operator/sell",
        )
        assert r.status_code == 403, path
    # and the admin may
    for path in ADMIN_PAGES:
        assert admin.get(path).status_code == 200, path


def test_the_menu_shows_a_kasir_only_their_pages(kasir):
    body = kasir.get("/operator/").get_data(as_text=True)
    for href in ("/operator/sell", "/operator/batches", "/operator/sessions"):
        assert f'href="{href}"' in body
    for href in ("/operator/sales", "/operator/packages", "/operator/operators", "/operator/audit"):
        assert f'href="{href}"' not in body


@pytest.mark.parametrize(
    "ip,status",
    [
        ("198.51.100.7", 403),
        ("192.168.88.20", 200),
        ("10.10.0.40", 200),
        ("127.0.0.1", 200),
        ("::1", 200),
    ],
)
def test_console_answers_only_the_lan_and_management_networks(app, accounts, ip, status, cfg):
    object.__setattr__(cfg.operator, "management_networks", ("192.168.88.0/24",))
    c = Console(app, ip=ip)
    r = c.get("/operator/login")
    assert r.status_code == status
    if status == 403:
        assert "Tidak bisa dibuka dari sini" in text(r)
        r = c.post("/operator/login", data={"name": "budi", "password": ADMIN_PW})
        assert r.status_code in (400, 403) and "hs_op" not in r.headers.get("Set-Cookie", "")


def test_lan_can_be_closed(app, accounts, cfg):
    object.__setattr__(cfg.operator, "allow_lan", False)
    assert Console(app, ip="10.10.0.40").get("/operator/login").status_code == 403
    assert Console(app, ip="127.0.0.1").get("/operator/login").status_code == 200


def test_forms_without_csrf_change_nothing(admin, db, batch):
    codes = batch("harian", 1)
    before = len(operators.listing(db))
    for path, data in (
        (
            "/operator/operators",
            {
                "name": "eve",
                "role": "admin",
                "password": "Eve-password-9",
                "password2": "Eve-password-9",
            },
        ),
        ("/operator/sell", {"code": codes[0]}),
        (
            "/operator/packages/new",
            {
                "name": "gratis",
                "title": "G",
                "price": "0",
                "tier": "premium",
                "duration": "1",
                "devices": "1",
            },
        ),
        ("/operator/logout", {}),
    ):
        for extra in ({}, {"csrf_token": "forged"}):
            r = admin.post(path, data={**data, **extra})
            assert r.status_code == 400, path
            assert "Formulir ini sudah kedaluwarsa" in text(r)
    assert len(operators.listing(db)) == before
    r = admin.get("/operator/voucher?code=" + codes[0])
    assert "di stok" in text(r)  # not sold
    assert admin.get("/operator/").status_code == 200  # still logged in


def test_account_page_changes_own_password(kasir, app, db):
    r = kasir.form(
        "/operator/account",
        {"current": "wrong-one-123", "password": "Baru-sekali-42", "password2": "Baru-sekali-42"},
    )
    assert r.status_code == 422 and "bukan kata sandi Anda" in text(r)
    r = kasir.form(
        "/operator/account",
        {"current": KASIR_PW, "password": "Baru-sekali-42", "password2": "Baru-sekali-43"},
    )
    assert r.status_code == 422 and "berbeda" in text(r)
    r = kasir.form(
        "/operator/account",
        {"current": KASIR_PW, "password": "Baru-sekali-42", "password2": "Baru-sekali-42"},
    )
    assert r.status_code == 303
    assert kasir.get("/operator/").status_code == 200  # a fresh login for this browser
    Console(app, ip="10.10.0.90").login("siti", "Baru-sekali-42")


def test_admin_manages_accounts_and_the_last_admin_stays(admin, db, app):
    r = admin.form(
        "/operator/operators",
        {
            "name": "Ani",
            "role": "kasir",
            "full_name": "Bu Ani",
            "password": "Warung-77-pagi",
            "password2": "Warung-77-pagi",
        },
    )
    assert r.status_code == 303
    ani = operators.get(db, name="ani")
    assert ani.role == "kasir"
    r = admin.form(
        "/operator/operators", {"name": "x", "role": "boss", "password": "1", "password2": "2"}
    )
    assert r.status_code == 422
    body = text(r)
    assert "2 sampai 32 huruf" in body and "Pilih peran." in body and "Paling sedikit 8" in body
    me = operators.get(db, name="budi")
    r = admin.form(f"/operator/operators/{me.id}", {"role": "kasir", "active": "1"})
    assert r.status_code == 422 and "admin terakhir" in text(r)
    r = admin.form(f"/operator/operators/{ani.id}", {"role": "kasir", "active": ""})
    assert r.status_code == 303 and not operators.get(db, name="ani").active
    r = Console(app, ip="10.10.0.61").form(
        "/operator/login", {"name": "ani", "password": "Warung-77-pagi"}
    )
    assert r.status_code == 401


def test_english_is_selectable(admin):
    r = admin.get("/operator/?lang=en")
    assert '<html lang="en">' in r.get_data(as_text=True) and "Overview" in text(r)
    assert "Ringkasan" in text(admin.get("/operator/?lang=id"))
