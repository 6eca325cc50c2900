"""The portal app carries the console and the gateway's own usage API."""

from __future__ import annotations

from portal import create_app
from portal.startup import prepare


def test_usage_api_is_registered_and_off_without_a_token(app):
    c = app.test_client()
    r = c.get(
        "/api/v1/usage",
        base_url="http://10.10.0.1:8080",
        environ_base={"REMOTE_ADDR": "10.10.0.11"},
    )
    assert r.status_code == 404 and r.is_json and "disabled" in r.get_data(as_text=True)


def test_usage_api_asks_for_the_token(cfg, gw, db, key, clock, packages):
    object.__setattr__(cfg.sync, "api_token", "t" * 24)
    app = create_app(
        state=prepare(cfg, gateway=gw, db=db, voucher_key=key, secret_key=b"s" * 32, clock=clock)
    )
    c = app.test_client()
    kw = {"base_url": "http://10.10.0.1:8080", "environ_base": {"REMOTE_ADDR": "10.10.0.11"}}
    assert c.get("/api/v1/usage", **kw).status_code == 401
    r = c.get("/api/v1/usage", headers={"Authorization": "Bearer " + "t" * 24}, **kw)
    assert r.status_code == 200


def test_console_without_a_voucher_key_says_so(cfg, gw, db, clock, packages, accounts):
    from tests.unit.portal.operator.conftest import ADMIN_PW, Console

    app = create_app(
        state=prepare(cfg, gateway=gw, db=db, voucher_key=None, secret_key=b"s" * 32, clock=clock)
    )
    c = Console(app)
    c.login("budi", ADMIN_PW)
    r = c.form("/operator/sell", {"code": "ABCD-EFGH-JK"})
    assert r.status_code == 503 and "Voucher belum disiapkan" in r.get_data(as_text=True)
    assert c.get("/operator/").status_code == 200
