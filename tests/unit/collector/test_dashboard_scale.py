"""The dashboard of a province of many villages (issue #14): a summary per kabupaten and the
villages needing attention instead of a row per village, each kabupaten's villages on pages,
the map kept; hostile query strings (an unknown kabupaten, a malformed page) get a page; and
/api/v1/gateways carries the place fields."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from collector import dashboard
from collector.models import Alert, AlertKind, Gateway
from collector.store import create_token
from tests.unit.collector.test_dashboard_province import make_app

KABUPATEN = ["Batang Hari", "Kerinci", "Muaro Jambi"]


def province(tmp_path, villages: int = 130):
    _, app = make_app(tmp_path)
    with Session(app.extensions["collector_db"]) as s, s.begin():
        for i in range(villages):
            s.add(
                Gateway(
                    id=f"desa-{i:04d}",
                    secret="x" * 40,
                    village=f"Desa {i:04d}",
                    kabupaten=KABUPATEN[i % 3] if i % 10 else None,
                    kecamatan=f"Kec {i % 7}",
                    latitude=-1.5 - i / 1000,
                    longitude=103.5 + i / 1000,
                    # a third reported a minute ago, the rest never: they need attention
                    last_seen_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)
                    - dt.timedelta(minutes=1)
                    if i % 3 == 0
                    else None,
                )
            )
        token = create_token(s, "t")["token"]
    return app, token


def test_many_villages_get_a_summary_per_kabupaten_not_a_row_each(tmp_path):
    app, _ = province(tmp_path)
    page = app.test_client().get("/").get_data(as_text=True)
    assert "Ringkasan per kabupaten" in page
    for k in KABUPATEN:
        assert f'href="?kabupaten={k.replace(" ", "+")}"' in page
    assert "belum ditetapkan" in page  # the villages without a kabupaten are a line too
    # the villages needing attention: the first ATTENTION_ROWS, then how many more
    assert page.count("/village/desa-") == dashboard.ATTENTION_ROWS
    never = sum(1 for i in range(130) if i % 3)
    assert f"dan {never - dashboard.ATTENTION_ROWS} desa lagi" in page
    assert "Desa 0000" not in page  # reported, no warning: not listed on the overview
    en = app.test_client().get("/?lang=en").get_data(as_text=True)
    assert "Summary per regency" in en and "Villages needing attention" in en


def test_a_kabupaten_lists_its_villages_on_pages(tmp_path):
    app, _ = province(tmp_path, villages=400)
    client = app.test_client()
    mine = [i for i in range(400) if i % 10 and KABUPATEN[i % 3] == "Kerinci"]
    first = client.get("/?kabupaten=Kerinci").get_data(as_text=True)
    assert first.count('href="/village/desa-') == dashboard.ROWS_PER_PAGE
    pages = -(-len(mine) // dashboard.ROWS_PER_PAGE)
    assert f"Halaman 1 dari {pages}" in first and "page=2" in first
    seen = set()
    for n in range(1, pages + 1):
        body = client.get(f"/?kabupaten=Kerinci&page={n}").get_data(as_text=True)
        seen |= {int(x[:4]) for x in body.split('href="/village/desa-')[1:]}
    assert seen == set(mine)


def test_hostile_query_strings_get_a_page(tmp_path):
    app, _ = province(tmp_path)
    client = app.test_client()
    unknown = client.get("/?kabupaten=%3Cscript%3Enowhere")
    assert unknown.status_code == 200
    assert "belum ada data" in unknown.get_data(as_text=True)
    assert "<script>nowhere" not in unknown.get_data(as_text=True)
    for bad in ("abc", "-5", "99999999999999999999", "1e9", ""):
        r = client.get(f"/?kabupaten=Kerinci&page={bad}")
        assert r.status_code == 200 and "Desa 0001" in r.get_data(as_text=True)
    last = client.get("/?page=999").get_data(as_text=True)
    assert "page=999" not in last and "Ringkasan per kabupaten" in last
    assert client.get("/map").status_code == 200  # the map of every village is kept
    assert client.get("/map").get_data(as_text=True).count("<circle") >= 130


def test_a_small_province_keeps_the_village_table(tmp_path):
    app, _ = province(tmp_path, villages=12)
    page = app.test_client().get("/").get_data(as_text=True)
    assert "Ringkasan per kabupaten" not in page and "Desa 0000" in page


def test_gateways_api_carries_the_place_fields(tmp_path):
    app, token = province(tmp_path, villages=3)
    r = app.test_client().get("/api/v1/gateways", headers={"Authorization": f"Bearer {token}"})
    items = r.get_json()["items"]
    assert items[1]["kabupaten"] == "Kerinci" and items[1]["kecamatan"] == "Kec 1"
    assert items[1]["latitude"] == -1.501 and items[1]["longitude"] == 103.501
    assert items[0]["kabupaten"] is None
    csv = app.test_client().get(
        "/api/v1/gateways?format=csv", headers={"Authorization": f"Bearer {token}"}
    )
    header = csv.get_data(as_text=True).splitlines()[0]
    assert header.endswith(",kabupaten,kecamatan,latitude,longitude")
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    gateway = doc["components"]["schemas"]["Gateway"]
    assert "kabupaten" in gateway["properties"] and "kabupaten" not in gateway.get("required", [])


def test_the_province_lists_the_first_open_alerts_and_counts_the_rest(tmp_path):
    app, _ = province(tmp_path)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with Session(app.extensions["collector_db"]) as s, s.begin():
        for i in range(80):  # 80 open alerts and one cleared: 50 listed, "30 more"
            s.add(
                Alert(
                    gateway_id=f"desa-{i:04d}",
                    kind=AlertKind.DISK,
                    detail="disk 95 %",
                    critical=i < 5,
                    first_seen_at=now - dt.timedelta(minutes=90),
                    raised_at=now - dt.timedelta(minutes=80 - i),
                )
            )
        s.add(
            Alert(
                gateway_id="desa-0100",
                kind=AlertKind.DISK,
                detail="disk 95 %",
                critical=True,
                first_seen_at=now - dt.timedelta(hours=3),
                raised_at=now - dt.timedelta(hours=2),
                cleared_at=now - dt.timedelta(hours=1),
            )
        )
    page = app.test_client().get("/").get_data(as_text=True)
    assert "… dan 30 peringatan lagi." in page
    # the critical ones first, then the newest
    listed = [x.split('"', 1)[0] for x in page.split("/village/desa-")[1:]]
    assert {"0000", "0004", "0079"} <= set(listed) and "0100" not in listed
    filtered = app.test_client().get("/?kabupaten=Kerinci").get_data(as_text=True)
    assert "peringatan lagi" not in filtered  # a kabupaten's own alerts: under the cap
