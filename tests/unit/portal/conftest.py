"""Fixtures for the portal and voucher tests: a temporary database (migrated), the real
session engine on a fake data path behind a JSON-speaking gateway client, and the app."""

from __future__ import annotations

import html
import re

import pytest

from hotspot import config as config_mod
from hotspot.vouchers.batches import create_batch
from hotspot.vouchers.packages import sync_packages
from hotspot.vouchers.redemption import VoucherService
from portal import create_app
from portal.startup import prepare
from tests.unit.conftest import device_overrides
from tests.unit.portal.fakes import LocalGateway

PHONE_IP = "10.10.0.11"
PHONE_MAC = "02:00:00:00:00:01"
OTHER_IP = "10.10.0.12"
OTHER_MAC = "02:00:00:00:00:02"
BASE = "http://10.10.0.1:8080"

PACKAGES = {
    "harian": {"title": "Harian", "price": 5000, "tier": "premium", "hours": 24, "data_mb": 1000},
    "mingguan": {
        "title": "Mingguan",
        "price": 25000,
        "tier": "premium",
        "hours": 168,
        "data_mb": 5000,
    },
    "keluarga": {"title": "Keluarga", "price": 15000, "tier": "premium", "hours": 24, "devices": 3},
    "basi": {"title": "Basi", "price": 1000, "tier": "premium", "hours": 1, "shelf_days": 1},
}


def portal_overrides(tmp_path, **portal) -> dict:
    """The configuration overrides of a portal test: the unit tests' device, the village,
    the portal's key files in ``tmp_path`` (plus the ``portal`` settings given) and the
    packages; a test file adds or replaces sections for what it tests."""
    return {
        **device_overrides(tmp_path),
        "village": {"name": "Desa Sungai Duren"},
        "portal": {
            "secret_key_file": str(tmp_path / "portal.secret"),
            "voucher_key_file": str(tmp_path / "voucher.key"),
            **portal,
        },
        "packages": PACKAGES,
    }


@pytest.fixture
def cfg(tmp_path):
    """Overrides tests/unit's cfg: the same tiers, plus the portal and packages."""
    return config_mod.load(
        overrides=portal_overrides(tmp_path, contact="Pak Budi, WA 0812-0000-0000")
    )


@pytest.fixture
def key():
    return b"k" * 32


@pytest.fixture
def gw(engine, datapath):
    """The gateway as the portal sees it; two phones are on the LAN."""
    datapath.neighbours[PHONE_IP] = PHONE_MAC
    datapath.neighbours[OTHER_IP] = OTHER_MAC
    return LocalGateway(engine)


@pytest.fixture
def packages(db, cfg):
    sync_packages(db, cfg.packages.values())


@pytest.fixture
def vouchers(db, key, gw, clock, packages):
    return VoucherService(db, key, gw, clock=clock)


@pytest.fixture
def batch(db, key, clock, packages):
    """make_batch("harian", 3) → list of printed codes."""

    def make(package="harian", count=3):
        return create_batch(db, key, package, count, clock=clock).codes

    return make


@pytest.fixture
def app(cfg, gw, db, key, clock, packages):
    """The portal's app, made as ``hotspot portal run`` makes it: the process's start-up
    (keys, packages), then the app."""
    state = prepare(cfg, gateway=gw, db=db, voucher_key=key, secret_key=b"s" * 32, clock=clock)
    application = create_app(state=state)
    application.config["TESTING"] = True
    return application


class Browser:
    """A browser at ``ip``: Flask's test client with that remote address, asking ``base``."""

    def __init__(self, app, ip, base):
        self.client = app.test_client()
        self.ip = ip
        self.base = base

    def _kw(self, kw):
        kw.setdefault("base_url", self.base)
        env = kw.setdefault("environ_base", {})
        env.setdefault("REMOTE_ADDR", self.ip)
        return kw

    def get(self, path="/", **kw):
        return self.client.get(path, **self._kw(kw))

    def post(self, path, **kw):
        return self.client.post(path, **self._kw(kw))

    def head(self, path="/", **kw):
        return self.client.head(path, **self._kw(kw))


class Phone(Browser):
    """A browser on a phone at ``ip``, on the captive portal."""

    def __init__(self, app, ip=PHONE_IP, base=BASE):
        super().__init__(app, ip, base)

    def hidden(self, path="/"):
        """The hidden fields of a page's forms (CSRF token, signed continue-to, language)."""
        page = self.get(path).get_data(as_text=True)
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
        assert "csrf_token" in fields, page
        return {k: html.unescape(v) for k, v in fields.items()}

    def form(self, action, data=None, page="/", **kw):
        """POST a form the way a browser would: with the hidden fields of the page it is on."""
        return self.post(action, data={**self.hidden(page), **(data or {})}, **kw)


@pytest.fixture
def phone(app):
    return Phone(app)


@pytest.fixture
def other_phone(app):
    return Phone(app, ip=OTHER_IP)
