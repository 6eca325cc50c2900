"""The gateways' clock state at the collector (issue #11, item 2) and devices per month
across a pseudonym rotation (issue #14, item 4): optional fields an older gateway leaves out,
stored, shown on the village page, malformed ones refused."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.models import HealthSample
from hotspot.timeutil import utcnow
from tests.unit.collector.helpers import gateway_record, health_record, post, snapshot, usage


def sample(**over):
    return health_record(
        **{"sampled_at": utcnow().replace(microsecond=0).isoformat() + "Z", **over}
    )


def test_an_older_gateways_health_still_ingests_and_a_new_ones_clock_is_kept(client, cdb):
    old = health_record(sampled_at="2026-11-28T03:00:05Z")  # no clock fields at all
    new = health_record(
        sampled_at="2026-11-28T03:05:05Z", clock_synced=False, clock_source="collector"
    )
    assert post(client, [old, new]).status_code == 200
    with Session(cdb) as s:
        got = [
            (h.clock_synced, h.clock_source)
            for h in s.scalars(select(HealthSample).order_by(HealthSample.sampled_at))
        ]
    assert got == [(None, None), (False, "collector")]


def test_malformed_clock_fields_are_refused_and_change_nothing(client, cdb):
    before = snapshot(cdb)
    for bad in ({"clock_synced": "no"}, {"clock_source": "gps"}, {"clock_synced": 0}):
        r = post(client, [sample(**bad)])
        assert r.status_code == 400, bad
    assert (
        post(
            client, [usage(), {**usage(hour="2026-11-28T04:00:00Z"), "key_period": "11/2026"}]
        ).status_code
        == 400
    )
    assert snapshot(cdb) == before


def test_the_village_page_says_when_the_clock_is_not_synchronised(client):
    assert (
        post(
            client, [gateway_record(), sample(clock_synced=False, clock_source="none")]
        ).status_code
        == 200
    )
    page = client.get("/village/desa-uji").get_data(as_text=True)
    assert "jam belum sinkron" in page and "Jam</th>" in page
    overview = client.get("/").get_data(as_text=True)
    assert "jam belum sinkron" in overview  # a warning on the province's list too
    later = (utcnow() + dt.timedelta(minutes=1)).replace(microsecond=0).isoformat() + "Z"
    assert (
        post(
            client, [sample(sampled_at=later, clock_synced=False, clock_source="collector")]
        ).status_code
        == 200
    )
    page = client.get("/village/desa-uji?lang=en").get_data(as_text=True)
    assert "set from the collector&#39;s time" in page or "set from the collector's time" in page


def test_devices_per_month_across_a_rotation(client):
    """Three devices last month (its names), the same three and one more this month (new
    names), and a backlog of last month arriving after this month's reports."""
    this = utcnow().date().replace(day=1)
    last = (this - dt.timedelta(days=1)).replace(day=1)
    nov = [f"{i:016x}" for i in range(3)]
    dec = [f"{i:016x}" for i in range(100, 104)]
    recs = [
        {
            **usage(client=c, hour=f"{this.isoformat()}T00:00:00Z"),
            "key_period": this.strftime("%Y-%m"),
        }
        for c in dec
    ]
    assert post(client, recs).status_code == 200
    backlog = [
        {
            **usage(client=c, hour=f"{last.isoformat()[:8]}{d:02d}T05:00:00Z"),
            "key_period": last.strftime("%Y-%m"),
        }
        for c in nov
        for d in (3, 20)
    ]
    assert post(client, backlog).status_code == 200
    page = client.get("/village/desa-uji?lang=en").get_data(as_text=True)
    assert "Devices per month" in page
    assert f'<td>{this.strftime("%Y-%m")}</td><td class="n">4</td>' in page
    assert f'<td>{last.strftime("%Y-%m")}</td><td class="n">3</td>' in page
