"""bench.yearload: the collector bench's bulk load of the year, on a real PostgreSQL.

The loaded tables must be what the migrations make (the plans measured on them are the real
ones): every row in its monthly partition, the partitions with the migrations' indexes and
constraints under the same names (``pg_dump --schema-only`` compared with a freshly migrated
database), ``usage_daily`` the sum of ``usage_hourly``. A load cut short (a power cut between
months, a stage half-built) is continued by the next run; a schema that differs is seen."""

from __future__ import annotations

import datetime as dt

import pytest

from bench import yearload
from bench.collector import db_name, gateway_id, prepare_db

pytestmark = pytest.mark.postgres

TODAY = dt.date(2026, 3, 10)
# 2026-02-01 … 2026-03-10; health from 2026-01-31 17:00 UTC (midnight in WIB): January has
# health samples only, and no usage stage may be left behind for it
DAYS = 38
YEAR = yearload.Year(3, 4, TODAY - dt.timedelta(days=DAYS - 1), TODAY)


@pytest.fixture
def db(postgres):
    url, _ = prepare_db(postgres, [gateway_id(i) for i in range(1, 4)], TODAY, DAYS)
    yield db_name(url)
    postgres.drop_db(db_name(url))


@pytest.fixture
def reference(postgres):
    url, _ = prepare_db(postgres, [gateway_id(i) for i in range(1, 4)], TODAY, DAYS)
    yield db_name(url)
    postgres.drop_db(db_name(url))


def load(postgres, db, done, hook=None):
    def month_done(month, counts):
        done[month] = counts
        if hook:
            hook(month)

    return yearload.Loader(postgres, db, YEAR, done, month_done).run()


def counts(postgres, db):
    with postgres.connect(db) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in (
                *yearload.TABLES,
                "village_daily",
                *(f"{t}_default" for t in yearload.TABLES),
            )
        }


def expected():
    g, n = YEAR.gateways, YEAR.devices
    return {
        "usage_hourly": g * n * 4 * DAYS,
        "usage_daily": g * n * DAYS,
        "health_sample": g * (DAYS * 288 + 1),  # every 5 minutes, both midnights
        "village_daily": g * DAYS,
        **{f"{t}_default": 0 for t in yearload.TABLES},
    }


def test_the_year_lands_in_its_partitions_with_the_migrations_schema(postgres, db, reference):
    done: dict = {}
    load(postgres, db, done)
    assert sorted(done) == ["2026-01", "2026-02", "2026-03"]
    assert counts(postgres, db) == expected()
    assert yearload.schema_difference(postgres, db, reference) == []
    with postgres.connect(db) as conn:
        # usage_daily is exactly the sum of the day's hours (WIB day = UTC + 7 h)
        mismatched = conn.execute(
            "SELECT count(*) FROM (SELECT gateway_id, "
            "CAST(period_start + interval '7 hours' AS date) AS day, client, "
            "sum(seconds) s, sum(bytes_down) d, sum(bytes_up) u FROM usage_hourly "
            "GROUP BY 1, 2, 3) h FULL JOIN usage_daily x USING (gateway_id, day, client) "
            "WHERE x.seconds IS DISTINCT FROM h.s OR x.bytes_down IS DISTINCT FROM h.d "
            "OR x.bytes_up IS DISTINCT FROM h.u"
        ).fetchone()[0]
        assert mismatched == 0
        # the partitions are real ones: the foreign key and the primary key are enforced
        with pytest.raises(Exception, match="foreign key|violates"):
            conn.execute(
                "INSERT INTO usage_daily_p202602 VALUES ('nobody', '2026-02-02', 'c', 1, 1, 1)"
            )
        with pytest.raises(Exception, match="duplicate key"):
            conn.execute(
                "INSERT INTO usage_daily SELECT * FROM usage_daily WHERE day = '2026-02-02' LIMIT 1"
            )
        # and the month's query reads its own partition only
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT * FROM usage_hourly WHERE period_start >= '2026-02-01' "
                "AND period_start < '2026-03-01'"
            )
        )
        assert "usage_hourly_p202602" in plan and "p202601" not in plan and "p202603" not in plan


def test_a_load_cut_short_is_continued_by_the_next_run(postgres, db, reference):
    """A power cut after the first month: the months done stay, the next run (the same
    command) loads the others, whatever the cut left half-built in their stages."""
    done: dict = {}

    def cut(month):
        raise KeyboardInterrupt("power cut")

    with pytest.raises(KeyboardInterrupt):
        load(postgres, db, done, hook=cut)
    assert len(done) >= 1
    with postgres.connect(db) as conn:  # a stage half-built, as a cut mid-month leaves it
        conn.execute(
            f"INSERT INTO {yearload.stage_name('usage_hourly', dt.date(2026, 3, 1))} "
            "VALUES ('desa-0001', 'leftover', '2026-03-02 01:00', 1, 1, 1, '2026-03-02')"
        )
    first = dict(done)
    load(postgres, db, done)
    assert sorted(done) == ["2026-01", "2026-02", "2026-03"]
    assert {m: done[m] for m in first} == first
    assert counts(postgres, db) == expected()
    assert yearload.schema_difference(postgres, db, reference) == []


def test_a_schema_that_differs_is_seen(postgres, db, reference):
    load(postgres, db, {})
    with postgres.connect(db) as conn:
        conn.execute("CREATE INDEX extra ON usage_hourly_p202602 (client)")
    diff = yearload.schema_difference(postgres, db, reference)
    assert any("extra" in line for line in diff)
