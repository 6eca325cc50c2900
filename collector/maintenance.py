"""Storage that lasts: monthly partitions made ahead, old ones dropped, old roll-ups deleted.

On PostgreSQL the per-device tables are partitioned by month (migration c0006):
``<table>_pYYYYMM`` holds one calendar month (UTC for times, the date itself for
``usage_daily.day``) and ``<table>_default`` whatever no monthly partition covers.

* :func:`ensure_partitions` creates the partitions of this month and ``MONTHS_AHEAD`` more.
  A month whose rows already landed in the DEFAULT partition (a gateway's clock years ahead,
  a collector that was down for months) is created by moving those rows into a new table and
  attaching it, in one transaction, so a partition can always be made.
* :func:`purge` drops every monthly partition that ends before ``today - retention_days``
  (whole months: a row may outlive its retention by up to a month), deletes the DEFAULT
  partition's rows older than that, and deletes roll-ups (``village_daily``,
  ``sales_monthly``) older than ``today - rollup_retention_days``. On SQLite (a laptop trial)
  the same cut-offs are applied by DELETE.

Both run when the collector starts and once a day (collector.server), and on demand
(``hotspot collector maintain|purge``); every step is idempotent. On PostgreSQL one process
at a time does it (an advisory lock: several collectors may share the database), and a step
that would wait more than ``LOCK_TIMEOUT`` for a table lock gives up until the next run rather
than stall ingest behind it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, delete, text
from sqlalchemy.exc import OperationalError

from collector.config import CollectorConfig
from collector.models import HealthSample, SalesMonthly, UsageDaily, UsageHourly, VillageDaily
from collector.periodic import PeriodicJob
from hotspot.timeutil import local_day, utcnow

log = logging.getLogger(__name__)

# (table, the column it is partitioned on): migration c0006 made them.
PARTITIONED: tuple[tuple[str, str], ...] = (
    ("usage_hourly", "period_start"),
    ("usage_daily", "day"),
    ("health_sample", "sampled_at"),
)
MONTHS_AHEAD = 3
LOCK_KEY = 726217002  # collector/migrations/env.py takes 726217001
LOCK_TIMEOUT = "5s"
DAY_SECONDS = 86400


_PARTITION_NAME = re.compile("^(" + "|".join(t for t, _ in PARTITIONED) + r")_(p\d{6}|default)$")


def is_partition(name: str | None) -> bool:
    """A partition's table name (not a model's: Alembic's comparisons leave them out)."""
    return bool(name and _PARTITION_NAME.match(name))


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's ``include_name`` hook: everything but the partitions (and their indexes)."""
    if type_ == "table":
        return not is_partition(name)
    return True


def month_start(d: dt.date) -> dt.date:
    return d.replace(day=1)


def next_month(d: dt.date) -> dt.date:
    return (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def partition_name(table: str, month: dt.date) -> str:
    return f"{table}_p{month:%Y%m}"


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    moved_from_default: int = 0
    dropped: list[str] = field(default_factory=list)
    deleted_rows: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None  # why nothing was done (another process holds the lock)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "moved_from_default": self.moved_from_default,
            "dropped": self.dropped,
            "deleted_rows": self.deleted_rows,
            "skipped": self.skipped,
        }


def is_partitioned(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def monthly_partitions(conn: Connection, table: str) -> dict[dt.date, str]:
    """The monthly partitions of ``table``: first day of the month → partition name."""
    pattern = re.compile(rf"^{re.escape(table)}_p(\d{{4}})(\d{{2}})$")
    out: dict[dt.date, str] = {}
    for (name,) in conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:t AS regclass)"
        ),
        {"t": table},
    ):
        m = pattern.match(name)
        if m:
            out[dt.date(int(m.group(1)), int(m.group(2)), 1)] = name
    return out


def _create_partition(conn: Connection, table: str, column: str, month: dt.date) -> int:
    """Create ``table``'s partition of ``month``, taking over the DEFAULT partition's rows of
    that month (a plain CREATE … PARTITION OF would fail while the DEFAULT holds any)."""
    name, lo, hi = partition_name(table, month), month.isoformat(), next_month(month).isoformat()
    conn.exec_driver_sql(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)")
    moved = conn.exec_driver_sql(
        f"WITH moved AS (DELETE FROM {table}_default "
        f"WHERE {column} >= '{lo}' AND {column} < '{hi}' RETURNING *) "
        f"INSERT INTO {name} SELECT * FROM moved"
    ).rowcount
    conn.exec_driver_sql(
        f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')"
    )
    return max(moved, 0)


def _locked(conn: Connection) -> bool:
    if not is_partitioned(conn):
        return True
    return bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar())


def _unlock(conn: Connection) -> None:
    if is_partitioned(conn):
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        conn.commit()


def _step(conn: Connection, what: str, fn: Any) -> Any:
    """Run ``fn()`` in its own transaction with a bounded wait for locks; log and skip it
    (until the next run) if it cannot get them."""
    try:
        if is_partitioned(conn):
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        result = fn()
        conn.commit()
        return result
    except OperationalError as exc:
        conn.rollback()
        log.warning("maintenance: %s skipped: %s", what, str(exc).splitlines()[0])
        return None


def ensure_partitions(engine: Engine, now: dt.datetime | None = None) -> Report:
    """This month's partitions and ``MONTHS_AHEAD`` more, for every partitioned table."""
    report = Report()
    now = now or utcnow()
    with engine.connect() as conn:
        if not is_partitioned(conn):
            return report
        if not _locked(conn):
            report.skipped = "another process is doing the maintenance"
            return report
        try:
            _ensure(conn, now, report)
        finally:
            _unlock(conn)
    return report


