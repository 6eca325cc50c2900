"""The villages' daily roll-ups (``village_daily``) the dashboard reads, the retention purge
and its commands, on SQLite (tests/integration/test_collector_storage.py: the same on
PostgreSQL, with partitions).

The roll-up must give exactly what the per-device query gave before it: the same device in
many batches (retries, late reports, a report split across batches, hours of one local day
in different batches) is one user of that day."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector import maintenance, queries
from collector.models import UsageDaily, UsageHourly, VillageDaily
from collector.store import rebuild_village_daily
from tests.unit.collector.helpers import post, register, usage
from tests.unit.commands import hotspot_in_process

GATEWAYS = ("desa-uji", "desa-dua", "desa-tiga")


def per_device_series(
    s: Session, first: dt.date, last: dt.date, gateway_id: str | None = None
) -> dict[dt.date, tuple[int, int, int]]:
    """The dashboard's users and traffic per day as read before the roll-ups existed
    (collector/queries.py before issue #14): straight from the per-device ``usage_daily``."""
    q = (
        select(
            UsageDaily.day,
            func.count(),
            func.sum(UsageDaily.bytes_down),
            func.sum(UsageDaily.bytes_up),
        )
        .where(UsageDaily.day >= first, UsageDaily.day <= last)
        .group_by(UsageDaily.day)
    )
    if gateway_id is not None:
        q = q.where(UsageDaily.gateway_id == gateway_id)
    return {d: (int(n), int(dn or 0), int(u or 0)) for d, n, dn, u in s.execute(q)}


def post_random_year_slice(app: Any, seed: int = 14) -> dt.date:
    """Three villages, 24 devices each, 10 days: each device-hour reported 1–3 times with
    growing totals, shuffled across many batches (some sent twice). Returns the last day."""
    rnd = random.Random(seed)
    for gid in GATEWAYS[1:]:
        register(app, gid)
    start = dt.datetime(2026, 11, 18, 0)
    records: dict[str, list[dict[str, Any]]] = {g: [] for g in GATEWAYS}
    for gid in GATEWAYS:
        for device in range(24):
            client = f"{rnd.getrandbits(64):016x}"
            for day in range(10):
                if rnd.random() < 0.4:
                    continue
                for hour in rnd.sample(range(24), rnd.randint(1, 5)):
                    when = start + dt.timedelta(days=day, hours=hour)
                    down = rnd.randint(1, 10**7)
                    for report in range(rnd.randint(1, 3)):
                        records[gid].append(
                            usage(
                                client=client,
                                hour=when.strftime("%Y-%m-%dT%H:00:00Z"),
                                seconds=min(3600, 60 * (report + 1)),
                                down=down * (report + 1),
                                up=down // 10,
                            )
                        )
    client = app.test_client()
    for gid, recs in records.items():
        rnd.shuffle(recs)
        i = 0
        while i < len(recs):
            n = rnd.randint(1, 120)
            batch = recs[i : i + n]
            key = f"{rnd.getrandbits(128):032x}"
            for _ in range(1 + (rnd.random() < 0.2)):  # some batches delivered twice
                r = post(client, batch, gateway=gid, hgateway=gid, key=key)
                assert r.status_code == 200, r.get_json()
            i += n
    return (start + dt.timedelta(days=11)).date()


def assert_rollups_match_the_per_device_rows(app: Any, last: dt.date) -> None:
    cfg = app.config["COLLECTOR"]
    engine = app.extensions["collector_db"]
    first = last - dt.timedelta(days=29)
    with Session(engine) as s:
        for gid in (None, *GATEWAYS):
            series = queries.day_series(s, first, last, gid)
            old = per_device_series(s, first, last, gid)
            got = {
                d: (n, dn, u)
                for d, n, dn, u in zip(series.days, series.users, series.down, series.up)
                if (n, dn, u) != (0, 0, 0)
            }
            assert got == old and old, gid
        now = dt.datetime.combine(last, dt.time(5))
        overview = queries.overview(s, cfg, now)
        for row in overview["villages"]:
            week = per_device_series(s, last - dt.timedelta(days=6), last, row["id"])
            assert row["users_today"] == week.get(last, (0, 0, 0))[0]
            assert row["bytes_7d"] == sum(dn + u for _, dn, u in week.values())
        # and a rebuild from the per-device rows (the repair) changes nothing
        before = sorted(tuple(r) for r in s.execute(select(VillageDaily.__table__)))
    with Session(engine) as s, s.begin():
        rebuild_village_daily(s, first, last)
    with Session(engine) as s:
        assert sorted(tuple(r) for r in s.execute(select(VillageDaily.__table__))) == before


def test_the_rollups_equal_the_per_device_query_however_the_reports_come(app):
    last = post_random_year_slice(app)
    assert_rollups_match_the_per_device_rows(app, last)


def test_the_dashboard_reads_the_rollups(app, client):
    """The overview's figures come from village_daily: change a roll-up, the page follows."""
    assert post(client, [usage(hour="2026-11-28T03:00:00Z", down=1000)]).status_code == 200
    with Session(app.extensions["collector_db"]) as s, s.begin():
        row = s.get(VillageDaily, ("desa-uji", dt.date(2026, 11, 28)))
        assert row is not None and (row.devices, row.bytes_down) == (1, 1000)
        row.devices = 4242
    with Session(app.extensions["collector_db"]) as s:
        series = queries.day_series(s, dt.date(2026, 11, 28), dt.date(2026, 11, 28))
    assert series.users == [4242]


def _old_and_new(app: Any) -> None:
    """Usage and health 500 days ago and today."""
    client = app.test_client()
    today = dt.datetime.now(dt.UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    for when in (today - dt.timedelta(days=500), today - dt.timedelta(hours=1)):
        stamp = when.strftime("%Y-%m-%dT%H:00:00Z")
        r = post(client, [usage(hour=stamp), usage(client="fedcba9876543210", hour=stamp)])
        assert r.status_code == 200


def test_purge_on_sqlite_deletes_old_device_rows_and_keeps_the_rollups(app):
    _old_and_new(app)
    engine = app.extensions["collector_db"]
    cfg = app.config["COLLECTOR"]
    dry = maintenance.purge(engine, cfg, dry_run=True)
    assert dry.deleted_rows["usage_hourly"] == 2
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(UsageHourly)) == 4
    report = maintenance.purge(engine, cfg)
    assert report.deleted_rows["usage_hourly"] == 2 and report.deleted_rows["usage_daily"] >= 2
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(UsageHourly)) == 2
        # the villages' old day is still there: roll-ups are kept for rollup_retention_days
        assert s.scalar(select(func.count()).select_from(VillageDaily)) >= 2
    again = maintenance.purge(engine, cfg)
    assert again.deleted_rows["usage_hourly"] == 0


