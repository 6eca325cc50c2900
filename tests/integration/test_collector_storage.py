"""Storage that lasts, on a real PostgreSQL: migration c0006 converts a populated c0002
database (rows, sums and constraints kept; later ADD COLUMN migrations still apply), records
outside every monthly partition land in DEFAULT and move when their month is made, the purge
drops whole months and keeps the roll-ups, and the roll-ups equal the per-device query."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.orm import Session

from collector import config as collector_config
from collector import maintenance
from collector.app import create_app
from collector.db import MIGRATIONS, make_engine
from hotspot import db as hotspot_db
from tests.integration.conftest import ROOT, hotspot_cmd
from tests.unit.collector.helpers import health_record, post, register, usage
from tests.unit.collector.test_rollups import (
    assert_rollups_match_the_per_device_rows,
    post_random_year_slice,
)
from tests.unit.commands import hotspot_in_process
from testsupport.loopback import free_port

pytestmark = pytest.mark.postgres

TABLES = ("usage_hourly", "usage_daily", "health_sample")


def _cfg(pg_url: str, **extra):
    return collector_config.load(
        overrides={"collector": {"database_url": pg_url, "dashboard_public": True, **extra}}
    )


@pytest.fixture
def app(pg_url):
    a = create_app(_cfg(pg_url))
    register(a)
    yield a
    a.extensions["collector_db"].dispose()


def _upgrade(engine, revision: str) -> None:
    cfg = hotspot_db.alembic_config(engine.url.render_as_string(hide_password=False), MIGRATIONS)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _downgrade(engine, revision: str) -> None:
    cfg = hotspot_db.alembic_config(engine.url.render_as_string(hide_password=False), MIGRATIONS)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def _columns(conn) -> dict[str, str]:
    """Each partitioned table's columns as they are now, as a select list: later migrations
    add columns (c0003–c0005), the rows' fingerprint is of the columns the data was made with."""
    return {
        table: ", ".join(
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT column_name FROM information_schema.columns "
                f"WHERE table_name = '{table}' ORDER BY ordinal_position"
            )
        )
        for table, _ in maintenance.PARTITIONED
    }


def _fingerprint(conn, columns: dict[str, str]) -> dict[str, tuple]:
    out = {}
    for table, column in maintenance.PARTITIONED:
        row = f"ROW({columns[table]})::text"
        out[table] = tuple(
            conn.exec_driver_sql(
                f"SELECT count(*), min({column}), max({column}), "
                f"md5(string_agg({row}, ',' ORDER BY {row})) FROM {table}"
            ).one()
        )
    return out


def _partitioned(conn) -> set[str]:
    return {
        r[0]
        for r in conn.exec_driver_sql(
            "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
        )
    }


