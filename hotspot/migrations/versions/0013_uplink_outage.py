"""The uplink's outages, seen by the gateway (issue #11, item 3)

Revision ID: 0013
Revises: 0012 (auto-resume)
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uplink_outage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_uplink_outage_started_at", "uplink_outage", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_uplink_outage_started_at", table_name="uplink_outage")
    op.drop_table("uplink_outage")
