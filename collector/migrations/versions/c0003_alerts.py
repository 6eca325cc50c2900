"""collector: alerts and their notification outbox; where a village is (kabupaten,
kecamatan, coordinates); a Pi's throttling bits and the software version in health samples
(issue #14, items 6 and 7)

Revision ID: c0003_alerts
Revises: c0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "c0003_alerts"
down_revision = "c0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway") as b:
        b.add_column(sa.Column("kabupaten", sa.String(length=100), nullable=True))
        b.add_column(sa.Column("kecamatan", sa.String(length=100), nullable=True))
        b.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        b.add_column(sa.Column("longitude", sa.Float(), nullable=True))
    # Plain ADD COLUMN (no batch copy): health_sample may be large, or partitioned.
    op.add_column("health_sample", sa.Column("throttled", sa.BigInteger(), nullable=True))
    op.add_column(
        "health_sample", sa.Column("software_version", sa.String(length=32), nullable=True)
    )
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("raised_at", sa.DateTime(), nullable=True),
        sa.Column("clearing_since", sa.DateTime(), nullable=True),
        sa.Column("cleared_at", sa.DateTime(), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateway.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_alert_active",
        "alert",
        ["gateway_id", "kind"],
        unique=True,
        sqlite_where=sa.text("cleared_at IS NULL"),
        postgresql_where=sa.text("cleared_at IS NULL"),
    )
    op.create_index("ix_alert_raised", "alert", ["raised_at"])
    op.create_table(
        "alert_notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("hold_until", sa.DateTime(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alert.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_alert_notification_due", "alert_notification", ["sent_at", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_alert_notification_due", table_name="alert_notification")
    op.drop_table("alert_notification")
    op.drop_index("ix_alert_raised", table_name="alert")
    op.drop_index("uq_alert_active", table_name="alert")
    op.drop_table("alert")
    op.drop_column("health_sample", "software_version")
    op.drop_column("health_sample", "throttled")
    with op.batch_alter_table("gateway") as b:
        b.drop_column("longitude")
        b.drop_column("latitude")
        b.drop_column("kecamatan")
        b.drop_column("kabupaten")
