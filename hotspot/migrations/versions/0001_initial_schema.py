"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device",
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("hostname", sa.String(length=64), nullable=True),
        sa.Column("blocked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("blocked_at", sa.DateTime(), nullable=True),
        sa.Column("blocked_reason", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("mac"),
    )
    op.create_table(
        "client_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("ip", sa.String(length=15), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("down_kbps", sa.Integer(), nullable=False),
        sa.Column("up_kbps", sa.Integer(), nullable=False),
        sa.Column("idle_minutes", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("last_activity_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("bytes_limit", sa.BigInteger(), nullable=True),
        sa.Column("voucher_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["mac"],
            ["device.mac"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("client_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_client_session_mac"), ["mac"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_client_session_voucher_id"), ["voucher_id"], unique=False
        )
        batch_op.create_index("ix_session_started", ["started_at"], unique=False)
        batch_op.create_index(
            "uq_session_active_ip",
            ["ip"],
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.create_index(
            "uq_session_active_mac",
            ["mac"],
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )

    op.create_table(
        "hourly_usage",
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mac"],
            ["device.mac"],
        ),
        sa.PrimaryKeyConstraint("mac", "hour"),
    )
    with op.batch_alter_table("hourly_usage", schema=None) as batch_op:
        batch_op.create_index("ix_hourly_usage_hour", ["hour"], unique=False)

    op.create_table(
        "daily_usage",
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mac"],
            ["device.mac"],
        ),
        sa.PrimaryKeyConstraint("mac", "day", "tier"),
    )


def downgrade() -> None:
    op.drop_table("daily_usage")
    op.drop_table("hourly_usage")
    with op.batch_alter_table("client_session", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_session_active_mac",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index(
            "uq_session_active_ip",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index("ix_session_started")
        batch_op.drop_index(batch_op.f("ix_client_session_voucher_id"))
        batch_op.drop_index(batch_op.f("ix_client_session_mac"))

    op.drop_table("client_session")
    op.drop_table("device")
