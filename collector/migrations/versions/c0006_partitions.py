"""collector: per-device rows partitioned by month on PostgreSQL; daily roll-ups per village
(issue #14, item 2)

``usage_hourly`` (by ``period_start``), ``usage_daily`` (by ``day``) and ``health_sample``
(by ``sampled_at``) become range-partitioned tables with one partition a month
(``<table>_pYYYYMM``) and a DEFAULT partition (``<table>_default``) that takes any row no
monthly partition covers, so an early or late record never fails ingest. Each table is
converted with its data: renamed aside, recreated ``LIKE`` it (every column, default and
NOT NULL, whatever later migrations add), its constraints and indexes recreated from the
catalogue under their own names, the rows copied, the old table dropped. Nothing here names a
health column, so migrations that add columns later apply unchanged (ADD COLUMN on the parent
reaches every partition). collector.maintenance creates partitions ahead and drops old ones.

``village_daily`` is filled from ``usage_daily`` (on SQLite, too; SQLite has no partitions).

Revision ID: c0006
Revises: c0005
Create Date: 2026-11-30
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "c0006"
down_revision = "c0005"
branch_labels = None
depends_on = None

PARTITIONED = (
    ("usage_hourly", "period_start"),
    ("usage_daily", "day"),
    ("health_sample", "sampled_at"),
)
MONTHS_AHEAD = 3  # collector.maintenance.MONTHS_AHEAD
PAST_YEARS = 10
ASIDE = "_c0002"


def _next_month(d: dt.date) -> dt.date:
    return (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _recreate(conn: sa.Connection, table: str, column: str | None) -> None:
    """``table`` again, partitioned by month on ``column`` (or plain if None), with its
    data, constraints and indexes."""
    constraints = conn.execute(
        sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u', 'f') "
            "AND coninhcount = 0 ORDER BY contype DESC, conname"
        ),
        {"t": table},
    ).all()
    indexes = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = CAST(:t AS regclass) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) ORDER BY 1"
        ),
        {"t": table},
    ).all()
    old = table + ASIDE
    conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {old}")
    for name, _ in constraints:
        conn.exec_driver_sql(f'ALTER TABLE {old} RENAME CONSTRAINT "{name}" TO "{name}{ASIDE}"')
    for name, _ in indexes:
        conn.exec_driver_sql(f'ALTER INDEX "{name}" RENAME TO "{name}{ASIDE}"')
    partition_by = f" PARTITION BY RANGE ({column})" if column else ""
    conn.exec_driver_sql(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS){partition_by}")
    for name, definition in constraints:
        conn.exec_driver_sql(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for _, definition in indexes:
        conn.exec_driver_sql(definition)  # captured before the rename: names the new table
    if column:
        # A partition for each month that has rows (within the last PAST_YEARS: a gateway
        # whose clock said 2001 or 2031 must not make decades of them; such rows go to the
        # DEFAULT partition), and for this month and MONTHS_AHEAD more.
        this_month = dt.date.today().replace(day=1)
        months = {this_month}
        for _ in range(MONTHS_AHEAD):
            months.add(_next_month(max(months)))
        oldest = this_month.replace(year=this_month.year - PAST_YEARS)
        months.update(
            m
            for (m,) in conn.exec_driver_sql(
                f"SELECT DISTINCT CAST(date_trunc('month', {column}) AS date) FROM {old}"
            )
            if oldest <= m <= max(months)
        )
        for month in sorted(months):
            conn.exec_driver_sql(
                f"CREATE TABLE {table}_p{month:%Y%m} PARTITION OF {table} FOR VALUES "
                f"FROM ('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"
            )
        conn.exec_driver_sql(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM {old}")
    conn.exec_driver_sql(f"DROP TABLE {old}")


def upgrade() -> None:
    op.create_table(
        "village_daily",
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateway.id"]),
        sa.PrimaryKeyConstraint("gateway_id", "day"),
    )
    op.create_index("ix_village_daily_day", "village_daily", ["day"], unique=False)
    op.execute(
        "INSERT INTO village_daily (gateway_id, day, devices, seconds, bytes_down, bytes_up) "
        "SELECT gateway_id, day, count(*), sum(seconds), sum(bytes_down), sum(bytes_up) "
        "FROM usage_daily GROUP BY gateway_id, day"
    )
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for table, column in PARTITIONED:
            _recreate(conn, table, column)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for table, _ in PARTITIONED:
            _recreate(conn, table, None)
    op.drop_index("ix_village_daily_day", table_name="village_daily")
    op.drop_table("village_daily")