def test_c0006_converts_a_populated_c0002_database(pg_url):
    engine = make_engine(pg_url)
    try:
        _upgrade(engine, "c0002")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO gateway (id, secret, created_at) VALUES ('desa-uji', 's', now())"
            )
            # 14 months of device-hours and health, and a row from 2031 (a wrong clock)
            conn.exec_driver_sql(
                "INSERT INTO usage_hourly SELECT 'desa-uji', lpad(to_hex(d), 16, '0'), h, "
                "60, 1000 + d, 10, h FROM generate_series(1, 5) d, generate_series("
                "date_trunc('hour', now()) - interval '420 days', now(), interval '7 hours') h"
            )
            conn.exec_driver_sql(
                "INSERT INTO usage_hourly VALUES "
                "('desa-uji', 'ffffffffffffffff', '2031-01-01 00:00', 5, 5, 5, now())"
            )
            conn.exec_driver_sql(
                "INSERT INTO usage_daily SELECT gateway_id, (period_start + interval '7 hours')"
                "::date, client, sum(seconds), sum(bytes_down), sum(bytes_up) FROM usage_hourly "
                "GROUP BY 1, 2, 3"
            )
            conn.exec_driver_sql(
                "INSERT INTO health_sample SELECT 'desa-uji', t, 10, 0.1, 0.1, 0.1, 40, 50, "
                "1000, 50, 100, true, 20, 3, 0, t FROM generate_series(now() - interval "
                "'420 days', now(), interval '1 hour') t"
            )
            columns = _columns(conn)
            before = _fingerprint(conn, columns)
            daily = conn.exec_driver_sql(
                "SELECT count(DISTINCT (day, gateway_id)), count(*), sum(bytes_down) "
                "FROM usage_daily"
            ).one()
        _upgrade(engine, "head")
        with engine.begin() as conn:
            assert _fingerprint(conn, columns) == before
            assert _partitioned(conn) == set(TABLES)
            # the roll-ups were filled from the per-device days
            assert conn.exec_driver_sql(
                "SELECT count(*), sum(devices), sum(bytes_down) FROM village_daily"
            ).one() == tuple(daily)
            for table in TABLES:
                months = maintenance.monthly_partitions(conn, table)
                assert len(months) >= 15 + maintenance.MONTHS_AHEAD - 1, table
            assert (
                conn.exec_driver_sql("SELECT count(*) FROM usage_hourly_default").scalar() == 1
            )  # 2031: no monthly partition, kept all the same
            # the constraints came along: the primary key and the gateway's foreign key
            with pytest.raises(Exception, match="duplicate key|unique"):
                with conn.begin_nested():
                    conn.exec_driver_sql(
                        "INSERT INTO usage_hourly SELECT * FROM usage_hourly LIMIT 1"
                    )
            with pytest.raises(Exception, match="foreign key"):
                with conn.begin_nested():
                    conn.exec_driver_sql(
                        "INSERT INTO health_sample SELECT 'nobody', now(), 1, 1, 1, 1, 1, 1, "
                        "1, 1, 1, true, 1, 1, 1, now()"
                    )
            # what another engineer's later migration does to the health table still works
            conn.exec_driver_sql(
                "ALTER TABLE health_sample ADD COLUMN added_later boolean DEFAULT true"
            )
            assert (
                conn.exec_driver_sql(
                    "SELECT count(*) FILTER (WHERE added_later), count(*) FROM health_sample"
                ).one()
                == (before["health_sample"][0],) * 2
            )
            conn.exec_driver_sql("ALTER TABLE health_sample DROP COLUMN added_later")
        # and back: the tables are plain again, with the same rows
        _downgrade(engine, "c0002")
        with engine.begin() as conn:
            assert _partitioned(conn) == set()
            assert _fingerprint(conn, columns) == before
        _upgrade(engine, "head")
        with engine.begin() as conn:
            assert _fingerprint(conn, columns) == before
    finally:
        engine.dispose()


def test_a_record_outside_every_partition_is_kept_and_moves_when_its_month_is_made(app):
    engine = app.extensions["collector_db"]
    client = app.test_client()
    far = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=31 * 8)
    stamp = far.strftime("%Y-%m-%dT%H:00:00Z")
    old = "2001-02-03T04:00:00Z"
    r = post(
        client,
        [
            usage(hour=stamp),
            usage(hour=old),
            health_record(sampled_at=stamp),
            health_record(sampled_at=old),
        ],
    )
    assert r.status_code == 200, r.get_json()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM usage_hourly_default").scalar() == 2
        assert conn.exec_driver_sql("SELECT count(*) FROM health_sample_default").scalar() == 2
    made = maintenance.ensure_partitions(engine, far)
    month = maintenance.month_start(far.date())
    assert maintenance.partition_name("usage_hourly", month) in made.created
    assert made.moved_from_default >= 2  # usage_hourly and health_sample (and usage_daily)
    with engine.connect() as conn:
        name = maintenance.partition_name("usage_hourly", month)
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM usage_hourly_default").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM usage_hourly").scalar() == 2
    # made again: nothing to do
    assert maintenance.ensure_partitions(engine, far).created == []


