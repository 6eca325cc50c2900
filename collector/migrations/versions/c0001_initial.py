"""collector: gateways, hourly and daily usage, health, monthly sales, ingest bookkeeping,
API tokens

Revision ID: c0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "c0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "gateway",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("secret", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("village", sa.String(length=100), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("version", sa.String(length=32), nullable=True),
        sa.Column("info_rev", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_health_at", sa.DateTime(), nullable=True),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "health_sample",
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("sampled_at", sa.DateTime(), nullable=False),
        sa.Column("cpu_pct", sa.Float(), nullable=False),
        sa.Column("load1", sa.Float(), nullable=False),
        sa.Column("load5", sa.Float(), nullable=False),
        sa.Column("load15", sa.Float(), nullable=False),
        sa.Column("mem_pct", sa.Float(), nullable=False),
        sa.Column("disk_pct", sa.Float(), nullable=False),
        sa.Column("disk_free_mb", sa.BigInteger(), nullable=False),
        sa.Column("temp_c", sa.Float(), nullable=True),
        sa.Column("uptime_s", sa.BigInteger(), nullable=False),
        sa.Column("uplink_ok", sa.Boolean(), nullable=True),
        sa.Column("uplink_ms", sa.Float(), nullable=True),
        sa.Column("clients_online", sa.Integer(), nullable=False),
        sa.Column("backlog", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateway.id"],
        ),
        sa.PrimaryKeyConstraint("gateway_id", "sampled_at"),
    )
    op.create_table(
        "ingest_batch",
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateway.id"],
        ),
        sa.PrimaryKeyConstraint("gateway_id", "key"),
    )
    op.create_index("ix_ingest_batch_received", "ingest_batch", ["received_at"], unique=False)
    op.create_table(
        "ingest_nonce",
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("signature", sa.String(length=67), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateway.id"],
        ),
        sa.PrimaryKeyConstraint("gateway_id", "signature"),
    )
    op.create_index("ix_ingest_nonce_seen", "ingest_nonce", ["seen_at"], unique=False)
    op.create_table(
        "sales_monthly",
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("package", sa.String(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("rupiah", sa.BigInteger(), nullable=False),
        sa.Column("rev", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateway.id"],
        ),
        sa.PrimaryKeyConstraint("gateway_id", "month", "package"),
    )
    op.create_index("ix_sales_monthly_month", "sales_monthly", ["month"], unique=False)
    op.create_table(
        "usage_daily",
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("client", sa.String(length=16), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateway.id"],
        ),
        sa.PrimaryKeyConstraint("gateway_id", "day", "client"),
    )
    op.create_index("ix_usage_daily_day", "usage_daily", ["day"], unique=False)
    op.create_table(
        "usage_hourly",
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("client", sa.String(length=16), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateway.id"],
        ),
        sa.PrimaryKeyConstraint("gateway_id", "client", "period_start"),
    )
    op.create_index("ix_usage_hourly_period", "usage_hourly", ["period_start"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_usage_hourly_period", table_name="usage_hourly")
    op.drop_table("usage_hourly")
    op.drop_index("ix_usage_daily_day", table_name="usage_daily")
    op.drop_table("usage_daily")
    op.drop_index("ix_sales_monthly_month", table_name="sales_monthly")
    op.drop_table("sales_monthly")
    op.drop_index("ix_ingest_nonce_seen", table_name="ingest_nonce")
    op.drop_table("ingest_nonce")
    op.drop_index("ix_ingest_batch_received", table_name="ingest_batch")
    op.drop_table("ingest_batch")
    op.drop_table("health_sample")
    op.drop_table("gateway")
    op.drop_table("api_token")