def _ensure(conn: Connection, now: dt.datetime, report: Report) -> None:
    for table, column in PARTITIONED:
        have = monthly_partitions(conn, table)
        conn.commit()
        month = month_start(now.date())
        for _ in range(MONTHS_AHEAD + 1):
            if month not in have:
                moved = _step(
                    conn,
                    f"creating {partition_name(table, month)}",
                    lambda m=month, t=table, c=column: _create_partition(conn, t, c, m),
                )
                if moved is not None:
                    report.created.append(partition_name(table, month))
                    report.moved_from_default += moved
            month = next_month(month)
    if report.created:
        log.info("maintenance: created partitions %s", ", ".join(report.created))


@dataclass(frozen=True)
class Cutoffs:
    """Per-device rows before ``rows`` and roll-ups before ``rollups`` go (local days)."""

    rows: dt.date
    rollups: dt.date

    @classmethod
    def of(
        cls, cfg: CollectorConfig, now: dt.datetime, retention_days: int | None = None
    ) -> Cutoffs:
        today = local_day(now, cfg.tz)
        keep = cfg.retention_days if retention_days is None else retention_days
        return cls(
            today - dt.timedelta(days=keep),
            today - dt.timedelta(days=max(cfg.rollup_retention_days, keep)),
        )


def purge(
    engine: Engine,
    cfg: CollectorConfig,
    now: dt.datetime | None = None,
    *,
    retention_days: int | None = None,
    dry_run: bool = False,
) -> Report:
    """Drop per-device partitions older than the retention and delete old roll-ups."""
    now = now or utcnow()
    cut = Cutoffs.of(cfg, now, retention_days)
    report = Report()
    with engine.connect() as conn:
        if not _locked(conn):
            report.skipped = "another process is doing the maintenance"
            return report
        try:
            if is_partitioned(conn):
                _drop_partitions(conn, cut, report, dry_run)
            else:
                _delete_rows(conn, cut, report, dry_run)
            _delete_rollups(conn, cut, report, dry_run)
        finally:
            _unlock(conn)
    log.info("maintenance: purge before %s: %s", cut.rows, report.as_dict())
    return report


def _drop_partitions(conn: Connection, cut: Cutoffs, report: Report, dry_run: bool) -> None:
    cutoff = cut.rows.isoformat()
    for table, column in PARTITIONED:
        expired = [
            name
            for month, name in monthly_partitions(conn, table).items()
            if next_month(month) <= cut.rows
        ]
        conn.commit()
        for name in sorted(expired):
            if dry_run or _step(conn, f"dropping {name}", lambda n=name: _drop(conn, n)):
                report.dropped.append(name)
        # The DEFAULT partition holds only strays; they go by DELETE.
        sql = f"{table}_default WHERE {column} < '{cutoff}'"
        if dry_run:
            n = conn.exec_driver_sql(f"SELECT count(*) FROM {sql}").scalar() or 0
            conn.commit()
        else:
            n = (
                _step(
                    conn,
                    f"purging {table}_default",
                    lambda s=sql: conn.exec_driver_sql(f"DELETE FROM {s}").rowcount,
                )
                or 0
            )
        report.deleted_rows[f"{table}_default"] = int(n)


def _drop(conn: Connection, name: str) -> bool:
    conn.exec_driver_sql(f"DROP TABLE {name}")
    return True


def _delete_rows(conn: Connection, cut: Cutoffs, report: Report, dry_run: bool) -> None:
    first = dt.datetime.combine(cut.rows, dt.time())
    for model, column, bound in (
        (UsageHourly, UsageHourly.period_start, first),
        (UsageDaily, UsageDaily.day, cut.rows),
        (HealthSample, HealthSample.sampled_at, first),
    ):
        report.deleted_rows[model.__tablename__] = _delete(conn, model, column < bound, dry_run)


def _delete_rollups(conn: Connection, cut: Cutoffs, report: Report, dry_run: bool) -> None:
    report.deleted_rows["village_daily"] = _delete(
        conn, VillageDaily, VillageDaily.day < cut.rollups, dry_run
    )
    report.deleted_rows["sales_monthly"] = _delete(
        conn, SalesMonthly, SalesMonthly.month < f"{cut.rollups:%Y-%m}", dry_run
    )


def _delete(conn: Connection, model: Any, where: Any, dry_run: bool) -> int:
    from sqlalchemy import func, select

    if dry_run:
        n = conn.execute(select(func.count()).select_from(model).where(where)).scalar() or 0
        conn.commit()
        return int(n)
    n = _step(
        conn,
        f"deleting from {model.__tablename__}",
        lambda: conn.execute(delete(model).where(where)).rowcount,
    )
    return int(n or 0)


def run(engine: Engine, cfg: CollectorConfig, now: dt.datetime | None = None) -> dict[str, Any]:
    """The daily job: partitions ahead, then the purge."""
    made = ensure_partitions(engine, now)
    purged = purge(engine, cfg, now)
    return {"partitions": made.as_dict(), "purge": purged.as_dict()}


class DailyJob(PeriodicJob):
    """:func:`run` now and every ``interval`` seconds in a daemon thread (each gunicorn
    worker's, started after its fork; the advisory lock makes workers and hosts take turns)."""

    def __init__(self, engine: Engine, cfg: CollectorConfig, interval: float = DAY_SECONDS):
        self.engine, self.cfg = engine, cfg
        super().__init__("collector-maintenance", interval, lambda: run(engine, cfg))
