"""Fixtures for the operator console: the portal's app (temporary database, the real session
engine on a fake data path behind a JSON-speaking gateway), two accounts, and a browser-like
client that logs in and posts forms with their CSRF token."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest

from hotspot import operators
from hotspot.audit import Actor
from hotspot.model_summary import DailySummary, SummaryState
from tests.unit.portal.conftest import (  # noqa: F401
    BASE,
    OTHER_IP,
    OTHER_MAC,
    PHONE_IP,
    PHONE_MAC,
    Browser,
    Phone,
    app,
    batch,
    cfg,
    gw,
    key,
    other_phone,
    packages,
    phone,
    vouchers,
)

ADMIN_PW = "Sungai-Duren-77"
KASIR_PW = "kios-pasar-2026"
KIOSK_IP = "10.10.0.50"  # the kiosk's old laptop, on the LAN
# The console answers the LAN over HTTPS only (#10.12): the kiosk uses the HTTPS listener.
CONSOLE_BASE = "https://10.10.0.1"


@pytest.fixture
def accounts(db):
    setup = Actor("cli:root", role="admin")
    admin = operators.add(db, "budi", "admin", ADMIN_PW, actor=setup, full_name="Pak Budi")
    kasir = operators.add(db, "siti", "kasir", KASIR_PW, actor=setup, full_name="Bu Siti")
    return {"admin": admin, "kasir": kasir}


class Console(Browser):
    """A browser at ``ip`` using the console."""

    def __init__(self, app, ip=KIOSK_IP, base=CONSOLE_BASE):
        super().__init__(app, ip, base)

    def token(self, page="/operator/login"):
        body = self.get(page).get_data(as_text=True)
        m = re.search(r'name="csrf_token" value="([^"]+)"', body)
        assert m, body[:2000]
        return html.unescape(m.group(1))

    def form(self, action, data=None, page=None, **kw):
        return self.post(
            action, data={"csrf_token": self.token(page or action), **(data or {})}, **kw
        )

    def login(self, name, password):
        r = self.form("/operator/login", {"name": name, "password": password})
        assert r.status_code == 303, r.get_data(as_text=True)[:3000]
        return r


@pytest.fixture
def console(app):
    return Console(app)


@pytest.fixture
def admin(app, accounts):
    c = Console(app)
    c.login("budi", ADMIN_PW)
    return c


@pytest.fixture
def kasir(app, accounts):
    c = Console(app, ip="10.10.0.51")
    c.login("siti", KASIR_PW)
    return c


def text(resp) -> str:
    """The visible text of a page, roughly (tags dropped, entities decoded, spaces folded)."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", resp.get_data(as_text=True), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def sent_and_refused_summaries(refusal: str) -> list[DailySummary]:
    """Two days' summaries for the summary page: 28 November's sent, the 29th's refused by
    Telegram with ``refusal`` (its answer)."""
    return [
        DailySummary(
            day=dt.date(2026, 11, 28),
            scheduled_day=dt.date(2026, 11, 28),
            created_at=dt.datetime(2026, 11, 28, 13, 0),
            text="Ringkasan",
            state=SummaryState.SENT,
            attempts=1,
            sent_at=dt.datetime(2026, 11, 28, 13, 0, 5),
        ),
        DailySummary(
            day=dt.date(2026, 11, 29),
            scheduled_day=dt.date(2026, 11, 29),
            created_at=dt.datetime(2026, 11, 29, 13, 0),
            text="Ringkasan",
            state=SummaryState.FAILED,
            attempts=1,
            last_error=refusal,
        ),
    ]
