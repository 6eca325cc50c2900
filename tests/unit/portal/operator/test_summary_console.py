"""The console's daily summary page (issue #13, item 7): admin only, the token masked, the
latest summaries with Telegram's reason for a refusal, today's message without a device."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy.orm import Session

from hotspot import config as config_mod
from hotspot.model_summary import DailySummary, SummaryState
from tests.unit.portal.conftest import portal_overrides
from tests.unit.portal.operator.conftest import sent_and_refused_summaries, text
from tests.unit.sync.botapi import CHAT, TOKEN

SECRET_PART = TOKEN.split(":")[1]


@pytest.fixture
def cfg(tmp_path):
    return config_mod.load(
        overrides={
            **portal_overrides(tmp_path),
            "summary": {
                "enabled": True,
                "telegram_bot_token": TOKEN,
                "telegram_chat_id": CHAT,
                "send_at": "20:30",
            },
        }
    )


def _queue(db) -> None:
    with Session(db) as s, s.begin():
        s.add_all(
            [
                *sent_and_refused_summaries("Telegram answered 401: Unauthorized"),
                DailySummary(
                    day=dt.date(2026, 11, 30),
                    created_at=dt.datetime(2026, 11, 30, 3, 0),
                    text="Ringkasan",
                    state=SummaryState.PENDING,
                    attempts=3,
                    last_error="Telegram unreachable: timed out",
                ),
            ]
        )


def test_admin_sees_the_settings_masked_and_the_latest_summaries(admin, db):
    _queue(db)
    r = admin.get("/operator/summary")
    assert r.status_code == 200
    raw = r.get_data(as_text=True)
    assert SECRET_PART not in raw and SECRET_PART[-8:] not in raw
    body = text(r)
    assert "Ringkasan harian" in body and "aktif" in body
    assert "20:30 WIB" in body and CHAT in body
    assert "123456789:••••0123" in body
    assert "Telegram menolak 1 ringkasan" in body
    assert "401: Unauthorized" in body
    assert "terkirim" in body and "ditolak" in body and "menunggu" in body
    assert "3 percobaan" in body and "dikirim manual" in body
    # today's message as it would go out, with no device address in it
    preview = re.search(r'<pre id="summary-preview"[^>]*>(.*?)</pre>', raw, re.S)
    assert preview and "Ringkasan WiFi Desa Sungai Duren" in preview.group(1)
    assert not re.search(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", preview.group(1), re.I)
    # and in the menu
    assert 'href="/operator/summary"' in raw


def test_a_kasir_gets_the_403_page_and_no_menu_item(kasir):
    r = kasir.get("/operator/summary")
    assert r.status_code == 403
    assert SECRET_PART not in r.get_data(as_text=True)
    assert 'href="/operator/summary"' not in kasir.get("/operator/").get_data(as_text=True)


def test_nobody_logged_in_is_sent_to_the_login(console):
    r = console.get("/operator/summary")
    assert r.status_code in (302, 303) and "/operator/login" in r.headers["Location"]


def test_summary_off_says_so(admin, app):
    from portal.state import state

    st = state(app)
    off = {"enabled": False, "telegram_bot_token": "", "telegram_chat_id": ""}
    st.config = config_mod.load(overrides={**st.config.raw, "summary": off})
    body = text(admin.get("/operator/summary"))
    assert "mati" in body and "belum diisi" in body
