"""The collector ingests health records with and without ``software_version`` (issue #15
item 5): a newer gateway's field never breaks its batch, an older gateway's batch still
ingests."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector.models import HealthSample
from tests.unit.collector.helpers import health_record, post


def test_health_with_and_without_the_version_ingests(client, cdb):
    new = health_record(software_version="0.1.0+g0123456789ab")
    old = health_record(sampled_at="2026-11-28T03:05:05Z")
    r = post(client, [new, old])
    assert r.status_code == 200, r.get_data(as_text=True)
    with Session(cdb) as s:
        assert s.scalar(select(func.count()).select_from(HealthSample)) == 2
