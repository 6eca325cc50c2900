"""The console's overview follows the gateway's uplink monitor (issue #11, item 3): an open
outage shows the internet line as down, whatever the sync agent's last sample said."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotspot import health
from hotspot.model_uplink import OutageCause, UplinkOutage
from tests.unit.portal.operator.conftest import text


def line(resp) -> str:
    return text(resp).split("Jalur internet (uplink)")[1].split()[0]


def test_the_overview_shows_the_line_down_during_an_outage(admin, db, clock, monkeypatch):
    monkeypatch.setattr(health, "wan_state", lambda _ifname: "up")
    assert line(admin.get("/operator/")) == "tersambung"
    with Session(db) as s, s.begin():
        s.add(UplinkOutage(started_at=clock.now, cause=OutageCause.UNREACHABLE))
    assert line(admin.get("/operator/")) == "putus"
    with Session(db) as s, s.begin():
        s.scalars(select(UplinkOutage)).one().ended_at = clock.now
    assert line(admin.get("/operator/")) == "tersambung"