def test_purge_and_maintain_commands(tmp_path, capsys):
    config = tmp_path / "collector.toml"
    config.write_text(f'[collector]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\n')

    def run(*args: str):
        return hotspot_in_process(capsys, config, "collector", *args)

    out = run("purge", "--json", "--dry-run")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["dry_run"] is True and data["deleted_rows"]["usage_hourly"] == 0
    assert "would drop" in run("purge", "--dry-run").stdout
    assert json.loads(run("maintain", "--json").stdout)["partitions"]["created"] == []
    for bad in (("--retention-days", "5"), ("--retention-days", "lots")):
        got = run("purge", *bad)
        assert got.returncode == 2 and len(got.stderr.strip().splitlines()) == 1, got.stderr


def test_retention_config_is_checked(tmp_path, capsys):
    config = tmp_path / "collector.toml"
    for body, key in (
        ("retention_days = 400\nrollup_retention_days = 100", "rollup_retention_days"),
        ("retention_days = 3", "retention_days"),
        ('retention_days = "a year"', "retention_days"),
    ):
        config.write_text(f'[collector]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\n{body}\n')
        got = hotspot_in_process(capsys, config, "collector", "purge")
        assert got.returncode == 2 and key in got.stderr, got.stderr


def test_api_daily_pages_the_rollups(app, client, auth):
    for gid in GATEWAYS[1:]:
        register(app, gid)
    for gid in GATEWAYS:
        for day in (26, 27, 28):
            recs = [usage(client=f"{c:016x}", hour=f"2026-11-{day}T03:00:00Z") for c in range(3)]
            assert post(client, recs, gateway=gid, hgateway=gid).status_code == 200
    url, items = "/api/v1/daily?from=2026-11-27&to=2026-11-29&limit=2", []
    while url:
        doc = client.get(url, headers=auth).get_json()
        items += doc["items"]
        url = doc["next"]
    assert [(i["day"], i["gateway_id"]) for i in items] == [
        (d, g) for d in ("2026-11-27", "2026-11-28") for g in sorted(GATEWAYS)
    ]
    assert {(i["devices"], i["bytes_down"]) for i in items} == {(3, 3000)}
    # a day starts at local midnight: from 10:00 on the 27th means from the 28th
    later = client.get("/api/v1/daily?from=2026-11-27T10:00:00%2B07:00", headers=auth)
    assert {i["day"] for i in later.get_json()["items"]} == {"2026-11-28"}
    csv = client.get("/api/v1/daily?gateway=desa-dua&format=csv", headers=auth)
    assert csv.status_code == 200 and csv.data.decode().count("desa-dua") == 3
    assert client.get("/api/v1/daily?cursor=bm9wZQ", headers=auth).status_code == 400
    assert client.get("/api/v1/daily").status_code == 401
    doc = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/daily" in doc["paths"] and "Daily" in doc["components"]["schemas"]