def test_purge_drops_whole_old_months_and_keeps_the_rollups(app, pg_url, tmp_path, capsys):
    engine = app.extensions["collector_db"]
    client = app.test_client()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    long_ago = now - dt.timedelta(days=450)
    maintenance.ensure_partitions(engine, long_ago)  # that month had its partitions
    for when in (long_ago, now - dt.timedelta(hours=2)):
        stamp = when.strftime("%Y-%m-%dT%H:00:00Z")
        r = post(client, [usage(hour=stamp), health_record(sampled_at=stamp)])
        assert r.status_code == 200
    old_month = maintenance.month_start(long_ago.date())
    expired = {maintenance.partition_name(t, old_month) for t in TABLES}

    # the command as the operator runs it (--dry-run first, in this process: nothing changes;
    # then a real process)
    config = tmp_path / "collector.toml"
    config.write_text(f'[collector]\ndatabase_url = "{pg_url}"\n')
    dry = hotspot_in_process(capsys, config, "collector", "purge", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert expired <= set(json.loads(dry.stdout)["dropped"])
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM usage_hourly").scalar() == 2
    done = subprocess.run(
        hotspot_cmd(config, "collector", "purge", "--json"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert expired <= set(json.loads(done.stdout)["dropped"])
    with engine.connect() as conn:
        for table in TABLES:
            assert old_month not in maintenance.monthly_partitions(conn, table)
        assert conn.exec_driver_sql("SELECT count(*) FROM usage_hourly").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM health_sample").scalar() == 1
        # the village's day of long ago is still counted
        assert conn.exec_driver_sql("SELECT count(*) FROM village_daily").scalar() == 2
    bad = hotspot_in_process(capsys, config, "collector", "purge", "--retention-days", "0")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    # roll-ups go after rollup_retention_days (here: as short as allowed)
    short = _cfg(pg_url, retention_days=31, rollup_retention_days=31)
    report = maintenance.purge(engine, short)
    assert report.deleted_rows["village_daily"] == 1
    # ingest still works after the drops, into this month's partition
    assert post(client, [usage(client="aaaaaaaaaaaaaaaa", hour=stamp)]).status_code == 200


def test_maintenance_waits_its_turn(app):
    """Two collectors sharing the database: while one holds the maintenance lock the other
    skips (and says so) rather than doubling the work."""
    engine = app.extensions["collector_db"]
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": maintenance.LOCK_KEY})
        report = maintenance.purge(engine, app.config["COLLECTOR"])
        assert report.skipped and report.dropped == []
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": maintenance.LOCK_KEY})
    assert maintenance.purge(engine, app.config["COLLECTOR"]).skipped is None


def test_rollups_equal_the_per_device_query_on_postgres(app):
    # The slice's days are fixed (18-28 Nov 2026): their months' partitions are made as the
    # maintenance would have made them then, whatever today is (from 1 Dec 2026 November was
    # no longer "this month", and its rows went to the default partition).
    maintenance.ensure_partitions(app.extensions["collector_db"], now=dt.datetime(2026, 11, 18))
    last = post_random_year_slice(app, seed=2026)
    assert_rollups_match_the_per_device_rows(app, last)
    with Session(app.extensions["collector_db"]) as s:
        assert s.execute(text("SELECT count(*) FROM usage_daily_default")).scalar() == 0


def test_the_running_collector_purges_at_start_and_makes_months_ahead(app, pg_url, tmp_path):
    """``collector run`` (gunicorn) runs the daily job when it is ready: an expired month
    goes, the coming months are there, without anyone running a command."""
    engine = app.extensions["collector_db"]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    long_ago = now - dt.timedelta(days=450)
    maintenance.ensure_partitions(engine, long_ago)
    stamp = long_ago.strftime("%Y-%m-%dT%H:00:00Z")
    assert post(app.test_client(), [usage(hour=stamp)]).status_code == 200
    old = maintenance.partition_name("usage_hourly", maintenance.month_start(long_ago.date()))
    coming = maintenance.next_month(maintenance.month_start(now.date()))
    with engine.begin() as conn:  # as if it had not been made
        conn.exec_driver_sql(f"DROP TABLE {maintenance.partition_name('usage_hourly', coming)}")
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[collector]\ndatabase_url = "{pg_url}"\nbind = "127.0.0.1:{free_port()}"\nworkers = 1\n'
    )
    server = subprocess.Popen(
        hotspot_cmd(config, "collector", "run"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with engine.connect() as conn:
                months = maintenance.monthly_partitions(conn, "usage_hourly").values()
            if old not in months and maintenance.partition_name("usage_hourly", coming) in months:
                break
            assert server.poll() is None and time.monotonic() < deadline, "not purged"
            time.sleep(0.2)
        ahead = maintenance.month_start(now.date())
        for _ in range(maintenance.MONTHS_AHEAD + 1):
            assert maintenance.partition_name("usage_hourly", ahead) in months
            ahead = maintenance.next_month(ahead)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
