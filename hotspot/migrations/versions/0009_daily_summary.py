"""The daily summary to the BUMDes head: its queue and the uplink's outages (issue #13, item 7)

Revision ID: 0009
Revises: 0008 (trusted devices)
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_summary",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("scheduled_day", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("failed_config", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scheduled_day"),
    )
    op.create_index("ix_daily_summary_state", "daily_summary", ["state"])
    op.create_table(
        "uplink_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_uplink_event_at", "uplink_event", ["at"])


def downgrade() -> None:
    op.drop_index("ix_uplink_event_at", table_name="uplink_event")
    op.drop_table("uplink_event")
    op.drop_index("ix_daily_summary_state", table_name="daily_summary")
    op.drop_table("daily_summary")
