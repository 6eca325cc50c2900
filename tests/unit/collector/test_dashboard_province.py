"""The dashboard for a province: its title and region from the configuration, villages
grouped and filtered by kabupaten and kecamatan, the map drawn as SVG, the village page's
software version, outages and alerts — and hostile names escaped everywhere."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from sqlalchemy.orm import Session

from collector import alerts as al
from collector import config as cc
from collector.app import create_app
from collector.models import UplinkOutage
from collector.store import set_gateway_place
from hotspot.timeutil import utcnow
from tests.unit.collector.helpers import SECRET, gateway_record, health_record, post, register

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def make_app(tmp_path, **collector):
    cfg = cc.load(
        overrides={
            "collector": {
                "database_url": f"sqlite:///{tmp_path}/collector.db",
                "dashboard_public": True,
                **collector,
            },
            "alerts": {"raise_after_minutes": 0},
        }
    )
    app = create_app(cfg)
    return cfg, app


def village(app, gid, name, kab, kec, lat, lon, **health):
    register(app, gid, SECRET)
    stamp = utcnow().replace(microsecond=0).isoformat() + "Z"
    recs = [
        gateway_record(village=name, version="0.1.0"),
        health_record(sampled_at=stamp, **health),
    ]
    r = post(app.test_client(), recs, gateway=gid, hgateway=gid)
    assert r.status_code == 200, r.get_json()
    with Session(app.extensions["collector_db"]) as s, s.begin():
        set_gateway_place(s, gid, kabupaten=kab, kecamatan=kec, latitude=lat, longitude=lon)


def populate(app):
    village(app, "desa-a", "Desa Alpha", "Muaro Jambi", "Sekernan", -1.55, 103.45, disk_pct=50.0)
    village(app, "desa-b", "Desa Beta", "Muaro Jambi", "Jambi Luar Kota", -1.62, 103.70)
    village(
        app,
        "desa-c",
        "Desa " + HOSTILE,
        "Kerinci" + HOSTILE,
        "Gunung " + HOSTILE,
        -2.05,
        101.40,
        software_version="0.2.0",
        disk_pct=50.0,
    )


def no_live_markup(html: str) -> None:
    assert (
        "<script" not in html
        and "<img" not in html
        and "onerror=alert" not in html.replace("onerror=alert(2)&gt;", "")
    )
    assert "&lt;script&gt;" in html


def test_title_and_region_come_from_the_configuration(tmp_path):
    _, app = make_app(tmp_path, title="Wifi Desa", region="Provinsi Contoh")
    client = app.test_client()
    html = client.get("/").get_data(as_text=True)
    assert "<h1>Wifi Desa — Dasbor Provinsi Contoh</h1>" in html
    assert "Wifi Desa — Provinsi Contoh dashboard" in client.get("/?lang=en").get_data(as_text=True)
    _, plain = make_app(tmp_path / "p", title="Hotspot Desa")
    assert "Hotspot Desa — Dasbor provinsi" in plain.test_client().get("/").get_data(as_text=True)


def test_no_province_is_built_into_the_collector():
    here = Path(__file__).resolve().parents[3] / "collector"
    for path in here.rglob("*.py"):
        assert "jambi" not in path.read_text().lower(), path


def test_grouped_and_filtered_by_kabupaten_and_kecamatan(tmp_path):
    _, app = make_app(tmp_path)
    populate(app)
    client = app.test_client()
    html = client.get("/").get_data(as_text=True)
    groups = re.findall(r'<tr class="group"><th colspan="8">(.*?)</th>', html)
    assert groups[:2] == [
        "Kabupaten: Kerinci&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x "
        "onerror=alert(2)&gt; · Kecamatan: Gunung &lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;"
        "&lt;img src=x onerror=alert(2)&gt;",
        "Kabupaten: Muaro Jambi · Kecamatan: Jambi Luar Kota",
    ]
    assert len(groups) == 3
    no_live_markup(html)
    one = client.get("/?kabupaten=Muaro+Jambi&kecamatan=Sekernan").get_data(as_text=True)
    assert (
        "Desa Alpha" in one and "Desa Beta" not in one and "Kerinci" not in one.split("</form>")[1]
    )
    assert "1 dari 1 gateway online" in one
    # a filter nobody has shows nothing, and a hostile filter value is escaped in the form
    odd = client.get("/?kecamatan=" + HOSTILE).get_data(as_text=True)
    assert "Desa Alpha" not in odd
    no_live_markup(odd)


def test_map_places_villages_from_their_coordinates(tmp_path):
    _, app = make_app(tmp_path)
    populate(app)
    register(app, "desa-d", SECRET)  # no coordinates
    html = app.test_client().get("/map").get_data(as_text=True)
    assert html.count("<circle") == 3 + 4  # villages and the legend
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # no tiles
    assert "1 desa belum punya koordinat" in html
    no_live_markup(html)
    # West is left, north is up: Kerinci (101.40 E, 2.05 S) left of and below Sekernan.
    xy = {
        m.group(3): (float(m.group(1)), float(m.group(2)))
        for m in re.finditer(
            r'<circle cx="([\d.]+)" cy="([\d.]+)" r="6"[^>]*/><text[^>]*>([^<]*)</text>', html
        )
    }
    alpha, hostile = xy["Desa Alpha"], next(v for k, v in xy.items() if "Desa &lt;" in k)
    assert hostile[0] < alpha[0] and hostile[1] > alpha[1]


def test_village_page_shows_version_outages_and_alerts(tmp_path):
    cfg, app = make_app(tmp_path)
    populate(app)
    engine = app.extensions["collector_db"]
    now = utcnow()
    with Session(engine) as s, s.begin():
        s.add(
            UplinkOutage(
                gateway_id="desa-c",
                started_at=now - dt.timedelta(hours=3),
                ended_at=now - dt.timedelta(hours=2),
                cause="link",
                rev=1,
            )
        )
        s.add(UplinkOutage(gateway_id="desa-c", started_at=now, cause="unreachable", rev=1))
    al.run_once(engine, cfg, now)
    html = app.test_client().get("/village/desa-c?lang=en").get_data(as_text=True)
    for text in (
        "Software version</th><td>0.2.0",  # from the health sample, over the description
        "Policy version</th><td>—",
        "Uplink outages (30 days)",
        "WAN link",
        "ongoing",
        "uplink down",  # the alert the open outage raised
        "This village&#39;s alerts",
    ):
        assert text in html, text
    no_live_markup(html)
    other = app.test_client().get("/village/desa-b?lang=en").get_data(as_text=True)
    assert "Software version</th><td>0.1.0" in other  # older gateway: its description
    assert "disk almost full" in other  # the helpers' health record has the disk at 91 %
    overview = app.test_client().get("/").get_data(as_text=True)
    assert "Peringatan aktif" in overview and "uplink putus" in overview
    assert '<span class="crit">kritis</span>' in overview
