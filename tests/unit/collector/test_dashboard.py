"""The dashboard: every village, warnings, drill-down, SVG charts, Indonesian and English."""

from __future__ import annotations

import base64
import datetime as dt
import re

from sqlalchemy import update
from sqlalchemy.orm import Session

from collector.models import Gateway
from hotspot import svgchart as svg
from hotspot.timeutil import local_day, utcnow
from hotspot.units import fmt_bytes
from tests.unit.collector.helpers import (
    SECRET,
    gateway_record,
    health_record,
    post,
    register,
    sales_record,
    usage,
)


def health(**over):
    return health_record(
        **{
            "sampled_at": utcnow().replace(microsecond=0).isoformat() + "Z",
            "disk_pct": 50.0,
            "disk_free_mb": 9000,
            "temp_c": 50.0,
            "uptime_s": 100000,
            "backlog": 0,
            **over,
        }
    )


def populate(client, app):
    today = utcnow().replace(minute=0, second=0, microsecond=0)
    info = gateway_record()
    recs = [info, health(disk_pct=95.0, temp_c=82.0, uplink_ok=False, uplink_ms=None)]
    for c in range(4):
        for d in range(5):
            hour = (today - dt.timedelta(days=d)).isoformat() + "Z"
            recs.append(usage(client=f"{c:016x}", hour=hour, down=10_000_000, up=1_000_000))
    # The village's month, not UTC's: on a month's last evening (WIB) they differ.
    month = local_day(utcnow(), app.config["COLLECTOR"].tz).strftime("%Y-%m")
    recs.append(sales_record(month=month, count=12, rupiah=60000, rev=1))
    assert post(client, recs).status_code == 200
    register(app, "desa-sepi", SECRET)  # registered, never reported
    register(app, "desa-lama", SECRET)
    with Session(app.extensions["collector_db"]) as s, s.begin():
        s.execute(
            update(Gateway)
            .where(Gateway.id == "desa-lama")
            .values(last_seen_at=utcnow() - dt.timedelta(days=2), village="Desa Lama")
        )


def test_overview_in_indonesian_by_default(client, app):
    populate(client, app)
    r = client.get("/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    for text in (
        "Desa Sungai Duren",
        '<span class="on">online</span>',
        '<span class="off">offline</span>',
        "disk hampir penuh",
        "CPU panas",
        "uplink putus",
        "belum pernah melapor",
        "Rp 60.000",
        "Pengguna per hari",
    ):
        assert text in html, text
    assert "daring" not in html and "luring" not in html  # docs/operator-guide.md's glossary
    assert html.count("<svg") == 2
    assert re.search(r"<td class=\"n\">4</td>", html)  # users today


def test_english_and_the_choice_is_remembered(client, app):
    populate(client, app)
    html = client.get("/?lang=en").get_data(as_text=True)
    assert "disk almost full" in html and "Users per day" in html and "Rp 60,000" in html
    assert "hot CPU" in html and "offline" in html
    assert "Users per day" in client.get("/").get_data(as_text=True)  # cookie


def test_village_page(client, app):
    populate(client, app)
    r = client.get("/village/desa-uji?lang=en")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    for text in (
        "Desa Sungai Duren",
        "Device health",
        "82.0 °C",
        "95.0 %",
        "harian",
        "Sales per month",
        "Uplink availability",
    ):
        assert text in html, text
    assert html.count("<svg") == 3  # users, traffic, health
    assert client.get("/village/nowhere").status_code == 404


def test_dashboard_asks_for_a_token_unless_public(client, app, token):
    cfg = app.config["COLLECTOR"]
    app.config["COLLECTOR"] = cfg.__class__(**{**cfg.__dict__, "dashboard_public": False})
    r = client.get("/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    basic = base64.b64encode(f"diskominfo:{token}".encode()).decode()
    assert client.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    wrong = base64.b64encode(b"x:wrong").decode()
    assert client.get("/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401


def test_svg_charts():
    out = svg.bars(["a", "b"], [("down", [5, 10]), ("up", [1, 0])], title="t <x>", fmt=fmt_bytes)
    assert out.startswith("<svg") and out.endswith("</svg>") and "t &lt;x&gt;" in out
    assert out.count("<rect") >= 3
    assert svg.nice_max(0) == 1 and svg.nice_max(7) == 10 and svg.nice_max(230) == 250
    line = svg.lines(
        ["1", "2", "3"],
        [("cpu", [1, None, 3]), ("t", [None, None, None])],
        title="h",
        top_value=100,
    )
    assert "<svg" in line and "<circle" in line
    assert fmt_bytes(1_500_000) == "1.5 MB"
